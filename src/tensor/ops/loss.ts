/**
 * Cross-entropy over logits with integer targets, fused: one kernel computes −log softmax(x)[target]
 * per row without materialising the softmax, and one kernel gives its gradient
 *
 *     d loss_r / d x_r = (softmax(x_r) − onehot(target_r)) · g_r = (e^(x_r − lse_r) − onehot(target_r)) · g_r
 *
 * The forward kernel also gives each row's log-sum-exp lse_r = log Σ_j e^(x_rj), which the backward
 * closure keeps (as causal attention keeps its own): with it, the gradient kernel reads each logit
 * once and writes each gradient once, instead of first reading the row again to rebuild lse_r. An
 * LM head's logits are the largest tensor of a training step (823 MB at 4096 tokens × 50,257
 * classes), so every pass over them counts; the lse is one float per row.
 *
 * Rows whose target is `ignoreIndex` (padding) contribute nothing and are left out of the mean.
 */
import { record } from '../../autograd/graph.js';
import { computeDtype } from '../dtype.js';
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
  const result = backend.crossEntropy(x.storage.buffer, t.storage.buffer, rows, cols, ignoreIndex);
  const perRow = fromBuffer(result.loss, targets.shape, logits.dtype, backend);
  const lse = fromBuffer(result.lse, [rows], computeDtype(logits.dtype), backend);
  const losses = record(perRow, 'crossEntropy', [logits], (g) => {
    const gc = contiguous(g);
    const gx = backend.crossEntropyGrad(x.storage.buffer, lse.storage.buffer, t.storage.buffer, gc.storage.buffer, rows, cols, ignoreIndex);
    return [fromBuffer(gx, logits.shape, logits.dtype, backend)];
  });
  if (!losses.gradFn) lse.dispose(); // no backward will read it
  if (reduction === 'none') return losses;
  const total = sum(losses);
  if (reduction === 'sum') return total;
  const counted = sum(ne(targets, ignoreIndex).astype(logits.dtype));
  return div(total, counted.maximum(1));
}
