/**
 * Reductions of the middle axis of a contiguous (outer, len, inner) buffer → (outer, inner): sum, max,
 * min, argmax. CPU twin: `reduce` in `cpu/reduce.ts`.
 *
 *     sum:    y[o, i] = Σ_j x[o, j, i]
 *     max:    y[o, i] = max_j x[o, j, i]       (NaN if the line has a NaN)
 *     min:    y[o, i] = min_j x[o, j, i]       (likewise)
 *     argmax: y[o, i] = the first j with x[o, j, i] maximal, or the first NaN's j
 *
 * Both schedules below have neighbouring threads read neighbouring addresses, so the GPU serves a
 * whole warp's loads from a few wide memory transactions (the loads are *coalesced*).
 *
 * Rows (inner = 1, a row reduction): each line is a contiguous row. A workgroup of 256 threads reduces
 * one row: thread t folds elements t, t + 256, …, then the 256 partial results are combined as a tree
 * in workgroup memory, halving the active threads each step (log₂ 256 = 8 steps). A few very long rows
 * would leave most of the GPU idle (one workgroup each), so then each row is split into chunks: a
 * first pass reduces every chunk to a partial result (for argmax, with its index), and a second pass
 * reduces each row's partials.
 *
 * Columns (inner > 1, e.g. a bias gradient: axis 0 of a (tokens, features) matrix): line (o, i) runs
 * down a column with stride inner. One thread owns one output column and walks down it, folding as it
 * goes; its neighbours own the neighbouring columns, so at every step the threads of a workgroup read
 * one contiguous stretch of a row (one stretch per slice o when inner is narrower than the workgroup,
 * which coalesces less). No workgroup memory, no tree. Few columns would again leave the GPU idle (a
 * 128-wide bias is 128 threads), so long columns are split into chunks: the first pass gives one
 * partial per (chunk, column), laid out as a (chunks, columns) matrix, and the second pass is this
 * same kernel reducing that matrix as (1, chunks, columns), in chunk order.
 *
 * Every op here is associative and, with ties broken by index, order-independent, so every schedule
 * gives the CPU's answer; sums agree up to f32 rounding (the CPU adds in doubles). The schedule depends
 * only on the sizes, never on timing, so results repeat exactly from run to run. A tree's rounding
 * error grows as log₂ of the row length; a column walk's with the length of its chunk.
 */
import { computeDtype, type DType } from '../../../tensor/dtype.js';
import type { ReduceOp } from '../../backend.js';
import type { BufferPool, PooledBuffer } from '../buffer-pool.js';
import type { Executor, Kernel } from '../executor.js';
import { ParamStruct } from '../params.js';
import { type ComputeType, computeType, enables, GRID_BUILTINS, LINEAR_WORKGROUP, load, storageBinding, store } from '../wgsl.js';

const WORKGROUP = 256;
/** Rows shorter than this are reduced in one pass however few there are. */
const SPLIT_COLS = 8192;
/** Elements per chunk when rows are split. */
const CHUNK = 4096;
/** Enough workgroups to keep a large GPU busy; with fewer rows than this, long rows are split. */
const BUSY_WORKGROUPS = 256;
/** Columns shorter than this are walked in one pass however few there are. */
const SPLIT_LEN = 256;
/**
 * Enough threads to keep a large GPU's memory busy: an H200 holds 132 SMs × 2048 ≈ 2¹⁸ threads at
 * once, and each thread of a column walk waits on its own loads, so only many threads together keep
 * enough loads in flight. Fewer columns than this are split when they are long.
 */
const BUSY_THREADS = 2 ** 18;

type Field = 'outer' | 'len' | 'inner' | 'chunks' | 'chunkLen';
const params = new ParamStruct<Field>([
  ['outer', 'u32'],
  ['len', 'u32'],
  ['inner', 'u32'],
  ['chunks', 'u32'],
  ['chunkLen', 'u32'],
]);

/**
 * One reduction pass: which schedule, and its input and output. The input is values (and, in argmax's
 * second pass, the indices that go with them); the output is the reduced value, its index, or both
 * (argmax's first pass).
 */
interface Pass {
  readonly layout: 'rows' | 'columns';
  readonly op: ReduceOp;
  readonly input: DType;
  readonly inputHasIndex: boolean;
  readonly output: DType | null; // null: no value output
  readonly writesIndex: boolean;
}

const kernels = new Map<string, Kernel<Field>>();

function reduceKernel(pass: Pass): Kernel<Field> {
  const layout = pass.layout === 'columns' ? ' columns' : '';
  const key = `reduce ${pass.op}${layout} ${pass.input}${pass.inputHasIndex ? '+index' : ''} -> ${pass.output ?? ''}${pass.writesIndex ? '+index' : ''}`;
  let kernel = kernels.get(key);
  if (!kernel) {
    const bindings: ('read' | 'write')[] = ['read'];
    if (pass.inputHasIndex) bindings.push('read');
    if (pass.output) bindings.push('write');
    if (pass.writesIndex) bindings.push('write');
    kernel = { key, bindings, params, source: () => reduceSource(key, pass) };
    kernels.set(key, kernel);
  }
  return kernel;
}

/** WGSL combining a candidate (v, i) into the accumulator (acc, accIndex), per op. */
function combineFunctions(op: ReduceOp, t: ComputeType): string {
  // NaN is tested on the bits, which a compiler assuming no NaNs cannot fold away (see elementwise-ops.ts).
  const isNan =
    t === 'f32'
      ? 'fn isNan(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u; }'
      : 'fn isNan(v: i32) -> bool { return false; }';
  switch (op) {
    case 'sum':
      return `fn combine(a: ${t}, b: ${t}) -> ${t} { return a + b; }`;
    case 'max':
    case 'min':
      return `${isNan}
// NaN is contagious, as on the CPU (WGSL's ${op} may return either operand for NaN).
fn combine(a: ${t}, b: ${t}) -> ${t} {
  if (isNan(a)) { return a; }
  return select(${op}(a, b), b, isNan(b));
}`;
    case 'argmax':
      return `${isNan}
// Does (v, i) beat (w, k)? A NaN beats numbers; then the larger value; on a tie, the smaller index.
// This is a total order, so the result does not depend on the order of comparisons.
fn beats(v: ${t}, i: i32, w: ${t}, k: i32) -> bool {
  if (isNan(v) != isNan(w)) { return isNan(v); }
  if (isNan(v) || v == w) { return i < k; }
  return v > w;
}`;
  }
}

/**
 * WGSL for element j of the line being reduced, which lies at `at(j)` in x: its value, and its index
 * along the line (j itself, or, in a second pass, the index the first pass carried in `xi`).
 */
function lineElement(pass: Pass, at: (j: string) => string): { value: (j: string) => string; index: (j: string) => string } {
  return {
    value: (j) => load('x', at(j), pass.input),
    index: (j) => (pass.inputHasIndex ? `xi[${at(j)}]` : `i32(${j})`),
  };
}

/** WGSL storing a result (its value, its index, or both, as the pass outputs) at output slot `slot`. */
function writes(pass: Pass, slot: string, value: string, index: string): string {
  const lines: string[] = [];
  if (pass.output) lines.push(store('y', slot, value, pass.output));
  if (pass.writesIndex) lines.push(`yi[${slot}] = ${index};`);
  return lines.join('\n    ');
}

/** The entry point of the rows schedule (inner = 1). */
function rowsMain(pass: Pass, t: ComputeType): string {
  const argmax = pass.op === 'argmax';
  const { value, index } = lineElement(pass, (j) => `base + ${j}`);
  // Each thread's own fold. Sums start from 0; the others from an element of the chunk (the thread's
  // first, or the chunk's last for threads past the end, which repeats an element and so is harmless).
  const fold = argmax
    ? `  let first = min(start + lid, end - 1u);
  var acc = ${value('first')};
  var accIndex = ${index('first')};
  for (var j = start + lid; j < end; j += ${WORKGROUP}u) {
    let v = ${value('j')};
    let i = ${index('j')};
    if (beats(v, i, acc, accIndex)) { acc = v; accIndex = i; }
  }
  values[lid] = acc;
  indices[lid] = accIndex;`
    : `  var acc = ${pass.op === 'sum' ? `${t}(0)` : value('min(start + lid, end - 1u)')};
  for (var j = start + lid; j < end; j += ${WORKGROUP}u) { acc = combine(acc, ${value('j')}); }
  values[lid] = acc;`;
  const treeStep = argmax
    ? `if (beats(values[lid + s], indices[lid + s], values[lid], indices[lid])) {
        values[lid] = values[lid + s];
        indices[lid] = indices[lid + s];
      }`
    : 'values[lid] = combine(values[lid], values[lid + s]);';

  return `var<workgroup> values: array<${t}, ${WORKGROUP}>;
${argmax ? `var<workgroup> indices: array<i32, ${WORKGROUP}>;` : ''}

// Workgroup g reduces chunk (g mod chunks) of row (g / chunks) to one result, y[g].
@compute @workgroup_size(${WORKGROUP})
fn main(${GRID_BUILTINS}) {
  let g = ${LINEAR_WORKGROUP};
  let row = g / params.chunks;
  if (row >= params.outer) { return; }
  let start = (g % params.chunks) * params.chunkLen;
  let end = min(params.len, start + params.chunkLen);
  let base = row * params.len;
${fold}
  workgroupBarrier();
  // The tree: at each step the first s threads fold in the partial result s places further on.
  for (var s = ${WORKGROUP / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) {
      ${treeStep}
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    ${writes(pass, 'g', 'values[0]', 'indices[0]')}
  }
}
`;
}

/** The entry point of the columns schedule (inner > 1). */
function columnsMain(pass: Pass): string {
  const { value, index } = lineElement(pass, (j) => `base + ${j} * params.inner`);
  // Every chunk holds at least one element (the host makes no empty chunk), so the walk starts there.
  const fold =
    pass.op === 'argmax'
      ? `  var acc = ${value('start')};
  var accIndex = ${index('start')};
  for (var j = start + 1u; j < end; j++) {
    let v = ${value('j')};
    let i = ${index('j')};
    if (beats(v, i, acc, accIndex)) { acc = v; accIndex = i; }
  }`
      : `  var acc = ${value('start')};
  // Four loads in flight at a time: one at a time, each waits out the memory's latency.
  var j = start + 1u;
  for (; j + 4u <= end; j += 4u) {
    acc = combine(acc, combine(combine(${value('j')}, ${value('(j + 1u)')}), combine(${value('(j + 2u)')}, ${value('(j + 3u)')})));
  }
  for (; j < end; j++) { acc = combine(acc, ${value('j')}); }`;

  return `// Thread g walks chunk (g / columns) of column c = g mod columns to one result, y[g]. Column
// c = o·inner + i is the line x[o, ·, i], and x[o, j, i] lies at (o·len + j)·inner + i.
@compute @workgroup_size(${WORKGROUP})
fn main(${GRID_BUILTINS}) {
  let g = (${LINEAR_WORKGROUP}) * ${WORKGROUP}u + lid;
  let columns = params.outer * params.inner;
  if (g >= params.chunks * columns) { return; }
  let column = g % columns;
  let start = (g / columns) * params.chunkLen;
  let end = min(params.len, start + params.chunkLen);
  let base = (column / params.inner) * params.len * params.inner + column % params.inner;
${fold}
  ${writes(pass, 'g', 'acc', 'accIndex')}
}
`;
}

function reduceSource(key: string, pass: Pass): string {
  const t = computeType(pass.input);
  const bindings: string[] = [storageBinding(0, 'x', 'read', pass.input)];
  if (pass.inputHasIndex) bindings.push(storageBinding(1, 'xi', 'read', 'int32'));
  if (pass.output) bindings.push(storageBinding(bindings.length, 'y', 'read_write', pass.output));
  if (pass.writesIndex) bindings.push(storageBinding(bindings.length, 'yi', 'read_write', 'int32'));
  return `${enables([pass.input, ...(pass.output ? [pass.output] : [])])}// ${key}: CPU twin \`reduce\` in cpu/reduce.ts.
${params.wgsl(bindings.length)}
${bindings.join('\n')}

${combineFunctions(pass.op, t)}

${pass.layout === 'rows' ? rowsMain(pass, t) : columnsMain(pass)}`;
}

/** Elements per chunk of a row: whole rows, unless a few long rows would leave the GPU idle. */
const rowChunkLen = (rows: number, cols: number): number => (rows >= BUSY_WORKGROUPS || cols <= SPLIT_COLS ? cols : CHUNK);

/**
 * Elements per chunk of a column: whole columns, unless too few long columns would leave the GPU
 * idle. Then enough chunks to fill it, each at least √len long, so that the second pass (at most √len
 * partials per column) is never the longer walk.
 */
function columnChunkLen(columns: number, len: number): number {
  if (len < SPLIT_LEN) return len;
  return Math.min(len, Math.max(Math.ceil((len * columns) / BUSY_THREADS), Math.ceil(Math.sqrt(len))));
}

type Sizes = Record<Field, number>;

/** Reduces x (outer, len > 0, inner) of `dtype` into `out` (outer, inner): values of `dtype`, or argmax's int32. */
export function runReduce(
  exec: Executor,
  pool: BufferPool,
  op: ReduceOp,
  x: PooledBuffer,
  dtype: DType,
  outer: number,
  len: number,
  inner: number,
  out: PooledBuffer,
): void {
  const label = `reduce ${op}`;
  const argmax = op === 'argmax';
  const layout = inner === 1 ? 'rows' : 'columns';
  // Rows: a workgroup per (row, chunk). Columns: a thread per (chunk, column).
  const workgroups = (p: Sizes) => (layout === 'rows' ? p.outer * p.chunks : Math.ceil((p.chunks * p.outer * p.inner) / WORKGROUP));
  const dispatch = (pass: Pass, buffers: PooledBuffer[], p: Sizes) => exec.dispatch(label, reduceKernel(pass), buffers, p, workgroups(p));
  const final = { layout, op, output: argmax ? null : dtype, writesIndex: argmax } as const;
  const chunkLen = layout === 'rows' ? rowChunkLen(outer, len) : columnChunkLen(outer * inner, len);
  const chunks = Math.ceil(len / chunkLen);
  if (chunks === 1) {
    dispatch({ ...final, input: dtype, inputHasIndex: false }, [x, out], { outer, len, inner, chunks, chunkLen });
    return;
  }
  // Two passes: partial results per chunk, kept in the compute type (f32 or i32) between passes.
  const partialType = computeDtype(dtype);
  const partials = pool.acquire(label, outer * inner * chunks * 4);
  const partialIndices = argmax ? pool.acquire(label, outer * inner * chunks * 4) : null;
  const firstOut = partialIndices ? [partials, partialIndices] : [partials];
  const first: Pass = { layout, op, input: dtype, inputHasIndex: false, output: partialType, writesIndex: argmax };
  dispatch(first, [x, ...firstOut], { outer, len, inner, chunks, chunkLen });
  // The partials form (outer, chunks) for rows and (chunks, outer·inner) for columns: reduce the chunks.
  const [o, i] = layout === 'rows' ? [outer, 1] : [1, outer * inner];
  const second: Pass = { ...final, input: partialType, inputHasIndex: argmax };
  dispatch(second, [...firstOut, out], { outer: o, len: chunks, inner: i, chunks: 1, chunkLen: chunks });
  // Freed now, reused only by later commands: the GPU runs them after these two passes.
  pool.release(partials);
  if (partialIndices) pool.release(partialIndices);
}
