/**
 * Reverse-mode differentiation: sort the graph topologically, then walk it once in reverse, handing
 * each node's accumulated gradient to its backward closure.
 */
import { ones } from '../tensor/ops/creation.js';
import { keep } from '../tensor/scope.js';
import { shapesEqual, shapeToString } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { noGrad } from './grad-mode.js';

/** Every tensor `root` depends on through recorded ops, inputs before the ops that use them. */
function topologicalOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // An explicit stack instead of recursion: deep graphs (long sequences unrolled) would overflow it.
  const stack: [Tensor, boolean][] = [[root, false]];
  while (stack.length > 0) {
    const [t, expanded] = stack.pop() as [Tensor, boolean];
    if (expanded) {
      order.push(t);
      continue;
    }
    if (seen.has(t)) continue;
    seen.add(t);
    stack.push([t, true]);
    for (const input of t.gradFn?.inputs ?? []) {
      if (!input.requiresGrad || seen.has(input)) continue;
      if (input.isDisposed) {
        throw new Error(
          `backward: an input of ${t.gradFn?.name} was disposed (by dispose() or a tidy() scope) before backward; call backward inside the scope that built the graph.`,
        );
      }
      stack.push([input, false]);
    }
  }
  return order;
}

/**
 * Computes d root / d leaf for every leaf with `requiresGrad` and adds it to `leaf.grad`.
 * `root` must be a scalar unless `grad` (d loss / d root, same shape as root) is given.
 */
export function backward(root: Tensor, grad?: Tensor): void {
  if (!root.requiresGrad) {
    throw new Error('backward: this tensor does not require grad (no input had requiresGrad set, or it was made under noGrad).');
  }
  if (grad === undefined && root.size !== 1) {
    throw new Error(
      `backward: the output has shape ${shapeToString(root.shape)}; call it on a scalar or pass the gradient of the loss with respect to it.`,
    );
  }
  if (grad !== undefined && !shapesEqual(grad.shape, root.shape)) {
    throw new Error(`backward: gradient shape ${shapeToString(grad.shape)} does not match output shape ${shapeToString(root.shape)}.`);
  }
  noGrad(() => {
    const grads = new Map<Tensor, Tensor>([[root, grad ?? ones(root.shape, root.dtype)]]);
    const order = topologicalOrder(root);
    for (let i = order.length - 1; i >= 0; i--) {
      const t = order[i] as Tensor;
      const g = grads.get(t);
      if (g === undefined) continue;
      if (!t.gradFn) {
        // A leaf: accumulate. The alias gives the leaf its own handle on the storage, so disposing
        // one leaf's grad never frees another's when an op passed the same gradient to both.
        t.grad = keep(t.grad ? t.grad.add(g) : g.alias());
        continue;
      }
      const inputGrads = t.gradFn.backward(g);
      t.gradFn.inputs.forEach((input, k) => {
        const gi = inputGrads[k];
        if (!gi || !input.requiresGrad) return;
        if (!shapesEqual(gi.shape, input.shape)) {
          throw new Error(
            `backward of ${t.gradFn?.name}: gradient shape ${shapeToString(gi.shape)} does not match input shape ${shapeToString(input.shape)}.`,
          );
        }
        const previous = grads.get(input);
        grads.set(input, previous ? previous.add(gi) : gi);
      });
    }
  });
}
