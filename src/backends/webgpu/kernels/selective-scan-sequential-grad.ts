/**
 * Mamba's selective scan, backward, for the sequential forward (selective-scan-sequential.ts): each
 * invocation walks its row's steps in order, from the last piece to the first. CPU twin:
 * `selectiveScanBackward` in `cpu/selective-scan.ts`, the same reverse loop; the math is in
 * docs/selective-scan.md §3.
 *
 * Going backwards, step t hands q_t = ā_t·dh_t back to step t − 1 (q after the last step is 0), and
 *
 *     dh_t = C_t·dy_t + q_{t+1}
 *     du_t = Δ_t·Σ_n dh_t·B_t             dΔ_t = Σ_n A·dh_t·ā_t·h_{t−1} + u_t·Σ_n dh_t·B_t
 *     dA  += Δ_t·dh_t·ā_t·h_{t−1}         dB_t = Σ_d dh_t·Δ_t·u_t        dC_t = Σ_d dy_t·h_t
 *
 * which needs h_{t−1} and ā_t at every step, in reverse order.
 *
 * ## Who does what
 *
 * The tile is the forward's: ROWS = 32 rows, invocation (r, q) with row r and part q of the states,
 * GROUP = N / SPLIT of them, rows fastest (a subgroup is 32 rows at one state and step). The
 * forward saved the state entering each of its pieces of STEPS = 16 steps (`pieceStates`); the
 * backward takes the pieces from last to first:
 *
 *  1. **Stage** Δ, u, dy of the tile's rows and B, C of all states over the piece, and read the
 *     saved states entering it.
 *  2. **Walk the first half** of the piece (8 steps) forwards, all states at once as the forward
 *     does, for the state entering the second half.
 *  3. **Each half, second then first**, one state at a time: walk the half forwards from its
 *     entering state, keeping h_{t−1} and ā_t of its 8 steps in registers; then backwards, with
 *     dh_t in hand, adding up the sums above. One state at a time because a state's half is what
 *     fits in registers: 8 steps of h and ā, and its 16 dB and dC terms.
 *  4. **Sum dB and dC over the rows** after each (state, half): the 32 rows are the lanes of a
 *     subgroup, which add their terms by exchanging registers (`laneSums`): 15 exchanges leave
 *     lane ℓ < 16 the sum of term ℓ over 16 rows, and one more over the other 16. Its sum goes
 *     straight to `partials` (tiles, N, len), which `sumPartials` adds over the tiles. Subgroups
 *     narrower than 32 lanes (8 on lavapipe) or none meet in a table in workgroup memory instead.
 *  5. **du and dΔ of the half**: each part's sums over its states through workgroup memory, in two
 *     areas that two parts each add into in turn (`AREAS`), then added and written along len.
 *
 * One piece, for one state of one row:
 *
 *                 half 0 (steps 0–7)          half 1 (steps 8–15)
 *     saved h ──► walk ─────────────────────► h entering half 1          step 2, all states
 *                                             walk: h_{t−1}, ā_t         step 3, half 1
 *                                             ◄── back ◄── q from the piece after
 *     saved h ──► walk: h_{t−1}, ā_t                                     step 3, half 0
 *                 ◄── back ◄───────────────── q
 *
 * The cost per (row, step, state) is what the recurrence needs: one walk forwards (1.5 with the
 * first half's second walk), one backwards with nine multiplies and multiply-adds, and the row
 * sums. The work-efficient backward (selective-scan-grad.ts) walks every step three times, keeps a
 * chunk's ā per state, and scans two trees per chunk.
 *
 * At Mamba's (8, 1536, 4096, 16) on an H200 this takes 1.60–1.63 ms, 2.5–2.8× the forward, against
 * 2.36–2.50 ms for the work-efficient backward (bench/RESULTS.md, tenth session). The row sums are
 * still its largest single cost: left out (wrong results) from a first version at 2.26 ms, it took
 * 1.68–1.94.
 */
import { BYTES_PER_ELEMENT, type DType } from '../../../tensor/dtype.js';
import type { ScanSizes } from '../../backend.js';
import { type BufferPool, type PooledBuffer, Temporaries } from '../buffer-pool.js';
import type { Executor, Kernel } from '../executor.js';
import { ParamStruct } from '../params.js';
import { enables, GRID_BUILTINS, type KernelDevice, load, store } from '../wgsl.js';
import { LOG2E, Loops, SCAN_FIELDS, type ScanBuffers, type ScanParams, stateInput, tileItem } from './selective-scan.js';
import { BACKWARD_ACCESS, backwardBindings, laneSums, pairwiseSum, type ScanGrads, sumPartials } from './selective-scan-grad.js';
import {
  groupOf,
  STEPS as PIECE,
  pieceStatesSize,
  ROWS,
  runSequentialScan,
  SEQUENTIAL_PROLOGUE,
  SPLIT,
  sequentialParams,
} from './selective-scan-sequential.js';

const HALF = PIECE / 2;
const THREADS = ROWS * SPLIT;
/** dB's and dC's terms of one (row, state, half). */
const TERMS = 2 * HALF;
/**
 * Areas of workgroup memory through which the SPLIT parts add up du and dΔ (step 5): two, each
 * taking two parts in turn, so that the kernel needs 13.3 KB and four workgroups share an H200
 * multiprocessor (a fourth of Vulkan's 64 KB, less what the GPU keeps per workgroup). With an area
 * per part (17.9 KB, three workgroups) the backward took 2.25 ms at Mamba's size; one area for all
 * (11 KB, two more barriers) 1.83–1.90; two 1.64–1.65.
 */
const AREAS = 2;

/**
 * How the rows' dB and dC terms are added (step 4): `rows` is how many rows a subgroup adds up in
 * registers (1 without subgroup operations), `width` how many of those lanes share out the terms
 * by halves (`laneSums`; at most the TERMS each holds), and `tables` whether the subgroups' sums
 * then meet in workgroup memory.
 */
function rowSums(device: KernelDevice): { rows: number; width: number; tables: boolean } {
  const rows = Math.min(device.subgroupSize, ROWS);
  return { rows, width: Math.min(rows, TERMS), tables: rows < ROWS };
}

/** Floats of the `scratch` array: du's and dΔ's parts of a half, or the row sums' table of one state. */
function scratchFloats(device: KernelDevice): number {
  const sums = rowSums(device);
  return Math.max(2 * AREAS * ROWS * (HALF + 1), sums.tables ? SPLIT * TERMS * (ROWS / sums.rows + 1) : 0);
}

/** Workgroup-memory bytes: Δ, u, dy of the tile and B, C of all states over a piece, and the scratch. */
const sharedBytes = (N: number, device: KernelDevice): number =>
  4 * ((3 * ROWS + 2 * SPLIT * groupOf(N)) * (PIECE + 1) + scratchFloats(device));

/** Whether this backward fits the device's workgroup memory (the forward's `sequentialFits` aside). */
export const sequentialGradFits = (N: number, device: KernelDevice): boolean => sharedBytes(N, device) <= device.maxSharedBytes;

type Field = (keyof ScanParams & string) | 'partSize';
const params = new ParamStruct<Field>([
  ...SCAN_FIELDS,
  ['partSize', 'u32'], // floats of dB's partials (C's follow, then A's)
]);
const kernels = new Map<string, Kernel<Field>>();

function gradKernel(dtype: DType, N: number, device: KernelDevice): Kernel<Field> {
  const sums = rowSums(device);
  const key = `selectiveScanGrad sequential ${dtype} N=${N} rows=${sums.rows}${device.unroll ? '' : ' loops'}`;
  let kernel = kernels.get(key);
  if (!kernel) {
    kernel = {
      key,
      bindings: BACKWARD_ACCESS,
      params,
      source: () => gradSource(key, dtype, N, new Loops(device.unroll), device),
    };
    kernels.set(key, kernel);
  }
  return kernel;
}

/** Step 4 for state n of the half at `off`: this row's terms `red` summed over the tile's rows into partials. */
function rowSumsSource(device: KernelDevice, L: Loops): string {
  const { rows, width, tables } = rowSums(device);
  const per = TERMS / width; // sums each lane holds after laneSums
  const exchange = width > 1 ? `${laneSums(TERMS, width, L)}\n` : '';
  // Lanes `width` apart hold the same terms of different rows: add those too, up to the subgroup.
  const folds: string[] = [];
  for (let m = width; m < rows; m *= 2) {
    folds.push(L.times(per, (i) => `red[${i}] += subgroupShuffleXor(red[${i}], ${m}u);`));
  }
  // Sum i of this lane: term v, dB's at step v of the half for v < HALF, else dC's at step v − HALF.
  const term = (i: string) => (width > 1 ? `(lane % ${width}u) * ${per}u + ${i}` : i);
  const holder = rows > 1 ? `lane % ${rows}u < ${width}u` : 'true'; // one lane per distinct sum
  // Where term v of state `n` goes, at step t: dB's or dC's partials (tiles, N, len).
  const partial = (n: string) => `partials[(v / STEPS) * params.partSize + (tileIndex * N + ${n}) * params.len + t]`;
  if (!tables) {
    return `${exchange}${folds.join('\n')}
        if (${holder}) {
${L.times(
  per,
  (i) => `let v = ${term(i)};
            let t = t0 + off + v % STEPS;
            if (t < params.len && n < N) { ${partial('n')} = red[${i}]; }`,
  '          ',
)}
        }`;
  }
  return `${exchange}${folds.join('\n')}
        if (${holder}) {
${L.times(per, (i) => `scratch[(q * TERMS + ${term(i)}) * TABLE_PITCH + r / SUM_ROWS] = red[${i}];`, '          ')}
        }
        workgroupBarrier();
${L.shared(
  SPLIT * TERMS,
  THREADS,
  `// i = (part, term): the sum over the tile's subgroups, in a fixed order.
      let m = (i / TERMS) * GROUP + g;
      let v = i % TERMS;
      let t = t0 + off + v % STEPS;
      if (t < params.len && m < N) {
        ${partial('m')} = ${pairwiseSum(ROWS / rows, (k) => `scratch[i * TABLE_PITCH + ${k}u]`)};
      }`,
  '        ',
)}
        workgroupBarrier(); // the table is rewritten by the next state`;
}

/**
 * Step 5's writes of this invocation's du and dΔ for the half: `=` for parts q < AREAS, which
 * start their areas; `+=` for the others, which add to area q − AREAS after a barrier.
 */
function partsSource(op: '=' | '+=', L: Loops): string {
  const [test, area] = op === '=' ? ['q < AREAS', 'q'] : ['q >= AREAS', '(q - AREAS)'];
  return `      if (${test}) {
${L.steps(
  HALF,
  (j) => `scratch[(${area} * ROWS + r) * HALF_PITCH + ${j}] ${op} dt[${j}] * s1[${j}];
          scratch[PARTS_DELTA + (${area} * ROWS + r) * HALF_PITCH + ${j}] ${op} s2[${j}] + stage[STAGE_U + r * PITCH + off + ${j}] * s1[${j}];`,
  '        ',
)}
      }`;
}

function gradSource(key: string, dtype: DType, N: number, L: Loops, device: KernelDevice): string {
  const group = groupOf(N);
  const { rows, tables } = rowSums(device);
  const subgroups = rows > 1;
  return `${enables([dtype])}${subgroups ? 'enable subgroups;\n' : ''}// ${key}
// CPU twin: selectiveScanBackward in cpu/selective-scan.ts. The design is in kernels/selective-scan-sequential-grad.ts.
${params.wgsl(BACKWARD_ACCESS.length)}
${backwardBindings(dtype, 'pieceStates', '(batch, pieces, dim, N): h entering each piece')}

const ROWS: u32 = ${ROWS}u;       // rows (consecutive d of one batch) per workgroup
const SPLIT: u32 = ${SPLIT}u;      // invocations per row, each with GROUP of the states
const GROUP: u32 = ${group}u;      // states per invocation
const NP: u32 = ${SPLIT * group}u;        // = SPLIT·GROUP, N rounded up (the states past N have B = C = 0)
const PIECE: u32 = ${PIECE}u;     // steps per piece: the forward saved the state entering each
const STEPS: u32 = ${HALF}u;      // steps per half, walked one state at a time
const THREADS: u32 = ${THREADS}u;  // = ROWS·SPLIT
const N: u32 = ${N}u;          // states per channel
const TERMS: u32 = ${TERMS}u;     // dB's and dC's terms of one (row, state, half)
const PITCH: u32 = PIECE + 1u;  // of a row (or a state) in the stage: rows start in different banks
const STAGE_U: u32 = ROWS * PITCH;       // where u starts in the stage (Δ at 0) …
const STAGE_DY: u32 = 2u * ROWS * PITCH; // … and dy
const STAGE_C: u32 = NP * PITCH;         // where C starts in tileBC (B at 0)
const HALF_PITCH: u32 = STEPS + 1u;       // of a (part, row) in du's and dΔ's parts
const AREAS: u32 = ${AREAS}u;         // du's and dΔ's areas, each shared by two parts in turn
const PARTS_DELTA: u32 = AREAS * ROWS * HALF_PITCH; // where dΔ's parts start in the scratch (du's at 0)
${
  tables
    ? `const SUM_ROWS: u32 = ${rows}u;   // rows a subgroup adds in registers
const TABLE_PITCH: u32 = ${ROWS / rows + 1}u; // the table is (part, term, subgroup), this pitch (odd: no bank conflicts)
`
    : ''
}${LOG2E}

var<workgroup> stage: array<f32, ${3 * ROWS * (PIECE + 1)}>;  // Δ, u, dy of the piece
var<workgroup> tileBC: array<f32, ${2 * SPLIT * group * (PIECE + 1)}>; // B, C of every state over the piece
var<workgroup> scratch: array<f32, ${scratchFloats(device)}>; // du's and dΔ's parts${tables ? ', or the row sums of one state' : ''}

@compute @workgroup_size(THREADS)
fn main(${GRID_BUILTINS}${subgroups ? ', @builtin(subgroup_invocation_id) lane: u32' : ''}) {
${SEQUENTIAL_PROLOGUE}
  // A row past dim reads channel dim − 1's A and state: its Δ, u and dy are 0, so it adds nothing.
  let d = min(d0 + r, params.dim - 1u);
  var a: array<f32, GROUP>;      // A·log₂e, so that ā = exp2(Δ·a)
  var decay: array<f32, GROUP>;  // A itself, for dΔ
  var dq: array<f32, GROUP>;     // q handed back from the step after (0 after the last)
  var dA: array<f32, GROUP>;     // this row's dA so far
  var hStart: array<f32, GROUP>; // h entering the piece (saved by the forward) …
  var hMid: array<f32, GROUP>;   // … and its second half
${L.states(
  group,
  `decay[g] = ${load('A', 'd * N + min(q * GROUP + g, N - 1u)', dtype)};
    a[g] = decay[g] * LOG2E;
    dq[g] = 0.0;
    dA[g] = 0.0;`,
  '  ',
)}
  var dt: array<f32, STEPS>;       // Δ of the half's steps
  var dtu: array<f32, STEPS>;      // Δ·u
  var gy: array<f32, STEPS>;       // dy
  var s1: array<f32, STEPS>;       // Σ_n dh·B over this invocation's states
  var s2: array<f32, STEPS>;       // Σ_n A·dh·ā·h_{t−1}, likewise
  var hs: array<f32, STEPS + 1u>;  // one state's h_{t−1} at step t, and h after the last step
  var ab: array<f32, STEPS>;       // its ā
  var red: array<f32, TERMS>;      // its dB and dC terms of this row, then their sums over rows

  for (var k = 0u; k < params.nChunks; k++) {
    let piece = params.nChunks - 1u - k; // from the last piece to the first
    let t0 = piece * PIECE;
    // 1. The saved states entering the piece, and Δ, u, dy, B, C staged (0 past dim, len or N).
${L.states(
  group,
  `let n = q * GROUP + g;
      hStart[g] = select(0.0, pieceStates[((b * params.nChunks + piece) * params.dim + d) * N + min(n, N - 1u)], d0 + r < params.dim && n < N);`,
  '    ',
)}
${L.shared(
  ROWS * PIECE,
  THREADS,
  `${tileItem('PIECE')}
      stage[rr * PITCH + i % PIECE] = select(0.0, ${load('delta', 'at', dtype)}, inside);
      stage[STAGE_U + rr * PITCH + i % PIECE] = select(0.0, ${load('u', 'at', dtype)}, inside);
      stage[STAGE_DY + rr * PITCH + i % PIECE] = select(0.0, ${load('dy', 'at', dtype)}, inside);`,
)}
${L.shared(
  SPLIT * group * PIECE,
  THREADS,
  `let slot = (i / PIECE) * PITCH + i % PIECE;
      tileBC[slot] = ${stateInput('B', '', 'i / PIECE', 't0 + i % PIECE', dtype)};
      tileBC[STAGE_C + slot] = ${stateInput('C', '', 'i / PIECE', 't0 + i % PIECE', dtype)};`,
)}
    workgroupBarrier();

    // 2. The first half walked forwards from the saved state: the state entering the second.
${L.states(group, 'hMid[g] = hStart[g];', '    ')}
${L.steps(
  HALF,
  (j) => `let stepDelta = stage[r * PITCH + ${j}];
      let deltaU = stepDelta * stage[STAGE_U + r * PITCH + ${j}];
${L.states(group, `hMid[g] = exp2(stepDelta * a[g]) * hMid[g] + deltaU * tileBC[(q * GROUP + g) * PITCH + ${j}];`)}`,
  '    ',
)}

    // 3. The second half, then the first.
    for (var half = 2u; half > 0u; half--) {
      let off = (half - 1u) * STEPS; // the half's first step in the piece
${L.steps(
  HALF,
  (j) => `dt[${j}] = stage[r * PITCH + off + ${j}];
        dtu[${j}] = dt[${j}] * stage[STAGE_U + r * PITCH + off + ${j}];
        gy[${j}] = stage[STAGE_DY + r * PITCH + off + ${j}];
        s1[${j}] = 0.0;
        s2[${j}] = 0.0;`,
  '      ',
)}
${L.states(
  group,
  `let n = q * GROUP + g;
        // Forwards: h_{t−1} and ā_t of each step.
        hs[0] = select(hStart[g], hMid[g], off != 0u);
${L.steps(
  HALF,
  (j) => `let abar = exp2(dt[${j}] * a[g]);
          ab[${j}] = abar;
          hs[${j} + 1u] = abar * hs[${j}] + dtu[${j}] * tileBC[n * PITCH + off + ${j}];`,
)}
        // Backwards, with dh_t = C_t·dy_t + q_{t+1}.
        var qn = dq[g];
        var dAn = 0.0;
${L.steps(
  HALF,
  (j) => `let at = n * PITCH + off + ${j};
          let bt = tileBC[at];
          let dh = tileBC[STAGE_C + at] * gy[${j}] + qn;
          qn = ab[${j}] * dh;
          let dhah = dh * (ab[${j}] * hs[${j}]); // dh_t·ā_t·h_{t−1}
          s1[${j}] += dh * bt;
          s2[${j}] += decay[g] * dhah;
          dAn += dt[${j}] * dhah;
          red[${j}] = dh * dtu[${j}];            // this row's share of dB_t[n]
          red[STEPS + ${j}] = gy[${j}] * hs[${j} + 1u]; // … of dC_t[n]`,
  '        ',
  'down',
)}
        dq[g] = qn;
        dA[g] += dAn;
        // 4. dB and dC of this state over the tile's rows.
${rowSumsSource(device, L)}`,
  '      ',
)}

      // 5. du = Δ·Σ dh·B and dΔ = Σ A·dh·ā·h_{t−1} + u·Σ dh·B of the half: parts q and q + AREAS
      //    add theirs into area q, one after the other; then the areas are added.
${partsSource('=', L)}
      workgroupBarrier();
${partsSource('+=', L)}
      workgroupBarrier();
${L.shared(
  ROWS * HALF,
  THREADS,
  `${tileItem('STEPS', 't0 + off')}
        if (inside) {
          var sumU = 0.0;
          var sumDelta = 0.0;
          for (var p = 0u; p < AREAS; p++) {
            sumU += scratch[(p * ROWS + rr) * HALF_PITCH + i % STEPS];
            sumDelta += scratch[PARTS_DELTA + (p * ROWS + rr) * HALF_PITCH + i % STEPS];
          }
          ${store('du', 'at', 'sumU', dtype)}
          ${store('ddelta', 'at', 'sumDelta', dtype)}
        }`,
  '      ',
)}
      workgroupBarrier(); // the scratch is rewritten by the next half, the stage by the next piece
    }
  }

  if (d0 + r < params.dim) {
${L.states(
  group,
  `let n = q * GROUP + g;
    if (n < N) { partials[2u * params.partSize + (b * params.dim + d) * N + n] = dA[g]; }`,
  '    ',
)}
  }
}
`;
}

/**
 * Runs the sequential backward into `out`. `pieceStates` is what the sequential forward saved, or
 * null: then that forward runs once more to make it. The caller has checked `sequentialFits` and
 * `sequentialGradFits`. Temporaries come from `pool` and go back to it.
 */
export function runSequentialScanGrad(
  exec: Executor,
  pool: BufferPool,
  x: ScanBuffers,
  dy: PooledBuffer,
  dtype: DType,
  sizes: ScanSizes,
  device: KernelDevice,
  pieceStates: PooledBuffer | null,
  out: ScanGrads,
): void {
  const op = 'selectiveScanGrad';
  const { batch, dim, len, N } = sizes;
  const p = sequentialParams(sizes);
  const temps = new Temporaries(pool, op);
  let states = pieceStates;
  if (!states) {
    states = temps.acquire(4 * pieceStatesSize(sizes));
    const y = temps.acquire(batch * dim * len * BYTES_PER_ELEMENT[dtype]);
    const lastState = temps.acquire(batch * dim * N * BYTES_PER_ELEMENT[dtype]);
    runSequentialScan(exec, x, dtype, sizes, device, { y, lastState, pieceStates: states });
  }
  const partSize = p.tiles * N * len;
  const partials = temps.acquire(4 * (2 * partSize + batch * dim * N));
  exec.dispatch(
    op,
    gradKernel(dtype, N, device),
    [x.u, x.delta, dy, x.A, x.B, x.C, states, out.du, out.ddelta, partials],
    { ...p, partSize },
    p.tiles,
  );
  sumPartials(exec, op, dtype, partials, sizes, p, out);
  temps.release();
}
