/**
 * Inclusive cumulative sum along an axis: y_t = Σ_{s≤t} x_s. Its backward is the same sum taken from
 * the other end: dx_s = Σ_{t≥s} g_t.
 */
import { record } from '../../autograd/graph.js';
import type { Tensor } from '../tensor.js';
import { alongAxis } from './rows.js';

const scan = (x: Tensor, axis: number, reverse: boolean): Tensor =>
  alongAxis('cumsum', x, axis, (rows, n, cols) => x.storage.backend.cumsum(rows, x.dtype, n, cols, reverse));

export function cumsum(x: Tensor, axis = -1): Tensor {
  return record(scan(x, axis, false), 'cumsum', [x], (g) => [scan(g, axis, true)]);
}
