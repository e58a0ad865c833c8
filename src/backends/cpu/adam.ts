/**
 * The fused Adam/AdamW update: one pass over a parameter that updates it and its two moments in place.
 * For each element, with the gradient g and the optimizer's scalars (`AdamScalars` in backend.ts, where
 * the bias corrections and the learning rate are already folded in; see src/train/optim/adam.ts):
 *
 *     m ← β₁·m + (1 − β₁)·g
 *     v ← β₂·v + (1 − β₂)·g²
 *     p ← shrink·p − stepSize · m / (√v·rootCorrection + ε)
 *
 * As everywhere on the CPU, the arithmetic is in doubles and each stored value is rounded once into the
 * array's dtype. The update of p reads m and v back *as stored*, so it uses exactly the moments that a
 * checkpoint saves and that the GPU computes with. Elements are independent and nothing is random, so
 * equal inputs give equal bits: a run resumed from a checkpoint continues bit for bit.
 */
import { dtypeOf, type TypedArray } from '../../tensor/dtype.js';
import type { AdamScalars } from '../backend.js';

/** Updates p, m and v (`size` elements each, all float32 or all float64) in place from the gradient g. */
export function adamStep(p: TypedArray, g: TypedArray, m: TypedArray, v: TypedArray, size: number, s: AdamScalars): void {
  const dtype = dtypeOf(p);
  if (dtype !== 'float32' && dtype !== 'float64') {
    throw new Error(`adamStep: the CPU updates float32 and float64 parameters, not ${dtype}.`);
  }
  const { beta1, beta2, stepSize, rootCorrection, eps, shrink } = s;
  const [c1, c2] = [1 - beta1, 1 - beta2];
  for (let i = 0; i < size; i++) {
    const gi = g[i];
    m[i] = beta1 * m[i] + c1 * gi;
    v[i] = beta2 * v[i] + c2 * gi * gi;
    p[i] = shrink * p[i] - stepSize * (m[i] / (Math.sqrt(v[i]) * rootCorrection + eps));
  }
}
