/**
 * Row reductions (rows, cols) → (rows): sum, max, min, argmax. CPU twin: `reduce` in `cpu/reduce.ts`.
 *
 *     sum:    y_r = Σ_j x[r, j]
 *     max:    y_r = max_j x[r, j]       (NaN if the row has a NaN)
 *     min:    y_r = min_j x[r, j]       (likewise)
 *     argmax: y_r = the first j with x[r, j] maximal, or the first NaN's j
 *
 * A workgroup of 256 threads reduces one row: thread t folds elements t, t + 256, … (neighbouring
 * threads read neighbouring addresses), then the 256 partial results are combined as a tree in
 * workgroup memory, halving the active threads each step (log₂ 256 = 8 steps).
 *
 * A few very long rows would leave most of the GPU idle (one workgroup each), so then each row is
 * split into chunks: a first pass reduces every chunk to a partial result (for argmax, with its
 * index), and a second pass reduces each row's partials. Every op here is associative and, with
 * ties broken by index, order-independent, so both schedules give the CPU's answer (sums up to f32
 * rounding: the CPU adds in doubles; the tree's rounding error grows only as log₂ of the row length).
 */
import type { DType } from '../../../tensor/dtype.js';
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

type Field = 'rows' | 'cols' | 'chunks' | 'chunkLen';
const params = new ParamStruct<Field>([
  ['rows', 'u32'],
  ['cols', 'u32'],
  ['chunks', 'u32'],
  ['chunkLen', 'u32'],
]);

/**
 * One reduction pass. The input is values (and, in argmax's second pass, the indices that go with
 * them); the output is the reduced value, its index, or both (argmax's first pass).
 */
interface Pass {
  readonly op: ReduceOp;
  readonly input: DType;
  readonly inputHasIndex: boolean;
  readonly output: DType | null; // null: no value output
  readonly writesIndex: boolean;
}

const kernels = new Map<string, Kernel<Field>>();

function reduceKernel(pass: Pass): Kernel<Field> {
  const key = `reduce ${pass.op} ${pass.input}${pass.inputHasIndex ? '+index' : ''} -> ${pass.output ?? ''}${pass.writesIndex ? '+index' : ''}`;
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

function reduceSource(key: string, pass: Pass): string {
  const { op } = pass;
  const t = computeType(pass.input);
  const argmax = op === 'argmax';
  const bindings: string[] = [storageBinding(0, 'x', 'read', pass.input)];
  if (pass.inputHasIndex) bindings.push(storageBinding(1, 'xi', 'read', 'int32'));
  if (pass.output) bindings.push(storageBinding(bindings.length, 'y', 'read_write', pass.output));
  if (pass.writesIndex) bindings.push(storageBinding(bindings.length, 'yi', 'read_write', 'int32'));
  const value = (j: string) => load('x', `base + ${j}`, pass.input);
  const index = (j: string) => (pass.inputHasIndex ? `xi[base + ${j}]` : `i32(${j})`);

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
    : `  var acc = ${op === 'sum' ? `${t}(0)` : value('min(start + lid, end - 1u)')};
  for (var j = start + lid; j < end; j += ${WORKGROUP}u) { acc = combine(acc, ${value('j')}); }
  values[lid] = acc;`;
  const treeStep = argmax
    ? `if (beats(values[lid + s], indices[lid + s], values[lid], indices[lid])) {
        values[lid] = values[lid + s];
        indices[lid] = indices[lid + s];
      }`
    : 'values[lid] = combine(values[lid], values[lid + s]);';
  const writes: string[] = [];
  if (pass.output) writes.push(store('y', 'g', 'values[0]', pass.output));
  if (pass.writesIndex) writes.push('yi[g] = indices[0];');

  return `${enables([pass.input, ...(pass.output ? [pass.output] : [])])}// ${key}: CPU twin \`reduce\` in cpu/reduce.ts.
${params.wgsl(bindings.length)}
${bindings.join('\n')}

var<workgroup> values: array<${t}, ${WORKGROUP}>;
${argmax ? `var<workgroup> indices: array<i32, ${WORKGROUP}>;` : ''}

${combineFunctions(op, t)}

// Workgroup g reduces chunk (g mod chunks) of row (g / chunks) to one result, y[g].
@compute @workgroup_size(${WORKGROUP})
fn main(${GRID_BUILTINS}) {
  let g = ${LINEAR_WORKGROUP};
  let row = g / params.chunks;
  if (row >= params.rows) { return; }
  let start = (g % params.chunks) * params.chunkLen;
  let end = min(params.cols, start + params.chunkLen);
  let base = row * params.cols;
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
    ${writes.join('\n    ')}
  }
}
`;
}

/** Reduces x (rows, cols > 0) of `dtype` into `out` (rows): values of `dtype`, or argmax's int32. */
export function runReduce(
  exec: Executor,
  pool: BufferPool,
  op: ReduceOp,
  x: PooledBuffer,
  dtype: DType,
  rows: number,
  cols: number,
  out: PooledBuffer,
): void {
  const label = `reduce ${op}`;
  const argmax = op === 'argmax';
  const final: Omit<Pass, 'input' | 'inputHasIndex'> = { op, output: argmax ? null : dtype, writesIndex: argmax };
  if (rows >= BUSY_WORKGROUPS || cols <= SPLIT_COLS) {
    const kernel = reduceKernel({ ...final, input: dtype, inputHasIndex: false });
    exec.dispatch(label, kernel, [x, out], { rows, cols, chunks: 1, chunkLen: cols }, rows);
    return;
  }
  // Two passes: partial results per chunk, kept in the compute type (f32 or i32) between passes.
  const chunks = Math.ceil(cols / CHUNK);
  const partialType: DType = computeType(dtype) === 'i32' ? 'int32' : 'float32';
  const partials = pool.acquire(label, rows * chunks * 4);
  const partialIndices = argmax ? pool.acquire(label, rows * chunks * 4) : null;
  const first = reduceKernel({ op, input: dtype, inputHasIndex: false, output: partialType, writesIndex: argmax });
  const firstOut = partialIndices ? [partials, partialIndices] : [partials];
  exec.dispatch(label, first, [x, ...firstOut], { rows, cols, chunks, chunkLen: CHUNK }, rows * chunks);
  const second = reduceKernel({ ...final, input: partialType, inputHasIndex: argmax });
  exec.dispatch(label, second, [...firstOut, out], { rows, cols: chunks, chunks: 1, chunkLen: chunks }, rows);
  // Freed now, reused only by later commands: the GPU runs them after these two passes.
  pool.release(partials);
  if (partialIndices) pool.release(partialIndices);
}
