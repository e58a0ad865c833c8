/**
 * A fully connected layer, y = x Wᵀ + b, stored the PyTorch way: W is (out, in), so row j of W is the
 * weights of output j.
 */
import type { DType } from '../../tensor/dtype.js';
import { rand } from '../../tensor/ops/creation.js';
import { linear } from '../../tensor/ops/matmul.js';
import type { Tensor } from '../../tensor/tensor.js';
import { Module } from '../module.js';

export interface LinearOptions {
  /** Whether to add a bias b (out); default true, as in `nn.Linear`. */
  bias?: boolean;
  dtype?: DType;
  /**
   * W and b are drawn uniformly from ±bound. The default 1/√in is PyTorch's (kaiming_uniform_ with
   * a = √5 works out to it), which keeps the output's variance near the input's at initialisation.
   */
  bound?: number;
}

export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    { bias = true, dtype = 'float32', bound = 1 / Math.sqrt(inFeatures) }: LinearOptions = {},
  ) {
    super();
    this.weight = this.param('weight', rand([outFeatures, inFeatures], -bound, bound, dtype));
    this.bias = bias ? this.param('bias', rand([outFeatures], -bound, bound, dtype)) : null;
  }

  /** x (…, in) → (…, out). */
  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}
