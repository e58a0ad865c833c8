/**
 * Mamba's selective scan, forward, when the rows alone fill the GPU: each invocation walks its steps
 * in order, as the CPU does. CPU twin: `selectiveScanForward` in `cpu/selective-scan.ts`, the same
 * loop. The backend runs it, with its backward (selective-scan-sequential-grad.ts), where
 * `sequentialFits` and `sequentialGradFits`, and the chunked work-efficient scan of
 * `selective-scan.ts` elsewhere.
 *
 * ## Why a sequential walk
 *
 * The parallel scan buys parallelism along len: a chunk's segments run side by side, and pay for it
 * with a second pass over every step (local totals, then the apply) and the values that pass keeps
 * (ā over a segment: 253 registers per invocation on an H200, so 8 warps per multiprocessor). That
 * parallelism is only worth having when the rows leave the GPU idle. At Mamba's (8, 1536, 4096, 16)
 * there are 12,288 rows, N = 16 states each: split four ways, 49,152 chains of 4096 steps, 12 warps
 * on each of the H200's 132 multiprocessors at once. So here each invocation carries its states
 * through the whole sequence, h_t = ā_t·h_{t−1} + b̄_t, one pass, 69 registers; the work is len·N per
 * row, the least there is. Measured at that shape in alternating processes: 0.59–0.61 ms against
 * 0.72–0.75 for the work-efficient scan; 0.57–0.58 ms, 1.05 TB/s effective, in the bench
 * (bench/RESULTS.md, ninth session).
 *
 * ## Who does what
 *
 * A workgroup owns a tile of ROWS = 32 rows (consecutive d of one batch b); its invocation (r, q)
 * owns row r and part q of the states, GROUP = N / SPLIT of them, SPLIT = 4. It walks the sequence
 * in pieces of STEPS = 16 steps:
 *
 *  1. **Stage** Δ, Δ·u of the tile's rows and B, C of all states over the piece into workgroup
 *     memory, reading global memory along len (coalesced). B and C are shared by every row: the tile
 *     reads them once for its 32 rows.
 *  2. **Walk** the piece: per step, ā = exp(Δ·A) and b̄ = Δ·B·u in registers for each of its states,
 *     h ← ā·h + b̄, and its part of y_t = Σ_n C_t[n]·h_t[n] into workgroup memory.
 *  3. **Write y**: the SPLIT parts of each (row, step) added up, out along len.
 *
 * Invocations are numbered row-fastest (lid = q·ROWS + r): a subgroup's lanes are 32 rows at the
 * same step and state, reading one B and one C, which the GPU serves as one broadcast.
 *
 * Two barriers a piece: after staging, and after the parts are written (which also frees the stage
 * for the next piece; the parts are next written after the next piece's first barrier, once every
 * invocation has read them). The pieces are short because workgroup memory sets how many workgroups
 * share a multiprocessor: at 16 steps the stage and the parts take 14.7 KB, so four fit in the 64 KB
 * Vulkan lends each H200 multiprocessor; at 32 steps (29 KB, two fit) the kernel took 1.1 ms.
 * Loading the next piece into registers during the walk, to have it in flight across the barriers,
 * made it slower (0.82–0.83 ms), as it did in the work-efficient scan.
 *
 * ## What the backward gets
 *
 * When asked for, the state entering every piece, `pieceStates` (batch, pieces, dim, N), f32: one
 * (b, piece) is the tile's rows side by side, so the four parts write and the backward reads 2 KB
 * runs. It is four times the chunk states the work-efficient scan saves (one per 64 steps), as large
 * as u itself for N = 16, and it is what lets the backward (selective-scan-sequential-grad.ts)
 * start every piece from a saved state instead of walking a chunk to find it.
 */
import type { DType } from '../../../tensor/dtype.js';
import type { ScanSizes } from '../../backend.js';
import type { PooledBuffer } from '../buffer-pool.js';
import type { Executor, Kernel } from '../executor.js';
import { ParamStruct } from '../params.js';
import { enables, GRID_BUILTINS, type KernelDevice, LINEAR_WORKGROUP, load, storageBinding, store } from '../wgsl.js';
import {
  forwardAccess,
  forwardBindings,
  LOG2E,
  Loops,
  SCAN_FIELDS,
  type ScanBuffers,
  type ScanParams,
  scanParams,
  stateInput,
  tileItem,
} from './selective-scan.js';

/** Rows per tile, parts per row, steps per piece: the backward (selective-scan-sequential-grad.ts) cuts its tile alike. */
export const ROWS = 32;
export const SPLIT = 4;
export const STEPS = 16;
const THREADS = ROWS * SPLIT;

/** States per invocation: N over the SPLIT parts, rounded up (the states past N have B = C = 0). */
export const groupOf = (N: number): number => Math.max(1, Math.ceil(N / SPLIT));

/** Workgroup-memory bytes: Δ, Δ·u (a pitch of STEPS + 1, so that rows start in different banks), B, C, and y's parts. */
const sharedBytes = (N: number): number => 4 * (2 * ROWS * (STEPS + 1) + 2 * SPLIT * groupOf(N) * STEPS + SPLIT * ROWS * (STEPS + 1));

/** Tiles of ROWS rows for these sizes. */
const tiles = ({ batch, dim }: ScanSizes): number => batch * Math.ceil(dim / ROWS);

/**
 * Tiles from which the sequential walk is the faster forward. Each tile walks its whole sequence,
 * so the walk needs the tiles to keep the GPU busy all by themselves: on an H200 (132
 * multiprocessors, room for four of these workgroups on each) at len 4096, 256 tiles took 0.53 ms
 * against 0.49 for the work-efficient scan, 384 tiles 0.60 against 0.73.
 */
const MIN_TILES = 384;

/**
 * Whether the sequential walk is the forward for these sizes on this device (see MIN_TILES). Not
 * for N = 0 or len = 0: the work-efficient scan's runner handles those (y = 0, or nothing to do).
 */
export const sequentialFits = (sizes: ScanSizes, device: KernelDevice): boolean =>
  sizes.len > 0 && sizes.N > 0 && tiles(sizes) >= MIN_TILES && sharedBytes(sizes.N) <= device.maxSharedBytes;

/** The workgroup's tile (b, d0) and the invocation's row r and part q; shared with the backward. */
export const SEQUENTIAL_PROLOGUE = `  let tileIndex = ${LINEAR_WORKGROUP};
  if (tileIndex >= params.tiles) { return; } // a folded grid may have a few workgroups too many
  let b = tileIndex / params.tilesPerBatch;
  let d0 = (tileIndex % params.tilesPerBatch) * ROWS; // the tile's first channel
  let r = lid % ROWS;
  let q = lid / ROWS;
  let bc = b * N * params.len; // B and C of batch b start here`;

type Field = keyof ScanParams & string;
const params = new ParamStruct<Field>(SCAN_FIELDS);
const kernels = new Map<string, Kernel<Field>>();

function sequentialKernel(dtype: DType, N: number, unroll: boolean, saveStates: boolean): Kernel<Field> {
  const key = `selectiveScan sequential ${dtype} N=${N}${saveStates ? ' +states' : ''}${unroll ? '' : ' loops'}`;
  let kernel = kernels.get(key);
  if (!kernel) {
    kernel = {
      key,
      bindings: forwardAccess(saveStates),
      params,
      source: () => sequentialSource(key, dtype, N, new Loops(unroll), saveStates),
    };
    kernels.set(key, kernel);
  }
  return kernel;
}

function sequentialSource(key: string, dtype: DType, N: number, L: Loops, saveStates: boolean): string {
  const group = groupOf(N);
  const bindings = [...forwardBindings(dtype), ...(saveStates ? [storageBinding(7, 'pieceStates', 'read_write', 'float32')] : [])];
  const item = tileItem('STEPS');
  const save = saveStates
    ? `
    // The state entering the piece, for the backward.
    if (d0 + r < params.dim) {
${L.states(
  group,
  `let n = q * GROUP + g;
        if (n < N) { pieceStates[((b * params.nChunks + t0 / STEPS) * params.dim + d0 + r) * N + n] = h[g]; }`,
  '      ',
)}
    }`
    : '';
  return `${enables([dtype])}// ${key}
// CPU twin: selectiveScanForward in cpu/selective-scan.ts. The design is in kernels/selective-scan-sequential.ts.
${params.wgsl(bindings.length)}
${bindings.join('\n')}

const ROWS: u32 = ${ROWS}u;       // rows (consecutive d of one batch) per workgroup
const SPLIT: u32 = ${SPLIT}u;      // invocations per row, each with GROUP of the states
const GROUP: u32 = ${group}u;      // states per invocation
const STEPS: u32 = ${STEPS}u;     // steps staged and walked at a time
const THREADS: u32 = ${THREADS}u;  // = ROWS·SPLIT
const N: u32 = ${N}u;          // states per channel
const PITCH: u32 = STEPS + 1u;  // of a row in the stage and the parts: rows start in different banks
const STAGE_DU: u32 = ROWS * PITCH;            // where Δ·u starts in the stage (Δ at 0)
const STAGE_B: u32 = 2u * ROWS * PITCH;        // B of every state over the piece
const STAGE_C: u32 = STAGE_B + SPLIT * GROUP * STEPS; // C, likewise
${LOG2E}

var<workgroup> stage: array<f32, ${2 * ROWS * (STEPS + 1) + 2 * SPLIT * group * STEPS}>;
var<workgroup> parts: array<f32, ${SPLIT * ROWS * (STEPS + 1)}>; // y_t of each (part, row), to be added up

@compute @workgroup_size(THREADS)
fn main(${GRID_BUILTINS}) {
${SEQUENTIAL_PROLOGUE}
  // A row past dim reads channel dim − 1's A: its Δ is 0, so ā = 1 whatever A is.
  let aRow = min(d0 + r, params.dim - 1u) * N;
  var a: array<f32, GROUP>; // A·log₂e, so that ā = exp2(Δ·a) (WGSL's exp is exp2 of x·log₂e anyway)
  var h: array<f32, GROUP>; // the states, carried from the first step to the last
${L.states(
  group,
  `a[g] = ${load('A', 'aRow + min(q * GROUP + g, N - 1u)', dtype)} * LOG2E; // a state past N has B = 0: its h stays 0
    h[g] = 0.0;`,
  '  ',
)}

  for (var t0 = 0u; t0 < params.len; t0 += STEPS) {${save}
    // 1. Stage Δ, Δ·u (0 past dim or len: the clamped index keeps the load in bounds, the select
    //    drops it) and B, C (0 past len or N).
${L.shared(
  ROWS * STEPS,
  THREADS,
  `${item}
      let stepDelta = select(0.0, ${load('delta', 'at', dtype)}, inside);
      stage[rr * PITCH + i % STEPS] = stepDelta;
      stage[STAGE_DU + rr * PITCH + i % STEPS] = stepDelta * select(0.0, ${load('u', 'at', dtype)}, inside);`,
)}
${L.shared(
  SPLIT * group * STEPS,
  THREADS,
  `stage[STAGE_B + i] = ${stateInput('B', '', 'i / STEPS', 't0 + i % STEPS', dtype)};
      stage[STAGE_C + i] = ${stateInput('C', '', 'i / STEPS', 't0 + i % STEPS', dtype)};`,
)}
    workgroupBarrier();

    // 2. Walk the piece: h ← ā·h + b̄ for each of this invocation's states, and its part of y.
${L.steps(
  STEPS,
  (j) => `let dt = stage[r * PITCH + ${j}];
      let dtu = stage[STAGE_DU + r * PITCH + ${j}];
      var part = 0.0;
${L.states(
  group,
  `let at = (q * GROUP + g) * STEPS + ${j};
        h[g] = exp2(dt * a[g]) * h[g] + dtu * stage[STAGE_B + at];
        part += stage[STAGE_C + at] * h[g];`,
  '      ',
)}
      parts[(q * ROWS + r) * PITCH + ${j}] = part;`,
  '    ',
)}
    workgroupBarrier(); // the parts are written, and the stage is free for the next piece

    // 3. y: the SPLIT parts of each (row, step) added up and written along len.
${L.shared(
  ROWS * STEPS,
  THREADS,
  `${item}
      var sum = 0.0;
      for (var k = 0u; k < SPLIT; k++) { sum += parts[(k * ROWS + rr) * PITCH + i % STEPS]; }
      if (inside) { ${store('y', 'at', 'sum', dtype)} }`,
)}
  }

  if (d0 + r < params.dim) {
${L.states(
  group,
  `let n = q * GROUP + g;
    if (n < N) { ${store('lastState', '(b * params.dim + d0 + r) * N + n', 'h[g]', dtype)} }`,
  '    ',
)}
  }
}
`;
}

/** Pieces of a row: the saved states per (batch, dim, state). */
export const pieceCount = (len: number): number => Math.ceil(len / STEPS);

/** Floats of `pieceStates` for these sizes. */
export const pieceStatesSize = ({ batch, dim, len, N }: ScanSizes): number => batch * pieceCount(len) * dim * N;

/**
 * The parameters of both sequential kernels: the work-efficient scan's, with `nChunks` counting
 * pieces, the intervals between saved states here.
 */
export const sequentialParams = (sizes: ScanSizes): ScanParams => ({ ...scanParams(sizes, ROWS), nChunks: pieceCount(sizes.len) });

/**
 * Runs the sequential forward: y and lastState (in `dtype`), and the piece states (f32) when given.
 * The caller has checked `sequentialFits`.
 */
export function runSequentialScan(
  exec: Executor,
  x: ScanBuffers,
  dtype: DType,
  sizes: ScanSizes,
  device: KernelDevice,
  out: { y: PooledBuffer; lastState: PooledBuffer; pieceStates: PooledBuffer | null },
): void {
  const p = sequentialParams(sizes);
  const buffers = [x.u, x.delta, x.A, x.B, x.C, out.y, out.lastState, ...(out.pieceStates ? [out.pieceStates] : [])];
  exec.dispatch('selectiveScan', sequentialKernel(dtype, sizes.N, device.unroll, out.pieceStates !== null), buffers, p, p.tiles);
}
