/**
 * Cross-entropy over logits with integer targets, fused: one kernel computes −log softmax(x)[target]
 * per row without materialising the softmax, and one kernel gives its gradient
 *
 *     d loss_r / d x_r = (softmax(x_r) − onehot(target_r)) · g_r
 *
 * Rows whose target is `ignoreIndex` (padding) contribute nothing and are left out of the mean.
 */
import { record } from '../../autograd/graph.js';
import { shapesEqual, shapeToString } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { fromBuffer } from './creation.js';
import { contiguous, div, ne } from './elementwise.js';
import { sum } from './reduce.js';

export interface CrossEntropyOptions {
  /** Targets equal to this are skipped (default −100, as in PyTorch). */
  ignoreIndex?: number;
  /** 'mean' over non-ignored rows (default), 'sum', or 'none' for per-row losses. */
  reduction?: 'mean' | 'sum' | 'none';
}

/**
 * logits (…, classes) float, targets (…) int32 → the loss (a scalar, or (…) with reduction 'none').
 */
export function crossEntropy(logits: Tensor, targets: Tensor, options: CrossEntropyOptions = {}): Tensor {
  const { ignoreIndex = -100, reduction = 'mean' } = options;
  if (targets.dtype !== 'int32') throw new Error(`crossEntropy: targets must be int32 class indices, got ${targets.dtype}.`);
  if (!shapesEqual(logits.shape.slice(0, -1), targets.shape)) {
    throw new Error(
      `crossEntropy: logits ${shapeToString(logits.shape)} and targets ${shapeToString(targets.shape)} do not match (logits must be targets' shape plus a class axis).`,
    );
  }
  const cols = logits.shape[logits.rank - 1] as number;
  const rows = targets.size;
  const backend = logits.storage.backend;
  const x = contiguous(logits);
  const t = contiguous(targets);
  const perRow = fromBuffer(
    backend.crossEntropy(x.storage.buffer, t.storage.buffer, rows, cols, ignoreIndex),
    targets.shape,
    logits.dtype,
    backend,
  );
  const losses = record(perRow, 'crossEntropy', [logits], (g) => {
    const gc = contiguous(g);
    const gx = backend.crossEntropyGrad(x.storage.buffer, t.storage.buffer, gc.storage.buffer, rows, cols, ignoreIndex);
    return [fromBuffer(gx, logits.shape, logits.dtype, backend)];
  });
  if (reduction === 'none') return losses;
  const total = sum(losses);
  if (reduction === 'sum') return total;
  const counted = sum(ne(targets, ignoreIndex).astype(logits.dtype));
  return div(total, counted.maximum(1));
}
