/**
 * Cross-entropy from logits, fused with its softmax: one pass per row instead of a softmax, a log,
 * a gather and a mean, and no (rows, cols) probability tensor kept for backward.
 */
import { dtypeOf, type TypedArray } from '../../tensor/dtype.js';
import { readable, resultArray, stored } from './buffer.js';
import { logSumExpRow } from './reduce.js';

/** Row r's target class, or −1 when it equals `ignoreIndex`; any other value outside [0, cols) throws. */
function targetOf(op: string, targets: TypedArray, r: number, cols: number, ignoreIndex: number): number {
  const t = targets[r];
  if (t === ignoreIndex) return -1;
  if (!(t >= 0 && t < cols)) throw new Error(`${op}: target ${t} is out of range for ${cols} classes.`);
  return t;
}

/**
 * Per-row loss from logits (rows, cols) and int32 targets (rows) → (rows) in the logits' dtype:
 * −log softmax(x_r)[t_r] = logsumexp(x_r) − x_r[t_r], and 0 where t_r = ignoreIndex.
 */
export function crossEntropy(logits: TypedArray, targets: TypedArray, rows: number, cols: number, ignoreIndex: number): TypedArray {
  const dtype = dtypeOf(logits);
  const x = readable(logits);
  const out = resultArray(dtype, rows); // zero: the loss of ignored rows
  for (let r = 0; r < rows; r++) {
    const t = targetOf('crossEntropy', targets, r, cols, ignoreIndex);
    if (t >= 0) out[r] = logSumExpRow(x, r * cols, cols) - x[r * cols + t];
  }
  return stored(out, dtype);
}

/**
 * d loss_r / d logits (rows, cols) = (softmax(x_r) − onehot(t_r))·g_r with g = gradLoss (rows), in the
 * logits' dtype; rows whose target is ignoreIndex are 0.
 */
export function crossEntropyGrad(
  logits: TypedArray,
  targets: TypedArray,
  gradLoss: TypedArray,
  rows: number,
  cols: number,
  ignoreIndex: number,
): TypedArray {
  const dtype = dtypeOf(logits);
  const x = readable(logits);
  const g = readable(gradLoss);
  const out = resultArray(dtype, rows * cols);
  for (let r = 0; r < rows; r++) {
    const t = targetOf('crossEntropyGrad', targets, r, cols, ignoreIndex);
    if (t < 0) continue;
    const start = r * cols;
    const lse = logSumExpRow(x, start, cols);
    for (let j = 0; j < cols; j++) out[start + j] = Math.exp(x[start + j] - lse) * g[r];
    out[start + t] -= g[r];
  }
  return stored(out, dtype);
}
