/**
 * Inverted dropout: zero each element with probability p and scale the survivors by 1/(1−p), so the
 * expected activation is unchanged and evaluation needs no rescaling. The mask comes from the seeded
 * counter-based generator, so a run is reproducible on every backend.
 */
import type { Tensor } from '../tensor.js';
import { rand } from './creation.js';
import { ge, mul } from './elementwise.js';

export function dropout(x: Tensor, p: number, training = true): Tensor {
  if (p < 0 || p >= 1) throw new Error(`dropout: p must be in [0, 1), got ${p}.`);
  if (!training || p === 0) return x;
  const keepMask = ge(rand(x.shape, 0, 1, x.dtype), p);
  return mul(x, mul(keepMask, 1 / (1 - p)));
}
