/**
 * The causal mask of autoregressive attention: position i may attend to j ≤ i only.
 */
import type { DType } from '../dtype.js';
import type { Tensor } from '../tensor.js';
import { arange } from './creation.js';
import { gt } from './elementwise.js';
import { reshape } from './views.js';

/** (len, len) with 1 where j > i (the future, to be masked) and 0 elsewhere. */
export function causalMask(len: number, dtype: DType = 'float32'): Tensor {
  const i = reshape(arange(0, len, 1, dtype), [len, 1]);
  const j = reshape(arange(0, len, 1, dtype), [1, len]);
  return gt(j, i);
}
