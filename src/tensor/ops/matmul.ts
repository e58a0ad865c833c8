/**
 * Matrix multiplication with NumPy semantics: (…, M, K) @ (…, K, N) → (…, M, N), batch dimensions
 * broadcast; a 1-D operand is a vector (a row on the left, a column on the right).
 *
 * Backward:  dA = dC @ Bᵀ,  dB = Aᵀ @ dC, each summed over the batch dimensions it was broadcast along.
 * Transposes are views, so the backward matmuls read the same buffers with swapped strides.
 *
 * `linear(x, W, b)` is a Linear layer's x Wᵀ + b as one product whose kernel adds b while it writes
 * the output: one pass over the output instead of two, and no second output-sized buffer. Backward:
 * db = dC summed over every row.
 */
import { record } from '../../autograd/graph.js';
import { broadcastShapes, shapeToString, sizeOf } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { fromBuffer } from './creation.js';
import { checkCompatible, unbroadcast } from './elementwise.js';
import { broadcastView, reshape, squeeze, transpose, unsqueeze } from './views.js';

/** The kernel call on 3-D (batch, M, K) and (batch, K, N) views, plus `bias` (N) on every row. */
function matmulKernel(a: Tensor, b: Tensor, bias: Tensor | null): Tensor {
  const backend = a.storage.backend;
  const [batch, M] = a.shape as [number, number, number];
  const N = b.shape[2] as number;
  return fromBuffer(backend.matmul(a.view(), b.view(), bias?.view()), [batch, M, N], a.dtype, backend);
}

/**
 * Views (…batch, rows, cols) as (batch, rows, cols) without recording autograd. The batch dims fold
 * into one stride when they are evenly spaced (contiguous, or all broadcast with stride 0, as for a
 * weight matrix shared by every row of a batch); otherwise the operand is copied.
 */
function foldBatch(operand: Tensor, shape: number[], batch: number): Tensor {
  const x = broadcastView(operand, shape);
  try {
    return fold(x, batch);
  } finally {
    if (x !== operand) x.dispose();
  }
}

function fold(x: Tensor, batch: number): Tensor {
  const lead = x.rank - 2;
  const batchStrides = x.strides.slice(0, lead).filter((_, i) => (x.shape[i] as number) > 1);
  const inner = x.shape.slice(0, lead).filter((d) => d > 1);
  const evenlySpaced = batchStrides.every(
    (s, i) => i === batchStrides.length - 1 || s === (batchStrides[i + 1] as number) * (inner[i + 1] as number),
  );
  const rows = x.shape[lead] as number;
  const cols = x.shape[lead + 1] as number;
  const tail = x.strides.slice(lead) as [number, number];
  if (evenlySpaced) return x.withLayout([batch, rows, cols], [batchStrides[batchStrides.length - 1] ?? 0, ...tail], x.offset);
  const copy = fromBuffer(x.storage.backend.copy(x.view(), x.dtype), x.shape, x.dtype, x.storage.backend);
  const folded = copy.withLayout([batch, rows, cols], [rows * cols, cols, 1], 0);
  copy.dispose();
  return folded;
}

/** Whether the last two axes are stored column by column (a transposed matrix). */
const columnMajor = (x: Tensor): boolean => x.strides[x.rank - 2] === 1 && x.strides[x.rank - 1] !== 1;

/** Batched product of two ≥2-D tensors, batch dims broadcast, plus `bias` (N) on every row. */
function batchedMatmul(a: Tensor, b: Tensor, bias: Tensor | null = null): Tensor {
  const M = a.shape[a.rank - 2] as number;
  const K = a.shape[a.rank - 1] as number;
  const N = b.shape[b.rank - 1] as number;
  if (b.shape[b.rank - 2] !== K) {
    throw new Error(`matmul: shapes ${shapeToString(a.shape)} and ${shapeToString(b.shape)} do not align (${K} ≠ ${b.shape[b.rank - 2]}).`);
  }
  const batchShape = broadcastShapes('matmul', a.shape.slice(0, -2), b.shape.slice(0, -2));
  const batch = sizeOf(batchShape);
  const a3 = foldBatch(a, [...batchShape, M, K], batch);
  const b3 = foldBatch(b, [...batchShape, K, N], batch);
  const c3 = matmulKernel(a3, b3, bias);
  a3.dispose();
  b3.dispose();
  const c = reshape(c3, [...batchShape, M, N]);
  c3.dispose();
  const backward = (g: Tensor): Tensor[] => [
    unbroadcast(batchedMatmul(g, transpose(b)), a.shape),
    // dB in B's own layout: for a transposed view (a Linear layer's Wᵀ) it is computed as (gᵀ·A)ᵀ, so
    // that the weight's gradient arrives contiguous (Adam's fused update needs it so) without a copy.
    unbroadcast(columnMajor(b) ? transpose(batchedMatmul(transpose(g), a)) : batchedMatmul(transpose(a), g), b.shape),
  ];
  if (!bias) return record(c, 'matmul', [a, b], backward);
  return record(c, 'linear', [a, b, bias], (g) => [...backward(g), unbroadcast(g, bias.shape)]);
}

/**
 * x (…, M, K) @ W (K, N), bias (N) or null, as every Linear layer does: one (…·M, K) @ (K, N)
 * product. Its backward is then one matmul too, dW = xᵀ·dy summing over all rows at once, instead of a
 * batch of (K, N) products summed afterwards (a (batch, K, N) temporary: 823 MB for the seed LM head).
 */
function rowsTimes(x: Tensor, w: Tensor, bias: Tensor | null): Tensor {
  const rows = reshape(x, [-1, x.shape[x.rank - 1] as number]);
  return reshape(batchedMatmul(rows, w, bias), [...x.shape.slice(0, -1), w.shape[1] as number]);
}

/**
 * A Linear layer: x (…, in) @ weightᵀ + bias → (…, out), with weight (out, in) as PyTorch stores it
 * and bias (out) or null; the bias is added by the matmul kernel (see the header).
 */
export function linear(x: Tensor, weight: Tensor, bias: Tensor | null): Tensor {
  checkCompatible('linear', x, weight);
  if (bias) checkCompatible('linear', x, bias);
  const [out, inFeatures] = weight.shape as [number, number];
  if (weight.rank !== 2 || x.rank === 0 || x.shape[x.rank - 1] !== inFeatures || (bias && (bias.rank !== 1 || bias.shape[0] !== out))) {
    throw new Error(
      `linear: input ${shapeToString(x.shape)}, weight ${shapeToString(weight.shape)} and bias ${bias ? shapeToString(bias.shape) : 'none'} ` +
        'are not (…, in), (out, in) and (out).',
    );
  }
  return rowsTimes(x, transpose(weight), bias);
}

export function matmul(a: Tensor, b: Tensor): Tensor {
  checkCompatible('matmul', a, b);
  if (a.rank === 0 || b.rank === 0) throw new Error('matmul: operands must have at least one dimension; use mul for scalars.');
  if (a.rank > 2 && b.rank === 2 && a.shape[a.rank - 1] === b.shape[0]) return rowsTimes(a, b, null);
  // Vectors become matrices for the product, and their added axis is removed afterwards.
  const a2 = a.rank === 1 ? unsqueeze(a, 0) : a;
  const b2 = b.rank === 1 ? unsqueeze(b, 1) : b;
  let c = batchedMatmul(a2, b2);
  if (a.rank === 1) c = squeeze(c, -2);
  if (b.rank === 1) c = squeeze(c, -1);
  return c;
}
