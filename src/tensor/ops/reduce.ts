/**
 * Reductions over any set of axes, with `keepdim`.
 *
 * Kernels only reduce the last axis of a contiguous (rows, cols) buffer, which every backend can do
 * fast. Any other request is brought to that form here: permute the reduced axes to the end, make the
 * result contiguous (a copy only when the layout requires it), and read it as (rows, cols).
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

/** Runs a row-reduction kernel over `axes`; the result has the reduced shape (no autograd). */
function reduceKernel(op: ReduceOp, x: Tensor, axes: number[], keepdim: boolean): Tensor {
  const kept = x.shape.map((_, i) => i).filter((i) => !axes.includes(i));
  const moved = permute(x, [...kept, ...axes]);
  const rowsFirst = contiguous(moved);
  const cols = sizeOf(axes.map((a) => x.shape[a] as number));
  const rows = cols === 0 ? sizeOf(kept.map((a) => x.shape[a] as number)) : x.size / cols;
  const backend = x.storage.backend;
  const buffer = backend.reduce(op, rowsFirst.storage.buffer, x.dtype, rows, cols);
  moved.dispose();
  rowsFirst.dispose();
  return fromBuffer(buffer, reducedShape(x.shape, axes, keepdim), op === 'argmax' ? 'int32' : x.dtype, backend);
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
