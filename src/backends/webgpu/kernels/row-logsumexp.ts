/**
 * log Σ_j e^(x_j) over one row, computed by a whole workgroup in one pass over the row: the WGSL
 * shared by softmax and cross-entropy. CPU twin: `logSumExpRow` in `cpu/reduce.ts`, which reads the
 * row twice; the two agree up to f32 rounding.
 *
 *     M = max_j x_j,   lse = M + log Σ_j e^(x_j − M)
 *
 * Subtracting the row max makes every exponent ≤ 0, so nothing overflows however large x is, but it
 * reads the row twice: the sum cannot start before M is known. The online form (Milakov & Gimelshein
 * 2018, https://arxiv.org/abs/1805.02867; attention.ts runs it over keys) reads it once. Thread t walks
 * elements t, t + 256, … keeping a running max m and s = Σ e^(x − m) over what it has read; an
 * element above m becomes the new reference, and the sum so far is rescaled to it first:
 *
 *     x > m:  s ← s·e^(m − x) + 1,  m ← x          otherwise:  s ← s + e^(x − m)
 *
 * Then the workgroup combines the threads' (m, s) pairs with two tree reductions (workgroup-reduce.ts):
 *
 *     M = max_t m_t,   total = Σ_t s_t·e^(m_t − M),   lse = M + log(total)
 *
 * Each element costs one exp, and a rescale one more: a thread's max rises about ln n times over n
 * elements in random order (every time for a row sorted upward, which still reads the row only once).
 *
 * The edge cases come out as the CPU's without a −∞ literal, which WGSL lacks:
 * - A thread starts from an element of the row with s = 0, so a thread past the end of a short row
 *   adds 0·e^(m − M) = 0 to the total.
 * - −∞ (a masked logit) adds e^(−∞) = 0. A thread that has read only −∞ has m = −∞, where e^(x − m)
 *   would be e^(−∞ + ∞) = NaN, so an element equal to m adds exactly e^0 = 1: that thread's s stays
 *   finite, and the combine weighs it by e^(−∞ − M) = 0.
 * - A row of all −∞ has M = −∞, so every weight is e^(−∞ + ∞) = NaN and lse is NaN, as on the CPU
 *   (its softmax is NaN, as in PyTorch). A +∞ entry likewise makes M = +∞ and lse NaN.
 * - A NaN never becomes m (x > m is false), but adds e^NaN = NaN to its thread's s: lse is NaN.
 */
import type { DType } from '../../../tensor/dtype.js';
import { load } from '../wgsl.js';
import { ROW_WORKGROUP, WORKGROUP_REDUCTIONS } from './workgroup-reduce.js';

/**
 * WGSL for `fn rowLogSumExp(base: u32, cols: u32, lid: u32) -> f32` over `x[base … base + cols)`
 * (a storage array named `x` of `dtype`), plus the workgroup reductions it combines with
 * (workgroup-reduce.ts). Call it from uniform control flow with cols > 0: it contains barriers.
 */
export function rowLogSumExpWgsl(dtype: DType): string {
  const W = ROW_WORKGROUP;
  const x = (j: string) => load('x', `base + ${j}`, dtype);
  return `${WORKGROUP_REDUCTIONS}
// e^(v − m) for v ≤ m, but 1 where v = m = −∞ (not NaN).
fn expBelow(v: f32, m: f32) -> f32 { return exp(select(v - m, 0.0, v == m)); }

fn rowLogSumExp(base: u32, cols: u32, lid: u32) -> f32 {
  // This thread's running max m and s = Σ e^(x − m) over its elements, from an element of the row
  // with nothing summed yet.
  var m = ${x('min(lid, cols - 1u)')};
  var s = 0.0;
  // Four elements at a time, loaded before any is used, so that four loads are in flight (one at a
  // time, each waits out the memory's latency); the largest of the four is the candidate max.
  var j = lid;
  for (; j + ${3 * W}u < cols; j += ${4 * W}u) {
${[0, 1, 2, 3].map((k) => `    let v${k} = ${x(`j + ${k * W}u`)};`).join('\n')}
    let top = max(max(v0, v1), max(v2, v3));
    if (top > m) { // a new max: rescale the sum to it
      s *= exp(m - top);
      m = top;
    }
    s += (expBelow(v0, m) + expBelow(v1, m)) + (expBelow(v2, m) + expBelow(v3, m));
  }
  for (; j < cols; j += ${W}u) {
    let v = ${x('j')};
    if (v > m) {
      s *= exp(m - v);
      m = v;
    }
    s += expBelow(v, m);
  }
  let rowMax = workgroupMax(m, lid);
  return rowMax + log(workgroupSum(s * exp(m - rowMax), lid));
}
`;
}
