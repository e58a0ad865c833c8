/**
 * What every language model here provides, so training, generation, saving and `describe` work with
 * any of them:
 *
 * - `forward(ids)`: the whole sequence in parallel, ids (batch, len) int32 → logits (batch, len, vocab),
 *   recorded for autograd (training).
 * - `initState(batch)` and `step(ids, state)`: one token at a time, ids (batch) int32 → logits
 *   (batch, vocab), carrying what the model remembers of the past in `state` (generation). For Mamba
 *   the state has a fixed size; for the Transformer it is the key/value cache, which grows.
 *
 * `step` is inference only: it records nothing for autograd, applies no dropout, and frees its own
 * intermediates. It updates `state` in place; `state.dispose()` frees it.
 */
import type { DType } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { Module } from './module.js';

/** Whatever a model carries from one step to the next. */
export interface DecodeState {
  /** Frees the state's tensors. */
  dispose(): void;
}

/** The configuration of any model, tagged by architecture so a saved model can be rebuilt. */
export interface ArchConfig {
  readonly arch: string;
  readonly vocabSize: number;
}

export interface ModelOptions {
  /** The parameters' dtype: float32, or float64 for gradient checks on the CPU. */
  dtype?: DType;
}

export abstract class LanguageModel<State extends DecodeState = DecodeState> extends Module {
  abstract readonly config: ArchConfig;
  abstract forward(ids: Tensor): Tensor;
  abstract initState(batch: number): State;
  abstract step(ids: Tensor, state: State): Tensor;
}
