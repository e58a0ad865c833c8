/**
 * Mamba's selective scan, backward. CPU twin: `selectiveScanBackward` in `cpu/selective-scan.ts`;
 * the forward and the tile layout are in `selective-scan.ts`, the math in docs/selective-scan.md §3.
 *
 * With q_t = ā_t·dh_t, what step t hands back to step t − 1 (the CPU loop's `carry`), the reverse
 * recurrence dh_t = C_t·dy_t + ā_{t+1}·dh_{t+1} becomes
 *
 *     dh_t = C_t·dy_t + q_{t+1}        q_t = ā_t·(C_t·dy_t + q_{t+1})       (q after the last step = 0)
 *
 * and each step is again an affine map q ↦ ā_t·q + ā_t·C_t·dy_t, using only step t's own ā. Run from
 * the end of the sequence, these maps compose with the forward's operator ∘, so the backward is the
 * same work-efficient scan: segments reversed (position SEGS − 1 − seg of the "r" trees), the root
 * holding `dcarry`, the q handed over by the chunk after this one.
 *
 * ## One chunk (chunks from last to first)
 *
 *  1. Stage Δ, u and dy of the tile (coalesced), copy each invocation's segment to registers; per
 *     group of states, stage B and C over the chunk.
 *  2. Local totals, both directions, from one exp per step: the forward pair (Π ā, state from 0)
 *     as in the forward, and the reverse map (Π ā, q reached from 0) composed toward the start.
 *  3. Both scans in the same up-sweep and down-sweep (same barriers): the forward root is the saved
 *     state entering the chunk, `chunkStates[b, d, c, n]`; the reverse root is `dcarry[n][r]`,
 *     which the reverse total moves on to the chunk before.
 *  4. Per state: walk the segment forwards from its entering state, keeping ā_t and h_{t−1} in
 *     registers, then backwards from its entering q, with dh_t in hand:
 *
 *         dΔ_t += dh_t·(A·ā_t·h_{t−1} + B_t·u_t)       du_t += dh_t·Δ_t·B_t          (summed over n here)
 *         dA   += dh_t·Δ_t·ā_t·h_{t−1}                  (summed over t here, over b later)
 *         dB_t  = Σ_d dh_t·Δ_t·u_t     dC_t = Σ_d dy_t·h_t                         (summed over d later)
 *
 *     The dB and dC terms of the tile's rows go to workgroup memory, a (step, row) table, and are
 *     summed over the rows there (a fixed tree: deterministic); the tile's sum is written to
 *     `partials` (tiles, N, len). dA's per-invocation sums are added over the segments into `dAsum`.
 *     The table holds one state, so this step costs 2 barriers per state.
 *  5. Write du and dΔ through the tile, coalesced.
 *
 * ## Sums across workgroups
 *
 * dB and dC sum over d, dA over b and t, and WGSL has no float atomics. A compare-and-swap loop on
 * an atomic<u32> per (b, n, t) would have every row (1536 at Mamba's size) or every tile (48) retry
 * against the others on each address, and make the last bits depend on timing. So each tile writes
 * its own partial sums, and `sumKernel`
 * adds them in a fixed order: dB, dC over the tiles of a batch ((batch, tiles, N, len) →
 * (batch, N, len)), dA over the batch ((batch, dim, N) → (dim, N)). The partials are rows times
 * smaller than the (batch, dim, N, len) tensors a per-row scheme would write.
 *
 * Bindings: WebGPU guarantees 8 storage buffers per kernel, and the backward reads u, Δ, dy, A, B,
 * C and the chunk states and writes du, dΔ and the partials. A, B and C (small: dim·N and batch·N·len
 * elements) are copied side by side into one buffer to stay within 8.
 */
import type { DType } from '../../../tensor/dtype.js';
import type { ScanSizes } from '../../backend.js';
import type { BufferPool, PooledBuffer } from '../buffer-pool.js';
import type { Executor, Kernel } from '../executor.js';
import { ParamStruct } from '../params.js';
import { enables, GRID_BUILTINS, type KernelDevice, LINEAR_WORKGROUP, load, storageBinding, store } from '../wgsl.js';
import { runFill } from './fill.js';
import {
  CHUNK_LEN,
  chunkStatesSize,
  downSweep,
  fitTiling,
  Loops,
  runSelectiveScan,
  SCAN_FIELDS,
  type ScanBuffers,
  type ScanParams,
  type ScanTiling,
  scanParams,
  stateInput,
  TILE_PROLOGUE,
  tilingConstants,
  tilingKey,
  treeDeclarations,
  upSweep,
} from './selective-scan.js';

/** Σ terms(0 … count − 1) as a balanced tree of additions, ((t0 + t1) + (t2 + t3)) + …: a fixed order. */
function pairwiseSum(count: number, term: (k: number) => string, from = 0): string {
  if (count === 1) return term(from);
  const half = Math.ceil(count / 2);
  return `(${pairwiseSum(half, term, from)} + ${pairwiseSum(count - half, term, from + half)})`;
}

const BACKWARD_ROWS = 32;
const BACKWARD_SEGS = 8;
const MAX_GROUP = 4;

/** Floats of the `tile` array: the Δ, u, dy stage, or the row-sum scratch when that is larger. */
function tileFloats(t: ScanTiling): number {
  const stage = 3 * t.rows * (CHUNK_LEN + 1);
  const scratch = 2 * CHUNK_LEN * (t.rows + 1) + t.segs * t.rows;
  return Math.max(stage, scratch);
}

/** Workgroup-memory bytes: the tile, B and C of a group, four trees (forward and reverse pairs), dcarry and dAsum. */
const backwardSharedBytes = (t: ScanTiling, N: number): number =>
  4 * (tileFloats(t) + 2 * t.group * CHUNK_LEN + 4 * t.group * t.segs * t.rows + 2 * N * t.rows);

export const backwardTiling = (N: number, device: KernelDevice): ScanTiling =>
  fitTiling(BACKWARD_ROWS, BACKWARD_SEGS, MAX_GROUP, N, (t) => backwardSharedBytes(t, N), device);

type Field = (keyof ScanParams & string) | 'offsetB' | 'offsetC' | 'partSize';
const params = new ParamStruct<Field>([
  ...SCAN_FIELDS,
  ['offsetB', 'u32'], // where B and C start in the packed A|B|C buffer
  ['offsetC', 'u32'],
  ['partSize', 'u32'], // floats of dB's partials (C's follow, then A's)
]);

const kernels = new Map<string, Kernel>();

function backwardKernel(dtype: DType, N: number, t: ScanTiling): Kernel<Field> {
  const key = `selectiveScanGrad ${dtype} N=${N} ${tilingKey(t)}`;
  let kernel = kernels.get(key) as Kernel<Field> | undefined;
  if (!kernel) {
    const bindings: Kernel['bindings'] = ['read', 'read', 'read', 'read', 'read', 'write', 'write', 'write'];
    kernel = { key, bindings, params, source: () => backwardSource(key, dtype, N, t) };
    kernels.set(key, kernel);
  }
  return kernel;
}

function backwardSource(key: string, dtype: DType, N: number, t: ScanTiling): string {
  const L = new Loops(t.unroll);
  return `${enables([dtype])}// ${key}
// CPU twin: selectiveScanBackward in cpu/selective-scan.ts. The design is drawn in kernels/selective-scan-grad.ts.
${params.wgsl(8)}
${storageBinding(0, 'u', 'read', dtype)}
${storageBinding(1, 'delta', 'read', dtype)}
${storageBinding(2, 'dy', 'read', dtype)}
${storageBinding(3, 'abc', 'read', dtype)}         // A (dim, N) | B (batch, N, len) | C (batch, N, len)
${storageBinding(4, 'chunkStates', 'read', 'float32')} // (batch, dim, nChunks, N): h entering each chunk
${storageBinding(5, 'du', 'read_write', dtype)}
${storageBinding(6, 'ddelta', 'read_write', dtype)}
${storageBinding(7, 'partials', 'read_write', 'float32')}    // dB (tiles, N, len) | dC (tiles, N, len) | dA (batch, dim, N)

${tilingConstants(t, N)}
const PITCH: u32 = ROWS + 1u;                 // the row-sum scratch is a (step, row) table of this pitch
const SCRATCH_DC: u32 = CHUNK * PITCH;        // where dC's table starts (dB's at 0)
const SCRATCH_DA: u32 = 2u * CHUNK * PITCH;   // dA's (segment, row) sums

// Δ | u | dy of the tile's chunk; reused for the row-sum scratch, then for du | dΔ.
var<workgroup> tile: array<f32, ${tileFloats(t)}>;
var<workgroup> tileB: array<f32, GROUP * CHUNK>; // B of the group's states over the chunk
var<workgroup> tileC: array<f32, GROUP * CHUNK>; // C, likewise
var<workgroup> dcarry: array<f32, N * ROWS>; // q entering the chunk from the one after, per (n, row)
var<workgroup> dAsum: array<f32, N * ROWS>;  // dA of the row so far
${treeDeclarations(['s', 'r'])}

@compute @workgroup_size(THREADS)
fn main(${GRID_BUILTINS}) {
${TILE_PROLOGUE}

  for (var i = lid; i < N * ROWS; i += THREADS) {
    dcarry[i] = 0.0; // nothing comes after the last step
    dAsum[i] = 0.0;
  }

  var dt: array<f32, STEPS>;
  var uu: array<f32, STEPS>;
  var gy: array<f32, STEPS>;      // dy
  var gu: array<f32, STEPS>;      // du, summed over the states
  var gdelta: array<f32, STEPS>;  // dΔ, summed over the states

  for (var k = 0u; k < params.nChunks; k++) {
    let c = params.nChunks - 1u - k;
    let t0 = c * CHUNK;
    // 1. Stage Δ, u and dy along len.
${L.shared(
  t.rows * CHUNK_LEN,
  t.rows * t.segs,
  `let rr = i / CHUNK;
      let t = t0 + i % CHUNK;
      let at = (b * params.dim + min(d0 + rr, params.dim - 1u)) * params.len + min(t, params.len - 1u);
      let inside = d0 + rr < params.dim && t < params.len; // else 0: the clamped index stays in bounds
      let slot = rr * STRIDE + i % CHUNK;
      tile[slot] = select(0.0, ${load('delta', 'at', dtype)}, inside);
      tile[ROWS * STRIDE + slot] = select(0.0, ${load('u', 'at', dtype)}, inside);
      tile[2u * ROWS * STRIDE + slot] = select(0.0, ${load('dy', 'at', dtype)}, inside);`,
)}
    workgroupBarrier();
${L.steps(
  t.steps,
  (j) => `let slot = r * STRIDE + first + ${j};
      dt[${j}] = tile[slot];
      uu[${j}] = tile[ROWS * STRIDE + slot];
      gy[${j}] = tile[2u * ROWS * STRIDE + slot];
      gu[${j}] = 0.0;
      gdelta[${j}] = 0.0;`,
  '    ',
)}

    // params.states = N, read from the uniforms so that no compiler unrolls this loop (which
    // multiplied the code by N / GROUP and the compile time on lavapipe with it).
    for (var n0 = 0u; n0 < params.states; n0 += GROUP) {
${L.shared(
  t.group * CHUNK_LEN,
  t.rows * t.segs,
  `tileB[i] = ${stateInput('abc', 'params.offsetB + ', 'n0 + i / CHUNK', 't0 + i % CHUNK', dtype)};
      tileC[i] = ${stateInput('abc', 'params.offsetC + ', 'n0 + i / CHUNK', 't0 + i % CHUNK', dtype)};`,
  '      ',
)}
      workgroupBarrier();
      // 2. Local totals: forward (Π ā, h from 0), reverse (Π ā, q from 0) composed toward the start.
      // the group's states: independent chains (written out on GPUs, so that they interleave)
${L.states(
  t.group,
  `let a = abc[aRow + n0 + g];
        var fa = 1.0;
        var fb = 0.0;
        var qa = 1.0;
        var qb = 0.0;
        // q ↦ qa·q + qb: step j's map runs after those of the steps after it.
${L.steps(
  t.steps,
  (j) => `let at = g * CHUNK + first + ${j};
          let abar = exp(dt[${j}] * a);
          fb = abar * fb + dt[${j}] * uu[${j}] * tileB[at];
          fa = fa * abar;
          qa = qa * abar;
          qb = qb + qa * tileC[at] * gy[${j}];`,
)}
        sa[node(g, seg, r)] = fa;
        sb[node(g, seg, r)] = fb;
        ra[node(g, SEGS - 1u - seg, r)] = qa;
        rb[node(g, SEGS - 1u - seg, r)] = qb;`,
  '      ',
)}
      workgroupBarrier();

      // 3. Both scans: roots are the saved chunk state and the q from the chunk after.
${upSweep(['s', 'r'])}
      for (var i = lid; i < GROUP * ROWS; i += THREADS) {
        let rr = i % ROWS;
        let n = n0 + i / ROWS;
        let root = node(i / ROWS, SEGS - 1u, rr);
        let dd = min(d0 + rr, params.dim - 1u); // rows past dim stay 0: their Δ and dy are 0
        sb[root] = select(0.0, chunkStates[((b * params.dim + dd) * params.nChunks + c) * N + n], d0 + rr < params.dim);
        let qIn = dcarry[n * ROWS + rr];
        dcarry[n * ROWS + rr] = ra[root] * qIn + rb[root]; // q leaving the chunk's first step
        rb[root] = qIn;
      }
      workgroupBarrier();
${downSweep(['s', 'r'])}

      // 4. Per state: this segment's gradients, then the sums over the tile's rows.
      for (var g = 0u; g < GROUP; g++) {
        let n = n0 + g;
        let a = abc[aRow + n];
        var abar: array<f32, STEPS>;
        var hBefore: array<f32, STEPS>; // h_{t−1}
        var h = sb[node(g, seg, r)];
${L.steps(
  t.steps,
  (j) => `abar[${j}] = exp(dt[${j}] * a);
          hBefore[${j}] = h;
          h = abar[${j}] * h + dt[${j}] * uu[${j}] * tileB[g * CHUNK + first + ${j}];`,
)}
        var q = rb[node(g, SEGS - 1u - seg, r)];
        var dAPart = 0.0;
${L.steps(
  t.steps,
  (j) => `let bt = tileB[g * CHUNK + first + ${j}];
          let hNow = abar[${j}] * hBefore[${j}] + dt[${j}] * uu[${j}] * bt;
          let dh = tileC[g * CHUNK + first + ${j}] * gy[${j}] + q;
          gdelta[${j}] += dh * (a * abar[${j}] * hBefore[${j}] + bt * uu[${j}]);
          gu[${j}] += dh * dt[${j}] * bt;
          dAPart += dh * dt[${j}] * abar[${j}] * hBefore[${j}];
          tile[(first + ${j}) * PITCH + r] = dh * dt[${j}] * uu[${j}];    // this row's share of dB_t[n]
          tile[SCRATCH_DC + (first + ${j}) * PITCH + r] = gy[${j}] * hNow; // … of dC_t[n]
          q = abar[${j}] * dh;`,
  '        ',
  'down',
)}
        tile[SCRATCH_DA + seg * ROWS + r] = dAPart;
        workgroupBarrier();
        for (var i = lid; i < 2u * CHUNK + ROWS; i += THREADS) {
          if (i < 2u * CHUNK) {
            // dB (i < CHUNK) or dC of one step, summed over the tile's rows.
            let table = (i / CHUNK) * SCRATCH_DC + (i % CHUNK) * PITCH;
            let sum = ${pairwiseSum(t.rows, (rr) => `tile[table + ${rr}u]`)}; // a fixed tree: independent loads, log₂ ROWS deep
            let t = t0 + i % CHUNK;
            if (t < params.len) { partials[(i / CHUNK) * params.partSize + (tileIndex * N + n) * params.len + t] = sum; }
          } else {
            let rr = i - 2u * CHUNK;
            dAsum[n * ROWS + rr] += ${pairwiseSum(t.segs, (k) => `tile[SCRATCH_DA + ${k}u * ROWS + rr]`)};
          }
        }
        workgroupBarrier(); // the scratch is rewritten by the next state (and tileB, tileC by the next group)
      }
    }

    // 5. du and dΔ through the tile, then out along len.
${L.steps(
  t.steps,
  (j) => `tile[r * STRIDE + first + ${j}] = gu[${j}];
      tile[ROWS * STRIDE + r * STRIDE + first + ${j}] = gdelta[${j}];`,
  '    ',
)}
    workgroupBarrier();
${L.shared(
  t.rows * CHUNK_LEN,
  t.rows * t.segs,
  `let rr = i / CHUNK;
      let t = t0 + i % CHUNK;
      if (d0 + rr < params.dim && t < params.len) {
        let at = (b * params.dim + d0 + rr) * params.len + t;
        let slot = rr * STRIDE + i % CHUNK;
        ${store('du', 'at', 'tile[slot]', dtype)}
        ${store('ddelta', 'at', 'tile[ROWS * STRIDE + slot]', dtype)}
      }`,
)}
    workgroupBarrier(); // the tile is restaged by the next chunk
  }

  for (var i = lid; i < N * ROWS; i += THREADS) {
    let rr = i % ROWS;
    if (d0 + rr < params.dim) { partials[2u * params.partSize + (b * params.dim + d0 + rr) * N + i / ROWS] = dAsum[i]; }
  }
}
`;
}

const SUM_WORKGROUP = 64;
type SumField = 'outer' | 'count' | 'inner' | 'offset';
const sumParams = new ParamStruct<SumField>([
  ['outer', 'u32'],
  ['count', 'u32'],
  ['inner', 'u32'],
  ['offset', 'u32'],
]);

/**
 * Finishes the cross-workgroup sums: y[o, i] = Σ_k x[offset + (o·count + k)·inner + i] for k in
 * order, one invocation per output, reading along i (coalesced). CPU twin: the double-precision `+=`
 * into dA, dB, dC in `selectiveScanBackward`, cpu/selective-scan.ts.
 */
function sumKernel(dtype: DType): Kernel<SumField> {
  const key = `selectiveScanGrad sum ${dtype}`;
  let kernel = kernels.get(key) as Kernel<SumField> | undefined;
  if (!kernel) {
    const source = () => `${enables([dtype])}// ${key}: the partial sums of dA, dB, dC added in order.
// CPU twin: the accumulation into dA, dB, dC in selectiveScanBackward, cpu/selective-scan.ts.
${sumParams.wgsl(2)}
${storageBinding(0, 'x', 'read', 'float32')}
${storageBinding(1, 'y', 'read_write', dtype)}

@compute @workgroup_size(${SUM_WORKGROUP})
fn main(${GRID_BUILTINS}) {
  let e = (${LINEAR_WORKGROUP}) * ${SUM_WORKGROUP}u + lid;
  if (e >= params.outer * params.inner) { return; }
  let o = e / params.inner;
  let i = e % params.inner;
  var sum = 0.0;
  for (var k = 0u; k < params.count; k++) { sum += x[params.offset + (o * params.count + k) * params.inner + i]; }
  ${store('y', 'e', 'sum', dtype)}
}
`;
    kernel = { key, bindings: ['read', 'write'], params: sumParams, source };
    kernels.set(key, kernel);
  }
  return kernel;
}

/** Bytes per element of a scan dtype on the GPU. */
const bytesOf = (dtype: DType): number => (dtype === 'float16' ? 2 : 4);
/** `n` elements rounded up so that the next section starts on a 4-byte boundary (buffer copies need it). */
const evenUp = (n: number, dtype: DType): number => (dtype === 'float16' ? n + (n % 2) : n);

export interface ScanGrads {
  readonly du: PooledBuffer;
  readonly ddelta: PooledBuffer;
  readonly dA: PooledBuffer;
  readonly dB: PooledBuffer;
  readonly dC: PooledBuffer;
}

/**
 * Runs the backward into `out`. `chunkStates` is what the forward saved, or null: then the forward
 * kernel runs once more without y to make it. Temporaries come from `pool` and go back to it.
 */
export function runSelectiveScanGrad(
  exec: Executor,
  pool: BufferPool,
  x: ScanBuffers,
  dy: PooledBuffer,
  dtype: DType,
  sizes: ScanSizes,
  device: KernelDevice,
  chunkStates: PooledBuffer | null,
  out: ScanGrads,
): void {
  const op = 'selectiveScanGrad';
  const { batch, dim, len, N } = sizes;
  if (N === 0) {
    // No states: y was 0, so every gradient is 0 (dA, dB, dC are empty).
    runFill(exec, op, out.du, batch * dim * len, 0, dtype);
    runFill(exec, op, out.ddelta, batch * dim * len, 0, dtype);
    return;
  }
  const tiling = backwardTiling(N, device);
  const p = scanParams(sizes, tiling.rows);
  const temps: PooledBuffer[] = [];
  const temp = (bytes: number): PooledBuffer => {
    const b = pool.acquire(op, bytes);
    temps.push(b);
    return b;
  };

  let states = chunkStates;
  if (!states) {
    states = temp(4 * chunkStatesSize(sizes));
    runSelectiveScan(exec, pool, x, dtype, sizes, device, { y: null, chunkStates: states });
  }

  // A | B | C side by side (see the file comment).
  const bytes = bytesOf(dtype);
  const sizeA = evenUp(dim * N, dtype);
  const sizeBC = evenUp(batch * N * len, dtype);
  const abc = temp(bytes * (sizeA + 2 * sizeBC));
  const copy = (src: PooledBuffer, at: number, n: number) => {
    if (n > 0) exec.copy(src, 0, abc, at * bytes, n * bytes);
  };
  copy(x.A, 0, sizeA);
  copy(x.B, sizeA, sizeBC);
  copy(x.C, sizeA + sizeBC, sizeBC);

  const partSize = p.tiles * N * len;
  const partials = temp(4 * (2 * partSize + batch * dim * N));
  const values = { ...p, offsetB: sizeA, offsetC: sizeA + sizeBC, partSize };
  exec.dispatch(op, backwardKernel(dtype, N, tiling), [x.u, x.delta, dy, abc, states, out.du, out.ddelta, partials], values, p.tiles);

  const sum = (y: PooledBuffer, outer: number, count: number, inner: number, offset: number) =>
    exec.dispatch(op, sumKernel(dtype), [partials, y], { outer, count, inner, offset }, Math.ceil((outer * inner) / SUM_WORKGROUP));
  sum(out.dB, batch, p.tilesPerBatch, N * len, 0);
  sum(out.dC, batch, p.tilesPerBatch, N * len, partSize);
  sum(out.dA, 1, batch, dim * N, 2 * partSize);

  for (const b of temps) pool.release(b);
}
