/**
 * Joining and splitting along an axis. `concat` writes each input into its window of a new tensor;
 * its backward hands each input the matching window (a view) of the gradient. `split` is a list of
 * `narrow` views, so it needs no backward of its own.
 */
import { record } from '../../autograd/graph.js';
import { normalizeAxis, shapeToString } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { zeros } from './creation.js';
import { checkCompatible } from './elementwise.js';
import { narrow, unsqueeze } from './views.js';

export function concat(tensors: readonly Tensor[], axis = 0): Tensor {
  const first = tensors[0];
  if (!first) throw new Error('concat: needs at least one tensor.');
  const ax = normalizeAxis('concat', axis, first.rank);
  for (const t of tensors) {
    checkCompatible('concat', first, t);
    if (t.rank !== first.rank || t.shape.some((d, i) => i !== ax && d !== first.shape[i])) {
      throw new Error(`concat: shapes ${shapeToString(first.shape)} and ${shapeToString(t.shape)} differ outside axis ${ax}.`);
    }
  }
  const shape = [...first.shape];
  shape[ax] = tensors.reduce((n, t) => n + (t.shape[ax] as number), 0);
  const out = zeros(shape, first.dtype);
  const starts: number[] = [];
  let start = 0;
  for (const t of tensors) {
    starts.push(start);
    const window = narrow(out, ax, start, t.shape[ax] as number);
    window.assign(t);
    window.dispose();
    start += t.shape[ax] as number;
  }
  return record(out, 'concat', tensors, (g) => tensors.map((t, i) => narrow(g, ax, starts[i] as number, t.shape[ax] as number)));
}

/** Stacks equal-shaped tensors along a new axis. */
export const stack = (tensors: readonly Tensor[], axis = 0): Tensor =>
  concat(
    tensors.map((t) => unsqueeze(t, axis)),
    axis,
  );

/** Splits into pieces of the given sizes (or `n` equal pieces) along `axis`, as views. */
export function split(x: Tensor, sizes: number | readonly number[], axis = 0): Tensor[] {
  const ax = normalizeAxis('split', axis, x.rank);
  const dim = x.shape[ax] as number;
  let parts: readonly number[];
  if (typeof sizes === 'number') {
    if (dim % sizes !== 0) throw new Error(`split: axis ${ax} of size ${dim} does not divide into ${sizes} equal parts.`);
    parts = new Array<number>(sizes).fill(dim / sizes);
  } else parts = sizes;
  if (parts.reduce((a, b) => a + b, 0) !== dim) {
    throw new Error(`split: sizes [${parts.join(', ')}] do not add up to ${dim}, the size of axis ${ax}.`);
  }
  let start = 0;
  return parts.map((n) => {
    const piece = narrow(x, ax, start, n);
    start += n;
    return piece;
  });
}
