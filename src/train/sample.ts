/**
 * Choosing the next token from a model's logits (on the host, one vector per step):
 *
 * - temperature T: p_i ∝ exp(logit_i / T). T < 1 sharpens the distribution towards the likeliest
 *   tokens, T > 1 flattens it; T = 0 means greedy decoding (always the argmax).
 * - top-k: only the k likeliest tokens may be drawn (renormalised), which cuts off the long tail of
 *   individually unlikely tokens that together would be drawn often enough to derail the text.
 *
 * The draw takes its uniform number u ∈ [0, 1) from the caller, so a seeded generator makes the whole
 * continuation reproducible.
 */

export interface SamplingOptions {
  /** Softmax temperature; 0 for greedy decoding. */
  temperature: number;
  /** Draw only among the k most likely tokens; 0 for no limit. */
  topK: number;
}

/** The index drawn from `logits` (vocab) by temperature and top-k sampling, with u ∈ [0, 1). */
export function sampleToken(logits: ArrayLike<number>, options: SamplingOptions, u: number): number {
  const n = logits.length;
  let best = 0;
  for (let i = 1; i < n; i++) if ((logits[i] as number) > (logits[best] as number)) best = i;
  if (options.temperature === 0) return best;
  // Candidates: all tokens, or the top k by logit.
  let candidates = Array.from({ length: n }, (_, i) => i);
  if (options.topK > 0 && options.topK < n) {
    candidates.sort((a, b) => (logits[b] as number) - (logits[a] as number));
    candidates = candidates.slice(0, options.topK);
  }
  // Softmax over the candidates, shifted by the maximum so that exp never overflows.
  const top = logits[best] as number;
  const weights = candidates.map((i) => Math.exp(((logits[i] as number) - top) / options.temperature));
  let target = u * weights.reduce((a, b) => a + b, 0);
  for (let k = 0; k < candidates.length; k++) {
    target -= weights[k] as number;
    if (target < 0) return candidates[k] as number;
  }
  return candidates[candidates.length - 1] as number; // u·Σw rounded to Σw: the last candidate
}
