/**
 * Autoregressive generation: feed the prompt one token at a time through the model's recurrent `step`
 * (a fixed-size state for Mamba, a key/value cache for the Transformer), then repeatedly sample a
 * token from the last logits and feed it back in.
 */
import type { LanguageModel } from '../models/language-model.js';
import { tensor } from '../tensor/ops/creation.js';
import { Generator, pcgHash, uniformAt } from '../tensor/random.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { type SamplingOptions, sampleToken } from './sample.js';

export interface GenerateOptions extends SamplingOptions {
  /** Tokens to generate after the prompt. */
  maxTokens: number;
  /** Seeds the sampling; the same seed, prompt and weights give the same continuation. */
  seed: number;
}

/** Yields the generated token ids one by one; `prompt` must hold at least one token id. */
export async function* generateTokens(model: LanguageModel, prompt: readonly number[], options: GenerateOptions): AsyncGenerator<number> {
  if (prompt.length === 0) throw new Error('generateTokens: the prompt must hold at least one token.');
  const random = new Generator(options.seed);
  const state = model.initState(1);
  const feed = (id: number): Tensor => tidy(() => model.step(tensor([id], [1], { dtype: 'int32' }), state));
  let logits: Tensor | null = null;
  try {
    for (const id of prompt) {
      logits?.dispose();
      logits = feed(id);
    }
    for (let i = 0; i < options.maxTokens; i++) {
      const values = await (logits as Tensor).data();
      const next = sampleToken(values, options, uniformAt(pcgHash(random.nextSeed()), 0));
      yield next;
      (logits as Tensor).dispose();
      logits = feed(next);
    }
  } finally {
    logits?.dispose();
    state.dispose();
  }
}
