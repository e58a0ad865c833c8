/**
 * Dropout as a layer: active while the model trains, the identity after `model.eval()`.
 */
import { dropout } from '../../tensor/ops/dropout.js';
import type { Tensor } from '../../tensor/tensor.js';
import { Module } from '../module.js';

export class Dropout extends Module {
  constructor(readonly p: number) {
    super();
  }

  forward(x: Tensor): Tensor {
    return dropout(x, this.p, this.training);
  }
}
