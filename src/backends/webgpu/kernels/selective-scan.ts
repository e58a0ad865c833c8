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
 * The tile's invocations are (row r, part q, segment seg): invocation (r, q, seg) owns row r, the
 * `steps` consecutive steps of segment seg of every chunk, and `group` of the N states — part q of
 * each *round* of split·group states:
 *
 *                    chunk c (chunkLen = 64 steps)       chunk c + 1
 *                    seg 0          seg 1
 *     r 0, q 0       [0 .. 32)      [32 .. 64)        │  …        states 0–3 of the round
 *     r 0, q 1       [0 .. 32)      [32 .. 64)        │           states 4–7
 *     …                                               │
 *     r 15, q 3      …                                │   carry[n][r] crosses here
 *
 * (the forward's tiling on a GPU: 16 rows × 4 parts × 2 segments of 32 steps, 128 invocations, each
 * with 4 of the 16 states of Mamba's N).
 *
 * Invocations are numbered row-fastest (lid = (seg·split + q)·rows + r), so neighbouring
 * invocations (a subgroup on real GPUs) are neighbouring rows at the same step: they read the same
 * B[b, n, t] and C[b, n, t], which the GPU serves as one broadcast. B and C are shared by all dim
 * channels; a tile reads them once for all its rows instead of once per row.
 *
 * ## One chunk
 *
 *  1. **Stage** Δ and Δ·u of the tile into workgroup memory, reading global memory along len
 *     (coalesced), and, per round, B and C of its states over the chunk; each invocation copies its
 *     segment of Δ, Δ·u into registers. (Read straight from global memory inside the per-step
 *     chains, B and C cost a memory latency per step: the first version ran 3× slower.)
 *  2. **Local totals.** For each of its states, each invocation composes its segment sequentially:
 *     T = x_first ∘ … ∘ x_last = (Π ā, the state the segment would produce from h = 0).
 *     ā and b̄ live in registers only: no (batch, dim, len, N) tensor ever reaches global memory.
 *  3. **Scan the segment totals** of each (row, n) with Blelloch's up-sweep and down-sweep in
 *     workgroup memory (`upSweep`, `downSweep` below), one invocation per tree. The root is not
 *     cleared to the identity but set to the state entering the chunk, so the down-sweep hands
 *     every segment the actual state h entering it, and the up-sweep's total moves `carry` on.
 *  4. **Apply.** Each invocation re-runs its segment from that state, h_t = ā_t·h_{t−1} + b̄_t,
 *     adding C_t·h_t into its y registers. ā is written as computed again, but the compiler sees
 *     the same exp2 of the same values and keeps step 2's in registers (the H200's machine code
 *     has 128 exp2 a chunk, not 256): with the rest that is 253 registers per invocation, and so
 *     two workgroups per multiprocessor. Forcing it to compute ā again saved 13 registers and,
 *     on a variant of this kernel, took 0.90 ms against 0.78 (bench/RESULTS.md, seventh session).
 *  5. **Write y**: the split parts of each (row, step) meet in workgroup memory, are added, and go
 *     out coalesced along len.
 *
 * One chunk costs 3 barriers per round (B, C staged; local totals; the trees), 1 between rounds and
 * 3 for y (before and after its parts are written, after they are summed): 6 for Mamba's N = 16 in
 * one round. Work is O(len) per (row, n): `steps` sequential combines per segment twice, plus
 * 2·(segs − 1) tree combines.
 *
 * **Why this shape (measured on an H200).** Through Vulkan each multiprocessor gives its workgroups
 * 64 KB of workgroup memory between them, so a kernel using 42 KB ran one workgroup per
 * multiprocessor: the time doubled from 132 to 264 workgroups. (Registers bind the shape below
 * first: 128 invocations × 253 registers, two workgroups per multiprocessor.) Hence one `tile`
 * array that holds Δ, Δ·u, B, C and later y's parts (22 KB in all), and the trees swept one per
 * invocation (their level-by-level barriers were a third of the time). Long segments beat more of
 * them: 2 × 32 steps ran in 0.97 ms at Mamba's (8, 1536, 4096, 16), 4 × 16 in 1.34 ms; 32 rows × 4
 * segments of 16 steps × all 16 states per invocation (the first design) in 1.89 ms.
 *
 * Steps past len (a partial last chunk), rows past dim (a partial last tile) and states past N
 * (a partial last round: Δ·B = 0, C = 0) leave the state alone or add nothing, so none needs a
 * branch around the scan.
 *
 * ## Few rows, long sequences
 *
 * A tile walks its chunks one after another, so batch·dim / rows tiles are all the parallelism there
 * is: one 16,384-token sequence of the seed model (batch 1, 128 channels) is 8 workgroups on a GPU
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
 * ## Many rows: the sequential walk instead
 *
 * What the segments of a chunk buy is parallelism along len, paid for with the second pass over
 * every step and the registers that keep ā for it. With rows enough for three or more workgroups of
 * 32 rows per multiprocessor, the rows alone keep the GPU busy, and `selective-scan-sequential.ts`,
 * which walks each row's steps in order in one pass, is faster (0.58 against 0.70 ms at Mamba's
 * (8, 1536, 4096, 16) on an H200). The backend picks it by `sequentialFits`; the backward reads the
 * chunk states either forward saves.
 *
 * ## What the backward gets
 *
 * The state entering every chunk, `chunkStates` (batch, dim, nChunks, N), f32, when asked for: the
 * backward recomputes the states inside a chunk from it instead of storing them all. The same
 * kernel without y (mode 'states') makes it when the forward did not.
 */
import type { DType } from '../../../tensor/dtype.js';
import type { ScanInputs, ScanSizes } from '../../backend.js';
import { type BufferPool, type PooledBuffer, Temporaries } from '../buffer-pool.js';
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

/**
 * How a workgroup cuts its tile: `rows` rows × `split` invocations per row × `segs` segments of
 * `steps` steps (segs·steps = chunkLen). Each invocation takes `group` states of a round of
 * split·group states, and the N states go through the scan one round at a time.
 */
export interface ScanTiling {
  readonly rows: number;
  readonly split: number;
  readonly segs: number;
  readonly steps: number;
  readonly group: number;
  /** Loops written out (see `Loops`). */
  readonly unroll: boolean;
}

/** N rounded up to whole rounds: the states the kernels scan (those past N have B = C = 0). */
export const paddedStates = (t: ScanTiling, N: number): number => Math.ceil(N / (t.split * t.group)) * t.split * t.group;

const FORWARD_ROWS = 16;
const FORWARD_SPLIT = 4;
const FORWARD_SEGS = 2;
/** States per invocation and round, at most: each keeps its ā over a segment in registers. */
const MAX_GROUP = 4;

/** Workgroup-memory floats of a tile row or a state over a chunk, padded so that rows start in different banks. */
export const STRIDE = CHUNK_LEN + 1;

/** Workgroup-memory bytes of the forward kernel: its tile, carry and the trees. */
const forwardSharedBytes = (t: ScanTiling, N: number): number =>
  4 * (forwardTileFloats(t, true) + paddedStates(t, N) * t.rows + 2 * t.split * t.group * t.segs * t.rows);

/**
 * The tiling that fits the device's workgroup memory: `rows` rows per tile, or half as many, and so
 * on (fewer rows share B and C less). Each of `split` invocations of a (row, segment) takes up to
 * MAX_GROUP of the N states per round (a state's ā over the segment stays in its registers).
 */
export function fitTiling(
  { rows, split, segs }: { readonly rows: number; readonly split: number; readonly segs: number },
  N: number,
  bytes: (t: ScanTiling) => number,
  { maxSharedBytes, unroll }: KernelDevice,
): ScanTiling {
  const parts = Math.max(1, Math.min(split, N));
  const group = Math.min(MAX_GROUP, Math.ceil(N / parts));
  for (let r = rows; r >= 1; r /= 2) {
    const tiling = { rows: r, split: parts, segs, steps: CHUNK_LEN / segs, group, unroll };
    if (bytes(tiling) <= maxSharedBytes) return tiling;
  }
  throw new Error(`selectiveScan: N = ${N} states need more workgroup memory than this GPU has (${maxSharedBytes} bytes).`);
}

/** The forward tiling for N states on this device. */
export function forwardTiling(N: number, device: KernelDevice): ScanTiling {
  return fitTiling({ rows: FORWARD_ROWS, split: FORWARD_SPLIT, segs: FORWARD_SEGS }, N, (t) => forwardSharedBytes(t, N), device);
}

/** Number of chunks and of floats in chunkStates for these sizes. */
export const chunkCount = (len: number): number => Math.ceil(len / CHUNK_LEN);
export const chunkStatesSize = ({ batch, dim, len, N }: ScanSizes): number => batch * dim * chunkCount(len) * N;

/** The tiling as part of a kernel's cache key. */
export const tilingKey = (t: ScanTiling): string =>
  `rows=${t.rows} split=${t.split} segs=${t.segs} steps=${t.steps} group=${t.group}${t.unroll ? '' : ' loops'}`;

/** The constants every scan kernel declares, from its tiling. */
export function tilingConstants(t: ScanTiling, N: number): string {
  return `const ROWS: u32 = ${t.rows}u;      // rows (consecutive d of one batch) per workgroup
const SPLIT: u32 = ${t.split}u;     // invocations per (row, segment), each with GROUP states of a round
const SEGS: u32 = ${t.segs}u;      // segments per chunk
const STEPS: u32 = ${t.steps}u;    // consecutive steps per segment, scanned sequentially
const CHUNK: u32 = ${t.segs * t.steps}u;   // steps per chunk = SEGS·STEPS
const THREADS: u32 = ${t.rows * t.split * t.segs}u; // = ROWS·SPLIT·SEGS
const N: u32 = ${N}u;          // states per channel
const GROUP: u32 = ${t.group}u;     // states per invocation in a round
const ROUND: u32 = ${t.split * t.group}u;     // states scanned together = SPLIT·GROUP
const NP: u32 = ${paddedStates(t, N)}u;       // N rounded up to whole rounds (the states past N are all 0)
const STRIDE: u32 = CHUNK + 1u; // pitch of a tile row, padded so a tile's rows start in different banks`;
}

/** WGSL's exp(x) is exp2(x·log₂e): the kernels take A times log₂e once and call exp2. */
export const LOG2E = 'const LOG2E: f32 = 1.4426950408889634;';

/**
 * The trees of segment totals: pair (a, b) of node `pos` of the tree of state g (of the round) and
 * row r is at index `node(g, pos, r)` of its tree's two arrays. Rows are innermost, so neighbouring
 * invocations touch consecutive words. `TreeAt(x, part, i)` spells element i of array `part` of
 * tree x: each kernel keeps its trees in a stretch of a workgroup array that it reuses in turn.
 */
export type TreeAt = (x: string, part: 'a' | 'b', i: string) => string;
export const TREE_NODE = 'fn node(g: u32, pos: u32, r: u32) -> u32 { return (g * SEGS + pos) * ROWS + r; }';

/**
 * The up-sweep over the segment totals of tree (state g, row rr), in place. With SEGS = 8 (the
 * drawing of docs/selective-scan.md §5, one column per segment):
 *
 *     pos      0      1      2      3      4      5      6      7
 *     s = 1    └──∘───┘      └──∘───┘      └──∘───┘      └──∘───┘      x[i] = x[i − 1] ∘ x[i]
 *     s = 2           └─────────∘──┘              └─────────∘──┘      x[i] = x[i − 2] ∘ x[i]
 *     s = 4                         └───────────────────────∘──┘      x[i] = x[i − 4] ∘ x[i]
 *
 * Node i = (k + 1)·2s − 1 absorbs the subtree to its left (earlier in time, so on the left of ∘);
 * afterwards node 2s − 1 … of each level holds the total of its subtree and node SEGS − 1 the
 * chunk's.
 *
 * One invocation sweeps a whole tree, level after level, and the ROUND·ROWS trees of a round run
 * side by side. A tree has only SEGS − 1 combines per sweep, so splitting its levels over
 * invocations would buy little parallelism and cost a barrier per level; on an H200 those barriers
 * were a third of the forward's time.
 */
export function upSweep(trees: readonly string[], at: TreeAt): string {
  const combine = trees
    .map(
      (
        x,
      ) => `${at(x, 'b', 'right')} = ${at(x, 'a', 'right')} * ${at(x, 'b', 'left')} + ${at(x, 'b', 'right')};  // (a₁, b₁) ∘ (a₂, b₂) = (a₁a₂, a₂b₁ + b₂)
            ${at(x, 'a', 'right')} = ${at(x, 'a', 'left')} * ${at(x, 'a', 'right')};`,
    )
    .join('\n            ');
  return `        for (var s = 1u; s < SEGS; s <<= 1u) {
          for (var pos = 2u * s - 1u; pos < SEGS; pos += 2u * s) {
            let right = node(g, pos, rr);
            let left = node(g, pos - s, rr);
            ${combine}
          }
        }`;
}

/**
 * The down-sweep of tree (state g, row rr). Blelloch clears the root to the identity and gets
 * exclusive prefixes; here the root holds the state h entering the chunk instead (set by the caller
 * between the sweeps). A prefix applied to a known state is just a state, so the down-sweep carries
 * states (the b's) alone:
 *
 *     pos      0      1      2      3      4      5      6      7
 *     root                                                     h_in
 *     s = 4                         ├───────────────────────────┤      h_left = h,  h_right = T_left(h)
 *     s = 2           ├────────────┤               ├────────────┤
 *     s = 1    ├──────┤      ├──────┤      ├──────┤      ├──────┤
 *
 * where T_left(h) = a·h + b with (a, b) the up-sweep total of the left subtree, still in the tree.
 * Afterwards the b of node (g, seg, rr) is the state entering segment seg.
 */
export function downSweep(trees: readonly string[], at: TreeAt): string {
  const pass = trees
    .map(
      (x) => `let ${x}Before = ${at(x, 'b', 'right')}; // what enters the parent's subtree (h, or q backwards)
            ${at(x, 'b', 'right')} = ${at(x, 'a', 'left')} * ${x}Before + ${at(x, 'b', 'left')}; // … and its right half
            ${at(x, 'b', 'left')} = ${x}Before;`,
    )
    .join('\n            ');
  return `        for (var s = SEGS / 2u; s > 0u; s >>= 1u) {
          for (var pos = 2u * s - 1u; pos < SEGS; pos += 2u * s) {
            let right = node(g, pos, rr);
            let left = node(g, pos - s, rr);
            ${pass}
          }
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

  /** `body(i)` for i = 0 … count − 1, a u32 expression: a fixed count of independent items. */
  times(count: number, body: (i: string) => string, indent = '        '): string {
    if (!this.unroll) {
      return `${indent}for (var i = 0u; i < ${count}u * params.one; i++) {\n${Loops.place(body('i'), `${indent}  `)}\n${indent}}`;
    }
    return Array.from({ length: count }, (_, i) => `${indent}{\n${Loops.place(body(`${i}u`), `${indent}  `)}\n${indent}}`).join('\n');
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

/** The workgroup's place: tile → (b, d0), invocation → (row r, part q, segment seg); shared by both kernels. */
export const TILE_PROLOGUE = `  let workgroup = ${LINEAR_WORKGROUP}; // = tileIndex·blocks + block
  let tileIndex = workgroup / params.blocks; // = b·tilesPerBatch + (d0 / ROWS)
  let block = workgroup % params.blocks;     // which run of blockChunks chunks (0 when the row is one block)
  if (tileIndex >= params.tiles) { return; } // a folded grid may have a few workgroups too many
  let b = tileIndex / params.tilesPerBatch;
  let d0 = (tileIndex % params.tilesPerBatch) * ROWS; // the tile's first channel
  let r = lid % ROWS;
  let q = (lid / ROWS) % SPLIT; // which GROUP states of a round
  let seg = lid / (ROWS * SPLIT);
  let d = d0 + r;
  let first = seg * STEPS;        // this invocation's first step within a chunk
  let bc = b * N * params.len;    // B and C of batch b start here
  // A row past dim reads channel dim − 1's A: its Δ is 0, so exp(Δ·A) = 1 whatever A is.
  let aRow = min(d, params.dim - 1u) * N;`;

/**
 * Item i of the tile's `steps` steps from `start` (a chunk, or the sequential pass's piece) of a
 * (batch, dim, len) array — Δ, u, dy, or y, du, dΔ: its row rr and step t, the index `at` of [b, d0 + rr, t]
 * clamped into the array, and whether that is `inside` dim and len. Staging loads at the clamped
 * index and drops what is outside (0: the identity step); results are written only inside. Shared
 * by the scan kernels.
 */
export const tileItem = (steps: string, start = 't0'): string => `let rr = i / ${steps};
      let t = ${start} + i % ${steps};
      let at = (b * params.dim + min(d0 + rr, params.dim - 1u)) * params.len + min(t, params.len - 1u);
      let inside = d0 + rr < params.dim && t < params.len;`;

/**
 * B or C at (batch b, state n, step t), 0 past len or N (the index is clamped, never out of bounds);
 * `start` is where the array begins in its buffer.
 */
export const stateInput = (array: string, start: string, n: string, t: string, dtype: DType): string =>
  `select(0.0, ${load(array, `${start}bc + min(${n}, N - 1u) * params.len + min(${t}, params.len - 1u)`, dtype)}, ${t} < params.len && ${n} < N)`;

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
        : forwardAccess(mode === 'y+states');
    kernel = { key, bindings, params, source: () => forwardSource(key, dtype, N, t, mode) };
    kernels.set(key, kernel);
  }
  return kernel;
}

/** Floats of the forward's `tile`: Δ, Δ·u and B (and C) of a round over the chunk; later y's parts. */
function forwardTileFloats(t: ScanTiling, withY: boolean): number {
  const stage = (2 * t.rows + (withY ? 2 : 1) * t.split * t.group) * STRIDE;
  return withY ? Math.max(stage, t.split * t.rows * STRIDE) : stage;
}

/** How a forward that writes y uses its bindings (`forwardBindings`), with the chunk states after them when saved. */
export const forwardAccess = (saveStates: boolean): Kernel['bindings'] => [
  ...(['read', 'read', 'read', 'read', 'read', 'write', 'write'] as const),
  ...(saveStates ? (['write'] as const) : []),
];

/** The bindings of a forward that writes y: the five inputs, y and lastState (the chunk states go at 7). */
export const forwardBindings = (dtype: DType): string[] => [
  storageBinding(0, 'u', 'read', dtype),
  storageBinding(1, 'delta', 'read', dtype),
  storageBinding(2, 'A', 'read', dtype),
  storageBinding(3, 'B', 'read', dtype),
  storageBinding(4, 'C', 'read', dtype),
  storageBinding(5, 'y', 'read_write', dtype),
  storageBinding(6, 'lastState', 'read_write', dtype),
];

function forwardSource(key: string, dtype: DType, N: number, t: ScanTiling, mode: ForwardMode): string {
  const L = new Loops(t.unroll);
  const withY = mode === 'y' || mode === 'y+states';
  const saveStates = mode === 'y+states' || mode === 'states';
  const totals = mode === 'totals';
  const statesBinding = withY ? 7 : 4;
  const bindings = withY
    ? forwardBindings(dtype)
    : [
        storageBinding(0, 'u', 'read', dtype),
        storageBinding(1, 'delta', 'read', dtype),
        storageBinding(2, 'A', 'read', dtype),
        storageBinding(3, 'B', 'read', dtype),
      ];
  if (saveStates) bindings.push(storageBinding(statesBinding, 'chunkStates', 'read_write', 'float32'));
  if (totals) bindings.push(storageBinding(4, 'totals', 'read_write', 'float32'));
  const threads = t.rows * t.split * t.segs;
  const round = t.split * t.group;
  // B and C of the round's states over the chunk, staged in workgroup memory (0 past N and len).
  const stageBC = (array: 'B' | 'C') =>
    `tile[TILE_${array} + (i / CHUNK) * STRIDE + i % CHUNK] = ${stateInput(array, '', 'n0 + i / CHUNK', 't0 + i % CHUNK', dtype)};`;
  const tree: TreeAt = (_, part, i) => `trees[TREE_${part.toUpperCase()} + ${i}]`;
  // Where state g of this invocation's group finds B (or C, from TILE_C) at step j of its segment.
  const bcAt = (j: string) => `(q * GROUP + g) * STRIDE + first + ${j}`;

  // Steps 4 and 5 (apply, y) exist only when y is wanted; 'states' and 'totals' stop at the root.
  const apply = `
      // 4. Apply: re-run the segment from the state entering it, collecting C·h.
${L.states(
  t.group,
  `let a = ${load('A', 'aRow + min(n0 + q * GROUP + g, N - 1u)', dtype)} * LOG2E; // as in step 2
        var h = trees[TREE_B + node(q * GROUP + g, seg, r)];
${L.steps(
  t.steps,
  (j) => `let at = ${bcAt(j)};
          h = exp2(dt[${j}] * a) * h + dtu[${j}] * tile[TILE_B + at];
          acc[${j}] += tile[TILE_C + at] * h;`,
)}`,
  '      ',
)}`;
  const writeY = `
    // 5. y: each invocation's part (its states' share) into the tile, once every invocation is done
    //    with B and C; then the SPLIT parts of each (row, step) added up and written along len.
    workgroupBarrier();
${L.steps(t.steps, (j) => `tile[(q * ROWS + r) * STRIDE + first + ${j}] = acc[${j}];`, '    ')}
    workgroupBarrier();
${L.shared(
  t.rows * CHUNK_LEN,
  threads,
  `${tileItem('CHUNK')}
      var sum = 0.0;
      for (var k = 0u; k < SPLIT; k++) { sum += tile[(k * ROWS + rr) * STRIDE + i % CHUNK]; }
      if (inside) { ${store('y', 'at', 'sum', dtype)} }`,
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
  if (q == 0u) { trees[TREE_A + node(0u, seg, r)] = deltaSum; }
  workgroupBarrier();
  for (var i = lid; i < N * ROWS; i += THREADS) {
    let rr = i % ROWS;
    if (d0 + rr < params.dim) {
      var rowDelta = 0.0;
      for (var k = 0u; k < SEGS; k++) { rowDelta += trees[TREE_A + node(0u, k, rr)]; }
      let at = 2u * (((b * params.dim + d0 + rr) * params.blocks + block) * N + i / ROWS);
      totals[at] = exp(${load('A', '(d0 + rr) * N + i / ROWS', dtype)} * rowDelta);
      totals[at + 1u] = carry[i];
    }
  }`;
  // A block after the first starts from the state the carry pass left in chunkStates.
  const initCarry = saveStates
    ? `let n = i / ROWS;
    let inside = block > 0u && d0 + i % ROWS < params.dim && n < N;
    carry[i] = select(0.0, chunkStates[min(((b * params.dim + d0 + i % ROWS) * params.nChunks + cBegin) * N + n, arrayLength(&chunkStates) - 1u)], inside);`
    : 'carry[i] = 0.0;';
  const save = saveStates
    ? `if (d0 + rr < params.dim && n < N) { chunkStates[((b * params.dim + d0 + rr) * params.nChunks + c) * N + n] = hIn; }`
    : '';

  return `${enables([dtype])}// ${key}
// CPU twin: selectiveScanForward in cpu/selective-scan.ts. The design is drawn in kernels/selective-scan.ts.
${params.wgsl(bindings.length)}
${bindings.join('\n')}

${tilingConstants(t, N)}
const TILE_DU: u32 = ROWS * STRIDE;          // where Δ·u starts in the tile (Δ at 0)
const TILE_B: u32 = 2u * ROWS * STRIDE;      // B of the round's states over the chunk
const TILE_C: u32 = TILE_B + ROUND * STRIDE; // C, likewise
${LOG2E}
${TREE_NODE}

const TREE = ROUND * SEGS * ROWS;            // floats of one array of the trees: pairs (a, b)
const TREE_A: u32 = 0u;
const TREE_B: u32 = TREE;

// Δ, Δ·u, B${withY ? ', C' : ''} of the tile's chunk${withY ? ', and at its end the parts of its y' : ''}: one array, so that the
// workgroup memory stays small enough for two workgroups to share a multiprocessor.
var<workgroup> tile: array<f32, ${forwardTileFloats(t, withY)}>;
var<workgroup> carry: array<f32, NP * ROWS>; // h entering the chunk, per (n, row)
var<workgroup> trees: array<f32, 2 * TREE>;  // the segment totals of the round's (state, row) trees

@compute @workgroup_size(THREADS)
fn main(${GRID_BUILTINS}) {
${TILE_PROLOGUE}

  let cBegin = block * params.blockChunks;
  let cEnd = min(params.nChunks, cBegin + params.blockChunks);
  for (var i = lid; i < NP * ROWS; i += THREADS) {
    ${initCarry}
  }
${withY ? "  var acc: array<f32, STEPS>; // y of this segment, summed over this invocation's states\n" : ''}  var dt: array<f32, STEPS>;  // Δ of this invocation's segment
  var dtu: array<f32, STEPS>; // Δ·u
${totals ? '  var deltaSum = 0.0;         // Σ Δ over this segment in every chunk of the block\n' : ''}
  for (var c = cBegin; c < cEnd; c++) {
    let t0 = c * CHUNK;
    // 1. Stage Δ and Δ·u, consecutive invocations reading consecutive steps of a row (0 past dim
    //    or len: the clamped index keeps the load in bounds, the select drops it).
${L.shared(
  t.rows * CHUNK_LEN,
  threads,
  `${tileItem('CHUNK')}
      let stepDelta = select(0.0, ${load('delta', 'at', dtype)}, inside);
      tile[rr * STRIDE + i % CHUNK] = stepDelta;
      tile[TILE_DU + rr * STRIDE + i % CHUNK] = stepDelta * select(0.0, ${load('u', 'at', dtype)}, inside);`,
)}
${withY ? L.steps(t.steps, (j) => `acc[${j}] = 0.0;`, '    ') : ''}

    // params.states = N, read from the uniforms so that no compiler unrolls this loop (which
    // multiplied the code by the rounds and the compile time on lavapipe with it).
    for (var n0 = 0u; n0 < params.states; n0 += ROUND) {
${L.shared(round * CHUNK_LEN, threads, withY ? `${stageBC('B')}\n      ${stageBC('C')}` : stageBC('B'), '      ')}
      workgroupBarrier();
      var segDelta = 0.0; // Σ Δ over this invocation's segment
${L.steps(
  t.steps,
  (j) => `dt[${j}] = tile[r * STRIDE + first + ${j}];
        dtu[${j}] = tile[TILE_DU + r * STRIDE + first + ${j}];
        segDelta += dt[${j}];`,
  '      ',
)}
      // 2. Local totals: this segment's steps composed, (Π ā, the state reached from 0), for each
      //    of this invocation's states (independent chains, written out on GPUs so they interleave).
      //    A is taken times log₂e, so that ā = exp2(Δ·A·log₂e) costs the GPU's exp2 and no more
      //    multiply, and Π ā over the segment is one exp2 of ΣΔ instead of a product per step.
${L.states(
  t.group,
  `let a = ${load('A', 'aRow + min(n0 + q * GROUP + g, N - 1u)', dtype)} * LOG2E; // a state past N has B = 0: its h stays 0
        var tb = 0.0;
${L.steps(
  t.steps,
  (j) => `let abar = exp2(dt[${j}] * a);
          tb = abar * tb + dtu[${j}] * tile[TILE_B + ${bcAt(j)}];`,
)}
        trees[TREE_A + node(q * GROUP + g, seg, r)] = exp2(a * segDelta);
        trees[TREE_B + node(q * GROUP + g, seg, r)] = tb;`,
  '      ',
)}
      workgroupBarrier();

      // 3. Scan the totals of each (state, row): up-sweep, then put the carried state at the root,
      //    then down-sweep (without y the chunk is done once carry has moved on).
      for (var i = lid; i < ROUND * ROWS; i += THREADS) {
        let g = i / ROWS;
        let rr = i % ROWS;
        let n = n0 + g;
${upSweep(['s'], tree)}
        let root = node(g, SEGS - 1u, rr);
        let hIn = carry[n * ROWS + rr];
        ${save}
        carry[n * ROWS + rr] = trees[TREE_A + root] * hIn + trees[TREE_B + root]; // the state leaving the chunk
        trees[TREE_B + root] = hIn;
${withY ? downSweep(['s'], tree) : ''}
      }
      workgroupBarrier();${withY ? apply : ''}
      // The next round restages B (and C) and rewrites the trees.
      if (n0 + ROUND < params.states) { workgroupBarrier(); }
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
export const blocksFor = (tiles: number, nChunks: number): number =>
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
  const temps = new Temporaries(pool, op);
  let chunkStates = out.chunkStates;
  if (p.blocks > 1) {
    // 1. Each block's total from h = 0; 2. the states entering the blocks, into chunkStates; then
    //    3. below, every block again from its entering state.
    chunkStates ??= temps.acquire(4 * chunkStatesSize(sizes)); // where the carry pass leaves them
    const totals = temps.acquire(4 * 2 * batch * dim * p.blocks * N);
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
  temps.release();
}
