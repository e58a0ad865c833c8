/**
 * Which parameters weight decay applies to.
 *
 * Decay pulls a weight towards zero. That is a sensible prior for the matrices that mix features (linear
 * layers, embeddings, convolution kernels), but wrong for parameters whose zero means something else:
 *
 * - norm gains (`…norm….weight`): zero would switch a layer's output off; their neutral value is 1;
 * - biases: they shift activations and do not add capacity, so shrinking them only adds bias;
 * - Mamba's `A_log`: A = −exp(A_log) sets each state's decay rate; pulling A_log to 0 drags every state
 *   towards the same rate e⁻¹ instead of the spread of time scales it was initialised with;
 * - Mamba's `D`: the skip connection's gain, whose neutral value is 1.
 *
 * The rule, applied to a parameter's dotted name (see Module.namedParameters) and rank:
 *     decay ⇔ rank ≥ 2  ∧  the last name segment is neither "A_log" nor "D"  ∧  no segment contains "norm"
 * Rank < 2 catches biases, norm gains and D by shape; the name tests catch A_log (a (dim, N) matrix) and
 * a norm that might one day hold a matrix.
 */
import type { Tensor } from '../../tensor/tensor.js';

/** Names whose parameters are never decayed, whatever their rank (the last dotted segment). */
const NEVER_DECAYED = new Set(['A_log', 'D']);

/** Whether decoupled weight decay applies to the parameter `name` (a dotted module path) of this shape. */
export function decaysWeight(name: string, param: Tensor): boolean {
  const segments = name.split('.');
  const last = segments[segments.length - 1] as string;
  return param.rank >= 2 && !NEVER_DECAYED.has(last) && !segments.some((s) => s.toLowerCase().includes('norm'));
}
