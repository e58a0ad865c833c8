/**
 * The causal mask of autoregressive attention: position i may attend to j ≤ i only.
 */
import type { DType } from '../dtype.js';
import type { Tensor } from '../tensor.js';
import { arange } from './creation.js';
import { gt } from './elementwise.js';
import { reshape } from './views.js';

/**
 * (queries, len) with 1 where j > i (the future, to be masked) and 0 elsewhere: the last `queries`
 * rows of the (len, len) mask, for queries at positions len − queries … len − 1 against keys 0 … len − 1
 * (all of them by default; one row for a decoding step against a cache).
 */
export function causalMask(len: number, dtype: DType = 'float32', queries = len): Tensor {
  const i = reshape(arange(len - queries, len, 1, dtype), [queries, 1]);
  const j = reshape(arange(0, len, 1, dtype), [1, len]);
  return gt(j, i);
}
