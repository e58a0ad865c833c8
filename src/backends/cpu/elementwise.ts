/**
 * Element-wise kernels: copy with dtype conversion, assignment into a strided view, unary and binary
 * maps, select, and counter-based random numbers.
 *
 * Every kernel first brings its inputs into row-major order (`contiguousValues`: free for contiguous
 * views), so the maps themselves are plain loops over contiguous arrays. Each op gets its own loop
 * rather than one loop calling a function picked from a table: a call site that only ever sees one
 * function is inlined by V8, one that sees fifteen is not.
 */

import type { DType, TypedArray } from '../../tensor/dtype.js';
import { normalAt, pcgHash, uniformAt } from '../../tensor/random.js';
import { shapesEqual, shapeToString, sizeOf } from '../../tensor/shape.js';
import type { BinaryOp, RandomDist, UnaryOp, View } from '../backend.js';
import { rawElements, readable, resultArray, stored } from './buffer.js';
import { contiguousValues, gather, scatter } from './strided.js';

// ---- scalar definitions of the non-trivial unary ops ----

/** The logistic function σ(x) = 1 / (1 + e^−x); in doubles e^−x overflows only to ∞, giving 0. */
const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

const GELU_C = Math.sqrt(2 / Math.PI);
const GELU_A = 0.044715;

/** GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
function gelu(x: number): number {
  return 0.5 * x * (1 + Math.tanh(GELU_C * (x + GELU_A * x * x * x)));
}

/** The exact derivative of `gelu`: 0.5·(1 + t) + 0.5·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²), t = tanh(…). */
function geluGrad(x: number): number {
  const t = Math.tanh(GELU_C * (x + GELU_A * x * x * x));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_C * (1 + 3 * GELU_A * x * x);
}

/**
 * softplus(x) = log(1 + eˣ). Above 20 it returns x, as PyTorch does (the difference is below e⁻²⁰, and
 * eˣ would overflow for x > 709); `log1p` keeps it accurate for very negative x, where eˣ ≪ 1.
 */
const softplus = (x: number): number => (x > 20 ? x : Math.log1p(Math.exp(x)));

/** silu'(x) = σ(x)·(1 + x·(1 − σ(x))). */
function siluGrad(x: number): number {
  const s = sigmoid(x);
  return s * (1 + x * (1 - s));
}

// ---- kernels ----

/** (shape of x) strided view → contiguous `dtype` array of the same values, converted. */
export function copy(x: View, data: TypedArray, dtype: DType): TypedArray {
  const out = resultArray(dtype, sizeOf(x.shape));
  gather(readable(data), x, out);
  return stored(out, dtype);
}

/**
 * Writes `src` (converted to dst's dtype) into the strided view `dst` of `dstData`, in place. `src` is
 * copied out first, so overlapping views of one buffer behave as if `src` had been cloned.
 */
export function assign(dst: View, dstData: TypedArray, src: View, srcData: TypedArray): void {
  if (!shapesEqual(dst.shape, src.shape)) {
    throw new Error(`assign: destination shape ${shapeToString(dst.shape)} differs from source shape ${shapeToString(src.shape)}.`);
  }
  const values = copy(src, srcData, dst.dtype);
  scatter(rawElements(values), rawElements(dstData), dst);
}

/** op(x) element-wise: (shape of x) → contiguous, in x's dtype. */
export function unary(op: UnaryOp, x: View, data: TypedArray): TypedArray {
  const xs = contiguousValues(readable(data), x);
  const n = xs.length;
  const out = resultArray(x.dtype, n);
  switch (op) {
    case 'neg':
      for (let i = 0; i < n; i++) out[i] = -xs[i];
      break;
    case 'exp':
      for (let i = 0; i < n; i++) out[i] = Math.exp(xs[i]);
      break;
    case 'log':
      for (let i = 0; i < n; i++) out[i] = Math.log(xs[i]);
      break;
    case 'sqrt':
      for (let i = 0; i < n; i++) out[i] = Math.sqrt(xs[i]);
      break;
    case 'rsqrt':
      for (let i = 0; i < n; i++) out[i] = 1 / Math.sqrt(xs[i]);
      break;
    case 'tanh':
      for (let i = 0; i < n; i++) out[i] = Math.tanh(xs[i]);
      break;
    case 'sigmoid':
      for (let i = 0; i < n; i++) out[i] = sigmoid(xs[i]);
      break;
    case 'silu':
      for (let i = 0; i < n; i++) out[i] = xs[i] * sigmoid(xs[i]);
      break;
    case 'gelu':
      for (let i = 0; i < n; i++) out[i] = gelu(xs[i]);
      break;
    case 'softplus':
      for (let i = 0; i < n; i++) out[i] = softplus(xs[i]);
      break;
    case 'relu': // Math.max keeps NaN, as torch.relu does
      for (let i = 0; i < n; i++) out[i] = Math.max(xs[i], 0);
      break;
    case 'abs':
      for (let i = 0; i < n; i++) out[i] = Math.abs(xs[i]);
      break;
    case 'sign': // −1, 0 or 1 (NaN stays NaN)
      for (let i = 0; i < n; i++) out[i] = Math.sign(xs[i]);
      break;
    case 'siluGrad':
      for (let i = 0; i < n; i++) out[i] = siluGrad(xs[i]);
      break;
    case 'geluGrad':
      for (let i = 0; i < n; i++) out[i] = geluGrad(xs[i]);
      break;
  }
  return stored(out, x.dtype);
}

/** op(a, b) element-wise; a and b have the same (already broadcast) shape; the result has a's dtype. */
export function binary(op: BinaryOp, a: View, aData: TypedArray, b: View, bData: TypedArray): TypedArray {
  if (!shapesEqual(a.shape, b.shape)) {
    throw new Error(`binary ${op}: shapes ${shapeToString(a.shape)} and ${shapeToString(b.shape)} differ; broadcast them first.`);
  }
  const as = contiguousValues(readable(aData), a);
  const bs = contiguousValues(readable(bData), b);
  const n = as.length;
  const out = resultArray(a.dtype, n);
  switch (op) {
    case 'add':
      for (let i = 0; i < n; i++) out[i] = as[i] + bs[i];
      break;
    case 'sub':
      for (let i = 0; i < n; i++) out[i] = as[i] - bs[i];
      break;
    case 'mul':
      for (let i = 0; i < n; i++) out[i] = as[i] * bs[i];
      break;
    case 'div':
      for (let i = 0; i < n; i++) out[i] = as[i] / bs[i];
      break;
    case 'pow':
      for (let i = 0; i < n; i++) out[i] = as[i] ** bs[i];
      break;
    case 'maximum': // Math.max/min propagate NaN, as torch.maximum/minimum do
      for (let i = 0; i < n; i++) out[i] = Math.max(as[i], bs[i]);
      break;
    case 'minimum':
      for (let i = 0; i < n; i++) out[i] = Math.min(as[i], bs[i]);
      break;
    case 'eq':
      for (let i = 0; i < n; i++) out[i] = as[i] === bs[i] ? 1 : 0;
      break;
    case 'ne':
      for (let i = 0; i < n; i++) out[i] = as[i] !== bs[i] ? 1 : 0;
      break;
    case 'lt':
      for (let i = 0; i < n; i++) out[i] = as[i] < bs[i] ? 1 : 0;
      break;
    case 'le':
      for (let i = 0; i < n; i++) out[i] = as[i] <= bs[i] ? 1 : 0;
      break;
    case 'gt':
      for (let i = 0; i < n; i++) out[i] = as[i] > bs[i] ? 1 : 0;
      break;
    case 'ge':
      for (let i = 0; i < n; i++) out[i] = as[i] >= bs[i] ? 1 : 0;
      break;
  }
  return stored(out, a.dtype);
}

/** cond ≠ 0 ? a : b element-wise; all three have the same shape; the result has a's dtype. */
export function where(cond: View, condData: TypedArray, a: View, aData: TypedArray, b: View, bData: TypedArray): TypedArray {
  if (!shapesEqual(cond.shape, a.shape) || !shapesEqual(cond.shape, b.shape)) {
    throw new Error(
      `where: shapes ${shapeToString(cond.shape)}, ${shapeToString(a.shape)} and ${shapeToString(b.shape)} differ; broadcast them first.`,
    );
  }
  const cs = contiguousValues(readable(condData), cond);
  const as = contiguousValues(readable(aData), a);
  const bs = contiguousValues(readable(bData), b);
  const out = resultArray(a.dtype, cs.length);
  for (let i = 0; i < cs.length; i++) out[i] = cs[i] !== 0 ? as[i] : bs[i];
  return stored(out, a.dtype);
}

/**
 * `size` random numbers: element i is `uniformAt(k, i)` or `normalAt(k, i)` with k = pcgHash(seed),
 * the formulas of `tensor/random.ts` that every backend shares.
 */
export function random(dist: RandomDist, size: number, seed: number, dtype: DType): TypedArray {
  if (dtype === 'int32') throw new Error('random: dtype must be a float type, not int32.');
  const k = pcgHash(seed);
  const out = resultArray(dtype, size);
  if (dist === 'uniform') for (let i = 0; i < size; i++) out[i] = uniformAt(k, i);
  else for (let i = 0; i < size; i++) out[i] = normalAt(k, i);
  return stored(out, dtype);
}
