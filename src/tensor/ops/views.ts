/**
 * Views: new shapes over the same storage, made by changing strides and offset, never by copying
 * (except `reshape` of a non-contiguous tensor, which must copy first, as in PyTorch).
 *
 *     transpose of a (2, 3) tensor with strides (3, 1) → shape (3, 2), strides (1, 3)
 *     expand (1, 3) → (4, 3): the broadcast axis gets stride 0, so all rows read the same elements
 *     narrow(axis 1, start 1, length 2) of (2, 3): offset + 1, shape (2, 2), strides unchanged
 */
import { record } from '../../autograd/graph.js';
import { contiguousStrides, normalizeAxis, type Shape, shapesEqual, shapeToString, sizeOf } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { zeros } from './creation.js';
import { contiguous, unbroadcast } from './elementwise.js';

/** Resolves one −1 entry from the element count. */
function inferShape(x: Tensor, shape: readonly number[]): number[] {
  const known = shape.filter((d) => d !== -1);
  const out = [...shape];
  const hole = shape.indexOf(-1);
  if (hole !== shape.lastIndexOf(-1)) throw new Error(`reshape: only one dimension may be -1, got ${shapeToString(shape)}.`);
  if (hole >= 0) out[hole] = known.length === 0 ? x.size : x.size / sizeOf(known);
  if (!out.every((d) => Number.isInteger(d) && d >= 0) || sizeOf(out) !== x.size) {
    throw new Error(`reshape: cannot view a tensor of shape ${shapeToString(x.shape)} as ${shapeToString(shape)}.`);
  }
  return out;
}

/** The same elements in row-major order with another shape; one dimension may be −1. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const target = inferShape(x, shape);
  // Only a contiguous tensor can be re-viewed; any other is copied first, as PyTorch's reshape does.
  const source = x.isContiguous ? x : contiguous(x);
  const out = source.withLayout(target, contiguousStrides(target), source.offset);
  if (source !== x) source.dispose();
  return record(out, 'reshape', [x], (g) => [reshape(g, x.shape)]);
}

/** Reorders the axes: output axis i is input axis `axes[i]`. */
export function permute(x: Tensor, axes: readonly number[]): Tensor {
  const norm = axes.map((a) => normalizeAxis('permute', a, x.rank));
  if (norm.length !== x.rank || new Set(norm).size !== x.rank) {
    throw new Error(`permute: [${axes.join(', ')}] is not a permutation of the ${x.rank} axes of ${shapeToString(x.shape)}.`);
  }
  const out = x.withLayout(
    norm.map((a) => x.shape[a] as number),
    norm.map((a) => x.strides[a] as number),
    x.offset,
  );
  const inverse = new Array<number>(x.rank);
  norm.forEach((a, i) => {
    inverse[a] = i;
  });
  return record(out, 'permute', [x], (g) => [permute(g, inverse)]);
}

/** Swaps two axes (the last two by default). */
export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  const axes = Array.from({ length: x.rank }, (_, i) => i);
  const i = normalizeAxis('transpose', a, x.rank);
  const j = normalizeAxis('transpose', b, x.rank);
  [axes[i], axes[j]] = [axes[j] as number, axes[i] as number];
  return permute(x, axes);
}

/** Elements `start … start+length−1` along `axis`. Backward pads the gradient with zeros. */
export function narrow(x: Tensor, axis: number, start: number, length: number): Tensor {
  const ax = normalizeAxis('narrow', axis, x.rank);
  const dim = x.shape[ax] as number;
  if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > dim) {
    throw new Error(`narrow: range [${start}, ${start + length}) is out of bounds for axis ${ax} of size ${dim}.`);
  }
  const shape = [...x.shape];
  shape[ax] = length;
  const out = x.withLayout(shape, x.strides, x.offset + start * (x.strides[ax] as number));
  return record(out, 'narrow', [x], (g) => {
    const full = zeros(x.shape, g.dtype);
    const window = narrow(full, ax, start, length);
    window.assign(g);
    window.dispose();
    return [full];
  });
}

/** The slice at `index` along `axis`, with that axis removed. */
export function select(x: Tensor, axis: number, index: number): Tensor {
  const ax = normalizeAxis('select', axis, x.rank);
  const dim = x.shape[ax] as number;
  const i = index < 0 ? index + dim : index;
  if (!Number.isInteger(i) || i < 0 || i >= dim) {
    throw new Error(`select: index ${index} is out of range for axis ${ax} of size ${dim}.`);
  }
  return squeeze(narrow(x, ax, i, 1), ax);
}

/**
 * The stride-0 view of `x` broadcast to `shape`, unrecorded: what kernels use to read a broadcast
 * operand. Returns `x` itself when nothing changes.
 */
export function broadcastView(x: Tensor, shape: Shape): Tensor {
  if (shapesEqual(x.shape, shape)) return x;
  const lead = shape.length - x.rank;
  if (lead < 0) throw new Error(`expand: cannot expand shape ${shapeToString(x.shape)} to fewer dimensions ${shapeToString(shape)}.`);
  const strides = shape.map((d, i) => {
    if (i < lead) return 0;
    const xd = x.shape[i - lead] as number;
    if (xd === d) return x.strides[i - lead] as number;
    if (xd === 1) return 0;
    throw new Error(`expand: cannot expand shape ${shapeToString(x.shape)} to ${shapeToString(shape)}.`);
  });
  return x.withLayout([...shape], strides, x.offset);
}

/** Broadcasts `x` to `shape` without copying (NumPy rules); backward sums over the copies. */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  if (shapesEqual(x.shape, shape)) return reshape(x, shape);
  const out = broadcastView(x, shape);
  return record(out, 'expand', [x], (g) => [unbroadcast(g, x.shape)]);
}

/** Removes `axis` (which must have size 1), or every size-1 axis. */
export function squeeze(x: Tensor, axis?: number): Tensor {
  if (axis === undefined)
    return reshape(
      x,
      x.shape.filter((d) => d !== 1),
    );
  const ax = normalizeAxis('squeeze', axis, x.rank);
  if (x.shape[ax] !== 1) throw new Error(`squeeze: axis ${ax} of shape ${shapeToString(x.shape)} has size ${x.shape[ax]}, not 1.`);
  const out = x.withLayout(
    x.shape.filter((_, i) => i !== ax),
    x.strides.filter((_, i) => i !== ax),
    x.offset,
  );
  return record(out, 'squeeze', [x], (g) => [unsqueeze(g, ax)]);
}

/** Inserts a size-1 axis at `axis` (−1 appends). */
export function unsqueeze(x: Tensor, axis: number): Tensor {
  const ax = normalizeAxis('unsqueeze', axis, x.rank + 1);
  const shape = [...x.shape];
  const strides = [...x.strides];
  shape.splice(ax, 0, 1);
  strides.splice(ax, 0, (x.strides[ax] ?? 1) * (x.shape[ax] ?? 1));
  return record(x.withLayout(shape, strides, x.offset), 'unsqueeze', [x], (g) => [squeeze(g, ax)]);
}

/** Merges axes `start … end` into one. */
export function flatten(x: Tensor, start = 0, end = -1): Tensor {
  if (x.rank === 0) return reshape(x, [1]);
  const s = normalizeAxis('flatten', start, x.rank);
  const e = normalizeAxis('flatten', end, x.rank);
  return reshape(x, [...x.shape.slice(0, s), sizeOf(x.shape.slice(s, e + 1)), ...x.shape.slice(e + 1)]);
}
