/**
 * Inclusive prefix sums along each row of a contiguous (rows, cols) buffer. CPU twin: `cumsum` in
 * `cpu/reduce.ts`.
 *
 *     forward:  y_rj = Σ_{k ≤ j} x_rk          reverse:  y_rj = Σ_{k ≥ j} x_rk
 *
 * One workgroup of 256 threads scans one row, 1024 elements (a "tile") at a time:
 * 1. each thread scans its own 4 consecutive elements sequentially;
 * 2. the 256 thread totals are scanned in workgroup memory by Hillis & Steele's method: at step d every
 *    thread adds the total 2^d places before it, so after log₂ 256 = 8 steps each holds the sum of
 *    everything up to itself;
 * 3. each thread adds the totals of the threads before it, plus the carry (the sum of all earlier
 *    tiles), to its 4 prefixes.
 * A reverse scan is the same walk with positions mirrored (element q of the walk is column cols−1−q).
 * Sums are in f32 (the CPU adds in doubles): the error grows with log₂ of the tile and the number of
 * tiles, not with every element.
 */
import type { DType } from '../../../tensor/dtype.js';
import type { PooledBuffer } from '../buffer-pool.js';
import type { Executor, Kernel } from '../executor.js';
import { ParamStruct } from '../params.js';
import { computeType, enables, GRID_BUILTINS, LINEAR_WORKGROUP, load, storageBinding, store } from '../wgsl.js';

const WORKGROUP = 256;
const PER_THREAD = 4;
const TILE = WORKGROUP * PER_THREAD;

const params = new ParamStruct([
  ['rows', 'u32'],
  ['cols', 'u32'],
] as const);

const kernels = new Map<string, Kernel<'rows' | 'cols'>>();

function cumsumKernel(dtype: DType, reverse: boolean): Kernel<'rows' | 'cols'> {
  const key = `cumsum ${dtype}${reverse ? ' reverse' : ''}`;
  let kernel = kernels.get(key);
  if (!kernel) {
    const t = computeType(dtype);
    const column = reverse ? 'params.cols - 1u - q' : 'q';
    const source = () => `${enables([dtype])}// ${key}: CPU twin \`cumsum\` in cpu/reduce.ts.
${params.wgsl(2)}
${storageBinding(0, 'x', 'read', dtype)}
${storageBinding(1, 'y', 'read_write', dtype)}

var<workgroup> totals: array<${t}, ${WORKGROUP}>;

@compute @workgroup_size(${WORKGROUP})
fn main(${GRID_BUILTINS}) {
  let row = ${LINEAR_WORKGROUP};
  if (row >= params.rows) { return; }
  let base = row * params.cols;
  var carry = ${t}(0); // the sum of all earlier tiles; every thread keeps the same value
  for (var tile = 0u; tile < params.cols; tile += ${TILE}u) {
    // 1. This thread's 4 elements, as running sums (0 past the end of the row).
    let first = tile + lid * ${PER_THREAD}u;
    var prefix: array<${t}, ${PER_THREAD}>;
    var running = ${t}(0);
    for (var k = 0u; k < ${PER_THREAD}u; k++) {
      let q = first + k;
      if (q < params.cols) { running += ${load('x', `base + ${column}`, dtype)}; }
      prefix[k] = running;
    }
    // 2. Inclusive scan of the thread totals (Hillis–Steele).
    totals[lid] = running;
    workgroupBarrier();
    for (var d = 1u; d < ${WORKGROUP}u; d <<= 1u) {
      var before = ${t}(0);
      if (lid >= d) { before = totals[lid - d]; }
      workgroupBarrier();
      totals[lid] += before;
      workgroupBarrier();
    }
    // 3. Add what came before this thread, and write.
    var offset = carry;
    if (lid > 0u) { offset += totals[lid - 1u]; }
    for (var k = 0u; k < ${PER_THREAD}u; k++) {
      let q = first + k;
      if (q < params.cols) { ${store('y', `base + ${column}`, 'offset + prefix[k]', dtype)} }
    }
    carry += totals[${WORKGROUP - 1}];
    workgroupBarrier(); // everyone has read totals before the next tile overwrites them
  }
}
`;
    kernel = { key, bindings: ['read', 'write'], params, source };
    kernels.set(key, kernel);
  }
  return kernel;
}

export function runCumsum(
  exec: Executor,
  x: PooledBuffer,
  dtype: DType,
  rows: number,
  cols: number,
  reverse: boolean,
  out: PooledBuffer,
): void {
  if (cols === 0) return;
  exec.dispatch('cumsum', cumsumKernel(dtype, reverse), [x, out], { rows, cols }, rows);
}
