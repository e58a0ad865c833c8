/**
 * What a training run is: the settings that decide its result, saved in every checkpoint so that
 * `--resume` continues the same run and `generate` can rebuild the model.
 *
 * The defaults are the seed recipe: batch 32, sequence length 128, Adam at a constant lr 3·10⁻⁴, no
 * gradient clipping, 3 epochs of WikiText-2 (597 steps per epoch at batch 32 × 128). Warm-up, cosine
 * decay and clipping are there to be asked for; with the seed recipe's few steps they cost loss
 * (measured on the H200, 3 epochs of seed-mamba: valid loss 6.06 with 100 warm-up steps, cosine decay
 * to 0.1× and clipping at norm 1, against 5.53 without them; see bench/RESULTS.md).
 */
import type { ModelConfig } from '../models/presets.js';

export interface TrainConfig {
  /** The model's name on the command line (mamba, transformer, seed-mamba, seed-transformer). */
  model: string;
  /** The architecture config the model was built from; enough to rebuild it. */
  arch: ModelConfig;
  /** Sequences per micro-batch. */
  batchSize: number;
  /** Tokens per sequence. */
  seqLen: number;
  /** Passes over the training split. */
  epochs: number;
  /** Stop after this many optimizer steps even if the epochs are not done (0: no limit). Part of the
   *  plan, so the learning-rate schedule runs its course within it. */
  maxSteps: number;
  optimizer: 'adam' | 'adamw';
  /** Peak learning rate. */
  lr: number;
  /** AdamW's decoupled weight decay λ (ignored by Adam). */
  weightDecay: number;
  /** Linear warm-up steps. */
  warmupSteps: number;
  /** 'cosine' decays to minLrRatio·lr by the last step; 'constant' keeps lr after warm-up. */
  decay: 'cosine' | 'constant';
  /** Final learning rate as a fraction of the peak. */
  minLrRatio: number;
  /** Clip gradients to this global norm; 0 turns clipping off. */
  clipNorm: number;
  /** Micro-batches whose gradients are summed (averaged) into one optimizer step. */
  gradAccum: number;
  /** Seeds the weight initialisation, the data order and any dropout. */
  seed: number;
  /** Read the loss back and log every this many steps. */
  logEvery: number;
  /** Save a checkpoint every this many steps (0: only at the end). */
  checkpointEvery: number;
  /** Evaluate on at most this many tokens of the valid/test split (0: the whole split). */
  evalTokens: number;
}

/** The seed recipe's values for every setting but the model. */
export const DEFAULTS = {
  batchSize: 32,
  seqLen: 128,
  epochs: 3,
  maxSteps: 0,
  optimizer: 'adam',
  lr: 3e-4,
  weightDecay: 0.1,
  warmupSteps: 0,
  decay: 'constant',
  minLrRatio: 0.1,
  clipNorm: 0,
  gradAccum: 1,
  seed: 0,
  logEvery: 10,
  checkpointEvery: 200,
  evalTokens: 0,
} as const satisfies Partial<TrainConfig>;

/**
 * Optimizer steps in the whole run: every full micro-batch of every epoch, gradAccum per step, or
 * maxSteps if that is smaller.
 */
export function plannedSteps(config: Pick<TrainConfig, 'epochs' | 'gradAccum' | 'maxSteps'>, batchesPerEpoch: number): number {
  const epochSteps = Math.floor((config.epochs * batchesPerEpoch) / config.gradAccum);
  return config.maxSteps > 0 ? Math.min(config.maxSteps, epochSteps) : epochSteps;
}
