/**
 * Element-wise operations with NumPy broadcasting, each forward beside its backward.
 *
 * Broadcasting never copies: both operands are expanded to the output shape as stride-0 views, and the
 * kernel walks them with their strides. In backward, a gradient that was broadcast must be summed back
 * down to the operand's shape (`unbroadcast`).
 */

import { record } from '../../autograd/graph.js';
import type { BinaryOp, UnaryOp } from '../../backends/backend.js';
import type { DType } from '../dtype.js';
import { broadcastShapes, type Shape, shapesEqual } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { fromBuffer, full } from './creation.js';
import { broadcastView, reshape } from './views.js';

type Operand = Tensor | number;

/** Refuses to mix tensors of different backends or dtypes, with a sentence naming both. */
export function checkCompatible(op: string, a: Tensor, b: Tensor): void {
  if (a.storage.backend !== b.storage.backend) {
    throw new Error(`${op}: tensors live on different backends (${a.backend} and ${b.backend}).`);
  }
  if (a.dtype !== b.dtype) {
    throw new Error(`${op}: dtypes ${a.dtype} and ${b.dtype} differ; convert one with .astype().`);
  }
}

/** A number becomes a 0-d tensor of the other operand's dtype, so `x.mul(2)` reads naturally. */
const asTensor = (x: Operand, like: Tensor): Tensor => (typeof x === 'number' ? full([], x, like.dtype) : x);

/** Sums `g` over the axes that broadcasting stretched, giving a gradient of `shape`. */
export function unbroadcast(g: Tensor, shape: Shape): Tensor {
  if (shapesEqual(g.shape, shape)) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  // Axes where g has size 1 need no sum, only the reshape (a batch of 1 costs nothing).
  for (let i = 0; i < g.rank; i++) if (g.shape[i] !== 1 && (i < lead || shape[i - lead] === 1)) axes.push(i);
  return reshape(axes.length > 0 ? g.sum(axes, false) : g, shape);
}

function unaryKernel(op: UnaryOp, x: Tensor): Tensor {
  return fromBuffer(x.storage.backend.unary(op, x.view()), x.shape, x.dtype, x.storage.backend);
}

function binaryKernel(op: BinaryOp, name: string, a: Tensor, b: Tensor): Tensor {
  checkCompatible(name, a, b);
  const shape = broadcastShapes(name, a.shape, b.shape);
  const ea = broadcastView(a, shape);
  const eb = broadcastView(b, shape);
  const out = fromBuffer(a.storage.backend.binary(op, ea.view(), eb.view()), shape, a.dtype, a.storage.backend);
  if (ea !== a) ea.dispose();
  if (eb !== b) eb.dispose();
  return out;
}

// ---- unary ----

export const neg = (x: Tensor): Tensor => record(unaryKernel('neg', x), 'neg', [x], (g) => [neg(g)]);

export function exp(x: Tensor): Tensor {
  const y = unaryKernel('exp', x);
  return record(y, 'exp', [x], (g) => [mul(g, y)]);
}

export const log = (x: Tensor): Tensor => record(unaryKernel('log', x), 'log', [x], (g) => [div(g, x)]);

export function sqrt(x: Tensor): Tensor {
  const y = unaryKernel('sqrt', x);
  return record(y, 'sqrt', [x], (g) => [div(g, mul(y, 2))]);
}

export function rsqrt(x: Tensor): Tensor {
  const y = unaryKernel('rsqrt', x);
  // d x^(-1/2) = -1/2 · x^(-3/2) = -1/2 · y³
  return record(y, 'rsqrt', [x], (g) => [mul(g, mul(pow(y, 3), -0.5))]);
}

export function tanh(x: Tensor): Tensor {
  const y = unaryKernel('tanh', x);
  return record(y, 'tanh', [x], (g) => [mul(g, sub(1, mul(y, y)))]);
}

export function sigmoid(x: Tensor): Tensor {
  const y = unaryKernel('sigmoid', x);
  return record(y, 'sigmoid', [x], (g) => [mul(g, mul(y, sub(1, y)))]);
}

export const silu = (x: Tensor): Tensor => record(unaryKernel('silu', x), 'silu', [x], (g) => [mul(g, unaryKernel('siluGrad', x))]);

/** GELU, tanh approximation (GPT-2's): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
export const gelu = (x: Tensor): Tensor => record(unaryKernel('gelu', x), 'gelu', [x], (g) => [mul(g, unaryKernel('geluGrad', x))]);

/** log(1 + eˣ); its derivative is σ(x). */
export const softplus = (x: Tensor): Tensor =>
  record(unaryKernel('softplus', x), 'softplus', [x], (g) => [mul(g, unaryKernel('sigmoid', x))]);

export const relu = (x: Tensor): Tensor => record(unaryKernel('relu', x), 'relu', [x], (g) => [mul(g, gt(x, 0))]);

export const abs = (x: Tensor): Tensor => record(unaryKernel('abs', x), 'abs', [x], (g) => [mul(g, unaryKernel('sign', x))]);

// ---- binary ----

export function add(a: Operand, b: Operand): Tensor {
  const [ta, tb] = operands(a, b);
  return record(binaryKernel('add', 'add', ta, tb), 'add', [ta, tb], (g) => [unbroadcast(g, ta.shape), unbroadcast(g, tb.shape)]);
}

export function sub(a: Operand, b: Operand): Tensor {
  const [ta, tb] = operands(a, b);
  return record(binaryKernel('sub', 'sub', ta, tb), 'sub', [ta, tb], (g) => [unbroadcast(g, ta.shape), unbroadcast(neg(g), tb.shape)]);
}

export function mul(a: Operand, b: Operand): Tensor {
  const [ta, tb] = operands(a, b);
  return record(binaryKernel('mul', 'mul', ta, tb), 'mul', [ta, tb], (g) => [
    unbroadcast(mul(g, tb), ta.shape),
    unbroadcast(mul(g, ta), tb.shape),
  ]);
}

export function div(a: Operand, b: Operand): Tensor {
  const [ta, tb] = operands(a, b);
  return record(binaryKernel('div', 'div', ta, tb), 'div', [ta, tb], (g) => [
    unbroadcast(div(g, tb), ta.shape),
    unbroadcast(neg(div(mul(g, ta), mul(tb, tb))), tb.shape),
  ]);
}

/** aᵇ; the gradient for b uses log a, so it is only meaningful for a > 0. */
export function pow(a: Operand, b: Operand): Tensor {
  const [ta, tb] = operands(a, b);
  const y = binaryKernel('pow', 'pow', ta, tb);
  return record(y, 'pow', [ta, tb], (g) => [
    unbroadcast(mul(g, mul(tb, pow(ta, sub(tb, 1)))), ta.shape),
    tb.requiresGrad ? unbroadcast(mul(g, mul(y, log(ta))), tb.shape) : null,
  ]);
}

/** The gradient goes to the larger operand (to `a` on ties, like `where(a >= b, …)`). */
export function maximum(a: Operand, b: Operand): Tensor {
  const [ta, tb] = operands(a, b);
  return record(binaryKernel('maximum', 'maximum', ta, tb), 'maximum', [ta, tb], (g) => {
    const pick = ge(ta, tb);
    return [unbroadcast(mul(g, pick), ta.shape), unbroadcast(mul(g, sub(1, pick)), tb.shape)];
  });
}

export function minimum(a: Operand, b: Operand): Tensor {
  const [ta, tb] = operands(a, b);
  return record(binaryKernel('minimum', 'minimum', ta, tb), 'minimum', [ta, tb], (g) => {
    const pick = le(ta, tb);
    return [unbroadcast(mul(g, pick), ta.shape), unbroadcast(mul(g, sub(1, pick)), tb.shape)];
  });
}

function operands(a: Operand, b: Operand): [Tensor, Tensor] {
  if (typeof a === 'number' && typeof b === 'number') throw new Error('An element-wise op needs at least one tensor operand.');
  const ta = typeof a === 'number' ? asTensor(a, b as Tensor) : a;
  return [ta, asTensor(b, ta)];
}

// ---- comparisons: 1 where true, 0 where false, in the operands' dtype; not differentiable ----

const compare =
  (op: BinaryOp) =>
  (a: Operand, b: Operand): Tensor => {
    const [ta, tb] = operands(a, b);
    return binaryKernel(op, op, ta, tb);
  };
export const eq = compare('eq');
export const ne = compare('ne');
export const lt = compare('lt');
export const le = compare('le');
export const gt = compare('gt');
export const ge = compare('ge');

// ---- selection ----

/** `cond ≠ 0 ? a : b`, broadcasting all three; gradients flow to the chosen side. */
export function where(cond: Tensor, a: Operand, b: Operand): Tensor {
  const [ta, tb] = operands(a, b);
  checkCompatible('where', ta, tb);
  const shape = broadcastShapes('where', broadcastShapes('where', cond.shape, ta.shape), tb.shape);
  const operandsOfWhere = [cond, ta, tb];
  const [vc, va, vb] = operandsOfWhere.map((t) => broadcastView(t, shape)) as [Tensor, Tensor, Tensor];
  const out = fromBuffer(ta.storage.backend.where(vc.view(), va.view(), vb.view()), shape, ta.dtype, ta.storage.backend);
  [vc, va, vb].forEach((v, i) => {
    if (v !== operandsOfWhere[i]) v.dispose();
  });
  return record(out, 'where', [ta, tb], (g) => {
    const zero = full([], 0, g.dtype);
    return [unbroadcast(where(cond, g, zero), ta.shape), unbroadcast(where(cond, zero, g), tb.shape)];
  });
}

/** `x` with `value` wherever `mask` is non-zero (e.g. −∞ above the diagonal for causal attention). */
export const maskedFill = (x: Tensor, mask: Tensor, value: number): Tensor => where(mask, value, x);

// ---- layout and type ----

/**
 * The tensor laid out densely from element 0 of its buffer: an alias when it already is, else a copy.
 * Kernels that take a whole buffer as a (rows, cols) array (reductions, softmax, losses, gathers)
 * rely on both conditions, so a narrowed view that starts mid-buffer is copied too.
 */
export function contiguous(x: Tensor): Tensor {
  const dense = x.isContiguous && x.offset === 0;
  const out = dense ? x.alias() : fromBuffer(x.storage.backend.copy(x.view(), x.dtype), x.shape, x.dtype, x.storage.backend);
  return record(out, 'contiguous', [x], (g) => [g]);
}

/** Converts to another dtype; gradients flow back converted to the input's dtype. */
export function astype(x: Tensor, dtype: DType): Tensor {
  const out = fromBuffer(x.storage.backend.copy(x.view(), dtype), x.shape, dtype, x.storage.backend);
  return record(out, 'astype', [x], (g) => [astype(g, x.dtype)]);
}

/** Writes `src` (broadcast to `dst`'s shape) into `dst`'s elements in place; not recorded. */
export function assign(dst: Tensor, src: Tensor): void {
  checkCompatible('assign', dst, src);
  const e = broadcastView(src, dst.shape);
  dst.storage.backend.assign(dst.view(), e.view());
  if (e !== src) e.dispose();
}
