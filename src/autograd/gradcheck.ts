/**
 * Gradient checking: compares autograd's gradients with central finite differences,
 *
 *     ∂L/∂x_i ≈ (L(x + ε·e_i) − L(x − ε·e_i)) / 2ε,
 *
 * in float64 on the CPU, where the O(ε²) truncation error and the rounding error (~1e-16/ε) can both
 * be made small. A vector-valued `fn` is reduced to a scalar L = Σ fn(x) ⊙ w with fixed random weights
 * w, so every output element is checked (a plain sum would hide errors that cancel).
 */
import { tensor } from '../tensor/ops/creation.js';
import { normalAt, pcgHash } from '../tensor/random.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

export interface GradcheckOptions {
  eps?: number;
  atol?: number;
  rtol?: number;
  /** Seed of the output weights w. */
  seed?: number;
}

export interface GradcheckResult {
  /** Largest |analytic − numeric| over all checked elements. */
  maxAbsError: number;
}

/**
 * Checks d Σ(fn(inputs)·w) / d input for every float64 input with `requiresGrad`. Throws an Error
 * naming the input, the element and both values at the first element out of tolerance
 * (|analytic − numeric| > atol + rtol·|numeric|).
 */
export async function gradcheck(
  fn: (...inputs: Tensor[]) => Tensor,
  inputs: Tensor[],
  { eps = 1e-6, atol = 1e-6, rtol = 1e-4, seed = 1 }: GradcheckOptions = {},
): Promise<GradcheckResult> {
  for (const x of inputs) {
    if (x.requiresGrad && x.dtype !== 'float64') throw new Error(`gradcheck: inputs must be float64, got ${x.dtype}.`);
  }
  const values = await Promise.all(inputs.map((x) => x.data()));
  const k = pcgHash(seed);
  let weights = new Float64Array(0);
  /** Σ y ⊙ w, drawing the weights w the first time the output's size is known. */
  const weighted = (y: Tensor): Tensor => {
    if (weights.length !== y.size) weights = Float64Array.from({ length: y.size }, (_, i) => normalAt(k, i));
    return y.mul(tensor(weights, y.shape, { dtype: 'float64' })).sum();
  };

  // analytic gradients
  for (const x of inputs) {
    x.grad?.dispose();
    x.grad = null;
  }
  tidy(() => weighted(fn(...inputs)).backward());

  /** L(inputs) with input `which` replaced by the values `v`. */
  const loss = async (which: number, v: Float64Array): Promise<number> => {
    const out = tidy(() => weighted(fn(...inputs.map((x, i) => (i === which ? tensor(v, x.shape, { dtype: x.dtype }) : x)))));
    const value = await out.item();
    out.dispose();
    return value;
  };

  let maxAbsError = 0;
  for (let which = 0; which < inputs.length; which++) {
    const x = inputs[which] as Tensor;
    if (!x.requiresGrad) continue;
    const analytic = x.grad ? await x.grad.data() : new Float64Array(x.size);
    const v = Float64Array.from(values[which] as ArrayLike<number>);
    for (let i = 0; i < v.length; i++) {
      const original = v[i] as number;
      v[i] = original + eps;
      const plus = await loss(which, v);
      v[i] = original - eps;
      const minus = await loss(which, v);
      v[i] = original;
      const numeric = (plus - minus) / (2 * eps);
      const a = analytic[i] as number;
      const err = Math.abs(a - numeric);
      maxAbsError = Math.max(maxAbsError, err);
      if (!(err <= atol + rtol * Math.abs(numeric))) {
        throw new Error(`gradcheck: input ${which} element ${i}: analytic ${a} vs numeric ${numeric} (error ${err.toExponential(2)}).`);
      }
    }
  }
  return { maxAbsError };
}
