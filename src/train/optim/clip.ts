/**
 * Gradient clipping by global norm.
 *
 * All gradients together form one vector G; its norm ‖G‖ = √(Σ over parameters Σ g²). If ‖G‖ exceeds
 * `maxNorm`, every gradient is scaled by maxNorm / ‖G‖, which shortens G to length maxNorm without
 * turning it: a rare huge gradient (a loss spike) then cannot throw the weights far, while the update
 * still points where the gradient says.
 *
 * The scale is computed on the device as min(1, maxNorm / (‖G‖ + 10⁻⁶)) and applied unconditionally, so
 * nothing has to be read back to decide whether to clip: a GPU never waits for the CPU here. (Scaling by
 * exactly 1 changes no bits, so unclipped steps are unaffected.)
 */
import { noGrad } from '../../autograd/grad-mode.js';
import { add, div, minimum, sqrt } from '../../tensor/ops/elementwise.js';
import { stack } from '../../tensor/ops/join.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';

/**
 * Scales the gradients of `params` in place so their global norm is at most `maxNorm`, and returns the
 * norm *before* clipping as a 0-d tensor (for logging; read it back only when needed). Parameters
 * without a gradient are skipped.
 */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): Tensor {
  if (!(maxNorm > 0)) throw new Error(`clipGradNorm: maxNorm must be positive, got ${maxNorm}.`);
  // A tensor listed twice (tied weights) is one parameter: count and scale its gradient once.
  const grads = [...new Set(params)].flatMap((p) => (p.grad ? [p.grad] : []));
  return noGrad(() =>
    tidy(() => {
      if (grads.length === 0) throw new Error('clipGradNorm: no parameter has a gradient; call backward first.');
      const norm = sqrt(stack(grads.map((g) => g.square().sum())).sum());
      const scale = minimum(div(maxNorm, add(norm, 1e-6)), 1);
      for (const g of grads) g.assign(g.mul(scale));
      return norm;
    }),
  );
}
