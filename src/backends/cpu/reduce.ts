/**
 * Reductions, prefix sums and softmax on the CPU: the reference definitions.
 *
 * `reduce` folds the middle axis of a contiguous (outer, len, inner) array, so a reduction over leading
 * or middle axes of a row-major tensor reads it where it lies (a row reduction is inner = 1). The scans
 * and softmax work along the last axis of a contiguous (rows, cols) array. Everything accumulates in a
 * JS double, so summing a long float32 line adds essentially no error beyond the final rounding.
 */
import type { DType, TypedArray } from '../../tensor/dtype.js';
import type { ReduceOp } from '../backend.js';
import { type NumericArray, readable, resultArray, stored } from './buffer.js';

/**
 * The sum, max, min or argmax of the `len` elements x[start], x[start + stride], …: one line of a
 * reduction. NaN wins max/min/argmax (as in PyTorch); argmax gives the position along the line, the
 * first of equal maxima. An empty line sums to 0 and has max −∞ and min +∞ (the caller refuses argmax).
 */
function reduceLine(op: ReduceOp, x: NumericArray, start: number, len: number, stride: number): number {
  const end = start + len * stride;
  switch (op) {
    case 'sum': {
      let s = 0;
      for (let k = start; k < end; k += stride) s += x[k];
      return s;
    }
    case 'max': {
      let m = -Infinity;
      for (let k = start; k < end; k += stride) {
        const v = x[k];
        if (v > m) m = v;
        else if (Number.isNaN(v)) return NaN;
      }
      return m;
    }
    case 'min': {
      let m = Infinity;
      for (let k = start; k < end; k += stride) {
        const v = x[k];
        if (v < m) m = v;
        else if (Number.isNaN(v)) return NaN;
      }
      return m;
    }
    case 'argmax': {
      // Strict `>` keeps the first of equal maxima; starting at x[start] makes an all −∞ line give 0.
      let best = x[start];
      if (Number.isNaN(best)) return 0;
      let arg = 0;
      for (let k = start + stride, j = 1; k < end; k += stride, j++) {
        const v = x[k];
        if (v > best) {
          best = v;
          arg = j;
        } else if (Number.isNaN(v)) {
          return j;
        }
      }
      return arg;
    }
  }
}

/**
 * (outer, len, inner) → (outer, inner): y[o, i] = the sum, max, min or argmax over j of x[o, j, i],
 * which lives at (o·len + j)·inner + i. A (rows, cols) row reduction is (rows, cols, 1). Results have
 * `dtype`, except argmax, which gives int32 indices j. An empty axis (len = 0) sums to 0, has max −∞
 * and min +∞, and has no argmax (an error).
 */
export function reduce(op: ReduceOp, data: TypedArray, dtype: DType, outer: number, len: number, inner: number): TypedArray {
  if (op === 'argmax' && len === 0 && outer * inner > 0) throw new Error('reduce: argmax over an empty axis is undefined.');
  const x = readable(data);
  const outDtype: DType = op === 'argmax' ? 'int32' : dtype;
  const out = resultArray(outDtype, outer * inner);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) out[o * inner + i] = reduceLine(op, x, o * len * inner + i, len, inner);
  }
  return stored(out, outDtype);
}

/**
 * (rows, cols) → (rows, cols): inclusive prefix sums along each row, out[j] = Σ_{k ≤ j} x[k]; with
 * `reverse`, suffix sums out[j] = Σ_{k ≥ j} x[k] (the gradient of a prefix sum).
 */
export function cumsum(data: TypedArray, dtype: DType, rows: number, cols: number, reverse: boolean): TypedArray {
  const x = readable(data);
  const out = resultArray(dtype, rows * cols);
  for (let r = 0; r < rows; r++) {
    const start = r * cols;
    let s = 0;
    if (reverse) {
      for (let i = start + cols - 1; i >= start; i--) out[i] = s += x[i];
    } else {
      for (let i = start; i < start + cols; i++) out[i] = s += x[i];
    }
  }
  return stored(out, dtype);
}

/**
 * log Σ_j e^(x_j) over the row x[start, start + cols), computed stably: the row max m is subtracted
 * before exponentiating (log Σ e^x = m + log Σ e^(x−m)), so every exponent is ≤ 0 and nothing
 * overflows however large x is. Softmax is then e^(x − lse) and log-softmax x − lse.
 */
export function logSumExpRow(x: NumericArray, start: number, cols: number): number {
  const end = start + cols;
  let m = -Infinity;
  for (let i = start; i < end; i++) if (x[i] > m) m = x[i];
  let sum = 0;
  for (let i = start; i < end; i++) sum += Math.exp(x[i] - m);
  return m + Math.log(sum);
}

/**
 * (rows, cols) → (rows, cols): softmax along each row, or log-softmax with `log`. A row containing
 * NaN, or of all −∞, gives NaN, as in PyTorch.
 */
export function softmax(data: TypedArray, dtype: DType, rows: number, cols: number, log: boolean): TypedArray {
  const x = readable(data);
  const out = resultArray(dtype, rows * cols);
  for (let r = 0; r < rows; r++) {
    const start = r * cols;
    const lse = logSumExpRow(x, start, cols);
    if (log) for (let i = start; i < start + cols; i++) out[i] = x[i] - lse;
    else for (let i = start; i < start + cols; i++) out[i] = Math.exp(x[i] - lse);
  }
  return stored(out, dtype);
}
