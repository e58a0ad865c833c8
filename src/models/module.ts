/**
 * Modules: named parameters and submodules, like torch.nn.Module.
 *
 * A module registers its parameters (`this.param`) and children (`this.child`) under names, so a model's
 * weights have stable dotted names ("layers.0.mixer.in_proj.weight") for saving, loading and weight decay
 * rules. `forward` is whatever the subclass defines; modules don't need a common call signature.
 */

import { keep } from '../tensor/scope.js';
import { shapesEqual, shapeToString } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';

export abstract class Module {
  /** Whether layers like dropout act (training) or pass through (evaluation). */
  training = true;
  private readonly params = new Map<string, Tensor>();
  private readonly children = new Map<string, Module>();

  /** Registers a parameter: a leaf that requires grad and outlives every `tidy` scope. */
  protected param(name: string, value: Tensor): Tensor {
    this.params.set(name, keep(value.requireGrad()));
    return value;
  }

  /** Registers a submodule under `name`. */
  protected child<M extends Module>(name: string, module: M): M {
    this.children.set(name, module);
    return module;
  }

  /** Every parameter with its dotted name, depth-first in registration order. */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [name, p] of this.params) out.push([prefix + name, p]);
    for (const [name, m] of this.children) out.push(...m.namedParameters(`${prefix}${name}.`));
    return out;
  }

  /** The parameters by dotted name (the live tensors, not copies), as saved to a weights file. */
  stateDict(): Map<string, Tensor> {
    return new Map(this.namedParameters());
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }

  /** Total number of scalar parameters. */
  parameterCount(): number {
    return this.parameters().reduce((n, p) => n + p.size, 0);
  }

  train(flag = true): this {
    this.training = flag;
    for (const m of this.children.values()) m.train(flag);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Drops every parameter's gradient (freeing its memory). */
  zeroGrad(): void {
    for (const p of this.parameters()) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /**
   * Copies values into the parameters by name. Every parameter must be present with the same shape
   * and dtype; the first mismatch is reported in one sentence.
   */
  loadStateDict(state: ReadonlyMap<string, Tensor>): void {
    for (const [name, p] of this.namedParameters()) {
      const v = state.get(name);
      if (!v) throw new Error(`Missing weight "${name}" (expected shape ${shapeToString(p.shape)}).`);
      if (!shapesEqual(v.shape, p.shape)) {
        throw new Error(`Weight "${name}" has shape ${shapeToString(v.shape)}, but the model expects ${shapeToString(p.shape)}.`);
      }
      if (v.dtype !== p.dtype) throw new Error(`Weight "${name}" has dtype ${v.dtype}, but the model expects ${p.dtype}.`);
      p.assign(v);
    }
    const known = new Set(this.namedParameters().map(([n]) => n));
    for (const name of state.keys()) if (!known.has(name)) throw new Error(`Unexpected weight "${name}" is not part of this model.`);
  }

  /** Frees every parameter. */
  dispose(): void {
    for (const p of this.parameters()) p.dispose();
  }
}
