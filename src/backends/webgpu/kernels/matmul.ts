/**
 * Batched matrix multiplication, (batch, M, K) @ (batch, K, N) → contiguous (batch, M, N), for
 * strided views. CPU twin: `matmul` in `cpu/matmul.ts`.
 *
 *     C[z, m, n] = Σ_k A[z, m, k] · B[z, k, n]
 *
 * A naive kernel (one thread per C element, reading a row of A and a column of B from memory) is
 * limited by memory traffic: 2 loads per multiply-add. This one is *tiled*, the classic recipe:
 *
 * 1. **Workgroup tiles.** A workgroup of 16 × 16 threads computes a BM × BN tile of C (BM = 16·TM,
 *    BN = 16·TN). It walks K in steps of BK = 16: the threads copy a BM × BK tile of A and a BK × BN
 *    tile of B into workgroup memory together, then all compute from there. Each element fetched
 *    from memory is used BN (or BM) times.
 * 2. **Register tiles.** Each thread accumulates TM × TN outputs in registers: per step along k it
 *    reads TM values of A and TN of B from workgroup memory and does TM·TN multiply-adds. Its outputs
 *    are spread out (rows ty + 16i, columns tx + 16j), so that neighbouring threads read neighbouring
 *    words of workgroup memory and write neighbouring words of C.
 * 3. **Coalesced, layout-aware loads.** Transposed operands are only strides, so the tile-loading
 *    order follows whichever axis is contiguous in memory: neighbouring threads then load neighbouring
 *    addresses whether A is (M, K) row-major or a transposed view. When that axis has stride 1 (any
 *    contiguous or transposed tensor), the stride multiplication is left out: the contiguous fast path.
 *
 * Tiles are 64 × 64 with 4 × 4 per thread, or 128 × 128 with 8 × 8 per thread when there are enough
 * of those (split K included, below) to give every multiprocessor of a big GPU two. Accumulation is in
 * f32 (i32 for int32); the CPU accumulates in doubles.
 *
 * Out-of-range rows, columns and k steps (odd M, N, K) load zeros and are not stored. Batches run on
 * the grid's z dimension. A bias (a Linear layer's b) is added as the outputs are stored, which saves
 * the separate pass over C that `y.add(b)` would cost.
 *
 * **Split K.** A product with a small output but a long K (the LM head's dX = dY·W: 4096 × 128 outputs,
 * K = 50,257) has too few tiles to occupy a big GPU: 32 workgroups for 132 multiprocessors, each
 * walking all of K alone. Then K is cut into `splits` ranges that run as separate workgroups (on the
 * grid's z, with the batch), each writing a partial C; a second kernel sums the partials in a fixed
 * order (deterministic, no atomics) and adds the bias.
 *
 * **Outputs larger than a binding.** A language model's logits over a long sequence outgrow what one
 * kernel may bind (2 GiB: 16,384 positions × 50,257 tokens is 3.3 GB). Rows of C are independent, so
 * the product is dispatched a window of rows at a time: each dispatch binds only its rows of C (at a
 * byte offset the device accepts) and sees them as a smaller M; its rows of A are reached by moving
 * aOffset. A 2-D product needs nothing more; a batched one must fit a binding.
 */
import { BYTES_PER_ELEMENT, computeDtype, type DType } from '../../../tensor/dtype.js';
import type { BufferPool, PooledBuffer } from '../buffer-pool.js';
import { align, type Executor, type Kernel } from '../executor.js';
import { ParamStruct } from '../params.js';
import { computeType, enables, GRID_BUILTINS, LINEAR_WORKGROUP, load, storageBinding, store } from '../wgsl.js';
import { ELEMENTWISE_WORKGROUP, type Operand } from './elementwise.js';

const BK = 16;
/** Workgroups of 128 × 128 tiles at which they pay off: two per multiprocessor of a large GPU. */
const LARGE_TILE_WORKGROUPS = 256;
/** Split K when the tiles are fewer than this: enough workgroups to fill a large GPU several times over. */
const BUSY_WORKGROUPS = 512;
/** Each K range at least this long, so a split's partial C is worth its extra traffic. */
const MIN_SPLIT_K = 256;

type Field =
  | 'M'
  | 'N'
  | 'K'
  | 'batchBase'
  | 'aOffset'
  | 'aBatch'
  | 'aRow'
  | 'aCol'
  | 'bOffset'
  | 'bBatch'
  | 'bRow'
  | 'bCol'
  | 'biasOffset'
  | 'biasStride'
  | 'splits'
  | 'splitK'
  | 'batch';
const params = new ParamStruct<Field>([
  ['M', 'u32'],
  ['N', 'u32'],
  ['K', 'u32'],
  ['batchBase', 'u32'],
  ['aOffset', 'i32'],
  ['aBatch', 'i32'],
  ['aRow', 'i32'],
  ['aCol', 'i32'],
  ['bOffset', 'i32'],
  ['bBatch', 'i32'],
  ['bRow', 'i32'],
  ['bCol', 'i32'],
  ['biasOffset', 'i32'],
  ['biasStride', 'i32'],
  ['splits', 'u32'],
  ['splitK', 'u32'],
  ['batch', 'u32'],
]);

/** Which axis of an operand's tile is contiguous: its row axis, its column axis, or neither. */
type Layout = 'rows' | 'cols' | 'strided';

const layoutOf = (rowStride: number, colStride: number): Layout => (colStride === 1 ? 'cols' : rowStride === 1 ? 'rows' : 'strided');

interface Config {
  readonly a: DType;
  readonly b: DType;
  readonly out: DType;
  readonly T: number; // TM = TN
  readonly aLayout: Layout;
  readonly bLayout: Layout;
  readonly bias: boolean;
}

const kernels = new Map<string, Kernel<Field>>();

function matmulKernel(c: Config): Kernel<Field> {
  const key = `matmul ${c.a},${c.b}->${c.out} tile ${16 * c.T} a:${c.aLayout} b:${c.bLayout}${c.bias ? ' +bias' : ''}`;
  let kernel = kernels.get(key);
  if (!kernel) {
    const bindings: Kernel['bindings'] = c.bias ? ['read', 'read', 'write', 'read'] : ['read', 'read', 'write'];
    kernel = { key, bindings, params, source: () => matmulSource(key, c) };
    kernels.set(key, kernel);
  }
  return kernel;
}

/**
 * WGSL loading one operand tile (rows × cols, stored row-major in workgroup array `tile`, rows
 * `cols + 1` apart) from `array`, whose element (r, c) sits at base + r·rowStride + c·colStride. Flat
 * element e of the tile goes to thread e mod 256; e is split into (r, c) with the contiguous axis
 * fastest. The padding column keeps neighbouring threads that store down a column (a transposed
 * operand) in different banks of workgroup memory, instead of all in one.
 */
function tileLoad(
  tile: string,
  array: string,
  dtype: DType,
  rows: number,
  cols: number,
  layout: Layout,
  p: { base: string; row0: string; col0: string; rowLimit: string; colLimit: string; rowStride: string; colStride: string },
): string {
  const [r, c] = layout === 'rows' ? [`e % ${rows}u`, `e / ${rows}u`] : [`e / ${cols}u`, `e % ${cols}u`];
  const rowTerm = layout === 'rows' ? 'i32(gr)' : `i32(gr) * ${p.rowStride}`;
  const colTerm = layout === 'cols' ? 'i32(gc)' : `i32(gc) * ${p.colStride}`;
  const t = computeType(dtype);
  return `    for (var i = 0u; i < ${(rows * cols) / 256}u; i++) {
      let e = lid + 256u * i;
      let r = ${r};
      let c = ${c};
      let gr = ${p.row0} + r;
      let gc = ${p.col0} + c;
      var v = ${t}(0);
      if (gr < ${p.rowLimit} && gc < ${p.colLimit}) { v = ${load(array, `u32(${p.base} + ${rowTerm} + ${colTerm})`, dtype)}; }
      ${tile}[r * ${cols + 1}u + c] = v;
    }`;
}

function matmulSource(key: string, c: Config): string {
  const T = c.T;
  const BM = 16 * T;
  const BN = 16 * T;
  const t = computeType(c.out);
  const loadA = tileLoad('tileA', 'a', c.a, BM, BK, c.aLayout, {
    base: 'aBase',
    row0: 'm0',
    col0: 'k0',
    rowLimit: 'params.M',
    colLimit: 'kEnd',
    rowStride: 'params.aRow',
    colStride: 'params.aCol',
  });
  const loadB = tileLoad('tileB', 'b', c.b, BK, BN, c.bLayout, {
    base: 'bBase',
    row0: 'k0',
    col0: 'n0',
    rowLimit: 'kEnd',
    colLimit: 'params.N',
    rowStride: 'params.bRow',
    colStride: 'params.bCol',
  });
  return `${enables([c.a, c.b, c.out])}// ${key}: CPU twin \`matmul\` in cpu/matmul.ts.
${params.wgsl(c.bias ? 4 : 3)}
${storageBinding(0, 'a', 'read', c.a)}
${storageBinding(1, 'b', 'read', c.b)}
${storageBinding(2, 'y', 'read_write', c.out)}
${c.bias ? storageBinding(3, 'bias', 'read', c.out) : ''}

// The current k-slab of A (${BM} × ${BK}) and of B (${BK} × ${BN}), row-major with a padding column.
var<workgroup> tileA: array<${t}, ${BM * (BK + 1)}>;
var<workgroup> tileB: array<${t}, ${BK * (BN + 1)}>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let tx = lid % 16u; // this thread's columns: n0 + tx + 16j
  let ty = lid / 16u; // and rows: m0 + ty + 16i
  let m0 = wid.y * ${BM}u;
  let n0 = wid.x * ${BN}u;
  let split = wid.z % params.splits; // this workgroup's range of K, and its partial C
  let z = params.batchBase + wid.z / params.splits;
  let kBegin = split * params.splitK;
  let kEnd = min(params.K, kBegin + params.splitK);
  let aBase = params.aOffset + i32(z) * params.aBatch;
  let bBase = params.bOffset + i32(z) * params.bBatch;

  var acc: array<${t}, ${T * T}>; // acc[i·${T} + j] = C[m0 + ty + 16i, n0 + tx + 16j]
  var av: array<${t}, ${T}>;
  var bv: array<${t}, ${T}>;
  for (var k0 = kBegin; k0 < kEnd; k0 += ${BK}u) {
${loadA}
${loadB}
    workgroupBarrier();
    for (var k = 0u; k < ${BK}u; k++) {
      for (var i = 0u; i < ${T}u; i++) { av[i] = tileA[(ty + 16u * i) * ${BK + 1}u + k]; }
      for (var j = 0u; j < ${T}u; j++) { bv[j] = tileB[k * ${BN + 1}u + tx + 16u * j]; }
      for (var i = 0u; i < ${T}u; i++) {
        for (var j = 0u; j < ${T}u; j++) { acc[i * ${T}u + j] += av[i] * bv[j]; }
      }
    }
    workgroupBarrier(); // the tiles are overwritten next step
  }

  let yBase = (split * params.batch + z) * params.M * params.N;
  for (var i = 0u; i < ${T}u; i++) {
    let m = m0 + ty + 16u * i;
    for (var j = 0u; j < ${T}u; j++) {
      let n = n0 + tx + 16u * j;
      if (m < params.M && n < params.N) { ${store('y', 'yBase + m * params.N + n', c.bias ? `acc[i * ${T}u + j] + ${load('bias', 'u32(params.biasOffset + i32(n) * params.biasStride)', c.out)}` : `acc[i * ${T}u + j]`, c.out)} }
    }
  }
}
`;
}

/** The partial sums of a split-K product added up in split order, plus the bias: out = Σ_s partial[s] + bias. */
function sumSplitsKernel(partial: DType, out: DType, bias: boolean): Kernel<SumField> {
  const key = `matmul splits ${partial}->${out}${bias ? ' +bias' : ''}`;
  let kernel = sumKernels.get(key);
  if (!kernel) {
    const t = computeType(out);
    const source = () => `${enables([out])}// ${key}: the second pass of a split-K matmul (CPU twin \`matmul\` in cpu/matmul.ts).
${sumParams.wgsl(bias ? 3 : 2)}
${storageBinding(0, 'partial', 'read', partial)}
${storageBinding(1, 'y', 'read_write', out)}
${bias ? storageBinding(2, 'bias', 'read', out) : ''}

@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(${GRID_BUILTINS}) {
  let i = (${LINEAR_WORKGROUP}) * ${ELEMENTWISE_WORKGROUP}u + lid;
  if (i >= params.size) { return; }
  var acc = ${t}(0);
  for (var s = 0u; s < params.splits; s++) { acc += partial[s * params.size + i]; }
  ${store('y', 'i', bias ? `acc + ${load('bias', 'u32(params.biasOffset + i32(i % params.N) * params.biasStride)', out)}` : 'acc', out)}
}
`;
    kernel = { key, bindings: bias ? ['read', 'write', 'read'] : ['read', 'write'], params: sumParams, source };
    sumKernels.set(key, kernel);
  }
  return kernel;
}

type SumField = 'size' | 'splits' | 'N' | 'biasOffset' | 'biasStride';
const sumParams = new ParamStruct<SumField>([
  ['size', 'u32'],
  ['splits', 'u32'],
  ['N', 'u32'],
  ['biasOffset', 'i32'],
  ['biasStride', 'i32'],
]);
const sumKernels = new Map<string, Kernel<SumField>>();

/** What runMatmul needs of the device besides the executor. */
export interface MatmulDevice {
  readonly pool: BufferPool;
  /** The largest buffer a kernel binds whole. */
  readonly bindable: number;
  /** minStorageBufferOffsetAlignment. */
  readonly offsetAlign: number;
}

/**
 * a (batch, M, K) @ b (batch, K, N) (+ bias (N) on every row) → out (batch, M, N), contiguous, of
 * dtype `outDtype`: in one dispatch, split along K (two), or a window of rows at a time when `out`
 * exceeds a binding (batch 1 only). See the header.
 */
export function runMatmul(
  exec: Executor,
  a: Operand,
  b: Operand,
  bias: Operand | null,
  [batch, M, K]: readonly [number, number, number],
  N: number,
  out: PooledBuffer,
  outDtype: DType,
  { pool, bindable, offsetAlign }: MatmulDevice,
): void {
  const [aBatch, aRow, aCol] = a.strides as [number, number, number];
  const [bBatch, bRow, bCol] = b.strides as [number, number, number];
  const tiles = (T: number): number => batch * Math.ceil(M / (16 * T)) * Math.ceil(N / (16 * T));
  const splitsFor = (T: number): number => Math.max(1, Math.min(Math.ceil(BUSY_WORKGROUPS / tiles(T)), Math.floor(K / MIN_SPLIT_K)));
  // 128 × 128 tiles when there are enough of them (K splits included) to give every multiprocessor of
  // a large GPU two: they reuse each loaded element twice as often as 64 × 64 tiles.
  const T = tiles(8) * splitsFor(8) >= LARGE_TILE_WORKGROUPS ? 8 : 4;
  const splits = splitsFor(T);
  const layout = { a: a.dtype, b: b.dtype, T, aLayout: layoutOf(aRow, aCol), bLayout: layoutOf(bRow, bCol) };
  const values = {
    M,
    N,
    K,
    batchBase: 0,
    aOffset: a.offset,
    aBatch,
    aRow,
    aCol,
    bOffset: b.offset,
    bBatch,
    bRow,
    bCol,
    biasOffset: bias?.offset ?? 0,
    biasStride: bias?.strides[0] ?? 0,
    splits: 1,
    splitK: K,
    batch,
  };
  const tail = bias ? [bias.buffer] : [];
  const grid = (rows: number, z: number) => [Math.ceil(N / (16 * T)), Math.ceil(rows / (16 * T)), z] as const;

  if (splits > 1) {
    const partialType = computeDtype(outDtype);
    const size = batch * M * N;
    const partials = pool.acquire('matmul', splits * size * 4);
    const splitK = Math.ceil(K / splits / BK) * BK; // whole k-slabs per split
    const kernel = matmulKernel({ ...layout, out: partialType, bias: false });
    exec.dispatch('matmul', kernel, [a.buffer, b.buffer, partials], { ...values, splits, splitK }, grid(M, batch * splits));
    const sum = sumSplitsKernel(partialType, outDtype, bias !== null);
    const sumValues = { size, splits, N, biasOffset: values.biasOffset, biasStride: values.biasStride };
    exec.dispatch('matmul', sum, [partials, out, ...tail], sumValues, Math.ceil(size / ELEMENTWISE_WORKGROUP));
    pool.release(partials); // reused only by later commands, which the GPU runs after these two
    return;
  }

  const kernel = matmulKernel({ ...layout, out: outDtype, bias: bias !== null });
  const rowBytes = N * BYTES_PER_ELEMENT[outDtype];
  if (batch * M * rowBytes <= bindable) {
    // The grid's z dimension is limited too (65535): very large batches take several dispatches.
    const maxZ = 65535;
    for (let z0 = 0; z0 < batch; z0 += maxZ) {
      exec.dispatch(
        'matmul',
        kernel,
        [a.buffer, b.buffer, out, ...tail],
        { ...values, batchBase: z0 },
        grid(M, Math.min(maxZ, batch - z0)),
      );
    }
    return;
  }
  // Windows of `rows` rows, a multiple of `step` so that every window starts at an aligned byte offset.
  const step = offsetAlign / gcd(rowBytes, offsetAlign);
  const rows = Math.floor(bindable / rowBytes / step) * step;
  if (batch !== 1 || rows === 0)
    throw new Error(`matmul: an output of ${batch} × ${M} × ${N} does not fit one binding (${bindable} bytes).`);
  for (let m0 = 0; m0 < M; m0 += rows) {
    const m = Math.min(rows, M - m0);
    const window = { pooled: out, offset: m0 * rowBytes, size: align(m * rowBytes, 4) };
    exec.dispatch('matmul', kernel, [a.buffer, b.buffer, window, ...tail], { ...values, M: m, aOffset: a.offset + m0 * aRow }, grid(m, 1));
  }
}

const gcd = (x: number, y: number): number => (y === 0 ? x : gcd(y, x % y));
