/**
 * Text generation, one token at a time, with any `LanguageModel`: feed the prompt through `step`, then
 * repeatedly sample the next token from the last logits and feed it back. Each step reuses the model's
 * state (Mamba's fixed-size SSM and conv states, the Transformer's key/value cache), so nothing before
 * the newest token is recomputed.
 *
 * Sampling draws from its own `Generator(seed)`, the engine's counter-based generator, so the same
 * seed gives the same text on every backend and is independent of the global seed.
 */
import { tensor } from '../tensor/ops/creation.js';
import { Generator, pcgHash, uniformAt } from '../tensor/random.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { LanguageModel } from './language-model.js';

export interface GenerateOptions {
  /** How many tokens to generate after the prompt. */
  maxTokens: number;
  /** Divides the logits before the softmax: < 1 sharper, > 1 flatter; 0 always picks the most likely token (greedy). Default 1. */
  temperature?: number;
  /** Sample only among the k most likely tokens (default: all). */
  topK?: number;
  /** Seed of the sampling generator. Default 0. */
  seed?: number;
  /** Called with each new token as soon as it is chosen (to stream text). */
  onToken?: (id: number) => void;
}

/** The prompt's continuation: `maxTokens` new token ids (the prompt is not repeated). */
export async function generate(model: LanguageModel, prompt: Int32Array | number[], options: GenerateOptions): Promise<Int32Array> {
  const { maxTokens, temperature = 1, topK, seed = 0, onToken } = options;
  if (prompt.length === 0) throw new Error('generate: the prompt must hold at least one token.');
  if (temperature < 0) throw new Error(`generate: temperature must be ≥ 0, got ${temperature}.`);
  const generator = new Generator(seed);
  const state = model.initState(1);
  const feed = (id: number): Tensor => tidy(() => model.step(tensor([id], [1], { dtype: 'int32' }), state));
  const read = async (logits: Tensor): Promise<ArrayLike<number>> => {
    const values = await logits.data();
    logits.dispose();
    return values;
  };
  try {
    for (let i = 0; i < prompt.length - 1; i++) feed(prompt[i] as number).dispose();
    let logits = await read(feed(prompt[prompt.length - 1] as number));
    const out = new Int32Array(maxTokens);
    for (let i = 0; i < maxTokens; i++) {
      const id = sampleToken(logits, temperature, topK, generator);
      out[i] = id;
      onToken?.(id);
      if (i + 1 < maxTokens) logits = await read(feed(id));
    }
    return out;
  } finally {
    state.dispose();
  }
}

/**
 * One token id from logits (vocab): the arg-max when temperature is 0, else a draw from
 * softmax(logits / temperature) restricted to the top k, using one uniform number from `generator`.
 */
export function sampleToken(logits: ArrayLike<number>, temperature: number, topK: number | undefined, generator: Generator): number {
  const at = (id: number): number => logits[id] as number;
  let best = 0;
  for (let id = 1; id < logits.length; id++) if (at(id) > at(best)) best = id;
  if (temperature === 0) return best;
  let candidates = Array.from({ length: logits.length }, (_, id) => id);
  if (topK !== undefined && topK < logits.length)
    candidates = candidates.sort((a, b) => at(b) - at(a) || a - b).slice(0, Math.max(1, topK));
  // Softmax in float64, shifted by the largest logit so exp cannot overflow.
  const weights = candidates.map((id) => Math.exp((at(id) - at(best)) / temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  let u = uniformAt(pcgHash(generator.nextSeed()), 0) * total;
  for (let i = 0; i < candidates.length; i++) {
    u -= weights[i] as number;
    if (u < 0) return candidates[i] as number;
  }
  return candidates[candidates.length - 1] as number; // reached only when rounding leaves u ≈ 0
}
