/**
 * The tree reductions of the row kernels, which give each row one workgroup: thread t folds elements
 * t, t + 256, … of the row into a value of its own, then the workgroup combines the 256 values in
 * workgroup memory, halving the active threads each step (log₂ 256 = 8 steps, as in reduce.ts), and
 * every thread reads the total. Shared by softmax and cross-entropy (through row-logsumexp.ts) and by
 * the norms (norm.ts).
 */

/** Threads per workgroup of a row kernel. */
export const ROW_WORKGROUP = 256;

/**
 * WGSL for `fn workgroupSum(v: f32, lid: u32) -> f32` and `fn workgroupMax(v: f32, lid: u32) -> f32`
 * over the workgroup's threads (lid = local_invocation_index), plus the workgroup array they reduce
 * in. Every thread returns the total. Call them from uniform control flow: they contain barriers.
 */
export const WORKGROUP_REDUCTIONS = `var<workgroup> partial: array<f32, ${ROW_WORKGROUP}>;

// Tree reductions over the workgroup; every thread returns the total. The final barrier keeps the
// next reduction from overwriting partial[0] before everyone has read it.
fn workgroupMax(v: f32, lid: u32) -> f32 {
  partial[lid] = v;
  workgroupBarrier();
  for (var s = ${ROW_WORKGROUP / 2}u; s > 0u; s >>= 1u) {
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
  for (var s = ${ROW_WORKGROUP / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { partial[lid] += partial[lid + s]; }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier();
  return total;
}
`;
