/**
 * Normalisation layers over the last axis, each holding its learned scale γ (and shift β):
 *
 *     LayerNorm(x) = (x − mean x) / √(var x + ε) · γ + β     (Ba et al. 2016; the Transformer's)
 *     RMSNorm(x)   = x / √(mean x² + ε) · γ                  (Zhang & Sennrich 2019; Mamba's)
 *
 * γ starts at 1 and β at 0, so both begin as plain normalisation.
 */
import type { DType } from '../../tensor/dtype.js';
import { ones, zeros } from '../../tensor/ops/creation.js';
import { layerNorm, rmsNorm } from '../../tensor/ops/norm.js';
import type { Tensor } from '../../tensor/tensor.js';
import { Module } from '../module.js';

export class LayerNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;

  constructor(
    readonly dim: number,
    readonly eps = 1e-5,
    dtype: DType = 'float32',
  ) {
    super();
    this.weight = this.param('weight', ones([dim], dtype));
    this.bias = this.param('bias', zeros([dim], dtype));
  }

  /** x (…, dim) → (…, dim). */
  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
}

export class RMSNorm extends Module {
  readonly weight: Tensor;

  constructor(
    readonly dim: number,
    readonly eps = 1e-5,
    dtype: DType = 'float32',
  ) {
    super();
    this.weight = this.param('weight', ones([dim], dtype));
  }

  /** x (…, dim) → (…, dim). */
  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.weight, this.eps);
  }
}
