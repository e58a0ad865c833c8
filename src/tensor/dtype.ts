/**
 * Element types a tensor can hold.
 *
 * - `float32`: the default; what every backend computes in.
 * - `int32`: token ids and indices.
 * - `float16`: storage only (half the bytes); kernels read it, compute in f32, and write it back.
 *   On the CPU it lives in `Float16Array` from `@petamoriken/float16`.
 * - `float64`: CPU only, for gradient checks by finite differences, where f32 rounding would drown
 *   the signal.
 */
import { Float16Array } from '@petamoriken/float16';

export type DType = 'float32' | 'int32' | 'float16' | 'float64';

export type TypedArray = Float32Array | Int32Array | Float64Array | Float16Array;

export const BYTES_PER_ELEMENT: Record<DType, number> = {
  float32: 4,
  int32: 4,
  float16: 2,
  float64: 8,
};

/** A new zero-filled array of `size` elements of `dtype`. */
export function allocArray(dtype: DType, size: number): TypedArray {
  switch (dtype) {
    case 'float32':
      return new Float32Array(size);
    case 'int32':
      return new Int32Array(size);
    case 'float16':
      return new Float16Array(size);
    case 'float64':
      return new Float64Array(size);
  }
}

/** Converts a JS array or typed array to a typed array of `dtype` (copying only when needed). */
export function toTypedArray(values: ArrayLike<number>, dtype: DType): TypedArray {
  if (dtype === 'float32' && values instanceof Float32Array) return values;
  if (dtype === 'int32' && values instanceof Int32Array) return values;
  if (dtype === 'float64' && values instanceof Float64Array) return values;
  if (dtype === 'float16' && values instanceof Float16Array) return values;
  const out = allocArray(dtype, values.length);
  for (let i = 0; i < values.length; i++) out[i] = values[i] as number;
  return out;
}

/** The dtype a typed array naturally holds. */
export function dtypeOf(values: ArrayLike<number>): DType {
  if (values instanceof Int32Array) return 'int32';
  if (values instanceof Float64Array) return 'float64';
  if (values instanceof Float16Array) return 'float16';
  return 'float32';
}

export const isFloat = (dtype: DType): boolean => dtype !== 'int32';

/**
 * The dtype kernels compute `dtype` in, and so the one to keep an intermediate in that one kernel
 * hands to another (cross-entropy's per-row log-sum-exp, a norm's μ and rstd): float16 widens to
 * float32 (it is a storage format, too coarse for values that feed more arithmetic); float32 and
 * float64 are their own.
 */
export const computeDtype = (dtype: DType): DType => (dtype === 'float16' ? 'float32' : dtype);
