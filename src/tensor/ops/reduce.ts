/**
 * Reductions over any set of axes, with `keepdim`.
 *
 * Kernels reduce the middle axis of a contiguous (outer, len, inner) buffer. A row-major tensor whose
 * reduced axes are one consecutive run is already in that form, read in place: axis 0 of (n, d) is
 * (1, n, d), axes [0, 1] of (b, t, d) are (1, b·t, d), axis 1 of (a, b, c) is (a, b, c). That is the
 * common case in training — the gradient of a bias, or any broadcast operand (`unbroadcast`), sums a
 * contiguous gradient over its leading axes — and a transposing copy there would move the whole
 * gradient (the LM head's is 4096 × 50257 floats, 823 MB) just to sum it. Any other request (axes
 * apart, or a strided view) is brought to the form (rows, cols, 1): permute the reduced axes to the
 * end, make the result contiguous (a copy only when the layout requires it), and reduce its rows.
 */

import { record } from '../../autograd/graph.js';
import type { ReduceOp } from '../../backends/backend.js';
import { normalizeAxes, normalizeAxis, sizeOf } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { fromBuffer } from './creation.js';
import { add, contiguous, div, eq, exp, log, mul, sub } from './elementwise.js';
import { broadcastView, permute, reshape } from './views.js';

/** The output shape with reduced axes kept as 1 or dropped. */
const reducedShape = (shape: readonly number[], axes: number[], keepdim: boolean): number[] =>
  keepdim ? shape.map((d, i) => (axes.includes(i) ? 1 : d)) : shape.filter((_, i) => !axes.includes(i));

/**
 * x's buffer read as (outer, len, inner) with `axes` (sorted) as the middle, or null when that takes a
 * copy: x must be row-major from element 0 of its buffer, and the axes one consecutive run (a kept
 * axis of size 1 inside the run moves no element, so it does not break the run).
 */
function asMiddleAxis(x: Tensor, axes: number[]): [outer: number, len: number, inner: number] | null {
  const first = axes[0];
  const last = axes[axes.length - 1];
  if (first === undefined || last === undefined || !x.isContiguous || x.offset !== 0) return null;
  for (let a = first; a <= last; a++) if (x.shape[a] !== 1 && !axes.includes(a)) return null;
  return [sizeOf(x.shape.slice(0, first)), sizeOf(axes.map((a) => x.shape[a] as number)), sizeOf(x.shape.slice(last + 1))];
}

/** Runs a reduction kernel over `axes`; the result has the reduced shape (no autograd). */
function reduceKernel(op: ReduceOp, x: Tensor, axes: number[], keepdim: boolean): Tensor {
  const backend = x.storage.backend;
  const outShape = reducedShape(x.shape, axes, keepdim);
  const outDtype = op === 'argmax' ? 'int32' : x.dtype;
  const middle = asMiddleAxis(x, axes);
  if (middle) return fromBuffer(backend.reduce(op, x.storage.buffer, x.dtype, ...middle), outShape, outDtype, backend);
  const kept = x.shape.map((_, i) => i).filter((i) => !axes.includes(i));
  const moved = permute(x, [...kept, ...axes]);
  const rowsFirst = contiguous(moved);
  const sizes = (list: number[]) => sizeOf(list.map((a) => x.shape[a] as number));
  const buffer = backend.reduce(op, rowsFirst.storage.buffer, x.dtype, sizes(kept), sizes(axes), 1);
  moved.dispose();
  rowsFirst.dispose();
  return fromBuffer(buffer, outShape, outDtype, backend);
}

/** Σ over `axes` (all by default). Backward broadcasts the gradient back over the summed axes. */
export function sum(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  const ax = normalizeAxes('sum', axes, x.rank);
  const y = reduceKernel('sum', x, ax, keepdim);
  return record(y, 'sum', [x], (g) => [broadcastView(reshape(g, reducedShape(x.shape, ax, true)), x.shape)]);
}

export function mean(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  const ax = normalizeAxes('mean', axes, x.rank);
  const n = sizeOf(ax.map((a) => x.shape[a] as number));
  return div(sum(x, ax, keepdim), n);
}

/** max or min: the gradient is shared equally among the elements that attain the extreme. */
function extreme(op: 'max' | 'min', x: Tensor, axes: number | number[] | undefined, keepdim: boolean): Tensor {
  const ax = normalizeAxes(op, axes, x.rank);
  const y = reduceKernel(op, x, ax, keepdim);
  return record(y, op, [x], (g) => {
    const keepShape = reducedShape(x.shape, ax, true);
    const hits = eq(x, reshape(y, keepShape));
    const count = sum(hits, ax, true);
    return [mul(hits, div(reshape(g, keepShape), count))];
  });
}

export const max = (x: Tensor, axes?: number | number[], keepdim = false): Tensor => extreme('max', x, axes, keepdim);
export const min = (x: Tensor, axes?: number | number[], keepdim = false): Tensor => extreme('min', x, axes, keepdim);

/** Index of the first maximum along `axis`, as int32. Not differentiable. */
export function argmax(x: Tensor, axis = -1, keepdim = false): Tensor {
  return reduceKernel('argmax', x, [normalizeAxis('argmax', axis, x.rank)], keepdim);
}

/**
 * log Σ exp(x) over `axes`, computed as m + log Σ exp(x − m) with m the (detached) maximum, so large
 * inputs do not overflow. Detaching m is exact: the result does not depend on the choice of m.
 */
export function logsumexp(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  const ax = normalizeAxes('logsumexp', axes, x.rank);
  const m = reduceKernel('max', x, ax, true);
  const lse = add(log(sum(exp(sub(x, m)), ax, true)), m);
  return keepdim ? lse : reshape(lse, reducedShape(x.shape, ax, false));
}
