/**
 * Mamba's selective scan, forward: the recurrence of docs/selective-scan.md fused with its
 * discretisation, as a chunked work-efficient (Blelloch) scan. CPU twin: `selectiveScanForward` in
 * `cpu/selective-scan.ts`. The backward is `selective-scan-grad.ts`.
 *
 * For every row (b, d) and state n, with the step x_t = (ā_t, b̄_t):
 *
 *     ā_t = exp(Δ_t·A[d, n])      b̄_t = Δ_t·B[b, n, t]·u_t
 *     h_t = ā_t·h_{t−1} + b̄_t   (h_0 = 0)          y_t = Σ_n C[b, n, t]·h_t[n]
 *
 * and (a₁, b₁) ∘ (a₂, b₂) = (a₁·a₂, a₂·b₁ + b₂) is "x₁, then x₂": h_t is the b of x_1 ∘ … ∘ x_t.
 *
 * ## Who does what
 *
 * A workgroup owns a **tile of `rows` rows** (consecutive d of one batch b) and walks the sequence
 * in **chunks of `chunkLen` = segs·steps steps**, carrying each (row, n)'s state from chunk to chunk.
 * Invocation (r, seg) owns row r and `steps` consecutive steps, its *segment*, of every chunk:
 *
 *                    chunk c (chunkLen = 64 steps)                 chunk c + 1
 *           seg 0        seg 1        seg 2        seg 3
 *     r 0   [0 .. 16)    [16 .. 32)   [32 .. 48)   [48 .. 64)   │  …
 *     r 1   [0 .. 16)    [16 .. 32)   …                        │
 *     …                                                          │
 *     r 31  …                                                    │   carry[n][r] crosses here
 *
 * (the forward's tiling on a GPU: 32 rows × 4 segments of 16 steps, 128 invocations).
 *
 * Invocations are numbered row-fastest (lid = seg·rows + r), so neighbouring invocations (a subgroup
 * on real GPUs) are neighbouring rows at the same step: they read the same B[b, n, t] and C[b, n, t],
 * which the GPU serves as one broadcast. B and C are shared by all dim channels; a tile reads them
 * once for all its rows instead of once per row.
 *
 * ## One chunk
 *
 *  1. **Stage** Δ and Δ·u of the tile into workgroup memory, reading global memory along len
 *     (coalesced), and, per group of states, B and C over the chunk; each invocation copies its
 *     segment of Δ, Δ·u into registers. (Read straight from global memory inside the per-step
 *     chains, B and C cost a memory latency per step: the first version ran 3× slower.)
 *  2. **Local totals.** Per state n, each invocation composes its segment sequentially:
 *     T = x_first ∘ … ∘ x_last = (Π ā, the state the segment would produce from h = 0).
 *     ā and b̄ live in registers only: no (batch, dim, len, N) tensor ever reaches global memory.
 *  3. **Scan the segment totals** of each (row, n) with Blelloch's up-sweep and down-sweep in
 *     workgroup memory (`upSweep`, `downSweep` below), log₂(segs) levels each. The root is not
 *     cleared to the identity but set to the state entering the chunk, so the down-sweep hands
 *     every segment the actual state h entering it, and the up-sweep's total moves `carry` on.
 *  4. **Apply.** Each invocation re-runs its segment from that state, h_t = ā_t·h_{t−1} + b̄_t,
 *     adding C_t·h_t into its y registers. ā is recomputed rather than kept from step 2: keeping it
 *     for every (n, step) would take N·steps registers per invocation.
 *  5. **Write y** through workgroup memory again, so the stores are coalesced along len.
 *
 * The N states are scanned `group` at a time (8 on a GPU, fewer where workgroup memory is short), so
 * one chunk costs 4 + 2·log₂(segs) barriers per group (B, C staged; local totals; the up-sweep
 * levels; the root; the down-sweep levels; after the apply) and 2 more for y. Work is O(len) per
 * (row, n): `steps` sequential combines per segment twice, plus 2·(segs − 1) tree combines.
 *
 * Steps past len (a partial last chunk) and rows past dim (a partial last tile) get Δ = 0, u = 0,
 * the identity (1, 0): they leave the state alone, so neither needs a branch around the scan.
 *
 * ## Few rows, long sequences
 *
 * A tile walks its chunks one after another, so batch·dim / rows tiles are all the parallelism there
 * is: one 16,384-token sequence of the seed model (batch 1, d_model 128) is 4 workgroups on a GPU
 * with 132 multiprocessors, each walking 256 chunks. When the tiles are fewer than BUSY_WORKGROUPS,
 * each row is cut into `blocks` runs of `blockChunks` consecutive chunks, and the scan is applied
 * once more, one level up, with the blocks as its elements:
 *
 *     row:        [ block 0 ][ block 1 ][ block 2 ][ block 3 ]
 *     1. totals:  T0         T1         T2         T3            each block from h = 0, all at once
 *     2. carry:   h0 = 0 ──T0──► h1 ──T1──► h2 ──T2──► h3        per (row, n), sequential over blocks
 *     3. scan:    [ from h0 ][ from h1 ][ from h2 ][ from h3 ]   each block again, from its h, all at once
 *
 * 1. Mode 'totals' runs the chunks of each block from h = 0 and writes the block's total (Π ā, the
 *    state reached): Π ā over the block is exp(A·ΣΔ), so only ΣΔ per row needs collecting.
 * 2. The carry kernel composes the totals along each row and writes the state entering each block
 *    where that block's first chunk state goes, in chunkStates.
 * 3. The usual kernel, each block's tile starting from that state instead of 0, writes y (and the
 *    other chunk states, which the backward wants anyway).
 *
 * The first pass is half a scan (one exp per step, no C, no y), so a row costs 1.5 scans' work
 * spread over `blocks` times as many workgroups. Rows that fill the GPU run as one block, as before.
 *
 * ## What the backward gets
 *
 * The state entering every chunk, `chunkStates` (batch, dim, nChunks, N), f32, when asked for: the
 * backward recomputes the states inside a chunk from it instead of storing them all. The same
 * kernel without y (mode 'states') makes it when the forward did not.
 */
import type { DType } from '../../../tensor/dtype.js';
import type { ScanInputs, ScanSizes } from '../../backend.js';
import type { BufferPool, PooledBuffer } from '../buffer-pool.js';
import type { Executor, Kernel } from '../executor.js';
import { gpuBufferOf } from '../handle.js';
import { ParamStruct, type ParamType } from '../params.js';
import { enables, GRID_BUILTINS, type KernelDevice, LINEAR_WORKGROUP, load, storageBinding, store } from '../wgsl.js';
import { runFill } from './fill.js';

/**
 * Steps per chunk, for forward and backward alike: the backward reads the states the forward saved
 * at these boundaries. chunkStates holds N/chunkLen floats per element of u.
 */
export const CHUNK_LEN = 64;

/** How a workgroup cuts its tile: rows × chunkLen steps, segs·steps = chunkLen, `group` states at a time. */
export interface ScanTiling {
  readonly rows: number;
  readonly segs: number;
  readonly steps: number;
  readonly group: number;
  /** Loops written out (see `Loops`). */
  readonly unroll: boolean;
}

/** The largest divisor of N that is at most `max`: states per scan round, so rounds are full. */
export function stateGroup(N: number, max: number): number {
  for (let g = Math.min(N, max); g > 1; g--) if (N % g === 0) return g;
  return 1;
}

const FORWARD_ROWS = 32;
const FORWARD_SEGS = 4;
const MAX_GROUP = 8;

/** Workgroup-memory bytes of the forward kernel: the Δ and Δ·u tile, B and C of a group, the trees, carry. */
const forwardSharedBytes = (t: ScanTiling, N: number): number =>
  4 * (2 * t.rows * (CHUNK_LEN + 1) + 2 * t.group * CHUNK_LEN + 2 * t.group * t.segs * t.rows + N * t.rows);

/**
 * The first tiling that fits the device's workgroup memory, trying `rows` rows per tile and then half
 * as many, each with the largest state group first (smaller groups cost more barriers; fewer rows
 * share B and C less).
 */
export function fitTiling(
  rows: number,
  segs: number,
  maxGroup: number,
  N: number,
  bytes: (t: ScanTiling) => number,
  { maxSharedBytes, unroll }: KernelDevice,
): ScanTiling {
  for (let r = rows; r >= 1; r /= 2) {
    for (let max = maxGroup; max >= 1; max--) {
      const tiling = { rows: r, segs, steps: CHUNK_LEN / segs, group: stateGroup(N, max), unroll };
      if (bytes(tiling) <= maxSharedBytes) return tiling;
    }
  }
  throw new Error(`selectiveScan: N = ${N} states need more workgroup memory than this GPU has (${maxSharedBytes} bytes).`);
}

/** The forward tiling for N states on this device. */
export const forwardTiling = (N: number, device: KernelDevice): ScanTiling =>
  fitTiling(FORWARD_ROWS, FORWARD_SEGS, MAX_GROUP, N, (t) => forwardSharedBytes(t, N), device);

/** Number of chunks and of floats in chunkStates for these sizes. */
export const chunkCount = (len: number): number => Math.ceil(len / CHUNK_LEN);
export const chunkStatesSize = ({ batch, dim, len, N }: ScanSizes): number => batch * dim * chunkCount(len) * N;

/** The tiling as part of a kernel's cache key. */
export const tilingKey = (t: ScanTiling): string =>
  `rows=${t.rows} segs=${t.segs} steps=${t.steps} group=${t.group}${t.unroll ? '' : ' loops'}`;

/** The constants every scan kernel declares, from its tiling. */
export function tilingConstants(t: ScanTiling, N: number): string {
  return `const ROWS: u32 = ${t.rows}u;      // rows (consecutive d of one batch) per workgroup
const SEGS: u32 = ${t.segs}u;      // segments per chunk, one per invocation of a row
const STEPS: u32 = ${t.steps}u;    // consecutive steps per segment, scanned sequentially
const CHUNK: u32 = ${t.segs * t.steps}u;   // steps per chunk = SEGS·STEPS
const THREADS: u32 = ${t.rows * t.segs}u; // = ROWS·SEGS
const N: u32 = ${N}u;          // states per channel
const GROUP: u32 = ${t.group}u;     // states scanned together (N is a multiple)
const STRIDE: u32 = CHUNK + 1u; // pitch of a tile row, padded so a tile's rows start in different banks`;
}

/**
 * The trees of segment totals: for tree `x`, arrays `xa`, `xb` hold pair (a, b) of node `pos` of
 * state g's tree for row r at `node(g, pos, r)`. Rows are innermost, so the invocations of one level
 * touch consecutive words.
 */
export function treeDeclarations(names: readonly string[]): string {
  const arrays = names.flatMap((x) => [`${x}a`, `${x}b`]);
  return `${arrays.map((a) => `var<workgroup> ${a}: array<f32, GROUP * SEGS * ROWS>;`).join('\n')}

fn node(g: u32, pos: u32, r: u32) -> u32 { return (g * SEGS + pos) * ROWS + r; }`;
}

/**
 * The up-sweep over the segment totals of every (state g, row r) at once, in place. With SEGS = 8
 * (the drawing of docs/selective-scan.md §5, one column per segment):
 *
 *     pos      0      1      2      3      4      5      6      7
 *     s = 1    └──∘───┘      └──∘───┘      └──∘───┘      └──∘───┘      x[i] = x[i − 1] ∘ x[i]
 *     s = 2           └─────────∘──┘              └─────────∘──┘      x[i] = x[i − 2] ∘ x[i]
 *     s = 4                         └───────────────────────∘──┘      x[i] = x[i − 4] ∘ x[i]
 *
 * Node i = (k + 1)·2s − 1 absorbs the subtree to its left (earlier in time, so on the left of ∘);
 * afterwards node 2s − 1 … of each level holds the total of its subtree and node SEGS − 1 the
 * chunk's. One barrier per level.
 */
export function upSweep(trees: readonly string[]): string {
  const combine = trees
    .map(
      (x) => `          ${x}b[right] = ${x}a[right] * ${x}b[left] + ${x}b[right];  // (a₁, b₁) ∘ (a₂, b₂) = (a₁a₂, a₂b₁ + b₂)
          ${x}a[right] = ${x}a[left] * ${x}a[right];`,
    )
    .join('\n');
  return `      for (var s = 1u; s < SEGS; s <<= 1u) {
        let pairs = SEGS / (2u * s); // combines per tree at this level
        for (var i = lid; i < GROUP * ROWS * pairs; i += THREADS) {
          let q = i / ROWS;
          let right = node(q / pairs, (q % pairs + 1u) * 2u * s - 1u, i % ROWS);
          let left = right - s * ROWS; // node pos − s of the same tree
${combine}
        }
        workgroupBarrier();
      }`;
}

/**
 * The down-sweep. Blelloch clears the root to the identity and gets exclusive prefixes; here the root
 * holds the state h entering the chunk instead (set by the caller between the sweeps). A prefix
 * applied to a known state is just a state, so the down-sweep carries states (the b's) alone:
 *
 *     pos      0      1      2      3      4      5      6      7
 *     root                                                     h_in
 *     s = 4                         ├───────────────────────────┤      h_left = h,  h_right = T_left(h)
 *     s = 2           ├────────────┤               ├────────────┤
 *     s = 1    ├──────┤      ├──────┤      ├──────┤      ├──────┤
 *
 * where T_left(h) = a·h + b with (a, b) the up-sweep total of the left subtree, still in `xa`, `xb`.
 * Afterwards `xb[node(g, seg, r)]` is the state entering segment seg.
 */
export function downSweep(trees: readonly string[]): string {
  const pass = trees
    .map(
      (x) => `          let ${x}Before = ${x}b[right]; // what enters the parent's subtree (h, or q backwards)
          ${x}b[right] = ${x}a[left] * ${x}Before + ${x}b[left]; // … and its right half
          ${x}b[left] = ${x}Before;`,
    )
    .join('\n');
  return `      for (var s = SEGS / 2u; s > 0u; s >>= 1u) {
        let pairs = SEGS / (2u * s);
        for (var i = lid; i < GROUP * ROWS * pairs; i += THREADS) {
          let q = i / ROWS;
          let right = node(q / pairs, (q % pairs + 1u) * 2u * s - 1u, i % ROWS);
          let left = right - s * ROWS;
${pass}
        }
        workgroupBarrier();
      }`;
}

/**
 * How the kernels spell their loops of fixed count: over the steps of a segment, the states of a
 * group, and the items the invocations share.
 *
 * On a GPU they are written out, each iteration a block with its index a constant:
 * - the per-step arrays (Δ, Δ·u, y, …) then see constant indices only and live in registers;
 * - the iterations are independent (the states' multiply-add chains, the loads of a staging loop),
 *   and straight-line code lets them interleave: an invocation issues all its loads before it waits
 *   for the first, and one state's chain runs while another's waits. (On an H200, staging B and C
 *   and writing out the staging loads took the forward at Mamba's size from 5.1 to 1.9 ms.)
 * On a CPU-emulated adapter (lavapipe), LLVM needs 30–40 s to compile a written-out kernel, so there
 * they stay loops, the same arithmetic in the same order, and their counts are multiplied by
 * `params.one` (= 1): a count the compiler cannot see is a loop it does not unroll by itself.
 */
export class Loops {
  constructor(readonly unroll: boolean) {}

  /** A body's lines at `indent` (its first line starts right after the template's backtick). */
  private static place(body: string, indent: string): string {
    const [head = '', ...rest] = body.split('\n');
    const depth = Math.min(...rest.filter((l) => l.trim() !== '').map((l) => l.length - l.trimStart().length));
    return [indent + head, ...rest.map((l) => (l.trim() === '' ? '' : indent + l.slice(depth)))].join('\n');
  }

  /** `body(j)` for the steps j = 0 … STEPS − 1 of a segment (or back down); j is a u32 expression. */
  steps(steps: number, body: (j: string) => string, indent = '        ', order: 'up' | 'down' = 'up'): string {
    if (!this.unroll) {
      const head =
        order === 'up'
          ? 'for (var j = 0u; j < STEPS * params.one; j++) {'
          : `for (var jj = 0u; jj < STEPS * params.one; jj++) {\n${indent}  let j = STEPS - 1u - jj;`;
      return `${indent}${head}\n${Loops.place(body('j'), `${indent}  `)}\n${indent}}`;
    }
    const js = Array.from({ length: steps }, (_, i) => (order === 'up' ? i : steps - 1 - i));
    return js.map((j) => `${indent}{ // step ${j}\n${Loops.place(body(`${j}u`), `${indent}  `)}\n${indent}}`).join('\n');
  }

  /** `body` for the states g = 0 … GROUP − 1 of a group (state n0 + g); `body` reads g. */
  states(group: number, body: string, indent = '      '): string {
    const inner = Loops.place(body, `${indent}  `);
    if (!this.unroll) return `${indent}for (var g = 0u; g < GROUP * params.one; g++) {\n${inner}\n${indent}}`;
    return Array.from({ length: group }, (_, g) => `${indent}{ // state n0 + ${g}\n${indent}  let g = ${g}u;\n${inner}\n${indent}}`).join(
      '\n',
    );
  }

  /** `body` for the items i = lid, lid + THREADS, … below `count`, shared by the workgroup's invocations. */
  shared(count: number, threads: number, body: string, indent = '    '): string {
    if (!this.unroll) {
      return `${indent}for (var i = lid; i < ${count}u * params.one; i += THREADS) {\n${Loops.place(body, `${indent}  `)}\n${indent}}`;
    }
    const inner = Loops.place(body, `${indent}    `);
    const blocks: string[] = [];
    for (let k = 0; k < count; k += threads) {
      const guard = k + threads > count ? `if (i < ${count}u) ` : '';
      blocks.push(`${indent}{\n${indent}  let i = lid + ${k}u;\n${indent}  ${guard}{\n${inner}\n${indent}  }\n${indent}}`);
    }
    return blocks.join('\n');
  }
}

/** The workgroup's place: tile → (b, d0), invocation → (row r, segment seg); shared by both kernels. */
export const TILE_PROLOGUE = `  let workgroup = ${LINEAR_WORKGROUP}; // = tileIndex·blocks + block
  let tileIndex = workgroup / params.blocks; // = b·tilesPerBatch + (d0 / ROWS)
  let block = workgroup % params.blocks;     // which run of blockChunks chunks (0 when the row is one block)
  if (tileIndex >= params.tiles) { return; } // a folded grid may have a few workgroups too many
  let b = tileIndex / params.tilesPerBatch;
  let d0 = (tileIndex % params.tilesPerBatch) * ROWS; // the tile's first channel
  let r = lid % ROWS;
  let seg = lid / ROWS;
  let d = d0 + r;
  let first = seg * STEPS;        // this invocation's first step within a chunk
  let bc = b * N * params.len;    // B and C of batch b start here
  // A row past dim reads channel dim − 1's A: its Δ is 0, so exp(Δ·A) = 1 whatever A is.
  let aRow = min(d, params.dim - 1u) * N;`;

/**
 * B or C at (batch b, state n, step t), 0 past len (the index is clamped, never out of bounds);
 * `start` is where the array begins in its buffer.
 */
export const stateInput = (array: string, start: string, n: string, t: string, dtype: DType): string =>
  `select(0.0, ${load(array, `${start}bc + (${n}) * params.len + min(${t}, params.len - 1u)`, dtype)}, ${t} < params.len)`;

/**
 * What a forward dispatch writes: y (and lastState); y and the chunk states; the chunk states only
 * (the backward's recomputation); or, per block, its total (see "Few rows, long sequences").
 */
export type ForwardMode = 'y' | 'y+states' | 'states' | 'totals';

type Field = 'dim' | 'len' | 'nChunks' | 'tilesPerBatch' | 'tiles' | 'blocks' | 'blockChunks' | 'states' | 'one';
/** The parameters every scan kernel starts with (the backward appends its own). */
export const SCAN_FIELDS: readonly (readonly [Field, ParamType])[] = [
  ['dim', 'u32'],
  ['len', 'u32'],
  ['nChunks', 'u32'],
  ['tilesPerBatch', 'u32'],
  ['tiles', 'u32'],
  ['blocks', 'u32'], // blocks per row (see "Few rows, long sequences")
  ['blockChunks', 'u32'], // chunks per block
  ['states', 'u32'], // N again, as a uniform
  ['one', 'u32'], // 1, as a uniform (see Loops)
];
const params = new ParamStruct<Field>(SCAN_FIELDS);

export type ScanParams = Readonly<Record<Field, number>>;

/** The parameters every scan kernel takes for these sizes, rows per tile and blocks per row. */
export function scanParams({ batch, dim, len, N }: ScanSizes, rows: number, blocks = 1): ScanParams {
  const tilesPerBatch = Math.ceil(dim / rows);
  const nChunks = chunkCount(len);
  const blockChunks = Math.max(1, Math.ceil(nChunks / blocks));
  return {
    dim,
    len,
    nChunks,
    tilesPerBatch,
    tiles: batch * tilesPerBatch,
    blocks: Math.max(1, Math.ceil(nChunks / blockChunks)),
    blockChunks,
    states: N,
    one: 1,
  };
}

const kernels = new Map<string, Kernel<Field>>();

function forwardKernel(dtype: DType, N: number, t: ScanTiling, mode: ForwardMode): Kernel<Field> {
  const key = `selectiveScan ${mode} ${dtype} N=${N} ${tilingKey(t)}`;
  let kernel = kernels.get(key);
  if (!kernel) {
    const bindings: Kernel['bindings'] =
      mode === 'states' || mode === 'totals'
        ? ['read', 'read', 'read', 'read', 'write'] // u, delta, A, B → chunkStates or totals
        : ['read', 'read', 'read', 'read', 'read', 'write', 'write', ...(mode === 'y+states' ? (['write'] as const) : [])];
    kernel = { key, bindings, params, source: () => forwardSource(key, dtype, N, t, mode) };
    kernels.set(key, kernel);
  }
  return kernel;
}

function forwardSource(key: string, dtype: DType, N: number, t: ScanTiling, mode: ForwardMode): string {
  const L = new Loops(t.unroll);
  const withY = mode === 'y' || mode === 'y+states';
  const saveStates = mode === 'y+states' || mode === 'states';
  const totals = mode === 'totals';
  const statesBinding = withY ? 7 : 4;
  const bindings = withY
    ? [
        storageBinding(0, 'u', 'read', dtype),
        storageBinding(1, 'delta', 'read', dtype),
        storageBinding(2, 'A', 'read', dtype),
        storageBinding(3, 'B', 'read', dtype),
        storageBinding(4, 'C', 'read', dtype),
        storageBinding(5, 'y', 'read_write', dtype),
        storageBinding(6, 'lastState', 'read_write', dtype),
      ]
    : [
        storageBinding(0, 'u', 'read', dtype),
        storageBinding(1, 'delta', 'read', dtype),
        storageBinding(2, 'A', 'read', dtype),
        storageBinding(3, 'B', 'read', dtype),
      ];
  if (saveStates) bindings.push(storageBinding(statesBinding, 'chunkStates', 'read_write', 'float32'));
  if (totals) bindings.push(storageBinding(4, 'totals', 'read_write', 'float32'));
  // B and C of the group's states over the chunk, staged in workgroup memory.
  const stageBC = (array: 'B' | 'C') => `tile${array}[i] = ${stateInput(array, '', 'n0 + i / CHUNK', 't0 + i % CHUNK', dtype)};`;

  // Steps 4 and 5 (apply, write y) exist only when y is wanted; 'states' stops at the root.
  const apply = `
${downSweep(['s'])}
      // 4. Apply: re-run the segment from the state entering it, collecting C·h into y.
      // the group's states: independent chains (written out on GPUs, so that they interleave)
${L.states(
  t.group,
  `let a = A[aRow + n0 + g];
        var h = sb[node(g, seg, r)];
${L.steps(
  t.steps,
  (j) => `let at = g * CHUNK + first + ${j};
          h = exp(dt[${j}] * a) * h + dtu[${j}] * tileB[at];
          acc[${j}] += tileC[at] * h;`,
)}`,
  '      ',
)}
      workgroupBarrier(); // the trees and tileB, tileC are refilled by the next group`;
  const writeY = `
    // 5. y through the tile (Δ is in registers by now), then out along len.
${L.steps(t.steps, (j) => `tileDelta[r * STRIDE + first + ${j}] = acc[${j}];`, '    ')}
    workgroupBarrier();
${L.shared(
  t.rows * CHUNK_LEN,
  t.rows * t.segs,
  `let rr = i / CHUNK;
      let t = t0 + i % CHUNK;
      if (d0 + rr < params.dim && t < params.len) {
        ${store('y', '(b * params.dim + d0 + rr) * params.len + t', 'tileDelta[rr * STRIDE + i % CHUNK]', dtype)}
      }`,
)}
    workgroupBarrier(); // the tile is restaged by the next chunk`;
  const lastState = `
  if (block + 1u == params.blocks) {
    for (var i = lid; i < N * ROWS; i += THREADS) {
      let rr = i % ROWS;
      if (d0 + rr < params.dim) { ${store('lastState', '(b * params.dim + d0 + rr) * N + i / ROWS', 'carry[i]', dtype)} }
    }
  }`;
  // The block's total (Π ā, the state it reaches from 0) per (row, n), for the carry pass. Π ā over
  // the block is exp(A·ΣΔ): the segments' sums of Δ are added up per row through the tree arrays.
  const writeTotals = `
  workgroupBarrier();
  sa[node(0u, seg, r)] = deltaSum;
  workgroupBarrier();
  for (var i = lid; i < N * ROWS; i += THREADS) {
    let rr = i % ROWS;
    if (d0 + rr < params.dim) {
      var rowDelta = 0.0;
      for (var k = 0u; k < SEGS; k++) { rowDelta += sa[node(0u, k, rr)]; }
      let at = 2u * (((b * params.dim + d0 + rr) * params.blocks + block) * N + i / ROWS);
      totals[at] = exp(A[(d0 + rr) * N + i / ROWS] * rowDelta);
      totals[at + 1u] = carry[i];
    }
  }`;
  // A block after the first starts from the state the carry pass left in chunkStates.
  const initCarry = saveStates
    ? `carry[i] = select(0.0, chunkStates[min(((b * params.dim + d0 + i % ROWS) * params.nChunks + cBegin) * N + i / ROWS, arrayLength(&chunkStates) - 1u)], block > 0u && d0 + i % ROWS < params.dim);`
    : 'carry[i] = 0.0;';
  const save = saveStates
    ? `if (d0 + rr < params.dim) { chunkStates[((b * params.dim + d0 + rr) * params.nChunks + c) * N + n] = hIn; }`
    : '';

  return `${enables([dtype])}// ${key}
// CPU twin: selectiveScanForward in cpu/selective-scan.ts. The design is drawn in kernels/selective-scan.ts.
${params.wgsl(bindings.length)}
${bindings.join('\n')}

${tilingConstants(t, N)}

var<workgroup> tileDelta: array<f32, ROWS * STRIDE>;  // Δ of the tile's chunk (later its y)
var<workgroup> tileDeltaU: array<f32, ROWS * STRIDE>; // Δ·u
var<workgroup> tileB: array<f32, GROUP * CHUNK>;      // B of the group's states over the chunk
${withY ? 'var<workgroup> tileC: array<f32, GROUP * CHUNK>;      // C, likewise\n' : ''}var<workgroup> carry: array<f32, N * ROWS>;           // h entering the chunk, per (n, row)
${treeDeclarations(['s'])}

@compute @workgroup_size(THREADS)
fn main(${GRID_BUILTINS}) {
${TILE_PROLOGUE}

  let cBegin = block * params.blockChunks;
  let cEnd = min(params.nChunks, cBegin + params.blockChunks);
  for (var i = lid; i < N * ROWS; i += THREADS) {
    ${initCarry}
  }
${withY ? '  var acc: array<f32, STEPS>; // y of this segment, summed over the states\n' : ''}  var dt: array<f32, STEPS>;  // Δ of this invocation's segment
  var dtu: array<f32, STEPS>; // Δ·u
${totals ? '  var deltaSum = 0.0;         // Σ Δ over this segment in every chunk of the block\n' : ''}
  for (var c = cBegin; c < cEnd; c++) {
    let t0 = c * CHUNK;
    // 1. Stage Δ and Δ·u, consecutive invocations reading consecutive steps of a row (0 past dim
    //    or len: the clamped index keeps the load in bounds, the select drops it).
${L.shared(
  t.rows * CHUNK_LEN,
  t.rows * t.segs,
  `let rr = i / CHUNK;
      let t = t0 + i % CHUNK;
      let at = (b * params.dim + min(d0 + rr, params.dim - 1u)) * params.len + min(t, params.len - 1u);
      let inside = d0 + rr < params.dim && t < params.len;
      let stepDelta = select(0.0, ${load('delta', 'at', dtype)}, inside);
      tileDelta[rr * STRIDE + i % CHUNK] = stepDelta;
      tileDeltaU[rr * STRIDE + i % CHUNK] = stepDelta * select(0.0, ${load('u', 'at', dtype)}, inside);`,
)}
${withY ? L.steps(t.steps, (j) => `acc[${j}] = 0.0;`, '    ') : ''}

    // params.states = N, read from the uniforms so that no compiler unrolls this loop (which
    // multiplied the code by N / GROUP and the compile time on lavapipe with it).
    for (var n0 = 0u; n0 < params.states; n0 += GROUP) {
${L.shared(t.group * CHUNK_LEN, t.rows * t.segs, withY ? `${stageBC('B')}\n      ${stageBC('C')}` : stageBC('B'), '      ')}
      workgroupBarrier();
${L.steps(
  t.steps,
  (j) => `dt[${j}] = tileDelta[r * STRIDE + first + ${j}];
        dtu[${j}] = tileDeltaU[r * STRIDE + first + ${j}];`,
  '      ',
)}
      // 2. Local totals: this segment's steps composed, (Π ā, the state reached from 0).
      // the group's states: independent chains (written out on GPUs, so that they interleave)
${L.states(
  t.group,
  `let a = A[aRow + n0 + g];
        var ta = 1.0;
        var tb = 0.0;
${L.steps(
  t.steps,
  (j) => `let abar = exp(dt[${j}] * a);
          ta = ta * abar;
          tb = abar * tb + dtu[${j}] * tileB[g * CHUNK + first + ${j}];`,
)}
        sa[node(g, seg, r)] = ta;
        sb[node(g, seg, r)] = tb;`,
  '      ',
)}
      workgroupBarrier();

      // 3. Scan the totals: up-sweep, then put the carried state at the root, then down-sweep.
${upSweep(['s'])}
      for (var i = lid; i < GROUP * ROWS; i += THREADS) {
        let rr = i % ROWS;
        let n = n0 + i / ROWS;
        let root = node(i / ROWS, SEGS - 1u, rr);
        let hIn = carry[n * ROWS + rr];
        ${save}
        carry[n * ROWS + rr] = sa[root] * hIn + sb[root]; // the state leaving the chunk
        sb[root] = hIn;
      }
      workgroupBarrier();${
        withY
          ? apply
          : `
      // Without y the chunk is done once carry has moved on; the next group restages tileB.`
      }
    }${withY ? writeY : ''}${totals ? `\n${L.steps(t.steps, (j) => `deltaSum += dt[${j}];`, '    ')}` : ''}
  }${withY ? lastState : ''}${totals ? writeTotals : ''}
}
`;
}

/** The five inputs as the kernels bind them, all of one dtype. */
export interface ScanBuffers {
  readonly u: PooledBuffer;
  readonly delta: PooledBuffer;
  readonly A: PooledBuffer;
  readonly B: PooledBuffer;
  readonly C: PooledBuffer;
}

/** The inputs' GPU buffers, checked to be live, large enough and all of u's dtype (the kernels' one). */
export function scanBuffers(x: ScanInputs, { batch, dim, len, N }: ScanSizes, op: string): { buffers: ScanBuffers; dtype: DType } {
  const u = gpuBufferOf(x.u, op, batch * dim * len);
  const { dtype } = u;
  const buffers = {
    u: u.pooled,
    delta: gpuBufferOf(x.delta, op, batch * dim * len, dtype).pooled,
    A: gpuBufferOf(x.A, op, dim * N, dtype).pooled,
    B: gpuBufferOf(x.B, op, batch * N * len, dtype).pooled,
    C: gpuBufferOf(x.C, op, batch * N * len, dtype).pooled,
  };
  return { buffers, dtype };
}

/** Aim for at least this many workgroups: a few per multiprocessor of a large GPU (132 on an H200). */
const BUSY_WORKGROUPS = 256;

/** Blocks per row: 1 while the tiles alone fill the GPU, else enough to reach BUSY_WORKGROUPS. */
const blocksFor = (tiles: number, nChunks: number): number =>
  Math.max(1, Math.min(nChunks, Math.ceil(BUSY_WORKGROUPS / Math.max(1, tiles))));

/**
 * The carry pass across blocks, per (row, n): the state entering block k is block k − 1's total
 * applied to the state entering k − 1, written where block k's first chunk state goes,
 *
 *     h_in[0] = 0,    h_in[k + 1] = Π ā[k] · h_in[k] + h[k]        ((Π ā, h) = totals of block k)
 *
 * sequentially over the blocks (at most BUSY_WORKGROUPS / tiles of them), one invocation per (row, n).
 */
const carryParams = new ParamStruct<'rows' | 'states' | 'blocks' | 'blockChunks' | 'nChunks'>([
  ['rows', 'u32'],
  ['states', 'u32'],
  ['blocks', 'u32'],
  ['blockChunks', 'u32'],
  ['nChunks', 'u32'],
]);
const CARRY_WORKGROUP = 64;
const carryKernel: Kernel<'rows' | 'states' | 'blocks' | 'blockChunks' | 'nChunks'> = {
  key: 'selectiveScan carry across blocks',
  bindings: ['read', 'write'],
  params: carryParams,
  source: () => `// selectiveScan carry across blocks: the middle pass of a row split into blocks (kernels/selective-scan.ts).
${carryParams.wgsl(2)}
${storageBinding(0, 'totals', 'read', 'float32')}
${storageBinding(1, 'chunkStates', 'read_write', 'float32')}

@compute @workgroup_size(${CARRY_WORKGROUP})
fn main(${GRID_BUILTINS}) {
  let i = (${LINEAR_WORKGROUP}) * ${CARRY_WORKGROUP}u + lid; // = row·N + n
  if (i >= params.rows * params.states) { return; }
  let row = i / params.states;
  let n = i % params.states;
  var h = 0.0;
  for (var k = 0u; k < params.blocks; k++) {
    chunkStates[(row * params.nChunks + k * params.blockChunks) * params.states + n] = h;
    let at = 2u * ((row * params.blocks + k) * params.states + n);
    h = totals[at] * h + totals[at + 1u];
  }
}
`,
};

/**
 * Runs the forward: y and lastState (in `dtype`), and chunkStates (f32) when given. Without y and
 * lastState (`out.y` null), only chunkStates: the backward's first dispatch when the forward saved none.
 *
 * When the rows' tiles are too few to fill the GPU (small batch·dim), each row is cut into blocks of
 * chunks that run side by side, in three dispatches (see "Few rows, long sequences"); `pool` lends
 * the buffers they need between them.
 */
export function runSelectiveScan(
  exec: Executor,
  pool: BufferPool,
  x: ScanBuffers,
  dtype: DType,
  sizes: ScanSizes,
  device: KernelDevice,
  out: { y: PooledBuffer; lastState: PooledBuffer; chunkStates: PooledBuffer | null } | { y: null; chunkStates: PooledBuffer },
): void {
  const { batch, dim, len, N } = sizes;
  if (N === 0 && out.y) runFill(exec, 'selectiveScan', out.y, batch * dim * len, 0, dtype); // no states: y = 0
  if (batch * dim * N === 0) return;
  const op = out.y ? 'selectiveScan' : 'selectiveScanGrad';
  const tiling = forwardTiling(N, device);
  const tiles = batch * Math.ceil(dim / tiling.rows);
  const p = scanParams(sizes, tiling.rows, blocksFor(tiles, chunkCount(len)));
  if (out.y === null && len === 0) return;
  const temps: PooledBuffer[] = [];
  let chunkStates = out.chunkStates;
  if (p.blocks > 1) {
    // 1. Each block's total from h = 0; 2. the states entering the blocks, into chunkStates; then
    //    3. below, every block again from its entering state.
    chunkStates ??= pool.acquire(op, 4 * chunkStatesSize(sizes)); // where the carry pass leaves them
    const totals = pool.acquire(op, 4 * 2 * batch * dim * p.blocks * N);
    temps.push(totals, ...(chunkStates === out.chunkStates ? [] : [chunkStates]));
    exec.dispatch(op, forwardKernel(dtype, N, tiling, 'totals'), [x.u, x.delta, x.A, x.B, totals], p, p.tiles * p.blocks);
    const carry = { rows: batch * dim, states: N, blocks: p.blocks, blockChunks: p.blockChunks, nChunks: p.nChunks };
    exec.dispatch(op, carryKernel, [totals, chunkStates], carry, Math.ceil((batch * dim * N) / CARRY_WORKGROUP));
  }
  if (out.y === null) {
    exec.dispatch(op, forwardKernel(dtype, N, tiling, 'states'), [x.u, x.delta, x.A, x.B, out.chunkStates], p, p.tiles * p.blocks);
  } else {
    const mode: ForwardMode = chunkStates ? 'y+states' : 'y';
    const buffers = [x.u, x.delta, x.A, x.B, x.C, out.y, out.lastState, ...(chunkStates ? [chunkStates] : [])];
    exec.dispatch(op, forwardKernel(dtype, N, tiling, mode), buffers, p, p.tiles * p.blocks);
  }
  for (const t of temps) pool.release(t); // reused only by later commands, which run after these
}
