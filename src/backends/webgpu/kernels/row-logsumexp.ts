/**
 * log Σ_j e^(x_j) over one row, computed by a whole workgroup: the WGSL shared by softmax and
 * cross-entropy. CPU twin: `logSumExpRow` in `cpu/reduce.ts`.
 *
 *     m = max_j x_j,   lse = m + log Σ_j e^(x_j − m)
 *
 * Subtracting the row max makes every exponent ≤ 0, so nothing overflows however large x is. Both the
 * max and the sum are workgroup tree reductions (see `reduce.ts`); every thread gets the result.
 */
import type { DType } from '../../../tensor/dtype.js';
import { load } from '../wgsl.js';

export const ROW_WORKGROUP = 256;

/**
 * WGSL for `fn rowLogSumExp(base: u32, cols: u32, lid: u32) -> f32` over `x[base … base + cols)`
 * (a storage array named `x` of `dtype`), plus the workgroup array it reduces in. Call it from
 * uniform control flow with cols > 0: it contains barriers.
 */
export function rowLogSumExpWgsl(dtype: DType): string {
  const W = ROW_WORKGROUP;
  const x = (j: string) => load('x', `base + ${j}`, dtype);
  return `var<workgroup> partial: array<f32, ${W}>;

// Tree reductions over the workgroup; every thread returns the total. The final barrier keeps the
// next reduction from overwriting partial[0] before everyone has read it.
fn workgroupMax(v: f32, lid: u32) -> f32 {
  partial[lid] = v;
  workgroupBarrier();
  for (var s = ${W / 2}u; s > 0u; s >>= 1u) {
    if (lid < s && partial[lid + s] > partial[lid]) { partial[lid] = partial[lid + s]; }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier();
  return total;
}

fn workgroupSum(v: f32, lid: u32) -> f32 {
  partial[lid] = v;
  workgroupBarrier();
  for (var s = ${W / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { partial[lid] += partial[lid + s]; }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier();
  return total;
}

fn rowLogSumExp(base: u32, cols: u32, lid: u32) -> f32 {
  // Threads start from an element of the row (repeats are harmless to a max): no −∞ literal needed.
  var m = ${x('min(lid, cols - 1u)')};
  for (var j = lid; j < cols; j += ${W}u) { m = select(m, ${x('j')}, ${x('j')} > m); }
  m = workgroupMax(m, lid);
  var s = 0.0;
  for (var j = lid; j < cols; j += ${W}u) { s += exp(${x('j')} - m); }
  return m + log(workgroupSum(s, lid));
}
`;
}
