/**
 * Making tensors: from values, constants, ranges and seeded random draws. New tensors are created on
 * the active backend (see `setBackend`).
 */
import type { Backend, BufferHandle } from '../../backends/backend.js';
import { getBackend } from '../../backends/registry.js';
import { type DType, dtypeOf, type TypedArray, toTypedArray } from '../dtype.js';
import { globalGenerator } from '../random.js';
import { type Shape, shapeToString, sizeOf } from '../shape.js';
import { Storage } from '../storage.js';
import { Tensor } from '../tensor.js';

/** Wraps a fresh contiguous buffer made by a kernel as a tensor of `shape`. */
export function fromBuffer(buffer: BufferHandle, shape: Shape, dtype: DType, backend: Backend = getBackend()): Tensor {
  return new Tensor(new Storage(backend, buffer, dtype, sizeOf(shape)), [...shape]);
}

export interface CreateOptions {
  dtype?: DType;
  requiresGrad?: boolean;
}

type Nested = number | readonly Nested[];

function flattenNested(values: Nested, shape: number[], out: number[], depth: number): void {
  if (typeof values === 'number') {
    if (depth !== shape.length) throw new Error('tensor: the nested array is ragged (rows of different lengths).');
    out.push(values);
    return;
  }
  if (depth === shape.length) shape.push(values.length);
  else if (shape[depth] !== values.length) throw new Error('tensor: the nested array is ragged (rows of different lengths).');
  for (const v of values) flattenNested(v, shape, out, depth + 1);
}

/**
 * A tensor from a number, a nested array, or a flat typed array with a `shape`.
 * The dtype is float32 unless given (or taken from a typed array).
 */
export function tensor(values: Nested | TypedArray, shapeOrOptions?: Shape | CreateOptions, options: CreateOptions = {}): Tensor {
  let shape: number[];
  let flat: ArrayLike<number>;
  let opts = options;
  if (Array.isArray(shapeOrOptions)) shape = [...shapeOrOptions];
  else {
    opts = (shapeOrOptions as CreateOptions | undefined) ?? options;
    shape = [];
  }
  if (ArrayBuffer.isView(values)) {
    flat = values as TypedArray;
    if (!Array.isArray(shapeOrOptions)) shape = [flat.length];
  } else {
    const out: number[] = [];
    const nestedShape: number[] = [];
    flattenNested(values as Nested, nestedShape, out, 0);
    flat = out;
    if (!Array.isArray(shapeOrOptions)) shape = nestedShape;
  }
  if (sizeOf(shape) !== flat.length) {
    throw new Error(`tensor: ${flat.length} values cannot fill shape ${shapeToString(shape)} (${sizeOf(shape)} elements).`);
  }
  const dtype = opts.dtype ?? (ArrayBuffer.isView(values) ? dtypeOf(values as TypedArray) : 'float32');
  const backend = getBackend();
  const t = fromBuffer(backend.upload(toTypedArray(flat, dtype), dtype), shape, dtype, backend);
  return opts.requiresGrad ? t.requireGrad() : t;
}

/** A 0-d tensor. */
export const scalar = (value: number, dtype: DType = 'float32'): Tensor => full([], value, dtype);

export function full(shape: Shape, value: number, dtype: DType = 'float32'): Tensor {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`full: ${shapeToString(shape)} is not a valid shape.`);
  }
  const backend = getBackend();
  return fromBuffer(backend.full(sizeOf(shape), value, dtype), shape, dtype, backend);
}

export const zeros = (shape: Shape, dtype: DType = 'float32'): Tensor => full(shape, 0, dtype);
export const ones = (shape: Shape, dtype: DType = 'float32'): Tensor => full(shape, 1, dtype);
export const zerosLike = (t: Tensor): Tensor => zeros(t.shape, t.dtype);
export const onesLike = (t: Tensor): Tensor => ones(t.shape, t.dtype);

/** [start, start + step, …) up to (not including) `stop`; `arange(n)` is 0 … n−1. */
export function arange(start: number, stop?: number, step = 1, dtype: DType = 'float32'): Tensor {
  const [lo, hi] = stop === undefined ? [0, start] : [start, stop];
  const n = Math.max(0, Math.ceil((hi - lo) / step));
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = lo + i * step;
  return tensor(values, [n], { dtype });
}

/** Uniform samples in [low, high) from the global seeded generator (see src/tensor/random.ts). */
export function rand(shape: Shape, low = 0, high = 1, dtype: DType = 'float32'): Tensor {
  const backend = getBackend();
  const u = fromBuffer(backend.random('uniform', sizeOf(shape), globalGenerator.nextSeed(), dtype), shape, dtype, backend);
  return low === 0 && high === 1 ? u : affineInPlace(u, high - low, low);
}

/** Normal samples with the given mean and standard deviation, from the global seeded generator. */
export function randn(shape: Shape, mean = 0, std = 1, dtype: DType = 'float32'): Tensor {
  const backend = getBackend();
  const z = fromBuffer(backend.random('normal', sizeOf(shape), globalGenerator.nextSeed(), dtype), shape, dtype, backend);
  return mean === 0 && std === 1 ? z : affineInPlace(z, std, mean);
}

/** x·scale + shift, disposing x and the intermediate. */
function affineInPlace(x: Tensor, scale: number, shift: number): Tensor {
  const scaled = scale === 1 ? x : x.mul(scale);
  const out = shift === 0 ? scaled : scaled.add(shift);
  if (scaled !== out) scaled.dispose();
  if (x !== scaled) x.dispose();
  return out;
}
