/**
 * Row kernels over a contiguous (rows, cols) array: reductions, prefix sums and softmax.
 *
 * Each works one row at a time, accumulating in a JS double, so summing a long float32 row adds
 * essentially no error beyond the final rounding. The caller moves the reduced axis last (and makes
 * it contiguous).
 */
import type { DType, TypedArray } from '../../tensor/dtype.js';
import type { ReduceOp } from '../backend.js';
import { type NumericArray, readable, resultArray, stored } from './buffer.js';

/**
 * (rows, cols) → (rows): the sum, max, min or argmax of each row. Results have `dtype`, except argmax,
 * which gives int32 indices. NaN wins max/min/argmax (as in PyTorch); argmax ties go to the first
 * index. An empty row sums to 0, has max −∞ and min +∞, and has no argmax (an error).
 */
export function reduce(op: ReduceOp, data: TypedArray, dtype: DType, rows: number, cols: number): TypedArray {
  if (op === 'argmax' && cols === 0 && rows > 0) throw new Error('reduce: argmax of an empty row is undefined.');
  const x = readable(data);
  const outDtype: DType = op === 'argmax' ? 'int32' : dtype;
  const out = resultArray(outDtype, rows);
  for (let r = 0; r < rows; r++) {
    const start = r * cols;
    const end = start + cols;
    switch (op) {
      case 'sum': {
        let s = 0;
        for (let i = start; i < end; i++) s += x[i];
        out[r] = s;
        break;
      }
      case 'max': {
        let m = -Infinity;
        for (let i = start; i < end; i++) {
          const v = x[i];
          if (v > m) {
            m = v;
          } else if (Number.isNaN(v)) {
            m = NaN;
            break;
          }
        }
        out[r] = m;
        break;
      }
      case 'min': {
        let m = Infinity;
        for (let i = start; i < end; i++) {
          const v = x[i];
          if (v < m) {
            m = v;
          } else if (Number.isNaN(v)) {
            m = NaN;
            break;
          }
        }
        out[r] = m;
        break;
      }
      case 'argmax': {
        // Strict `>` keeps the first of equal maxima; starting at x[start] makes an all −∞ row give 0.
        let best = x[start];
        let arg = 0;
        if (!Number.isNaN(best)) {
          for (let i = start + 1; i < end; i++) {
            const v = x[i];
            if (v > best) {
              best = v;
              arg = i - start;
            } else if (Number.isNaN(v)) {
              arg = i - start;
              break;
            }
          }
        }
        out[r] = arg;
        break;
      }
    }
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
