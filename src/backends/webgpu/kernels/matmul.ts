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
 * Out-of-range rows, columns and k steps (odd M, N, K) load zeros and are not stored. Batches run on
 * the grid's z dimension. Tiles: 64 × 64 with 4 × 4 per thread, or 128 × 128 with 8 × 8 per thread
 * when the product is large enough to give every multiprocessor of a big GPU several tiles.
 * Accumulation is in f32 (i32 for int32); the CPU accumulates in doubles.
 */
import type { DType } from '../../../tensor/dtype.js';
import type { PooledBuffer } from '../buffer-pool.js';
import type { Executor, Kernel } from '../executor.js';
import { ParamStruct } from '../params.js';
import { computeType, enables, load, storageBinding, store } from '../wgsl.js';
import type { Operand } from './elementwise.js';

const BK = 16;
/** Outputs at which 128 × 128 tiles pay off: 256 of them, two per multiprocessor of a large GPU. */
const LARGE_TILES_FROM = 256 * 128 * 128;

type Field = 'M' | 'N' | 'K' | 'batchBase' | 'aOffset' | 'aBatch' | 'aRow' | 'aCol' | 'bOffset' | 'bBatch' | 'bRow' | 'bCol';
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
}

const kernels = new Map<string, Kernel<Field>>();

function matmulKernel(c: Config): Kernel<Field> {
  const key = `matmul ${c.a},${c.b}->${c.out} tile ${16 * c.T} a:${c.aLayout} b:${c.bLayout}`;
  let kernel = kernels.get(key);
  if (!kernel) {
    kernel = { key, bindings: ['read', 'read', 'write'], params, source: () => matmulSource(key, c) };
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
    colLimit: 'params.K',
    rowStride: 'params.aRow',
    colStride: 'params.aCol',
  });
  const loadB = tileLoad('tileB', 'b', c.b, BK, BN, c.bLayout, {
    base: 'bBase',
    row0: 'k0',
    col0: 'n0',
    rowLimit: 'params.K',
    colLimit: 'params.N',
    rowStride: 'params.bRow',
    colStride: 'params.bCol',
  });
  return `${enables([c.a, c.b, c.out])}// ${key}: CPU twin \`matmul\` in cpu/matmul.ts.
${params.wgsl(3)}
${storageBinding(0, 'a', 'read', c.a)}
${storageBinding(1, 'b', 'read', c.b)}
${storageBinding(2, 'y', 'read_write', c.out)}

// The current k-slab of A (${BM} × ${BK}) and of B (${BK} × ${BN}), row-major with a padding column.
var<workgroup> tileA: array<${t}, ${BM * (BK + 1)}>;
var<workgroup> tileB: array<${t}, ${BK * (BN + 1)}>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let tx = lid % 16u; // this thread's columns: n0 + tx + 16j
  let ty = lid / 16u; // and rows: m0 + ty + 16i
  let m0 = wid.y * ${BM}u;
  let n0 = wid.x * ${BN}u;
  let z = params.batchBase + wid.z;
  let aBase = params.aOffset + i32(z) * params.aBatch;
  let bBase = params.bOffset + i32(z) * params.bBatch;

  var acc: array<${t}, ${T * T}>; // acc[i·${T} + j] = C[m0 + ty + 16i, n0 + tx + 16j]
  var av: array<${t}, ${T}>;
  var bv: array<${t}, ${T}>;
  for (var k0 = 0u; k0 < params.K; k0 += ${BK}u) {
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

  let yBase = z * params.M * params.N;
  for (var i = 0u; i < ${T}u; i++) {
    let m = m0 + ty + 16u * i;
    for (var j = 0u; j < ${T}u; j++) {
      let n = n0 + tx + 16u * j;
      if (m < params.M && n < params.N) { ${store('y', 'yBase + m * params.N + n', `acc[i * ${T}u + j]`, c.out)} }
    }
  }
}
`;
}

/** a (batch, M, K) @ b (batch, K, N) → out (batch, M, N), contiguous, of dtype `outDtype`. */
export function runMatmul(
  exec: Executor,
  a: Operand,
  b: Operand,
  [batch, M, K]: readonly [number, number, number],
  N: number,
  out: PooledBuffer,
  outDtype: DType,
): void {
  const [aBatch, aRow, aCol] = a.strides as [number, number, number];
  const [bBatch, bRow, bCol] = b.strides as [number, number, number];
  const T = batch * M * N >= LARGE_TILES_FROM ? 8 : 4;
  const kernel = matmulKernel({
    a: a.dtype,
    b: b.dtype,
    out: outDtype,
    T,
    aLayout: layoutOf(aRow, aCol),
    bLayout: layoutOf(bRow, bCol),
  });
  const values = { M, N, K, batchBase: 0, aOffset: a.offset, aBatch, aRow, aCol, bOffset: b.offset, bBatch, bRow, bCol };
  // The grid's z dimension is limited too (65535): very large batches take several dispatches.
  const maxZ = 65535;
  for (let z0 = 0; z0 < batch; z0 += maxZ) {
    const grid = [Math.ceil(N / (16 * T)), Math.ceil(M / (16 * T)), Math.min(maxZ, batch - z0)] as const;
    exec.dispatch('matmul', kernel, [a.buffer, b.buffer, out], { ...values, batchBase: z0 }, grid);
  }
}
