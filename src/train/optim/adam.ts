/**
 * Adam and AdamW: per-parameter step sizes from running moments of the gradient.
 *
 * For a parameter p with gradient g, at step t = 1, 2, …:
 *
 *     m ← β₁·m + (1 − β₁)·g              first moment (running mean of g)
 *     v ← β₂·v + (1 − β₂)·g²             second moment (running mean of g², element-wise)
 *     m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)   bias correction: m and v start at 0, so early averages
 *                                         are too small by exactly these factors
 *     p ← p − lr · m̂ / (√v̂ + ε)
 *
 * AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019) also shrinks the weights
 * directly, p ← p − lr·λ·p, instead of adding λ·p to g as L2 regularisation does; added to g, the decay
 * would be divided by √v̂ like everything else and so be weaker exactly for the weights with large
 * gradients. Which parameters decay is decided by `decaysWeight` (weight-decay.ts).
 *
 * Each parameter is updated by one backend call, `adamStep` (backend.ts; kernels in cpu/adam.ts and
 * webgpu/kernels/adam.ts), which reads p, g, m and v once and writes p, m and v in place. Memory: the
 * moments are allocated once; a step allocates at most a dense copy of a strided gradient, inside
 * `tidy`, so the live memory stays flat from step to step.
 */
import { zerosLike } from '../../tensor/ops/creation.js';
import { keep, tidy } from '../../tensor/scope.js';
import { shapesEqual, shapeToString } from '../../tensor/shape.js';
import type { Tensor } from '../../tensor/tensor.js';
import { decaysWeight } from './weight-decay.js';

export interface AdamOptions {
  /** Learning rate; the training loop overwrites `optimizer.lr` each step from its schedule. */
  lr: number;
  /** Decay of the first moment (default 0.9). */
  beta1?: number;
  /** Decay of the second moment (default 0.999). */
  beta2?: number;
  /** Added to √v̂ so that parameters with vanishing gradients do not get huge steps (default 1e-8). */
  eps?: number;
}

/** What a checkpoint stores: the step count and the moments, named "<param>.exp_avg" and "<param>.exp_avg_sq". */
export interface OptimizerState {
  step: number;
  tensors: Map<string, Tensor>;
}

/** One parameter with its moments m (exp_avg) and v (exp_avg_sq), both of the parameter's shape. */
interface Slot {
  name: string;
  param: Tensor;
  m: Tensor;
  v: Tensor;
}

export class Adam {
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  /** Steps taken so far: the t of the bias corrections. */
  stepCount = 0;
  protected readonly slots: Slot[] = [];

  /** `params` as from `module.namedParameters()`; a tensor listed twice (tied weights) is updated once. */
  constructor(params: Iterable<[string, Tensor]>, options: AdamOptions) {
    this.lr = options.lr;
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.eps = options.eps ?? 1e-8;
    const seen = new Set<Tensor>();
    for (const [name, param] of params) {
      if (seen.has(param)) continue;
      seen.add(param);
      if (!param.isContiguous || param.offset !== 0) {
        throw new Error(`Adam: the parameter "${name}" is a strided view; the update needs it dense from the start of its buffer.`);
      }
      this.slots.push({ name, param, m: keep(zerosLike(param)), v: keep(zerosLike(param)) });
    }
  }

  /**
   * Rate λ of decoupled weight decay for one parameter; 0 in plain Adam. AdamW overrides it.
   * The update multiplies p by (1 − lr·λ) before subtracting the Adam step.
   */
  protected decayRate(_name: string, _param: Tensor): number {
    return 0;
  }

  /**
   * Applies one update to every parameter that has a gradient (one without, e.g. unused, is left alone).
   *
   * One fused kernel per parameter: written as tensor ops, the update took about twenty kernels (each op
   * one pass over the weights, plus a `full` for every scalar operand), and on a GPU every kernel launch
   * costs microseconds however small the parameter. The bias corrections and the learning rate are
   * folded into two scalars here, in float64,
   *     lr·m̂ / (√v̂ + ε) = s·m / (√v·r + ε),   s = lr / (1 − β₁ᵗ),  r = 1 / √(1 − β₂ᵗ),
   * and the decay into the factor 1 − lr·λ that multiplies p; the kernel does the rest element by element
   * (see `adamStep` in backend.ts). With lr = 0 the moments still learn and the weights do not move.
   */
  step(): void {
    const t = ++this.stepCount;
    const { beta1, beta2, eps, lr } = this;
    const stepSize = lr / (1 - beta1 ** t);
    const rootCorrection = 1 / Math.sqrt(1 - beta2 ** t);
    tidy(() => {
      for (const { name, param, m, v } of this.slots) {
        if (!param.grad) continue;
        // The kernel wants dense buffers. Gradients arrive dense (matmul gives a transposed operand, a
        // Linear layer's Wᵀ, its gradient in its own layout); one that does not is copied here.
        const g = param.grad.contiguous();
        const shrink = 1 - lr * this.decayRate(name, param);
        const s = { beta1, beta2, stepSize, rootCorrection, eps, shrink };
        const buffer = (x: Tensor) => x.view().buffer; // view() throws for a disposed tensor
        param.storage.backend.adamStep(buffer(param), buffer(g), buffer(m), buffer(v), param.size, param.dtype, s);
      }
    });
  }

  /** Frees every parameter's gradient, ready for the next backward. */
  zeroGrad(): void {
    for (const { param } of this.slots) {
      param.grad?.dispose();
      param.grad = null;
    }
  }

  /** The step count and moments. The tensors are the optimizer's own: save them, don't dispose them. */
  state(): OptimizerState {
    const tensors = new Map<string, Tensor>();
    for (const { name, m, v } of this.slots) {
      tensors.set(`${name}.exp_avg`, m);
      tensors.set(`${name}.exp_avg_sq`, v);
    }
    return { step: this.stepCount, tensors };
  }

  /** Copies a saved state in; every moment must be present with its parameter's shape and dtype. */
  loadState(state: OptimizerState): void {
    if (!Number.isInteger(state.step) || state.step < 0) {
      throw new Error(`The optimizer state's step count ${state.step} is not a non-negative integer.`);
    }
    const expected = new Set<string>();
    for (const { name, m, v } of this.slots) {
      for (const [key, moment] of [
        [`${name}.exp_avg`, m],
        [`${name}.exp_avg_sq`, v],
      ] as const) {
        expected.add(key);
        const saved = state.tensors.get(key);
        if (!saved) throw new Error(`The optimizer state has no moment "${key}".`);
        if (!shapesEqual(saved.shape, moment.shape) || saved.dtype !== moment.dtype) {
          throw new Error(
            `The optimizer moment "${key}" is ${saved.dtype} ${shapeToString(saved.shape)}, but the parameter is ${moment.dtype} ${shapeToString(moment.shape)}.`,
          );
        }
      }
    }
    for (const key of state.tensors.keys()) {
      if (!expected.has(key)) throw new Error(`The optimizer state has a moment "${key}" for no parameter of this model.`);
    }
    for (const { name, m, v } of this.slots) {
      m.assign(state.tensors.get(`${name}.exp_avg`) as Tensor);
      v.assign(state.tensors.get(`${name}.exp_avg_sq`) as Tensor);
    }
    this.stepCount = state.step;
  }

  /** Frees the moments (the parameters belong to the model). */
  dispose(): void {
    for (const { m, v } of this.slots) {
      m.dispose();
      v.dispose();
    }
  }
}

export interface AdamWOptions extends AdamOptions {
  /** λ, the decoupled weight decay per unit learning rate (e.g. 0.1). */
  weightDecay: number;
}

/** Adam with decoupled weight decay on the parameters `decaysWeight` selects (see weight-decay.ts). */
export class AdamW extends Adam {
  readonly weightDecay: number;

  constructor(params: Iterable<[string, Tensor]>, options: AdamWOptions) {
    super(params, options);
    this.weightDecay = options.weightDecay;
  }

  protected override decayRate(name: string, param: Tensor): number {
    return decaysWeight(name, param) ? this.weightDecay : 0;
  }
}
