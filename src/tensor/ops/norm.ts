/**
 * Normalisation layers over the last axis, written with the engine's ops so their gradients come
 * from the ops' own backward closures.
 *
 *     LayerNorm(x) = (x − μ) / √(σ² + ε) · γ + β        (Ba et al. 2016)
 *     RMSNorm(x)   = x / √(mean(x²) + ε) · γ             (Zhang & Sennrich 2019)
 */
import type { Tensor } from '../tensor.js';
import { add, mul, rsqrt, sub } from './elementwise.js';
import { mean } from './reduce.js';

/** x (…, dim), weight γ (dim), bias β (dim) → (…, dim). */
export function layerNorm(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps = 1e-5): Tensor {
  const mu = mean(x, -1, true);
  const centered = sub(x, mu);
  const variance = mean(mul(centered, centered), -1, true);
  let y = mul(centered, rsqrt(add(variance, eps)));
  if (weight) y = mul(y, weight);
  if (bias) y = add(y, bias);
  return y;
}

/** x (…, dim), weight γ (dim) → (…, dim). */
export function rmsNorm(x: Tensor, weight: Tensor | null, eps = 1e-5): Tensor {
  const y = mul(x, rsqrt(add(mean(mul(x, x), -1, true), eps)));
  return weight ? mul(y, weight) : y;
}
