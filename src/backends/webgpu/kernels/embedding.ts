/**
 * Embedding lookup and its backward. CPU twins: `gatherRows` and `scatterAddRows` in `cpu/embedding.ts`.
 *
 *     gatherRows:      y[i, d] = W[ids[i], d]                       (n, dim) from W (vocab, dim)
 *     scatterAddRows:  y[v, d] = Σ_{i : ids[i] = v} g[i, d]          (vocab, dim) from g (n, dim)
 *
 * The gather is one thread per output element, copying stored values (float16 bit patterns too).
 *
 * The scatter-add is the interesting one: many i may share an id, so a thread per i cannot simply
 * add into y[v] (a race). Float atomics (a compare-exchange loop on the bits) would work but add in
 * whatever order threads happen to run, so results would change from run to run in the last bits.
 * Instead the ids are first *sorted*, deterministically and without atomics, and then each run of
 * equal ids is summed by one thread per column, in increasing i like the CPU:
 *
 * 1. rank:  pos(i) = #{j : (ids[j], j) < (ids[i], i)}, comparing ids first and positions second, and
 *           order[pos(i)] = i. Every pos is distinct, so this is a stable sort by id. It costs n²
 *           comparisons (n = tokens in the batch), done in workgroup-memory tiles; a radix sort would
 *           scale better for very large batches. Each position's count is split over RANK_PARTS
 *           threads, so that a training batch's 4096 positions make 256 workgroups, not 16 (with a
 *           thread per position, the 16 took 256 µs of an H200, 3% of a seed model's step).
 * 2. sum:   the thread for (p, d) where p starts a run of equal ids v (p = 0 or a different id at
 *           p − 1) adds g[order[q], d] over the run q = p, p+1, … and writes y[v, d]. Rows no id
 *           points at are zero-filled first.
 *
 * The CPU throws for an id outside [0, vocab); a kernel cannot, so the gather writes a zero row and
 * the scatter skips the id.
 */
import type { DType } from '../../../tensor/dtype.js';
import type { BufferPool, PooledBuffer } from '../buffer-pool.js';
import type { Executor, Kernel } from '../executor.js';
import { ParamStruct } from '../params.js';
import { computeType, enables, GRID_BUILTINS, LINEAR_WORKGROUP, load, storageBinding, storageType, store } from '../wgsl.js';
import { runFill } from './fill.js';

const WORKGROUP = 64;
const RANK_WORKGROUP = 256;
/** Threads that share one position's count in the rank kernel, each comparing every RANK_PARTS-th id. */
const RANK_PARTS = 16;
const RANK_POSITIONS = RANK_WORKGROUP / RANK_PARTS;

type Field = 'n' | 'vocab' | 'dim';
const params = new ParamStruct<Field>([
  ['n', 'u32'],
  ['vocab', 'u32'],
  ['dim', 'u32'],
]);

const kernels = new Map<string, Kernel<Field>>();

function cached(key: string, make: () => Omit<Kernel<Field>, 'key' | 'params'>): Kernel<Field> {
  let kernel = kernels.get(key);
  if (!kernel) {
    kernel = { key, params, ...make() };
    kernels.set(key, kernel);
  }
  return kernel;
}

const gatherKernel = (dtype: DType): Kernel<Field> =>
  cached(`gatherRows ${dtype}`, () => ({
    bindings: ['read', 'read', 'write'],
    source: () => `${enables([dtype])}// gatherRows ${dtype}: CPU twin \`gatherRows\` in cpu/embedding.ts.
${params.wgsl(3)}
${storageBinding(0, 'weight', 'read', dtype)}
${storageBinding(1, 'ids', 'read', 'int32')}
${storageBinding(2, 'y', 'read_write', dtype)}

@compute @workgroup_size(${WORKGROUP})
fn main(${GRID_BUILTINS}) {
  let e = (${LINEAR_WORKGROUP}) * ${WORKGROUP}u + lid;
  if (e >= params.n * params.dim) { return; }
  let i = e / params.dim;
  let d = e % params.dim;
  let id = ids[i];
  var v = ${storageType(dtype)}(0);
  if (id >= 0 && u32(id) < params.vocab) { v = weight[u32(id) * params.dim + d]; }
  y[e] = v;
}
`,
  }));

/** Step 1 of the scatter-add: the stable sort of positions by id (see the file comment). */
const rankKernel = (): Kernel<Field> =>
  cached('scatterAddRows rank', () => ({
    bindings: ['read', 'write'],
    source: () => `// scatterAddRows rank: sorts positions by (id, position); CPU twin \`scatterAddRows\` in cpu/embedding.ts.
${params.wgsl(2)}
${storageBinding(0, 'ids', 'read', 'int32')}
${storageBinding(1, 'order', 'read_write', 'u32')}

var<workgroup> tile: array<i32, ${RANK_WORKGROUP}>;
var<workgroup> counts: array<u32, ${RANK_WORKGROUP}>;

@compute @workgroup_size(${RANK_WORKGROUP})
fn main(${GRID_BUILTINS}) {
  // Thread lid counts for position i over the ids j ≡ part (mod ${RANK_PARTS}).
  let part = lid % ${RANK_PARTS}u;
  let i = (${LINEAR_WORKGROUP}) * ${RANK_POSITIONS}u + lid / ${RANK_PARTS}u;
  let mine = ids[min(i, params.n - 1u)];
  // How many (ids[j], j) come before (ids[i], i); the ids are read in tiles shared by the workgroup.
  var before = 0u;
  for (var j0 = 0u; j0 < params.n; j0 += ${RANK_WORKGROUP}u) {
    tile[lid] = ids[min(j0 + lid, params.n - 1u)];
    workgroupBarrier();
    let count = min(${RANK_WORKGROUP}u, params.n - j0);
    for (var k = part; k < count; k += ${RANK_PARTS}u) {
      let other = tile[k];
      before += select(0u, 1u, other < mine || (other == mine && j0 + k < i));
    }
    workgroupBarrier();
  }
  counts[lid] = before;
  workgroupBarrier();
  if (part == 0u && i < params.n) {
    var pos = 0u;
    for (var k = 0u; k < ${RANK_PARTS}u; k++) { pos += counts[lid + k]; }
    order[pos] = i;
  }
}
`,
  }));

/** Step 2 of the scatter-add: one thread per (sorted position, column) sums each run of equal ids. */
const sumKernel = (dtype: DType): Kernel<Field> =>
  cached(`scatterAddRows sum ${dtype}`, () => ({
    bindings: ['read', 'read', 'read', 'write'],
    source: () => `${enables([dtype])}// scatterAddRows sum ${dtype}: CPU twin \`scatterAddRows\` in cpu/embedding.ts.
${params.wgsl(4)}
${storageBinding(0, 'grad', 'read', dtype)}
${storageBinding(1, 'ids', 'read', 'int32')}
${storageBinding(2, 'order', 'read', 'u32')}
${storageBinding(3, 'y', 'read_write', dtype)}

@compute @workgroup_size(${WORKGROUP})
fn main(${GRID_BUILTINS}) {
  let e = (${LINEAR_WORKGROUP}) * ${WORKGROUP}u + lid;
  if (e >= params.n * params.dim) { return; }
  let p = e / params.dim;
  let d = e % params.dim;
  let id = ids[order[p]];
  // Only the first position of a run of equal ids sums it; invalid ids are skipped.
  if ((p > 0u && ids[order[p - 1u]] == id) || id < 0 || u32(id) >= params.vocab) { return; }
  var acc = ${computeType(dtype)}(0);
  for (var q = p; q < params.n && ids[order[q]] == id; q++) {
    acc += ${load('grad', 'order[q] * params.dim + d', dtype)};
  }
  ${store('y', 'u32(id) * params.dim + d', 'acc', dtype)}
}
`,
  }));

export function runGatherRows(
  exec: Executor,
  weight: PooledBuffer,
  dtype: DType,
  ids: PooledBuffer,
  n: number,
  vocab: number,
  dim: number,
  out: PooledBuffer,
): void {
  exec.dispatch('gatherRows', gatherKernel(dtype), [weight, ids, out], { n, vocab, dim }, Math.ceil((n * dim) / WORKGROUP));
}

export function runScatterAddRows(
  exec: Executor,
  pool: BufferPool,
  grad: PooledBuffer,
  dtype: DType,
  ids: PooledBuffer,
  n: number,
  vocab: number,
  dim: number,
  out: PooledBuffer,
): void {
  const op = 'scatterAddRows';
  runFill(exec, op, out, vocab * dim, 0, dtype);
  if (n === 0 || dim === 0) return;
  const order = pool.acquire(op, n * 4);
  exec.dispatch(op, rankKernel(), [ids, order], { n, vocab, dim }, Math.ceil(n / RANK_POSITIONS));
  exec.dispatch(op, sumKernel(dtype), [grad, ids, order, out], { n, vocab, dim }, Math.ceil((n * dim) / WORKGROUP));
  pool.release(order); // reused only by later commands, which the GPU runs after these
}
