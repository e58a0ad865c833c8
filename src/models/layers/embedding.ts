/**
 * A table of learned vectors, one row per token id: ids (…) int32 → (…, dim).
 */
import type { DType } from '../../tensor/dtype.js';
import { randn } from '../../tensor/ops/creation.js';
import { embedding } from '../../tensor/ops/embedding.js';
import type { Tensor } from '../../tensor/tensor.js';
import { Module } from '../module.js';

export interface EmbeddingOptions {
  dtype?: DType;
  /**
   * Rows are drawn from N(0, std²). PyTorch's default is 1; language models whose output head
   * reuses this table (weight tying) use 0.02, as GPT-2 and Mamba do, so the first logits are small.
   */
  std?: number;
}

export class Embedding extends Module {
  /** (count, dim). */
  readonly weight: Tensor;

  constructor(
    readonly count: number,
    readonly dim: number,
    { dtype = 'float32', std = 1 }: EmbeddingOptions = {},
  ) {
    super();
    this.weight = this.param('weight', randn([count, dim], 0, std, dtype));
  }

  forward(ids: Tensor): Tensor {
    return embedding(this.weight, ids);
  }
}
