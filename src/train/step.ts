/**
 * One optimizer step: forward, loss, backward over one or more micro-batches, then clip and update.
 *
 * Gradient accumulation: with k micro-batches, each loss is scaled by 1/k before its backward. Backward
 * *adds* into `param.grad`, so after the k passes the gradient is that of the mean loss over all k·batch
 * sequences — the same update as one k-times-larger batch, in the memory of one micro-batch.
 *
 * Everything runs inside one `tidy`: the inputs, activations, the graph and all temporaries are freed
 * when the step ends. What outlives it is written in place into tensors made outside: the parameters
 * and moments (by the optimizer) and the two statistics below. Nothing is read back here, so on a GPU
 * the step is only *queued*, and the host can prepare the next one while the device works.
 */
import type { LanguageModel } from '../models/language-model.js';
import { tensor } from '../tensor/ops/creation.js';
import { crossEntropy } from '../tensor/ops/loss.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { TokenBatch } from './data/batches.js';
import type { Adam } from './optim/adam.js';
import { clipGradNorm } from './optim/clip.js';

/** Device-side statistics that steps update in place, read back only when the loop logs. */
export interface StepStats {
  /** 0-d: sum of the steps' mean losses since the last reset. */
  lossSum: Tensor;
  /** 0-d: the last step's global gradient norm before clipping. */
  gradNorm: Tensor;
}

export interface StepOptions {
  batchSize: number;
  seqLen: number;
  /** Clip to this global norm; 0 for no clipping. */
  clipNorm: number;
}

/** Runs one step on `batches` (the micro-batches, each (batchSize, seqLen) ids and targets). */
export function trainStep(
  model: LanguageModel,
  optimizer: Adam,
  batches: readonly TokenBatch[],
  options: StepOptions,
  stats: StepStats,
): void {
  const { batchSize, seqLen, clipNorm } = options;
  const k = batches.length;
  tidy(() => {
    for (const batch of batches) {
      const ids = tensor(batch.inputs, [batchSize, seqLen], { dtype: 'int32' });
      const targets = tensor(batch.targets, [batchSize, seqLen], { dtype: 'int32' });
      const loss = crossEntropy(model.forward(ids), targets); // mean over the batch's tokens
      const share = k > 1 ? loss.div(k) : loss;
      share.backward();
      stats.lossSum.assign(stats.lossSum.add(share.detach()));
    }
    if (clipNorm > 0) stats.gradNorm.assign(clipGradNorm(model.parameters(), clipNorm));
    optimizer.step();
    optimizer.zeroGrad();
  });
}
