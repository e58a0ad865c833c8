/**
 * Causal attention as one op, FlashAttention style (Dao et al. 2022, https://arxiv.org/abs/2205.14135):
 *
 *     out = softmax(q kᵀ·scale, with the future masked) v          per (batch, head)
 *
 * q (batch, heads, Lq, dh), k and v (batch, heads, Lk, dh), Lq ≤ Lk. The queries are the last Lq of
 * the Lk positions: row i sits at position Lk − Lq + i and sees keys 0 … Lk − Lq + i. Lq = Lk is a
 * whole sequence; Lq = 1 is one decoding step against a key/value cache.
 *
 * **Forward**: one kernel, `backend.causalAttention`. Written as matmul → mask → softmax → matmul it
 * would materialise the (Lq, Lk) scores: 1 GiB per head at 16 384 tokens in float32, past WebGPU's
 * 2 GiB binding limit with a few heads. The kernel walks the keys in blocks with a running softmax
 * (webgpu/kernels/attention.ts draws it) and keeps only the output and, per query row, the log-sum-exp
 * of its scores, lse, for the backward.
 *
 * **Backward**: the standard identities in ordinary ops, the attention weights P rebuilt from lse
 * (no second softmax):
 *
 *     S  = q kᵀ·scale, −∞ above the diagonal        P  = exp(S − lse)
 *     dV = Pᵀ dO     dP = dO vᵀ     D = rowsum(dO ⊙ O)     dS = P ⊙ (dP − D)
 *     dQ = dS k·scale                               dK = dSᵀ q·scale
 *
 * D is the softmax backward's Σ g⊙y, rowsum(dP ⊙ P), computed from the small tensors instead. The
 * backward does build (Lq, Lk) matrices: training runs at short lengths; it is evaluation and
 * generation at long ones that needed the forward not to.
 */
import { record } from '../../autograd/graph.js';
import { isFloat } from '../dtype.js';
import { shapesEqual, shapeToString } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { fromBuffer } from './creation.js';
import { checkCompatible, exp, maskedFill, mul, sub } from './elementwise.js';
import { causalMask } from './mask.js';
import { matmul } from './matmul.js';
import { sum } from './reduce.js';
import { transpose } from './views.js';

/** q (batch, heads, Lq, dh), k, v (batch, heads, Lk, dh) with Lq ≤ Lk → (batch, heads, Lq, dh). */
export function causalAttention(q: Tensor, k: Tensor, v: Tensor, scale: number): Tensor {
  const [batch = 0, heads = 0, Lq = 0, dh = 0] = q.shape;
  const Lk = k.shape[2] ?? 0;
  if (q.rank !== 4 || !shapesEqual(k.shape, [batch, heads, Lk, dh]) || !shapesEqual(v.shape, k.shape) || Lq > Lk || dh === 0) {
    throw new Error(
      `causalAttention: expected q (batch, heads, Lq, dh) and k, v (batch, heads, Lk, dh) with Lq ≤ Lk and dh ≥ 1; got q ${shapeToString(q.shape)}, k ${shapeToString(k.shape)}, v ${shapeToString(v.shape)}.`,
    );
  }
  checkCompatible('causalAttention', q, k);
  checkCompatible('causalAttention', q, v);
  if (!isFloat(q.dtype)) throw new Error(`causalAttention: expects floating-point tensors, got ${q.dtype}.`);

  const backend = q.storage.backend;
  const result = backend.causalAttention(q.view(), k.view(), v.view(), scale);
  const out = fromBuffer(result.out, q.shape, q.dtype, backend);
  const lse = fromBuffer(result.lse, [batch, heads, Lq, 1], q.dtype, backend);
  record(out, 'causalAttention', [q, k, v], (g) => {
    const s = maskedFill(mul(matmul(q, transpose(k)), scale), causalMask(Lk, q.dtype, Lq), -Infinity);
    const p = exp(sub(s, lse)); // (batch, heads, Lq, Lk), 0 above the diagonal
    const dp = matmul(g, transpose(v));
    const ds = mul(p, sub(dp, sum(mul(g, out), -1, true)));
    return [mul(matmul(ds, k), scale), mul(matmul(transpose(ds), q), scale), matmul(transpose(p), g)];
  });
  if (!out.gradFn) lse.dispose(); // no backward will read it
  return out;
}
