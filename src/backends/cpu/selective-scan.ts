/**
 * The selective scan of Mamba (Gu & Dao 2023, https://arxiv.org/abs/2312.00752), written as the plain
 * sequential loop: the readable definition that every other implementation (the Blelloch scan in
 * `blelloch-scan.ts`, the WebGPU kernels) is tested against.
 *
 * Shapes (all contiguous, row-major):
 *     u, Δ, y   (batch, dim, len)     the input, the step size, the output
 *     A         (dim, N)              the diagonal state matrix (negative, so exp(Δ·A) < 1 decays)
 *     B, C      (batch, N, len)       input and output projections, one per time step ("selective")
 *     h         (batch, dim, N)       the hidden state, N numbers per channel
 *
 * For every (batch b, channel d, state n) the recurrence is eq. 2a/2b of the paper, discretised as in
 * eq. 4 with the zero-order hold for A and the Euler step Δ·B for B (what the reference code does):
 *
 *     ā_t = exp(Δ_t · A[n])                  b̄_t = Δ_t · B_t[n] · u_t
 *     h_t = ā_t · h_{t−1} + b̄_t   (h_0 = 0)     y_t = Σ_n C_t[n] · h_t[n]
 *
 * Everything is accumulated in JS doubles and rounded once into the inputs' dtype. D·u, the gate
 * silu(z) and Δ's bias and softplus are not here: the op (src/tensor/ops/selective-scan.ts) builds
 * them from ordinary tensor ops, so their gradients come for free.
 */
import type { TypedArray } from '../../tensor/dtype.js';
import { dtypeOf } from '../../tensor/dtype.js';
import type { ScanSizes } from '../backend.js';
import { type NumericArray, readable, resultArray, stored } from './buffer.js';

/** The five inputs of the scan as arrays (float16 is decoded on entry). */
export interface ScanArrays {
  u: TypedArray;
  delta: TypedArray;
  A: TypedArray;
  B: TypedArray;
  C: TypedArray;
}

interface Decoded {
  u: NumericArray;
  delta: NumericArray;
  A: NumericArray;
  B: NumericArray;
  C: NumericArray;
}

/** Checks that every array holds its shape's elements, naming the first that does not. */
function decode(x: ScanArrays, { batch, dim, len, N }: ScanSizes, op: string): Decoded {
  const need: [keyof ScanArrays, number][] = [
    ['u', batch * dim * len],
    ['delta', batch * dim * len],
    ['A', dim * N],
    ['B', batch * N * len],
    ['C', batch * N * len],
  ];
  for (const [name, size] of need) {
    if (x[name].length < size) {
      throw new Error(`${op}: ${name} has ${x[name].length} elements, fewer than the ${size} its shape needs.`);
    }
  }
  return { u: readable(x.u), delta: readable(x.delta), A: readable(x.A), B: readable(x.B), C: readable(x.C) };
}

/**
 * Runs the recurrence over one (b, d) row, writing h_t (t = 0 … len−1) into `states[(t+1)·N + n]`
 * and leaving h_0 = 0 in `states[n]`: the forward pass keeps only the last N, the backward all of them.
 * Returns nothing; `onStep(t)` sees each step after its states are written (the forward forms y_t there).
 */
function runRow(x: Decoded, sizes: ScanSizes, b: number, d: number, states: Float64Array, keepAll: boolean, onStep: (t: number, h: Float64Array, at: number) => void): void {
  const { dim, len, N } = sizes;
  const row = (b * dim + d) * len; // u and Δ of (b, d) start here
  const bc = b * N * len; //           B and C of batch b start here
  for (let n = 0; n < N; n++) states[n] = 0;
  for (let t = 0; t < len; t++) {
    const dt = x.delta[row + t];
    const du = dt * x.u[row + t];
    // keepAll: h_t goes to slot t+1 so h_{t−1} survives for the backward; else one slot is reused.
    const prev = keepAll ? t * N : 0;
    const at = keepAll ? prev + N : 0;
    for (let n = 0; n < N; n++) {
      states[at + n] = Math.exp(dt * x.A[d * N + n]) * states[prev + n] + du * x.B[bc + n * len + t];
    }
    onStep(t, states, at);
  }
}

/**
 * The forward scan: y (batch, dim, len) and the last state h_len (batch, dim, N), in the dtype of u.
 * This is the definition; it runs in O(batch·dim·len·N) time and keeps only N doubles of state.
 */
export function selectiveScanForward(x: ScanArrays, sizes: ScanSizes): { y: TypedArray; lastState: TypedArray } {
  const { batch, dim, len, N } = sizes;
  const dtype = dtypeOf(x.u);
  const xs = decode(x, sizes, 'selectiveScan');
  const y = resultArray(dtype, batch * dim * len);
  const last = resultArray(dtype, batch * dim * N);
  const h = new Float64Array(N);
  for (let b = 0; b < batch; b++) {
    const bc = b * N * len;
    for (let d = 0; d < dim; d++) {
      const row = (b * dim + d) * len;
      runRow(xs, sizes, b, d, h, false, (t, state) => {
        let yt = 0;
        for (let n = 0; n < N; n++) yt += xs.C[bc + n * len + t] * state[n];
        y[row + t] = yt;
      });
      for (let n = 0; n < N; n++) last[(b * dim + d) * N + n] = h[n];
    }
  }
  return { y: stored(y, dtype), lastState: stored(last, dtype) };
}

/**
 * The backward scan: given dy = ∂L/∂y (batch, dim, len), the gradients of L with respect to the five
 * inputs, in the dtype of u.
 *
 * The state is needed at every step, but nothing was saved by the forward: each (b, d) row first
 * re-runs the forward recurrence into a (len + 1)·N scratch of doubles (h_0 … h_len), then walks
 * back in time. (Recovering h_{t−1} = (h_t − b̄_t)/ā_t instead would divide by ā_t ≈ 0 for fast-decaying
 * states and blow rounding errors up.)
 *
 * The chain rule, with ā_t = exp(Δ_t·A), b̄_t = Δ_t·B_t·u_t, h_t = ā_t·h_{t−1} + b̄_t, y_t = C_t·h_t:
 * h_t reaches L through y_t and through h_{t+1} = ā_{t+1}·h_t + …, so
 *
 *     dh_t[n]  = C_t[n]·dy_t + ā_{t+1}[n]·dh_{t+1}[n]          (dh_len+1 = 0: the reverse recurrence)
 *
 * and each input's gradient collects dh_t times the derivative of h_t's right-hand side:
 *
 *     dC_t[n] = Σ_d dy_t·h_t[n]                                 (C is shared by the dim channels)
 *     dΔ_t    = Σ_n dh_t[n]·(A[n]·ā_t[n]·h_{t−1}[n] + B_t[n]·u_t)   (∂ā/∂Δ = A·ā, ∂b̄/∂Δ = B·u)
 *     dA[n]   = Σ_{b,t} dh_t[n]·Δ_t·ā_t[n]·h_{t−1}[n]          (A is shared by batch and time)
 *     dB_t[n] = Σ_d dh_t[n]·Δ_t·u_t
 *     du_t    = Σ_n dh_t[n]·Δ_t·B_t[n]
 */
export function selectiveScanBackward(
  x: ScanArrays,
  dy: TypedArray,
  sizes: ScanSizes,
): { du: TypedArray; ddelta: TypedArray; dA: TypedArray; dB: TypedArray; dC: TypedArray } {
  const { batch, dim, len, N } = sizes;
  const dtype = dtypeOf(x.u);
  const xs = decode(x, sizes, 'selectiveScanGrad');
  if (dy.length < batch * dim * len) {
    throw new Error(`selectiveScanGrad: dy has ${dy.length} elements, fewer than the ${batch * dim * len} its shape needs.`);
  }
  const g = readable(dy);
  const du = resultArray(dtype, batch * dim * len);
  const ddelta = resultArray(dtype, batch * dim * len);
  // Sums over channels (dB, dC) or over batch and time (dA) build up across rows: keep them in doubles.
  const dA = new Float64Array(dim * N);
  const dB = new Float64Array(batch * N * len);
  const dC = new Float64Array(batch * N * len);
  const states = new Float64Array((len + 1) * N);
  /** ā_{t+1}[n]·dh_{t+1}[n]: what step t+1 hands back to step t (0 past the end). */
  const carry = new Float64Array(N);
  for (let b = 0; b < batch; b++) {
    const bc = b * N * len;
    for (let d = 0; d < dim; d++) {
      const row = (b * dim + d) * len;
      runRow(xs, sizes, b, d, states, true, () => {});
      carry.fill(0);
      for (let t = len - 1; t >= 0; t--) {
        const dt = xs.delta[row + t];
        const ut = xs.u[row + t];
        const gt = g[row + t];
        let dDelta = 0;
        let dU = 0;
        for (let n = 0; n < N; n++) {
          const a = xs.A[d * N + n];
          const abar = Math.exp(dt * a);
          const hPrev = states[t * N + n];
          const bn = xs.B[bc + n * len + t];
          const cn = xs.C[bc + n * len + t];
          const dh = cn * gt + carry[n];
          dC[bc + n * len + t] += gt * states[(t + 1) * N + n];
          dDelta += dh * (a * abar * hPrev + bn * ut);
          dA[d * N + n] += dh * dt * abar * hPrev;
          dB[bc + n * len + t] += dh * dt * ut;
          dU += dh * dt * bn;
          carry[n] = abar * dh;
        }
        du[row + t] = dU;
        ddelta[row + t] = dDelta;
      }
    }
  }
  return {
    du: stored(du, dtype),
    ddelta: stored(ddelta, dtype),
    dA: stored(dA, dtype),
    dB: stored(dB, dtype),
    dC: stored(dC, dtype),
  };
}
