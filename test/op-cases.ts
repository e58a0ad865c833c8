/**
 * The table of differentiable ops that both the gradient check (float64, CPU) and the CPU/WebGPU
 * parity suite (float32) run: every op, on random shapes with broadcasting and non-contiguous
 * (transposed, narrowed, expanded) inputs. Inputs are described, not built, so each suite makes them
 * in its own dtype on its own backend.
 */
import {
  causalAttention,
  causalMask,
  concat,
  conv1dCausal,
  crossEntropy,
  cumsum,
  type DType,
  dropout,
  embedding,
  layerNorm,
  linear,
  manualSeed,
  maskedFill,
  rmsNorm,
  selectiveScan,
  split,
  stack,
  type Tensor,
  tensor,
  where,
} from '../src/index.js';
import { normalAt, pcgHash } from '../src/tensor/random.js';

/** A leaf input: seeded standard-normal values, optionally mapped (e.g. away from a kink). */
export interface LeafSpec {
  shape: number[];
  seed: number;
  transform?: (v: number) => number;
}

/** Builds a spec as a leaf tensor that requires grad, on the active backend. */
export function makeLeaf({ shape, seed, transform = (v) => v }: LeafSpec, dtype: DType): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const k = pcgHash(seed);
  const values = Float64Array.from({ length: n }, (_, i) => transform(normalAt(k, i)));
  return tensor(values, shape, { dtype, requiresGrad: true });
}

const leaf = (shape: number[], seed: number, transform?: (v: number) => number): LeafSpec => ({ shape, seed, transform });

/** Values bounded away from 0 (for log, sqrt, division, and kinks of relu/abs). */
const positive = (v: number): number => 0.5 + Math.abs(v);
const awayFromZero = (v: number): number => (v >= 0 ? 0.2 + v : v - 0.2);

export type OpCase = [name: string, fn: (...xs: Tensor[]) => Tensor, inputs: LeafSpec[]];

/** Integer tensors the cases need, made on the active backend when the case runs. */
const ids = (values: number[], shape: number[]): Tensor => tensor(values, shape, { dtype: 'int32' });

export const opCases: OpCase[] = [
  // unary, on contiguous and transposed inputs
  ['neg', (x) => x.neg(), [leaf([3, 4], 1)]],
  ['exp (transposed)', (x) => x.transpose().exp(), [leaf([3, 5], 2)]],
  ['log', (x) => x.log(), [leaf([7], 3, positive)]],
  ['sqrt', (x) => x.sqrt(), [leaf([2, 3], 4, positive)]],
  ['rsqrt', (x) => x.rsqrt(), [leaf([2, 3], 5, positive)]],
  ['tanh', (x) => x.tanh(), [leaf([4, 3], 6)]],
  ['sigmoid (narrowed)', (x) => x.narrow(1, 1, 3).sigmoid(), [leaf([3, 5], 7)]],
  ['silu', (x) => x.silu(), [leaf([5, 2], 8)]],
  ['gelu', (x) => x.gelu(), [leaf([5, 2], 9)]],
  ['softplus', (x) => x.mul(4).softplus(), [leaf([9], 10)]],
  ['relu', (x) => x.relu(), [leaf([3, 3], 11, awayFromZero)]],
  ['abs', (x) => x.abs(), [leaf([3, 3], 12, awayFromZero)]],
  // binary with broadcasting
  ['add (broadcast)', (a, b) => a.add(b), [leaf([3, 1, 4], 13), leaf([2, 4], 14)]],
  ['sub (broadcast)', (a, b) => a.sub(b), [leaf([4], 15), leaf([3, 4], 16)]],
  ['mul (broadcast, transposed)', (a, b) => a.transpose().mul(b), [leaf([4, 3], 17), leaf([3, 1], 18)]],
  ['div', (a, b) => a.div(b), [leaf([2, 5], 19), leaf([5], 20, awayFromZero)]],
  ['pow', (a, b) => a.pow(b), [leaf([3, 2], 21, positive), leaf([2], 22)]],
  ['pow by a number', (a) => a.pow(3), [leaf([4], 23)]],
  ['maximum', (a, b) => a.maximum(b), [leaf([3, 4], 24), leaf([4], 25)]],
  ['minimum', (a, b) => a.minimum(b), [leaf([3, 4], 26), leaf([3, 1], 27)]],
  ['where', (a, b) => where(a.gt(0), a, b), [leaf([3, 4], 28), leaf([4], 29)]],
  ['maskedFill', (a) => maskedFill(a, causalMask(4, a.dtype), -3), [leaf([2, 4, 4], 30)]],
  // reductions
  ['sum all', (x) => x.sum(), [leaf([3, 4], 31)]],
  ['sum axes keepdim (permuted)', (x) => x.permute([2, 0, 1]).sum([0, 2], true), [leaf([2, 3, 4], 32)]],
  // over leading and middle axes of contiguous tensors, which kernels read in place as (outer, len, inner)
  ['sum axis 0 (a bias gradient)', (x) => x.sum(0), [leaf([5, 3], 170)]],
  ['sum leading axes keepdim', (x) => x.sum([0, 1], true), [leaf([2, 3, 4], 171)]],
  ['sum middle axis', (x) => x.sum(1), [leaf([2, 5, 3], 172)]],
  ['sum a long leading axis (the GPU splits it into chunks)', (x) => x.sum(0), [leaf([300, 2], 173)]],
  ['max middle axis', (x) => x.max(1), [leaf([3, 4, 2], 174)]],
  ['mean', (x) => x.mean(1), [leaf([3, 5], 33)]],
  ['max', (x) => x.max(-1), [leaf([4, 6], 34)]],
  ['min', (x) => x.min(0, true), [leaf([4, 6], 35)]],
  ['logsumexp', (x) => x.mul(10).logsumexp(-1), [leaf([3, 7], 36)]],
  // matmul
  ['matmul 2-D', (a, b) => a.matmul(b), [leaf([3, 5], 37), leaf([5, 4], 38)]],
  ['matmul batch broadcast', (a, b) => a.matmul(b), [leaf([2, 1, 3, 4], 39), leaf([3, 4, 2], 40)]],
  ['matmul transposed views', (a, b) => a.transpose().matmul(b.transpose()), [leaf([4, 3], 41), leaf([2, 4], 42)]],
  ['matmul vector', (a, b) => a.matmul(b), [leaf([4], 43), leaf([2, 4, 3], 44)]],
  ['linear with bias', (x, w, b) => linear(x, w, b), [leaf([2, 3, 5], 143), leaf([4, 5], 144), leaf([4], 145)]],
  ['linear, vector input, strided bias', (x, w, b) => linear(x, w, b.narrow(0, 1, 3)), [leaf([5], 146), leaf([3, 5], 147), leaf([6], 148)]],
  // softmax family and losses
  ['softmax', (x) => x.softmax(-1), [leaf([3, 5], 45)]],
  ['softmax axis 0', (x) => x.softmax(0), [leaf([4, 3], 46)]],
  ['logSoftmax', (x) => x.logSoftmax(1), [leaf([2, 6, 3], 47)]],
  ['crossEntropy with ignore', (x) => crossEntropy(x, ids([2, 0, -100, 4], [2, 2]), { ignoreIndex: -100 }), [leaf([2, 2, 5], 48)]],
  ['crossEntropy, one class', (x) => crossEntropy(x, ids([0, 0, 0], [3]), { reduction: 'sum' }), [leaf([3, 1], 175)]],
  [
    'crossEntropy per row, logits spread over ±60, transposed',
    (x) => crossEntropy(x.transpose().mul(20), ids([4, 0, 6], [3]), { reduction: 'none' }),
    [leaf([7, 3], 176)],
  ],
  ['embedding (repeated ids)', (w) => embedding(w, ids([1, 3, 1, 0], [2, 2])), [leaf([5, 3], 49)]],
  // causal attention: q (batch, heads, Lq, dh), k and v (batch, heads, Lk, dh), batch·heads = 3
  [
    'causalAttention, one position',
    (q, k, v) => causalAttention(q, k, v, 0.5),
    [leaf([1, 3, 1, 5], 150), leaf([1, 3, 1, 5], 151), leaf([1, 3, 1, 5], 152)],
  ],
  [
    'causalAttention 7 × 7, dh 64',
    (q, k, v) => causalAttention(q, k, v, 1 / 8),
    [leaf([3, 1, 7, 64], 153), leaf([3, 1, 7, 64], 154), leaf([3, 1, 7, 64], 155)],
  ],
  [
    'causalAttention 65 × 65, dh 5, permuted views (as the model passes them)',
    (q, k, v) => causalAttention(q.permute([0, 2, 1, 3]), k.permute([0, 2, 1, 3]), v.permute([0, 2, 1, 3]), 0.7),
    [leaf([1, 65, 3, 5], 156), leaf([1, 65, 3, 5], 157), leaf([1, 65, 3, 5], 158)],
  ],
  [
    'causalAttention 130 × 130, dh 1',
    (q, k, v) => causalAttention(q, k, v, 1.3),
    [leaf([1, 3, 130, 1], 159), leaf([1, 3, 130, 1], 160), leaf([1, 3, 130, 1], 161)],
  ],
  [
    'causalAttention, 1 query of 9 keys, dh 32, narrowed cache',
    (q, k, v) => causalAttention(q, k.narrow(2, 0, 9), v.narrow(2, 0, 9), 1 / Math.sqrt(32)),
    [leaf([3, 1, 1, 32], 162), leaf([3, 1, 12, 32], 163), leaf([3, 1, 12, 32], 164)],
  ],
  [
    'causalAttention, 5 queries of 70 keys',
    (q, k, v) => causalAttention(q, k, v, 0.6),
    [leaf([1, 3, 5, 5], 165), leaf([1, 3, 70, 5], 166), leaf([1, 3, 70, 5], 167)],
  ],
  // joins and views
  ['concat', (a, b) => concat([a, b.transpose()], 1), [leaf([3, 2], 50), leaf([4, 3], 51)]],
  ['stack', (a, b) => stack([a, b], 1), [leaf([3, 2], 52), leaf([3, 2], 53)]],
  ['split', (x) => split(x, [1, 3], 1)[1] as Tensor, [leaf([2, 4], 54)]],
  ['reshape of a transposed view', (x) => x.transpose().reshape([2, -1]), [leaf([3, 4], 55)]],
  ['select + unsqueeze + squeeze', (x) => x.select(1, 2).unsqueeze(0).squeeze(0), [leaf([3, 4], 56)]],
  ['expand', (x) => x.expand([3, 2, 4]), [leaf([2, 1], 57)]],
  ['flatten', (x) => x.flatten(1), [leaf([2, 3, 2], 58)]],
  // normalisation, convolution, scans, dropout
  ['layerNorm', (x, w, b) => layerNorm(x, w, b), [leaf([3, 6], 59), leaf([6], 60), leaf([6], 61)]],
  ['layerNorm without weight or bias', (x) => layerNorm(x, null, null), [leaf([4, 7], 180)]],
  ['layerNorm with weight, no bias, dim 1', (x, w) => layerNorm(x, w, null), [leaf([5, 1], 181), leaf([1], 182)]],
  [
    'layerNorm, dim 300 (past one workgroup), transposed input',
    (x, w, b) => layerNorm(x.transpose(), w, b),
    [leaf([300, 2], 183), leaf([300], 184), leaf([300], 185)],
  ],
  // σ² = 0, so rstd = 1/√ε; a larger ε keeps the finite differences' O(h²/ε^1.5) error small
  ['layerNorm of constant rows', (x, w, b) => layerNorm(x, w, b, 1e-3), [leaf([2, 5], 186, () => 0.75), leaf([5], 187), leaf([5], 188)]],
  ['rmsNorm', (x, w) => rmsNorm(x, w), [leaf([2, 3, 5], 62), leaf([5], 63)]],
  ['rmsNorm without weight, narrowed input', (x) => rmsNorm(x.narrow(1, 1, 5), null), [leaf([3, 7], 189)]],
  ['rmsNorm, dim 1', (x, w) => rmsNorm(x, w), [leaf([4, 1], 190, awayFromZero), leaf([1], 191)]],
  ['rmsNorm, dim 1000 (four elements per thread)', (x, w) => rmsNorm(x, w), [leaf([2, 1000], 192), leaf([1000], 193)]],
  ['conv1dCausal', (x, w, b) => conv1dCausal(x, w, b), [leaf([2, 3, 7], 64), leaf([3, 4], 65), leaf([3], 66)]],
  ['cumsum', (x) => cumsum(x, 0), [leaf([5, 3], 67)]],
  [
    'selectiveScan (D, z, Δ bias, softplus)',
    (u, delta, logA, B, C, D, z, bias) => selectiveScan(u, delta, logA.exp().neg(), B, C, { D, z, deltaBias: bias, deltaSoftplus: true }),
    [
      leaf([2, 3, 5], 70),
      leaf([2, 3, 5], 71),
      leaf([3, 4], 72),
      leaf([2, 4, 5], 73),
      leaf([2, 4, 5], 74),
      leaf([3], 75),
      leaf([2, 3, 5], 76),
      leaf([3], 77),
    ],
  ],
  [
    'dropout (fixed seed)',
    (x) => {
      manualSeed(7);
      return dropout(x, 0.3);
    },
    [leaf([4, 5], 68)],
  ],
];
