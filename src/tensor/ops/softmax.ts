/**
 * Softmax and log-softmax along one axis, each one kernel forward and a few ops backward:
 *
 *     y = softmax(x):      dx = y ⊙ (g − Σ g⊙y)
 *     y = log softmax(x):  dx = g − softmax(x) ⊙ Σ g
 */
import { record } from '../../autograd/graph.js';
import type { Tensor } from '../tensor.js';
import { exp, mul, sub } from './elementwise.js';
import { sum } from './reduce.js';
import { alongAxis } from './rows.js';

const rowSoftmax = (x: Tensor, axis: number, log: boolean): Tensor =>
  alongAxis(log ? 'logSoftmax' : 'softmax', x, axis, (rows, n, cols) => x.storage.backend.softmax(rows, x.dtype, n, cols, log));

export function softmax(x: Tensor, axis = -1): Tensor {
  const y = rowSoftmax(x, axis, false);
  return record(y, 'softmax', [x], (g) => [mul(y, sub(g, sum(mul(g, y), axis, true)))]);
}

export function logSoftmax(x: Tensor, axis = -1): Tensor {
  const y = rowSoftmax(x, axis, true);
  return record(y, 'logSoftmax', [x], (g) => [sub(g, mul(exp(y), sum(g, axis, true)))]);
}
