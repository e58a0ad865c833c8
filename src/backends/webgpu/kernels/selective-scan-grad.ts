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
 * The tile is cut as in the forward, (row r, part q, segment seg) with `group` states of each round
 * per invocation; on a GPU 32 rows × 2 parts × 4 segments of 16 steps, 4 states each (256
 * invocations, 2 rounds for N = 16).
 *
 * ## One chunk (chunks from last to first)
 *
 *  1. Stage Δ, u and dy of the tile (coalesced, one barrier), copy each invocation's segment of
 *     each to registers; per round, stage B and C of its states over the chunk.
 *  2. Local totals, both directions, from one exp per step, kept (ā for step 4): the forward pair
 *     (Π ā, state from 0) as in the forward, and the reverse map (Π ā, q reached from 0) composed
 *     toward the start.
 *  3. Both scans of each (state, row) by one invocation: the forward root is the saved state
 *     entering the chunk, `chunkStates[b, d, c, n]`; the reverse root is `dcarry[n][r]`, which the
 *     reverse total moves on to the chunk before.
 *  4. Per state: walk the segment forwards from its entering state, keeping h_{t−1} in registers,
 *     then backwards from its entering q, with dh_t in hand:
 *
 *         dΔ_t += dh_t·(A·ā_t·h_{t−1} + B_t·u_t)       du_t += dh_t·Δ_t·B_t          (summed over n here)
 *         dA   += dh_t·Δ_t·ā_t·h_{t−1}                  (summed over t here, over b later)
 *         dB_t  = Σ_d dh_t·Δ_t·u_t     dC_t = Σ_d dy_t·h_t                         (summed over d later)
 *
 *     dB and dC are summed over the tile's rows (see "Sums over the rows") and the tile's sums
 *     written to `partials` (tiles, N, len). dA's per-invocation sums are added up per segment in
 *     `dAsum`, each (segment, state, row) by its one invocation, and over the segments at the end.
 *  5. Write du and dΔ: each part's sums through workgroup memory, the parts added, coalesced.
 *
 * ## Sums over the rows
 *
 * Each invocation ends a state's walk holding 2·STEPS terms, dB's and dC's at each step of its
 * segment, for its own row; the tile's 32 rows of one (part, segment) are 32 neighbouring
 * invocations, a subgroup on NVIDIA. The subgroup adds them up by exchanging registers (`laneSums`):
 * 31 exchanges per lane leave each lane one of the 32 sums, which goes straight to `partials`, with
 * no workgroup memory and no barrier. Where subgroups are narrower than the tile (8 lanes on
 * lavapipe), their sums meet in a (part, term, subgroup) table in the scratch and are added there
 * after a barrier; without subgroup operations the table has a row per tile row. Either way the
 * order of the additions is fixed, so the sums are the same on every run.
 *
 * On an H200 at (8, 1536, 4096, 16) the backward took 3.50 ms with the (step, row) tables alone and
 * dA's segments summed in the same pass, 2.95 ms once dA stayed per segment (the pass had one item
 * per invocation instead of 1.25: half the invocations waited on a second round), and 2.86 ms with
 * the subgroup sums. Variants that dropped the row sums altogether (wrong results) gave a floor of
 * 2.31 ms. Summing with `subgroupAdd` instead, one chain of five shuffles per term, took 8.5 ms.
 *
 * Δ, u and dy, the trees, the tables and du, dΔ take turns in one `scratch` array; with subgroup
 * sums it holds 33 KB, the other arrays 14 KB, of the 48 KB WebGPU grants. This tiling measured best
 * of those tried, though it leaves one workgroup per multiprocessor (see the forward's "Why this
 * shape"), bound by registers as well: one part (24 KB, two workgroups) took 3.9 ms against 3.5, and
 * 32 rows × 8 segments with all states per invocation 4.7 ms (both with the tables).
 *
 * ## Few rows, long sequences
 *
 * As in the forward, when the tiles are too few to fill the GPU each row is cut into blocks of
 * chunks, one workgroup per (tile, block), walking its block from last chunk to first. The states
 * entering its chunks come from the forward's chunkStates as always; what it lacks is the q entering
 * its last step from the blocks after it. So, first, `reverseTotalsKernel` gives each block's
 * reverse map over its steps, q ↦ Π ā·q + q₀ (one invocation per (row, block, state) walking the
 * block backwards from q = 0); then each workgroup composes the maps of the blocks after its own,
 * from the end of the row, into the `dcarry` it starts from. dA's partial sums are per (batch,
 * block), and `sumKernel` adds them over both.
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
 * Bindings: the backward reads u, Δ, dy, A, B, C and the chunk states and writes du, dΔ and the
 * partials: 10 storage buffers, more than the 8 WebGPU guarantees. Dawn's Vulkan adapters (lavapipe,
 * NVIDIA) allow 16; the executor refuses a kernel that needs more than its GPU allows.
 */
import type { DType } from '../../../tensor/dtype.js';
import type { ScanSizes } from '../../backend.js';
import { type BufferPool, type PooledBuffer, Temporaries } from '../buffer-pool.js';
import type { Executor, Kernel } from '../executor.js';
import { ParamStruct } from '../params.js';
import { enables, GRID_BUILTINS, type KernelDevice, LINEAR_WORKGROUP, load, storageBinding, store } from '../wgsl.js';
import { runFill } from './fill.js';
import {
  blocksFor,
  CHUNK_LEN,
  chunkCount,
  chunkStatesSize,
  downSweep,
  fitTiling,
  LOG2E,
  Loops,
  paddedStates,
  runSelectiveScan,
  SCAN_FIELDS,
  type ScanBuffers,
  type ScanParams,
  type ScanTiling,
  STRIDE,
  scanParams,
  stateInput,
  TILE_PROLOGUE,
  TREE_NODE,
  type TreeAt,
  tileItem,
  tilingConstants,
  tilingKey,
  upSweep,
} from './selective-scan.js';

/** Σ terms(0 … count − 1) as a balanced tree of additions, ((t0 + t1) + (t2 + t3)) + …: a fixed order. */
export function pairwiseSum(count: number, term: (k: number) => string, from = 0): string {
  if (count === 1) return term(from);
  const half = Math.ceil(count / 2);
  return `(${pairwiseSum(half, term, from)} + ${pairwiseSum(count - half, term, from + half)})`;
}

const BACKWARD_ROWS = 32;
const BACKWARD_SPLIT = 2;
const BACKWARD_SEGS = 4;

/**
 * Rows whose dB and dC terms a subgroup adds up in registers (see "Sums over the rows"): the lanes
 * of a subgroup, but at most the tile's rows and the 2·STEPS terms each invocation holds per state;
 * 1 where kernels cannot exchange values across lanes.
 */
const laneRows = (t: ScanTiling, device: KernelDevice): number => Math.min(device.subgroupSize, t.rows, 2 * t.steps);

/** Floats of the tables through which the subgroups' sums of one state meet (none when a subgroup holds every row). */
const tableFloats = (t: ScanTiling, width: number): number => (t.rows === width ? 0 : t.split * 2 * CHUNK_LEN * (t.rows / width + 1));

/**
 * Floats of the `scratch` array: Δ, u and dy of the tile; the four trees of a round; the row sums'
 * tables of one state; or du, dΔ of each part — whichever is largest.
 */
function scratchFloats(t: ScanTiling, width: number): number {
  const stage = 3 * t.rows * STRIDE;
  const trees = 4 * t.split * t.group * t.segs * t.rows;
  const parts = 2 * t.split * t.rows * STRIDE;
  return Math.max(stage, trees, tableFloats(t, width), parts);
}

/** Workgroup-memory bytes: the scratch, B and C of a round, dcarry and dA's sums per segment. */
const backwardSharedBytes = (t: ScanTiling, N: number, width: number): number =>
  4 * (scratchFloats(t, width) + 2 * t.split * t.group * STRIDE + (1 + t.segs) * paddedStates(t, N) * t.rows);

/** The backward tiling for N states on this device (see the file comment). */
export function backwardTiling(N: number, device: KernelDevice): ScanTiling {
  const bytes = (t: ScanTiling) => backwardSharedBytes(t, N, laneRows(t, device));
  return fitTiling({ rows: BACKWARD_ROWS, split: BACKWARD_SPLIT, segs: BACKWARD_SEGS }, N, bytes, device);
}

/**
 * The sum over W = 2^k lanes of each of a lane's `count` terms `red[0 … count)`, by halves: at the
 * level of lane distance m, a lane keeps the half of its terms picked by its bit m, sends the other
 * half to lane ^ m, and adds what comes back. With 4 terms over 4 lanes (each lane's terms a–d):
 *
 *     m = 2:  lanes 0, 1 keep a, b and send c, d to lanes 2, 3, which keep c, d: each holds 2 terms of 2 lanes
 *     m = 1:  lanes 0, 2 keep their first, lanes 1, 3 their second:           each holds 1 term of 4 lanes
 *
 * W − 1 exchanges in all, where summing each term over the lanes one by one would take count·log₂ W.
 * Afterwards lane ℓ holds, in red[i] (i < count / W), the sum of term (ℓ mod W)·(count / W) + i.
 */
export function laneSums(count: number, width: number, L: Loops): string {
  const levels: string[] = [];
  for (let m = width / 2, half = count / 2; m >= 1; m /= 2, half /= 2) {
    const exchange = (i: string) =>
      `red[${i}] = select(red[${i}], red[${half}u + ${i}], upper) + subgroupShuffleXor(select(red[${half}u + ${i}], red[${i}], upper), ${m}u);`;
    levels.push(`        { // with the lane ${m} away
          let upper = (lane & ${m}u) != 0u; // this lane keeps the upper half of its terms
${L.times(half, exchange, '          ')}
        }`);
  }
  return levels.join('\n');
}

/** How a backward uses its bindings (`backwardBindings`): seven inputs, then du, dΔ and the partial sums. */
export const BACKWARD_ACCESS: Kernel['bindings'] = ['read', 'read', 'read', 'read', 'read', 'read', 'read', 'write', 'write', 'write'];

/**
 * The bindings of a backward, this one's and the sequential one's: u, Δ, dy, A, B, C, the states
 * its forward saved (`states`, f32, laid out as `layout` says), du, dΔ and the partial sums.
 */
export const backwardBindings = (dtype: DType, states: string, layout: string): string =>
  [
    storageBinding(0, 'u', 'read', dtype),
    storageBinding(1, 'delta', 'read', dtype),
    storageBinding(2, 'dy', 'read', dtype),
    storageBinding(3, 'A', 'read', dtype),
    storageBinding(4, 'B', 'read', dtype),
    storageBinding(5, 'C', 'read', dtype),
    `${storageBinding(6, states, 'read', 'float32')} // ${layout}`,
    storageBinding(7, 'du', 'read_write', dtype),
    storageBinding(8, 'ddelta', 'read_write', dtype),
    `${storageBinding(9, 'partials', 'read_write', 'float32')} // dB (tiles, N, len) | dC (tiles, N, len) | dA (batch, blocks, dim, N)`,
  ].join('\n');

type Field = (keyof ScanParams & string) | 'partSize' | 'totalsAt';
const params = new ParamStruct<Field>([
  ...SCAN_FIELDS,
  ['partSize', 'u32'], // floats of dB's partials (C's follow, then A's)
  ['totalsAt', 'u32'], // where the blocks' reverse totals start in partials (see "Few rows, long sequences")
]);

const kernels = new Map<string, Kernel>();

function backwardKernel(dtype: DType, N: number, t: ScanTiling, width: number): Kernel<Field> {
  const key = `selectiveScanGrad ${dtype} N=${N} ${tilingKey(t)} lanes=${width}`;
  let kernel = kernels.get(key) as Kernel<Field> | undefined;
  if (!kernel) {
    kernel = { key, bindings: BACKWARD_ACCESS, params, source: () => backwardSource(key, dtype, N, t, width) };
    kernels.set(key, kernel);
  }
  return kernel;
}

function backwardSource(key: string, dtype: DType, N: number, t: ScanTiling, width: number): string {
  const L = new Loops(t.unroll);
  const threads = t.rows * t.split * t.segs;
  const tables = t.rows > width; // the subgroups' sums meet in workgroup memory
  // Where state g of this invocation's group reads B and C at step j of its segment.
  const bcAt = (j: string) => `(q * GROUP + g) * STRIDE + first + ${j}`;
  // The four trees live in `scratch` (see the layout below).
  const tree: TreeAt = (x, part, i) => `scratch[TREE_${x.toUpperCase()}${part.toUpperCase()} + ${i}]`;
  // After laneSums each invocation holds `per` sums over its subgroup's rows: red[i] is term v (see
  // laneSums), dB's at step v of its segment for v < STEPS, else dC's at step v − STEPS.
  const per = (2 * t.steps) / width;
  const eachSum = (body: (sum: string) => string): string =>
    L.times(
      per,
      (i) => `let v = ${width > 1 ? `(lane % LANE_ROWS) * ${per}u + ` : ''}${i}; // which term
          let step = first + v % STEPS;
          ${body(`red[${i}]`)}`,
    );
  // A subgroup holds every row of the tile: each sum goes straight to partials (tiles, N, len).
  const directSums = eachSum(
    (sum) =>
      `if (t0 + step < params.len && n < N) { partials[(v / STEPS) * params.partSize + (tileIndex * N + n) * params.len + t0 + step] = ${sum}; }`,
  );
  // Otherwise the GROUPS subgroups' sums of each (part, term) meet in a table and are added there.
  const tableSums = `${eachSum((sum) => `scratch[((q * 2u + v / STEPS) * CHUNK + step) * PITCH + r / LANE_ROWS] = ${sum};`)}
        workgroupBarrier();
        for (var i = lid; i < SPLIT * 2u * CHUNK; i += THREADS) {
          // i = (part, dB or dC, step): the sum over the tile's subgroups, in a fixed order.
          let sum = ${pairwiseSum(t.rows / width, (k) => `scratch[i * PITCH + ${k}u]`)};
          let t = t0 + i % CHUNK;
          let m = n0 + (i / (2u * CHUNK)) * GROUP + g;
          if (t < params.len && m < N) { partials[((i / CHUNK) % 2u) * params.partSize + (tileIndex * N + m) * params.len + t] = sum; }
        }
        workgroupBarrier(); // the tables are rewritten by the next state`;
  return `${enables([dtype])}${width > 1 ? 'enable subgroups;\n' : ''}// ${key}
// CPU twin: selectiveScanBackward in cpu/selective-scan.ts. The design is drawn in kernels/selective-scan-grad.ts.
${params.wgsl(BACKWARD_ACCESS.length)}
${backwardBindings(dtype, 'chunkStates', '(batch, dim, nChunks, N): h entering each chunk')}

${tilingConstants(t, N)}
const TREE = ROUND * SEGS * ROWS;  // floats of one array of a tree
const TREE_SA: u32 = 0u;           // the forward tree's pairs (a, b) …
const TREE_SB: u32 = TREE;
const TREE_RA: u32 = 2u * TREE;    // … and the reverse tree's
const TREE_RB: u32 = 3u * TREE;
${LOG2E}
const LANE_ROWS: u32 = ${width}u;    // rows a subgroup sums in registers
const GROUPS: u32 = ROWS / LANE_ROWS; // subgroups per tile row set, whose sums meet in the tables
const PITCH: u32 = GROUPS + 1u;      // the tables are (part, dB or dC, step, group), this pitch (odd: no bank conflicts)
${TREE_NODE}

// One chunk's Δ, u and dy; then a round's trees${tables ? "; then the tables of one state's row sums" : ''};
// at the end of the chunk du, dΔ of each part: one array, as side by side they would not fit the
// 48 KB of workgroup memory WebGPU grants.
var<workgroup> scratch: array<f32, ${scratchFloats(t, width)}>;
var<workgroup> tileB: array<f32, ROUND * STRIDE>; // B of the round's states over the chunk
var<workgroup> tileC: array<f32, ROUND * STRIDE>; // C, likewise
var<workgroup> dcarry: array<f32, NP * ROWS>; // q entering the chunk from the one after, per (n, row)
var<workgroup> dAsum: array<f32, SEGS * NP * ROWS>; // dA of the row so far, per segment (each invocation its own)

@compute @workgroup_size(THREADS)
fn main(${GRID_BUILTINS}${width > 1 ? ', @builtin(subgroup_invocation_id) lane: u32' : ''}) {
${TILE_PROLOGUE}

  let cBegin = block * params.blockChunks;
  let cEnd = min(params.nChunks, cBegin + params.blockChunks);
  for (var i = lid; i < NP * ROWS; i += THREADS) {
    // The q entering the block from the right: the blocks after it composed from the end of the
    // row (nothing comes after the last step).
    let n = i / ROWS;
    let row = b * params.dim + min(d0 + i % ROWS, params.dim - 1u);
    var q = 0.0;
    if (n < N) {
      for (var k = params.blocks - 1u; k > block; k--) {
        let at = params.totalsAt + 2u * ((row * params.blocks + k) * N + n);
        q = partials[at] * q + partials[at + 1u];
      }
    }
    dcarry[i] = q;
  }
  for (var i = lid; i < SEGS * NP * ROWS; i += THREADS) { dAsum[i] = 0.0; }

  var dt: array<f32, STEPS>;
  var uu: array<f32, STEPS>;
  var gy: array<f32, STEPS>;      // dy
  var gu: array<f32, STEPS>;      // du, summed over this invocation's states
  var gdelta: array<f32, STEPS>;  // dΔ, likewise
  var abar: array<f32, GROUP * STEPS>; // ā = exp(Δ·A) of each of its states over the segment
  var hBefore: array<f32, STEPS + 1u>; // h_{t−1} of one state at step t, and h after the last step
  var hIn: array<f32, GROUP>;     // the state entering this segment, per state of the group
  var qIn: array<f32, GROUP>;     // the q entering it from the segment after
  var red: array<f32, 2 * STEPS>; // one state's dB and dC terms of this row, then their sums over rows

  for (var k = cBegin; k < cEnd; k++) {
    let c = cBegin + cEnd - 1u - k; // from the block's last chunk to its first
    let t0 = c * CHUNK;
    // 1. Stage Δ, u and dy along len, then take this invocation's segment of each into registers.
${L.shared(
  t.rows * CHUNK_LEN,
  threads,
  `${tileItem('CHUNK')}
      scratch[rr * STRIDE + i % CHUNK] = select(0.0, ${load('delta', 'at', dtype)}, inside);
      scratch[ROWS * STRIDE + rr * STRIDE + i % CHUNK] = select(0.0, ${load('u', 'at', dtype)}, inside);
      scratch[2u * ROWS * STRIDE + rr * STRIDE + i % CHUNK] = select(0.0, ${load('dy', 'at', dtype)}, inside);`,
)}
    workgroupBarrier();
${L.steps(
  t.steps,
  (j) => `dt[${j}] = scratch[r * STRIDE + first + ${j}];
      uu[${j}] = scratch[ROWS * STRIDE + r * STRIDE + first + ${j}];
      gy[${j}] = scratch[2u * ROWS * STRIDE + r * STRIDE + first + ${j}];
      gu[${j}] = 0.0;
      gdelta[${j}] = 0.0;`,
  '    ',
)}

    // params.states = N, read from the uniforms so that no compiler unrolls this loop (which
    // multiplied the code by the rounds and the compile time on lavapipe with it).
    for (var n0 = 0u; n0 < params.states; n0 += ROUND) {
${L.shared(
  t.split * t.group * CHUNK_LEN,
  threads,
  `let slot = (i / CHUNK) * STRIDE + i % CHUNK;
      tileB[slot] = ${stateInput('B', '', 'n0 + i / CHUNK', 't0 + i % CHUNK', dtype)};
      tileC[slot] = ${stateInput('C', '', 'n0 + i / CHUNK', 't0 + i % CHUNK', dtype)};`,
  '      ',
)}
      workgroupBarrier(); // (and everyone has taken dy out of the scratch the trees now overwrite)
      // 2. Local totals: forward (Π ā, h from 0), reverse (Π ā, q from 0) composed toward the start,
      //    for each of this invocation's states (independent chains, written out on GPUs). Both
      //    directions' Π ā is the same product, qa; A is taken times log₂e for exp2 (as in the forward).
${L.states(
  t.group,
  `let a = ${load('A', 'aRow + min(n0 + q * GROUP + g, N - 1u)', dtype)} * LOG2E; // a state past N has B = C = 0
        var fb = 0.0;
        var qa = 1.0;
        var qb = 0.0;
        // q ↦ qa·q + qb: step j's map runs after those of the steps after it.
${L.steps(
  t.steps,
  (j) => `let at = ${bcAt(j)};
          let abarT = exp2(dt[${j}] * a);
          abar[g * STEPS + ${j}] = abarT;
          fb = abarT * fb + dt[${j}] * uu[${j}] * tileB[at];
          qa = qa * abarT;
          qb = qb + qa * tileC[at] * gy[${j}];`,
)}
        ${tree('s', 'a', 'node(q * GROUP + g, seg, r)')} = qa;
        ${tree('s', 'b', 'node(q * GROUP + g, seg, r)')} = fb;
        ${tree('r', 'a', 'node(q * GROUP + g, SEGS - 1u - seg, r)')} = qa;
        ${tree('r', 'b', 'node(q * GROUP + g, SEGS - 1u - seg, r)')} = qb;`,
  '      ',
)}
      workgroupBarrier();

      // 3. Both scans of each (state, row): the roots are the saved chunk state and the q from the chunk after.
      for (var i = lid; i < ROUND * ROWS; i += THREADS) {
        let g = i / ROWS;
        let rr = i % ROWS;
        let n = n0 + g;
${upSweep(['s', 'r'], tree)}
        let root = node(g, SEGS - 1u, rr);
        let dd = min(d0 + rr, params.dim - 1u); // rows past dim stay 0: their Δ and dy are 0
        let at = ((b * params.dim + dd) * params.nChunks + c) * N + min(n, N - 1u);
        ${tree('s', 'b', 'root')} = select(0.0, chunkStates[at], d0 + rr < params.dim && n < N);
        let qIn = dcarry[n * ROWS + rr];
        dcarry[n * ROWS + rr] = ${tree('r', 'a', 'root')} * qIn + ${tree('r', 'b', 'root')}; // q leaving the chunk's first step
        ${tree('r', 'b', 'root')} = qIn;
${downSweep(['s', 'r'], tree)}
      }
      workgroupBarrier();

      // 4. Take the entering h and q out of the trees${tables ? ", which the row sums' tables overwrite" : ''}.
${L.states(
  t.group,
  `hIn[g] = ${tree('s', 'b', 'node(q * GROUP + g, seg, r)')};
        qIn[g] = ${tree('r', 'b', 'node(q * GROUP + g, SEGS - 1u - seg, r)')};`,
  '      ',
)}
${tables ? '      workgroupBarrier();\n' : ''}      // State g of every part at once: this segment's gradients, then the sums over the rows.
${L.states(
  t.group,
  `let n = n0 + q * GROUP + g;
        let a = ${load('A', 'aRow + min(n, N - 1u)', dtype)};
        var h = hIn[g];
${L.steps(
  t.steps,
  (j) => `hBefore[${j}] = h;
          h = abar[g * STEPS + ${j}] * h + dt[${j}] * uu[${j}] * tileB[${bcAt(j)}];`,
)}
        hBefore[STEPS] = h;
        var dq = qIn[g];
        var dAPart = 0.0;
${L.steps(
  t.steps,
  (j) => `let at = ${bcAt(j)};
          let ab = abar[g * STEPS + ${j}];
          let bt = tileB[at];
          let abh = ab * hBefore[${j}]; // ā_t·h_{t−1}
          let dh = tileC[at] * gy[${j}] + dq;
          let dhdt = dh * dt[${j}];
          gdelta[${j}] += dh * (a * abh + bt * uu[${j}]);
          gu[${j}] += dhdt * bt;
          dAPart += dhdt * abh;
          red[${j}] = dhdt * uu[${j}];              // this row's share of dB_t[n]
          red[STEPS + ${j}] = gy[${j}] * hBefore[${j} + 1u]; // … of dC_t[n], h_t
          dq = ab * dh;`,
  '        ',
  'down',
)}
        dAsum[(seg * NP + n) * ROWS + r] += dAPart;
${width > 1 ? laneSums(2 * t.steps, width, L) : ''}
${tables ? tableSums : directSums}`,
  '      ',
)}
      workgroupBarrier(); // B, C and the trees are rewritten by the next round (and the scratch by step 5)
    }

    // 5. du and dΔ: each part's sums through the scratch, the SPLIT parts added, out along len.
${L.steps(
  t.steps,
  (j) => `scratch[(q * ROWS + r) * STRIDE + first + ${j}] = gu[${j}];
    scratch[(SPLIT + q) * ROWS * STRIDE + r * STRIDE + first + ${j}] = gdelta[${j}];`,
  '    ',
)}
    workgroupBarrier();
${L.shared(
  t.rows * CHUNK_LEN,
  threads,
  `${tileItem('CHUNK')}
      if (inside) {
        var sumU = 0.0;
        var sumDelta = 0.0;
        for (var p = 0u; p < SPLIT; p++) {
          sumU += scratch[(p * ROWS + rr) * STRIDE + i % CHUNK];
          sumDelta += scratch[((SPLIT + p) * ROWS + rr) * STRIDE + i % CHUNK];
        }
        ${store('du', 'at', 'sumU', dtype)}
        ${store('ddelta', 'at', 'sumDelta', dtype)}
      }`,
)}
    workgroupBarrier(); // the scratch is restaged by the next chunk
  }

  workgroupBarrier(); // (a block has at least one chunk, whose last barrier this repeats, unless len = 0)
  for (var i = lid; i < N * ROWS; i += THREADS) {
    let rr = i % ROWS;
    let sum = ${pairwiseSum(t.segs, (k) => `dAsum[${k}u * NP * ROWS + i]`)};
    if (d0 + rr < params.dim) { partials[2u * params.partSize + ((b * params.blocks + block) * params.dim + d0 + rr) * N + i / ROWS] = sum; }
  }
}
`;
}

const TOTALS_WORKGROUP = 64;
type TotalsField = 'rows' | 'dim' | 'len' | 'states' | 'blocks' | 'blockChunks' | 'totalsAt';
const totalsParams = new ParamStruct<TotalsField>([
  ['rows', 'u32'], // batch·dim
  ['dim', 'u32'],
  ['len', 'u32'],
  ['states', 'u32'], // N
  ['blocks', 'u32'],
  ['blockChunks', 'u32'],
  ['totalsAt', 'u32'], // where the totals go in partials
]);

/**
 * The first pass of the backward over a row cut into blocks ("Few rows, long sequences"): each
 * block's reverse map q ↦ Π ā·q + q₀ over its steps, q₀ being the q its first step hands back when
 * nothing comes after its last. One invocation per (row, block, state) walks the block backwards,
 * q ← ā_t·(C_t·dy_t + q), and writes (Π ā, q₀) = (exp(A·ΣΔ), q) at totalsAt + 2·((row·blocks +
 * block)·N + n); the backward kernel composes those of the blocks after its own into the q that
 * enters it. CPU twin: the reverse loop of selectiveScanBackward (cpu/selective-scan.ts).
 */
function reverseTotalsKernel(dtype: DType): Kernel<TotalsField> {
  const key = `selectiveScanGrad reverse block totals ${dtype}`;
  let kernel = kernels.get(key) as Kernel<TotalsField> | undefined;
  if (!kernel) {
    const source = () => `${enables([dtype])}// ${key}: the blocks' reverse maps, for the backward (kernels/selective-scan-grad.ts).
${totalsParams.wgsl(5)}
${storageBinding(0, 'delta', 'read', dtype)}
${storageBinding(1, 'dy', 'read', dtype)}
${storageBinding(2, 'A', 'read', dtype)}
${storageBinding(3, 'C', 'read', dtype)}
${storageBinding(4, 'partials', 'read_write', 'float32')}
${LOG2E}

@compute @workgroup_size(${TOTALS_WORKGROUP})
fn main(${GRID_BUILTINS}) {
  let e = (${LINEAR_WORKGROUP}) * ${TOTALS_WORKGROUP}u + lid; // = (row·blocks + block)·N + n
  if (e >= params.rows * params.blocks * params.states) { return; }
  let n = e % params.states;
  let block = (e / params.states) % params.blocks;
  let row = e / (params.states * params.blocks); // = b·dim + d
  let a = ${load('A', '(row % params.dim) * params.states + n', dtype)} * LOG2E; // for exp2
  let c = ((row / params.dim) * params.states + n) * params.len; // C[b, n, ·]
  let tBegin = block * params.blockChunks * ${CHUNK_LEN}u;
  let tEnd = min(params.len, tBegin + params.blockChunks * ${CHUNK_LEN}u);
  var q = 0.0;
  var deltaSum = 0.0;
  for (var t = tEnd; t > tBegin; t--) {
    let at = row * params.len + t - 1u;
    let stepDelta = ${load('delta', 'at', dtype)};
    q = exp2(stepDelta * a) * (${load('C', 'c + t - 1u', dtype)} * ${load('dy', 'at', dtype)} + q);
    deltaSum += stepDelta;
  }
  partials[params.totalsAt + 2u * e] = exp2(a * deltaSum);
  partials[params.totalsAt + 2u * e + 1u] = q;
}
`;
    kernel = { key, bindings: ['read', 'read', 'read', 'read', 'write'], params: totalsParams, source };
    kernels.set(key, kernel);
  }
  return kernel;
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
 * Finishes the cross-workgroup sums: y[o, i] = Σ_k x[offset + (o·count + k)·inner + i] in a fixed
 * order, one invocation per output, reading along i (coalesced). On an H200 the four partial sums
 * took dB's and dC's sums over Mamba's 48 tiles per batch from 40 to 26 µs each. CPU twin: the
 * double-precision `+=` into dA, dB, dC in `selectiveScanBackward`, cpu/selective-scan.ts.
 */
function sumKernel(dtype: DType): Kernel<SumField> {
  const key = `selectiveScanGrad sum ${dtype}`;
  let kernel = kernels.get(key) as Kernel<SumField> | undefined;
  if (!kernel) {
    const source = () => `${enables([dtype])}// ${key}: the partial sums of dA, dB, dC added in a fixed order.
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
  // Four partial sums, over k ≡ 0, 1, 2, 3 (mod 4), keep four loads in flight; the order of the
  // additions is still fixed.
  let base = params.offset + o * params.count * params.inner + i;
  var s0 = 0.0;
  var s1 = 0.0;
  var s2 = 0.0;
  var s3 = 0.0;
  var k = 0u;
  for (; k + 4u <= params.count; k += 4u) {
    s0 += x[base + k * params.inner];
    s1 += x[base + (k + 1u) * params.inner];
    s2 += x[base + (k + 2u) * params.inner];
    s3 += x[base + (k + 3u) * params.inner];
  }
  for (; k < params.count; k++) { s0 += x[base + k * params.inner]; }
  let sum = (s0 + s1) + (s2 + s3);
  ${store('y', 'e', 'sum', dtype)}
}
`;
    kernel = { key, bindings: ['read', 'write'], params: sumParams, source };
    kernels.set(key, kernel);
  }
  return kernel;
}

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
  const tiles = batch * Math.ceil(dim / tiling.rows);
  const p = scanParams(sizes, tiling.rows, blocksFor(tiles, chunkCount(len)));
  const temps = new Temporaries(pool, op);
  let states = chunkStates;
  if (!states) {
    states = temps.acquire(4 * chunkStatesSize(sizes));
    runSelectiveScan(exec, pool, x, dtype, sizes, device, { y: null, chunkStates: states });
  }

  // partials: dB (tiles, N, len) | dC, likewise | dA (batch, blocks, dim, N) | the blocks' totals.
  const partSize = p.tiles * N * len;
  const totalsAt = 2 * partSize + batch * p.blocks * dim * N;
  const partials = temps.acquire(4 * (totalsAt + (p.blocks > 1 ? 2 * batch * dim * p.blocks * N : 0)));
  const values = { ...p, partSize, totalsAt };
  if (p.blocks > 1) {
    const reverse = {
      rows: batch * dim,
      dim,
      len,
      states: N,
      blocks: p.blocks,
      blockChunks: p.blockChunks,
      totalsAt,
    };
    const invocations = batch * dim * p.blocks * N;
    exec.dispatch(op, reverseTotalsKernel(dtype), [x.delta, dy, x.A, x.C, partials], reverse, Math.ceil(invocations / TOTALS_WORKGROUP));
  }
  exec.dispatch(
    op,
    backwardKernel(dtype, N, tiling, laneRows(tiling, device)),
    [x.u, x.delta, dy, x.A, x.B, x.C, states, out.du, out.ddelta, partials],
    values,
    p.tiles * p.blocks,
  );

  sumPartials(exec, op, dtype, partials, sizes, p, out);
  temps.release();
}

/**
 * Adds up the workgroups' partial sums (see "Sums across workgroups"), from `partials` laid out as
 * dB (tiles, N, len) | dC, likewise | dA (batch, blocks, dim, N): dB and dC over the tiles of each
 * batch, dA over the batch and the blocks. The sequential backward writes the same layout.
 */
export function sumPartials(
  exec: Executor,
  op: string,
  dtype: DType,
  partials: PooledBuffer,
  { batch, dim, len, N }: ScanSizes,
  { tiles, tilesPerBatch, blocks }: ScanParams,
  out: ScanGrads,
): void {
  const partSize = tiles * N * len;
  const sum = (y: PooledBuffer, outer: number, count: number, inner: number, offset: number) =>
    exec.dispatch(op, sumKernel(dtype), [partials, y], { outer, count, inner, offset }, Math.ceil((outer * inner) / SUM_WORKGROUP));
  sum(out.dB, batch, tilesPerBatch, N * len, 0);
  sum(out.dC, batch, tilesPerBatch, N * len, partSize);
  sum(out.dA, 1, batch * blocks, dim * N, 2 * partSize);
}
