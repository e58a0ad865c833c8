/**
 * Causal attention, forward, without the (Lq, Lk) matrix of scores: FlashAttention's blocking (Dao et
 * al. 2022, https://arxiv.org/abs/2205.14135) around the online softmax (Milakov & Gimelshein 2018,
 * https://arxiv.org/abs/1805.02867). CPU twin: `causalAttention` in `cpu/attention.ts`. The backward
 * is made of ordinary ops (src/tensor/ops/attention.ts).
 *
 * For each (batch, head) and query row i, at position p = Lk − Lq + i:
 *
 *     s_j = scale·q_i·k_j  (j ≤ p),     lse_i = log Σ_j e^(s_j),     out_i = Σ_j e^(s_j − lse_i)·v_j
 *
 * ## The online softmax
 *
 * A softmax seems to need its row twice: once for the max m and the sum ℓ, then again for the weights,
 * so the scores would have to be kept. They need not be: walk the keys in batches, keeping the max m,
 * ℓ = Σ e^(s_j − m) and o = Σ e^(s_j − m)·v_j over the keys seen so far. When a batch raises the max
 * from m to m', the running sums were measured against the old max, and one factor corrects both:
 *
 *     m' = max(m, max over the batch of s_j)
 *     ℓ' = e^(m − m')·ℓ + Σ_batch e^(s_j − m')
 *     o' = e^(m − m')·o + Σ_batch e^(s_j − m')·v_j
 *
 * After the last key, out = o / ℓ and lse = m + log ℓ. A batch's scores live in registers only.
 *
 * ## Who does what
 *
 * A workgroup takes one (batch, head) and a block of BQ = 64 consecutive query rows, one invocation
 * per row, which keeps its row of q (times scale) and its m, ℓ, o in registers. The workgroup walks
 * the keys in blocks of BK rows: the invocations copy a block's rows of k and v into workgroup memory
 * together, then each consumes them KEYS = 8 at a time, one online-softmax update per 8 keys (so the
 * rescale of o is paid once per 8 keys). With Lq = Lk:
 *
 *                        key block 0     key block 1     key block 2
 *                      ┌───────────────┬───────────────┬───────────────┐
 *     query block 0    │╲ · · · · · · ·│               │               │
 *     rows 0 … 63      │   ╲ · · · · · │    skipped    │    skipped    │
 *                      │      ╲ · · · ·│               │               │
 *                      ├───────────────┼───────────────┼───────────────┤
 *     query block 1    │               │╲ · · · · · · ·│               │
 *     rows 64 … 127    │   all seen    │   ╲ · · · · · │    skipped    │
 *                      │               │      ╲ · · · ·│               │
 *                      └───────────────┴───────────────┴───────────────┘
 *                        ╲ a row's own position      · keys past it, masked
 *
 * A workgroup stops after the key block that holds its last row's position: blocks past the diagonal
 * are never loaded. In the diagonal block each invocation stops at its own position, and keys past it
 * within its last batch of 8 get weight exactly 0. Every row sees key 0, so the first update already
 * sets a finite max. With Lq < Lk the diagonal moves right by Lk − Lq: at Lq = 1 (a decoding step) the
 * one row sees every key.
 *
 * Rows are held as vec4s, dh padded with zeros to a multiple of 4 (zeros add nothing to a dot product,
 * and padded output columns are not stored). q, k and v are read through their strides, so the
 * permuted views of a fused qkv projection and a narrowed key/value cache need no copy.
 *
 * Sizes: q and o take 2·dh floats of registers per invocation, and the k and v blocks 2·BK·dh floats
 * of workgroup memory: dh = 64 with BK = 64 fills 32 KiB. Larger heads take the same path with BK cut
 * to fit the device's workgroup memory; there the rows may outgrow the registers (the compiler then
 * spills them to memory): correct, slower.
 */
import type { DType } from '../../../tensor/dtype.js';
import type { PooledBuffer } from '../buffer-pool.js';
import type { Executor, Kernel } from '../executor.js';
import { ParamStruct, type ParamType } from '../params.js';
import { enables, GRID_BUILTINS, type KernelDevice, LINEAR_WORKGROUP, load, storageBinding, store } from '../wgsl.js';
import type { Operand } from './elementwise.js';

/** Query rows per workgroup, one per invocation. */
const QUERY_BLOCK = 64;
/** Key rows staged per block, at most (see `keyBlock`). */
const KEY_BLOCK = 64;
/** Keys per online-softmax update: the scores an invocation holds at once. */
const KEYS = 8;

type Input = 'q' | 'k' | 'v';
type Layout = 'Offset' | 'Batch' | 'Head' | 'Row' | 'Col';
type Field = 'heads' | 'lq' | 'lk' | 'dh' | 'qBlocks' | 'blocks' | 'scale' | 'one' | `${Input}${Layout}`;

const INPUTS: readonly Input[] = ['q', 'k', 'v'];
const LAYOUT: readonly Layout[] = ['Offset', 'Batch', 'Head', 'Row', 'Col'];

const params = new ParamStruct<Field>([
  ['heads', 'u32'],
  ['lq', 'u32'],
  ['lk', 'u32'],
  ['dh', 'u32'],
  ['qBlocks', 'u32'], // query blocks per (batch, head)
  ['blocks', 'u32'], // batch·heads·qBlocks: the workgroups
  ['scale', 'f32'],
  ['one', 'u32'], // 1, as a uniform (see `repeat`)
  // element (b, h, row, d) of q, k and v: offset + b·batch + h·head + row·row + d·col
  ...INPUTS.flatMap((x) => LAYOUT.map((s): [Field, ParamType] => [`${x}${s}`, 'u32'])),
]);

/** vec4s per row: dh padded with zeros to a multiple of 4. */
const vec4s = (dh: number): number => Math.ceil(dh / 4);

/**
 * Key rows per staged block: 64, or the largest multiple of KEYS whose rows of k and v fit the
 * device's workgroup memory (2·BK rows of dh floats, padded to vec4s).
 */
function keyBlock(dh: number, maxSharedBytes: number): number {
  const fit = Math.floor(maxSharedBytes / (2 * 16 * vec4s(dh)));
  const bk = Math.min(KEY_BLOCK, fit - (fit % KEYS));
  if (bk < KEYS) {
    throw new Error(`causalAttention: heads of ${dh} dimensions need more workgroup memory than this GPU has (${maxSharedBytes} bytes).`);
  }
  return bk;
}

/**
 * `body(i)` for i = 0 … count − 1, where `count` is the WGSL constant `bound`. On a GPU it is written
 * out, each iteration a block with i a constant, so that the arrays it indexes (q, o, the scores) stay
 * in registers. On a CPU-emulated adapter it stays a loop, its bound multiplied by `params.one` so that
 * LLVM does not unroll it either: it takes tens of seconds over written-out kernels (see `Loops` in
 * selective-scan.ts).
 */
function repeat(unroll: boolean, i: string, bound: string, count: number, body: (i: string) => string, indent: string): string {
  const block = (text: string) => `{\n${indent}  ${text.replace(/\n/g, `\n${indent}  `)}\n${indent}}`;
  if (!unroll) return `${indent}for (var ${i} = 0u; ${i} < ${bound} * params.one; ${i}++) ${block(body(i))}`;
  // A body of several lines gets a block of its own, so that its `let`s do not collide.
  const copies = Array.from({ length: count }, (_, n) => body(`${n}u`));
  return copies.map((text) => indent + (text.includes('\n') ? block(text) : text)).join('\n');
}

const kernels = new Map<string, Kernel<Field>>();

function attentionKernel(dtype: DType, dh4: number, bk: number, unroll: boolean): Kernel<Field> {
  const key = `causalAttention ${dtype} dh4=${dh4} BK=${bk}${unroll ? '' : ' loops'}`;
  let kernel = kernels.get(key);
  if (!kernel) {
    const bindings: Kernel['bindings'] = ['read', 'read', 'read', 'write', 'write'];
    kernel = { key, bindings, params, source: () => attentionSource(key, dtype, dh4, bk, unroll) };
    kernels.set(key, kernel);
  }
  return kernel;
}

function attentionSource(key: string, dtype: DType, dh4: number, bk: number, unroll: boolean): string {
  const overVec4s = (body: (c: string) => string, indent: string) => repeat(unroll, 'c', 'DH4', dh4, body, indent);
  const overKeys = (body: (u: string) => string, indent: string) => repeat(unroll, 'u', 'KEYS', KEYS, body, indent);
  // Reading 4 elements of a row through the strides; d ≥ dh reads 0 (the index is clamped, never out of bounds).
  const rowReader = (x: Input) => `fn ${x}At(at: u32, d: u32) -> f32 {
  return select(0.0, ${load(x, `at + min(d, params.dh - 1u) * params.${x}Col`, dtype)}, d < params.dh);
}
// Elements 4c … 4c + 3 of row \`row\` of ${x}, in the head starting at \`base\`.
fn ${x}Row(base: u32, row: u32, c: u32) -> vec4f {
  let at = base + row * params.${x}Row;
  return vec4f(${x}At(at, 4u * c), ${x}At(at, 4u * c + 1u), ${x}At(at, 4u * c + 2u), ${x}At(at, 4u * c + 3u));
}`;
  const base = (x: Input) => `let ${x}Base = params.${x}Offset + b * params.${x}Batch + h * params.${x}Head;`;

  return `${enables([dtype])}// ${key}
// CPU twin: causalAttention in cpu/attention.ts. The design is drawn in kernels/attention.ts.
${params.wgsl(5)}
${storageBinding(0, 'q', 'read', dtype)}
${storageBinding(1, 'k', 'read', dtype)}
${storageBinding(2, 'v', 'read', dtype)}
${storageBinding(3, 'out', 'read_write', dtype)}
${storageBinding(4, 'lse', 'read_write', dtype)}

const BQ: u32 = ${QUERY_BLOCK}u;  // query rows per workgroup, one per invocation
const BK: u32 = ${bk}u;  // key rows per staged block
const KEYS: u32 = ${KEYS}u;  // keys per online-softmax update
const DH4: u32 = ${dh4}u; // vec4s per row (dh padded with zeros)
const LOWEST: f32 = -3.4e38; // stands in for −∞, which WGSL cannot write

var<workgroup> kBlock: array<vec4f, BK * DH4>; // rows k0 … k0 + BK − 1 of k
var<workgroup> vBlock: array<vec4f, BK * DH4>; // and of v

${INPUTS.map(rowReader).join('\n\n')}

@compute @workgroup_size(BQ)
fn main(${GRID_BUILTINS}) {
  let block = ${LINEAR_WORKGROUP}; // = bh·qBlocks + q0 / BQ
  if (block >= params.blocks) { return; } // a folded grid may have a few workgroups too many
  let bh = block / params.qBlocks;
  let b = bh / params.heads;
  let h = bh % params.heads;
  ${INPUTS.map(base).join('\n  ')}
  let q0 = (block % params.qBlocks) * BQ; // the block's first query row
  let shift = params.lk - params.lq;      // query row i sits at position shift + i
  // Rows past lq (in a partial last block) redo row lq − 1 and store nothing: no invocation may
  // return early, the barriers need them all.
  let row = min(q0 + lid, params.lq - 1u);
  let pos = shift + row; // this row sees keys 0 … pos
  let last = shift + min(q0 + BQ, params.lq) - 1u; // the block's last position: no key past it is needed

  var qs: array<vec4f, DH4>; // this row of q, times scale
  var o: array<vec4f, DH4>;  // Σ e^(s_j − m)·v_j over the keys so far
${overVec4s(
  (c) => `qs[${c}] = qRow(qBase, row, ${c}) * params.scale;
o[${c}] = vec4f(0.0);`,
  '  ',
)}
  var m = LOWEST; // the running max of the scores
  var l = 0.0;    // Σ e^(s_j − m)

  for (var k0 = 0u; k0 <= last; k0 += BK) {
    // Stage keys k0 … k0 + BK − 1, consecutive invocations reading consecutive vec4s of a row. Rows
    // past lk repeat row lk − 1, and no invocation uses them.
    for (var i = lid; i < BK * DH4; i += BQ) {
      let j = min(k0 + i / DH4, params.lk - 1u);
      kBlock[i] = kRow(kBase, j, i % DH4);
      vBlock[i] = vRow(vBase, j, i % DH4);
    }
    workgroupBarrier();

    // This row's keys in the block: those up to its position (none when the block lies past it).
    let count = select(0u, min(BK, pos + 1u - k0), pos >= k0);
    for (var j0 = 0u; j0 < count; j0 += KEYS) {
      // The scores of keys j0 … j0 + KEYS − 1 of the block, and the max rising to take them in. (Each
      // score is zeroed explicitly: lavapipe did not re-zero a var declared in a loop every iteration.)
      var s: array<f32, KEYS>;
      var mNew = m;
${overKeys(
  (u) => `s[${u}] = 0.0;
${overVec4s((c) => `s[${u}] += dot(qs[${c}], kBlock[(j0 + ${u}) * DH4 + ${c}]);`, '')}
s[${u}] = select(LOWEST, s[${u}], j0 + ${u} < count);
mNew = max(mNew, s[${u}]);`,
  '      ',
)}
      // What was summed against the old max, rescaled to the new one (by 0 before the first key).
      let rescale = exp(m - mNew);
      l *= rescale;
${overVec4s((c) => `o[${c}] *= rescale;`, '      ')}
${overKeys(
  (u) => `let p = select(0.0, exp(s[${u}] - mNew), j0 + ${u} < count);
l += p;
${overVec4s((c) => `o[${c}] += p * vBlock[(j0 + ${u}) * DH4 + ${c}];`, '')}`,
  '      ',
)}
      m = mNew;
    }
    workgroupBarrier(); // the next block overwrites kBlock and vBlock
  }

  if (q0 + lid < params.lq) {
    let at = bh * params.lq + row; // the output row: out and lse are contiguous
    ${store('lse', 'at', 'm + log(l)', dtype)}
${overVec4s(
  (c) => `let x = o[${c}] / l;
for (var e = 0u; e < 4u; e++) {
  let d = 4u * ${c} + e;
  if (d < params.dh) { ${store('out', 'at * params.dh + d', 'x[e]', dtype)} }
}`,
  '    ',
)}
  }
}
`;
}

/** q (batch, heads, lq, dh), k and v (batch, heads, lk, dh) as strided operands of one dtype. */
export interface AttentionSizes {
  readonly batch: number;
  readonly heads: number;
  readonly lq: number;
  readonly lk: number;
  readonly dh: number;
}

/** Fills out (batch, heads, lq, dh) and lse (batch·heads·lq), contiguous, in q's dtype. */
export function runCausalAttention(
  exec: Executor,
  inputs: readonly [Operand, Operand, Operand],
  { batch, heads, lq, lk, dh }: AttentionSizes,
  scale: number,
  device: KernelDevice,
  out: { out: PooledBuffer; lse: PooledBuffer },
): void {
  const dtype = inputs[0].dtype;
  const kernel = attentionKernel(dtype, vec4s(dh), keyBlock(dh, device.maxSharedBytes), device.unroll);
  const qBlocks = Math.ceil(lq / QUERY_BLOCK);
  const blocks = batch * heads * qBlocks;
  const layouts = INPUTS.map((x, i) => {
    const { offset, strides } = inputs[i] as Operand;
    return LAYOUT.map((s, axis) => [`${x}${s}`, axis === 0 ? offset : (strides[axis - 1] as number)]);
  });
  const values = { heads, lq, lk, dh, qBlocks, blocks, scale, one: 1, ...Object.fromEntries(layouts.flat()) } as Record<Field, number>;
  exec.dispatch('causalAttention', kernel, [...inputs.map((x) => x.buffer), out.out, out.lse], values, blocks);
}
