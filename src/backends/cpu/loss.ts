/**
 * Cross-entropy from logits, fused with its softmax: one pass per row instead of a softmax, a log,
 * a gather and a mean, and no (rows, cols) probability tensor kept for backward. The forward also
 * returns each row's log-sum-exp, the softmax's normaliser, so that the gradient is one pass over the
 * row too: e^(x − lse) − onehot needs no second look at the whole row first.
 */
import { computeDtype, dtypeOf, type TypedArray } from '../../tensor/dtype.js';
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
 * Per-row loss from logits (rows, cols) and int32 targets (rows) → loss (rows) in the logits' dtype:
 * −log softmax(x_r)[t_r] = lse_r − x_r[t_r], and 0 where t_r = ignoreIndex; and lse_r =
 * logsumexp(x_r) of every row, in `computeDtype` of the logits' dtype.
 */
export function crossEntropy(
  logits: TypedArray,
  targets: TypedArray,
  rows: number,
  cols: number,
  ignoreIndex: number,
): { loss: TypedArray; lse: TypedArray } {
  const dtype = dtypeOf(logits);
  const lseDtype = computeDtype(dtype);
  const x = readable(logits);
  const loss = resultArray(dtype, rows); // zero: the loss of ignored rows
  const lse = resultArray(lseDtype, rows);
  for (let r = 0; r < rows; r++) {
    const t = targetOf('crossEntropy', targets, r, cols, ignoreIndex);
    const norm = logSumExpRow(x, r * cols, cols);
    lse[r] = norm;
    if (t >= 0) loss[r] = norm - x[r * cols + t]; // from the double, not the stored lse: one rounding
  }
  return { loss: stored(loss, dtype), lse: stored(lse, lseDtype) };
}

/**
 * d loss_r / d logits (rows, cols) = (e^(x_r − lse_r) − onehot(t_r))·g_r with g = gradLoss (rows) and
 * lse as `crossEntropy` gave it, in the logits' dtype; rows whose target is ignoreIndex are 0.
 */
export function crossEntropyGrad(
  logits: TypedArray,
  lse: TypedArray,
  targets: TypedArray,
  gradLoss: TypedArray,
  rows: number,
  cols: number,
  ignoreIndex: number,
): TypedArray {
  const dtype = dtypeOf(logits);
  const x = readable(logits);
  const norms = readable(lse);
  const g = readable(gradLoss);
  const out = resultArray(dtype, rows * cols);
  for (let r = 0; r < rows; r++) {
    const t = targetOf('crossEntropyGrad', targets, r, cols, ignoreIndex);
    if (t < 0) continue;
    const start = r * cols;
    for (let j = 0; j < cols; j++) out[start + j] = Math.exp(x[start + j] - norms[r]) * g[r];
    out[start + t] -= g[r];
  }
  return stored(out, dtype);
}
