/**
 * Strided views on the CPU: where each element of a view lives in its buffer, and moving a view's
 * elements to and from contiguous arrays.
 *
 * Element (i0, i1, …) of a view lives at `offset + Σ ik·strides[k]`. Kernels want their inputs in
 * row-major order, so a view is either used in place (when it is contiguous: a plain `subarray`) or
 * gathered once into a contiguous array. The gather walks the multi-index like an odometer — the
 * last digit turns fastest, and when a digit wraps it resets and carries into the digit on its left —
 * keeping a running offset instead of re-multiplying strides for every element.
 */

import { sizeOf } from '../../tensor/shape.js';
import type { View } from '../backend.js';
import type { NumericArray } from './buffer.js';

/**
 * The view's axes with size-1 axes dropped and neighbours merged where they step through memory as
 * one axis (stride[k] = stride[k+1]·shape[k+1]), outermost first. A contiguous view of any shape
 * becomes a single axis of stride 1; fewer axes means longer inner loops and fewer carries.
 */
function coalesce(shape: readonly number[], strides: readonly number[]): { sizes: number[]; steps: number[] } {
  const sizes: number[] = [];
  const steps: number[] = [];
  for (let k = 0; k < shape.length; k++) {
    const size = shape[k];
    const stride = strides[k];
    if (size === 1) continue;
    const last = sizes.length - 1;
    if (last >= 0 && steps[last] === stride * size) {
      sizes[last] *= size;
      steps[last] = stride;
    } else {
      sizes.push(size);
      steps.push(stride);
    }
  }
  return { sizes, steps };
}

/** True when the view's elements are exactly `offset, offset + 1, …` in row-major order. */
export function isContiguous(view: View): boolean {
  const { sizes, steps } = coalesce(view.shape, view.strides);
  return sizes.length === 0 || (sizes.length === 1 && steps[0] === 1);
}

/**
 * The buffer index of every element of the view, in row-major order: an (size) Int32Array.
 * Int32 indices are enough: no CPU buffer has 2³¹ elements (16 GiB of float64).
 */
export function elementOffsets(view: View): Int32Array {
  const out = new Int32Array(sizeOf(view.shape));
  if (out.length === 0) return out;
  const { sizes, steps } = coalesce(view.shape, view.strides);
  if (sizes.length === 0) {
    out[0] = view.offset; // a single element
    return out;
  }
  // The innermost axis is a plain loop; the outer axes are the odometer's digits.
  const rank = sizes.length;
  const innerSize = sizes[rank - 1];
  const innerStep = steps[rank - 1];
  const digits = new Int32Array(rank - 1);
  let rowStart = view.offset;
  for (let i = 0; i < out.length; i += innerSize) {
    for (let j = 0, o = rowStart; j < innerSize; j++, o += innerStep) out[i + j] = o;
    // Advance the odometer by one row: bump the last outer digit, carrying leftwards on wrap.
    for (let d = rank - 2; d >= 0; d--) {
      rowStart += steps[d];
      if (++digits[d] < sizes[d]) break;
      rowStart -= steps[d] * sizes[d];
      digits[d] = 0;
    }
  }
  return out;
}

/** Copies the view's elements from `src` into `out` in row-major order, converting on store. */
export function gather(src: NumericArray, view: View, out: NumericArray): void {
  if (isContiguous(view)) {
    out.set(src.subarray(view.offset, view.offset + out.length));
    return;
  }
  const offsets = elementOffsets(view);
  for (let i = 0; i < offsets.length; i++) out[i] = src[offsets[i]];
}

/**
 * The view's elements in row-major order: the buffer itself (a `subarray`, no copy) when the view is
 * contiguous, else a new `Float64Array` (exact for every dtype).
 */
export function contiguousValues(src: NumericArray, view: View): NumericArray {
  if (isContiguous(view)) return src.subarray(view.offset, view.offset + sizeOf(view.shape));
  const out = new Float64Array(sizeOf(view.shape));
  gather(src, view, out);
  return out;
}

/** Writes `values` (row-major, the view's size) into the view's elements of `dst`; same element types. */
export function scatter<T extends NumericArray | Uint16Array>(values: T, dst: T, view: View): void {
  if (isContiguous(view)) {
    dst.set(values, view.offset);
    return;
  }
  const offsets = elementOffsets(view);
  for (let i = 0; i < offsets.length; i++) dst[offsets[i]] = values[i];
}
