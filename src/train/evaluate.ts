/**
 * Held-out evaluation: the mean next-token loss over a split, and its perplexity.
 *
 * Every window of the split is scored once, in order (`sequentialBatches`), with dropout off and no
 * autograd graph. The per-batch loss *sums* are added up on the device and read back once at the end,
 * so the device is never made to wait for the host in between. Then
 *
 *     loss = Σ −log p(target) / tokens        (nats per token)
 *     perplexity = e^loss                     (the effective number of equally likely next tokens)
 */
import { noGrad } from '../autograd/grad-mode.js';
import type { LanguageModel } from '../models/language-model.js';
import { tensor, zeros } from '../tensor/ops/creation.js';
import { crossEntropy } from '../tensor/ops/loss.js';
import { keep, tidy } from '../tensor/scope.js';
import { sequentialBatches } from './data/batches.js';

export interface EvalResult {
  /** Mean loss in nats per predicted token. */
  loss: number;
  perplexity: number;
  /** Tokens predicted. */
  tokens: number;
}

export interface EvalOptions {
  batchSize: number;
  seqLen: number;
  /** Score only the first `maxTokens` tokens of the split (0 or absent: all of it). */
  maxTokens?: number;
  /** Called after each batch with (batches done, batches in all), e.g. to show progress. */
  onBatch?: (done: number, total: number) => void;
}

/** Evaluates `model` on `tokens` (a whole split, or its start); see the module comment. */
export async function evaluate(model: LanguageModel, tokens: Int32Array, options: EvalOptions): Promise<EvalResult> {
  const { batchSize, seqLen, maxTokens = 0, onBatch } = options;
  const stream = maxTokens > 0 ? tokens.subarray(0, maxTokens + 1) : tokens;
  const batches = Math.ceil(Math.max(0, Math.floor((stream.length - 1) / seqLen)) / batchSize);
  if (batches === 0) {
    throw new Error(`Evaluation needs at least seqLen + 1 = ${seqLen + 1} tokens, but got ${stream.length}.`);
  }
  const wasTraining = model.training;
  model.eval();
  const total = keep(zeros([]));
  let count = 0;
  let done = 0;
  try {
    for (const batch of sequentialBatches(stream, batchSize, seqLen)) {
      noGrad(() =>
        tidy(() => {
          const ids = tensor(batch.inputs, [batch.rows, seqLen], { dtype: 'int32' });
          const targets = tensor(batch.targets, [batch.rows, seqLen], { dtype: 'int32' });
          total.assign(total.add(crossEntropy(model.forward(ids), targets, { reduction: 'sum' })));
        }),
      );
      count += batch.rows * seqLen;
      onBatch?.(++done, batches);
      // Lets signal handlers and timers run between batches (the model itself never yields).
      await new Promise((resolve) => setImmediate(resolve));
    }
    const loss = (await total.item()) / count;
    return { loss, perplexity: Math.exp(loss), tokens: count };
  } finally {
    total.dispose();
    model.train(wasTraining);
  }
}
