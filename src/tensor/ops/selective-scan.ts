/**
 * Mamba's selective scan (Gu & Dao 2023, https://arxiv.org/abs/2312.00752, Algorithm 2), with the
 * argument order, layouts and options of `selective_scan_ref` in state-spaces/mamba
 * (mamba_ssm/ops/selective_scan_interface.py):
 *
 *     Δ   = softplus(delta + deltaBias)                          (bias and softplus optional)
 *     h_t = exp(Δ_t·A) ⊙ h_{t−1} + Δ_t·B_t·u_t,  h_0 = 0          (eq. 2a with eq. 4's ZOH for A, Δ·B for B)
 *     y_t = Σ_n C_t[n]·h_t[n]                                    (eq. 2b)
 *     out = (y + D·u) ⊙ silu(z)                                  (D and z optional)
 *
 * Shapes: u, delta, z (batch, dim, len); A (dim, N); B, C (batch, N, len); D, deltaBias (dim);
 * the last state h_len (batch, dim, N). A is usually −exp(A_log), negative, so that exp(Δ·A) ∈ (0, 1)
 * makes the state forget.
 *
 * Only the recurrence is a kernel (`backend.selectiveScan`, forward, and `selectiveScanGrad`, its
 * reverse recurrence; the CPU definition is src/backends/cpu/selective-scan.ts). The bias, softplus,
 * skip and gate are the engine's ordinary ops, so their gradients come from those ops' backward
 * closures and the kernel stays the five-input core. docs/selective-scan.md derives it all.
 */
import { record } from '../../autograd/graph.js';
import type { ScanInputs, ScanSizes } from '../../backends/backend.js';
import { isFloat } from '../dtype.js';
import { shapesEqual, shapeToString } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { fromBuffer } from './creation.js';
import { add, checkCompatible, contiguous, mul, silu, softplus } from './elementwise.js';
import { reshape } from './views.js';

export interface SelectiveScanOptions {
  /** The skip connection (dim): adds D·u to the output. */
  D?: Tensor | null;
  /** The gate (batch, dim, len): multiplies the output by silu(z). */
  z?: Tensor | null;
  /** Added to delta, per channel (dim), before the softplus. */
  deltaBias?: Tensor | null;
  /** Δ = softplus(delta + deltaBias) when true (as Mamba calls it), delta + deltaBias otherwise. Default false. */
  deltaSoftplus?: boolean;
  /** Also return the last state h_len (e.g. to start step-by-step decoding from it). Default false. */
  returnLastState?: boolean;
}

/** The output with the state after the last step. */
export interface SelectiveScanResult {
  /** (batch, dim, len) */
  y: Tensor;
  /** h_len (batch, dim, N); not differentiable (see `selectiveScan`). */
  lastState: Tensor;
}

/**
 * The selective scan: u, delta (batch, dim, len), A (dim, N), B, C (batch, N, len) → y (batch, dim,
 * len), or `{ y, lastState }` with `returnLastState: true` — the reference's `out` or `(out, last_state)`.
 *
 * Gradients flow to u, delta, A, B, C, D, z and deltaBias. The last state is returned detached, like
 * the fused kernel's in state-spaces/mamba: gradients reaching it are not propagated.
 */
export function selectiveScan(
  u: Tensor,
  delta: Tensor,
  A: Tensor,
  B: Tensor,
  C: Tensor,
  options?: SelectiveScanOptions & { returnLastState?: false },
): Tensor;
export function selectiveScan(
  u: Tensor,
  delta: Tensor,
  A: Tensor,
  B: Tensor,
  C: Tensor,
  options: SelectiveScanOptions & { returnLastState: true },
): SelectiveScanResult;
export function selectiveScan(
  u: Tensor,
  delta: Tensor,
  A: Tensor,
  B: Tensor,
  C: Tensor,
  options?: SelectiveScanOptions,
): Tensor | SelectiveScanResult;
export function selectiveScan(
  u: Tensor,
  delta: Tensor,
  A: Tensor,
  B: Tensor,
  C: Tensor,
  { D = null, z = null, deltaBias = null, deltaSoftplus = false, returnLastState = false }: SelectiveScanOptions = {},
): Tensor | SelectiveScanResult {
  const sizes = checkShapes(u, delta, A, B, C, D, z, deltaBias);
  const perChannel = [sizes.dim, 1]; // (dim) broadcast along len
  let dt = delta;
  if (deltaBias) dt = add(dt, reshape(deltaBias, perChannel));
  if (deltaSoftplus) dt = softplus(dt);
  const { y: scanned, lastState } = scan(u, dt, A, B, C, sizes);
  let y = scanned;
  if (D) y = add(y, mul(u, reshape(D, perChannel)));
  if (z) y = mul(y, silu(z));
  if (returnLastState) return { y, lastState };
  lastState.dispose();
  return y;
}

/**
 * The recurrence as one recorded op of (u, Δ, A, B, C). Its backward hands the kernel the same input
 * buffers again, plus whatever the backend chose to keep from the forward (`saved`: the WebGPU
 * backend keeps the state entering each chunk; the CPU backend keeps nothing and recomputes).
 */
function scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, sizes: ScanSizes): { y: Tensor; lastState: Tensor } {
  const backend = u.storage.backend;
  // The kernels read row-major buffers from element 0, which `contiguous` guarantees (copying if needed).
  const dense = [u, delta, A, B, C].map(contiguous);
  const recording = dense.some((t) => t.requiresGrad);
  const [pu, pdelta, pA, pB, pC] = dense.map((t) => t.storage.buffer);
  const inputs: ScanInputs = { u: pu, delta: pdelta, A: pA, B: pB, C: pC };
  const out = backend.selectiveScan(inputs, sizes, recording);
  const y = fromBuffer(out.y, u.shape, u.dtype, backend);
  const lastState = fromBuffer(out.lastState, [sizes.batch, sizes.dim, sizes.N], u.dtype, backend);
  if (!recording) {
    for (const t of dense) t.dispose(); // no backward will read them
    return { y, lastState };
  }
  // The saved buffer rides in a tensor so that dispose and tidy free it with the rest of the graph.
  // Its contents are the backend's business, so the tensor shows none of them (shape [0]).
  const saved = out.saved ? fromBuffer(out.saved, [0], u.dtype, backend) : null;
  record(y, 'selectiveScan', dense, (g) => {
    const gc = contiguous(g);
    const grads = backend.selectiveScanGrad(inputs, gc.storage.buffer, sizes, saved?.view().buffer);
    gc.dispose();
    // The kernel computes all five at once; those no input asked for are freed straight away.
    return [grads.du, grads.ddelta, grads.dA, grads.dB, grads.dC].map((buffer, i) => {
      const x = dense[i] as Tensor;
      const grad = fromBuffer(buffer, x.shape, u.dtype, backend);
      if (x.requiresGrad) return grad;
      grad.dispose();
      return null;
    });
  });
  return { y, lastState };
}

/** The scan's sizes, after checking every shape, dtype and backend; one sentence names all shapes. */
function checkShapes(
  u: Tensor,
  delta: Tensor,
  A: Tensor,
  B: Tensor,
  C: Tensor,
  D: Tensor | null,
  z: Tensor | null,
  deltaBias: Tensor | null,
): ScanSizes {
  const [batch = 0, dim = 0, len = 0] = u.shape;
  const N = A.shape[1] ?? 0;
  const rows = [batch, dim, len];
  const states = [batch, N, len];
  const named: [string, Tensor | null, number[]][] = [
    ['u', u, rows],
    ['delta', delta, rows],
    ['A', A, [dim, N]],
    ['B', B, states],
    ['C', C, states],
    ['D', D, [dim]],
    ['z', z, rows],
    ['deltaBias', deltaBias, [dim]],
  ];
  const given = named.filter((entry): entry is [string, Tensor, number[]] => entry[1] !== null);
  if (u.rank !== 3 || A.rank !== 2 || !given.every(([, t, shape]) => shapesEqual(t.shape, shape))) {
    throw new Error(
      `selectiveScan: expected u, delta, z (batch, dim, len), A (dim, N), B, C (batch, N, len), D, deltaBias (dim); got ${given
        .map(([name, t]) => `${name} ${shapeToString(t.shape)}`)
        .join(', ')}.`,
    );
  }
  for (const [, t] of given) checkCompatible('selectiveScan', u, t);
  if (!isFloat(u.dtype)) throw new Error(`selectiveScan: expects floating-point tensors, got ${u.dtype}.`);
  return { batch, dim, len, N };
}
