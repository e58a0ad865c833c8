/**
 * The CPU backend's buffer handle and the helpers every kernel uses to read from it and write to it.
 *
 * A handle is just `{ data }`: the TypedArray holding the elements. Kernels never do arithmetic on
 * a `Float16Array` directly — `@petamoriken/float16` implements it as a Proxy, so each element access
 * costs a trap call (hundreds of nanoseconds). Instead:
 * - inputs are read through `readable`, which decodes float16 into a `Float32Array` (exact: every
 *   half-precision number is a single-precision number) and passes other arrays through untouched;
 * - results are computed into a `NumericArray` from `resultArray` and handed to `stored`, which
 *   rounds them into the output dtype once.
 * All arithmetic happens in JS doubles; storing into a `Float32Array` rounds to nearest, into an
 * `Int32Array` truncates toward zero (ToInt32), and into float16 rounds to nearest-even.
 */
import { Float16Array } from '@petamoriken/float16';
import { allocArray, type DType, dtypeOf, type TypedArray } from '../../tensor/dtype.js';
import type { BufferHandle } from '../backend.js';

/** The typed arrays kernels compute with: every dtype except float16's Proxy-backed array. */
export type NumericArray = Float32Array | Int32Array | Float64Array;

/** A CPU buffer: its elements, or `null` once it has been freed. */
export interface CpuBuffer extends BufferHandle {
  data: TypedArray | null;
}

/**
 * The elements behind a handle, checked: it must be a live CPU buffer holding `dtype` (when given)
 * with at least `minLength` elements. `op` names the kernel in the error message.
 */
export function arrayOf(handle: BufferHandle, op: string, minLength = 0, dtype?: DType): TypedArray {
  if (!('data' in handle)) throw new Error(`${op}: the buffer does not belong to the CPU backend.`);
  const data = (handle as CpuBuffer).data;
  if (data === null) throw new Error(`${op}: the buffer was used after it was freed.`);
  if (dtype !== undefined && dtypeOf(data) !== dtype) {
    throw new Error(`${op}: the buffer holds ${dtypeOf(data)} elements, not ${dtype}.`);
  }
  if (data.length < minLength) {
    throw new Error(`${op}: the buffer has ${data.length} elements but ${minLength} are needed.`);
  }
  return data;
}

/** Value of every 16-bit pattern, built once: decoding a half is then a single table lookup. */
const HALF_TO_FLOAT = (() => {
  const table = new Float32Array(65536);
  for (let bits = 0; bits < 65536; bits++) {
    const sign = bits & 0x8000 ? -1 : 1;
    const exponent = (bits >> 10) & 0x1f;
    const mantissa = bits & 0x3ff;
    // Exponent 0 holds zero and the subnormals (no implicit leading 1); 31 holds ±∞ and NaN.
    if (exponent === 0) table[bits] = sign * mantissa * 2 ** -24;
    else if (exponent === 31) table[bits] = mantissa === 0 ? sign * Infinity : NaN;
    else table[bits] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  }
  return table;
})();

/** The raw 16-bit patterns of a `Float16Array`, sharing its memory. */
const halfBits = (data: Float16Array): Uint16Array => new Uint16Array(data.buffer, data.byteOffset, data.length);

/** `data` as an array kernels can index quickly: float16 is decoded into a new `Float32Array`. */
export function readable(data: TypedArray): NumericArray {
  if (!(data instanceof Float16Array)) return data;
  const bits = halfBits(data);
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = HALF_TO_FLOAT[bits[i]];
  return out;
}

/**
 * A zeroed array to compute `size` results of `dtype` into: the dtype's own array, or a
 * `Float64Array` for float16 so that `stored` rounds each double to half precision exactly once.
 */
export const resultArray = (dtype: DType, size: number): NumericArray =>
  dtype === 'float16' ? new Float64Array(size) : (allocArray(dtype, size) as NumericArray);

/** `values` as a `dtype` TypedArray: `values` itself when it already is one, else a converted copy. */
export function stored(values: NumericArray, dtype: DType): TypedArray {
  if (dtype === 'float16') return new Float16Array(values);
  if (dtypeOf(values) === dtype) return values;
  const out = allocArray(dtype, values.length) as NumericArray;
  out.set(values); // converts element by element: rounds to f32, or ToInt32 for int32
  return out;
}

/** A new `dtype` array holding a copy of `data`'s values, converted. */
export const converted = (data: TypedArray, dtype: DType): TypedArray =>
  dtypeOf(data) === dtype ? data.slice() : stored(readable(data), dtype);

/**
 * The elements of `data` as stored, sharing its memory: float16 as its 16-bit patterns. Moving these
 * between two arrays of the same dtype copies values bit-exactly without decoding them.
 */
export const rawElements = (data: TypedArray): NumericArray | Uint16Array => (data instanceof Float16Array ? halfBits(data) : data);
