/**
 * The autograd graph. Every differentiable op calls `record` with its output, its inputs and a
 * backward closure that maps the gradient of the output to the gradients of the inputs — the
 * chain rule for that one op, written beside its forward (micrograd style).
 */
import type { Tensor } from '../tensor/tensor.js';
import { isGradEnabled } from './grad-mode.js';

/** Given dL/d(output), returns dL/d(input) for each input (null where an input needs none). */
export type BackwardFn = (grad: Tensor) => (Tensor | null)[];

export interface GradFn {
  /** The op's name, for error messages and for reading a graph. */
  readonly name: string;
  readonly inputs: readonly Tensor[];
  readonly backward: BackwardFn;
}

/**
 * Attaches a backward closure to `out` when gradients are on and some input needs one.
 * Returns `out` so an op can end with `return record(...)`.
 */
export function record(out: Tensor, name: string, inputs: readonly Tensor[], backward: BackwardFn): Tensor {
  if (isGradEnabled() && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.gradFn = { name, inputs, backward };
  }
  return out;
}
