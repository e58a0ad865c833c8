/**
 * Depthwise causal 1-D convolution: one filter of K taps per channel, each output seeing only the
 * current and K−1 previous positions (see src/tensor/ops/conv1d.ts). PyTorch writes it as
 * `nn.Conv1d(C, C, K, groups=C, padding=K−1)` and drops the last K−1 outputs; here it is one op.
 */
import type { DType } from '../../tensor/dtype.js';
import { conv1dCausal } from '../../tensor/ops/conv1d.js';
import { rand } from '../../tensor/ops/creation.js';
import type { Tensor } from '../../tensor/tensor.js';
import { Module } from '../module.js';

export class CausalConv1d extends Module {
  /** (channels, K): filter c is row c. PyTorch's (channels, 1, K) without the group axis. */
  readonly weight: Tensor;
  /** (channels). */
  readonly bias: Tensor;

  constructor(
    readonly channels: number,
    readonly kernelSize: number,
    dtype: DType = 'float32',
  ) {
    super();
    // PyTorch's init: each output sums K inputs (fan-in K for a depthwise filter), so ±1/√K.
    const bound = 1 / Math.sqrt(kernelSize);
    this.weight = this.param('weight', rand([channels, kernelSize], -bound, bound, dtype));
    this.bias = this.param('bias', rand([channels], -bound, bound, dtype));
  }

  /** x (batch, channels, len) → (batch, channels, len). */
  forward(x: Tensor): Tensor {
    return conv1dCausal(x, this.weight, this.bias);
  }

  /**
   * One step of the same convolution for generation: `window` (batch, channels, K) holds the last K
   * inputs, oldest first, the newest being the current one, so y_t = Σ_k w[c, k]·window[b, c, k] + bias.
   */
  stepWindow(window: Tensor): Tensor {
    return window.mul(this.weight).sum(-1).add(this.bias);
  }
}
