/**
 * Causal attention, the definition: one (batch, head) and one query row at a time, every score
 * written out. The WebGPU kernel (webgpu/kernels/attention.ts) computes the same without ever holding
 * a row of scores; this file is what it is tested against.
 *
 * For q (batch, heads, Lq, dh) and k, v (batch, heads, Lk, dh) with Lq ≤ Lk, query row i sits at
 * position p = Lk − Lq + i (the queries are the *last* Lq positions) and sees keys 0 … p:
 *
 *     s_j   = scale · Σ_d q[i, d]·k[j, d]            j = 0 … p
 *     lse_i = log Σ_j e^(s_j)                        (the softmax's normaliser, kept for the backward)
 *     out_i = Σ_j e^(s_j − lse_i) · v[j]             (softmax(s) · v)
 *
 * Scores, sums and outputs are doubles; each result is rounded to the dtype once.
 */
import type { TypedArray } from '../../tensor/dtype.js';
import type { View } from '../backend.js';
import { readable, resultArray, stored } from './buffer.js';
import { logSumExpRow } from './reduce.js';
import { contiguousValues } from './strided.js';

/** out (batch, heads, Lq, dh) and lse (batch·heads·Lq), both in q's dtype; the views may have any strides. */
export function causalAttention(
  q: View,
  qData: TypedArray,
  k: View,
  kData: TypedArray,
  v: View,
  vData: TypedArray,
  scale: number,
): { out: TypedArray; lse: TypedArray } {
  const [batch = 0, heads = 0, Lq = 0, dh = 0] = q.shape;
  const Lk = k.shape[2] ?? 0;
  // Row-major copies (or the buffers themselves, when contiguous): row r of head bh starts at (bh·L + r)·dh.
  const qs = contiguousValues(readable(qData), q);
  const ks = contiguousValues(readable(kData), k);
  const vs = contiguousValues(readable(vData), v);
  const out = resultArray(q.dtype, batch * heads * Lq * dh);
  const lse = resultArray(q.dtype, batch * heads * Lq);
  const scores = new Float64Array(Lk);
  const acc = new Float64Array(dh); // one output row, summed over the keys
  for (let bh = 0; bh < batch * heads; bh++) {
    for (let i = 0; i < Lq; i++) {
      const row = bh * Lq + i;
      const seen = Lk - Lq + i + 1; // keys 0 … p
      for (let j = 0; j < seen; j++) {
        let s = 0;
        for (let d = 0; d < dh; d++) s += qs[row * dh + d] * ks[(bh * Lk + j) * dh + d];
        scores[j] = scale * s;
      }
      const norm = logSumExpRow(scores, 0, seen);
      lse[row] = norm;
      acc.fill(0);
      for (let j = 0; j < seen; j++) {
        const p = Math.exp(scores[j] - norm);
        for (let d = 0; d < dh; d++) acc[d] += p * vs[(bh * Lk + j) * dh + d];
      }
      out.set(acc, row * dh);
    }
  }
  return { out: stored(out, q.dtype), lse: stored(lse, q.dtype) };
}
