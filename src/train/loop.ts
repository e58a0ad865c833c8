/**
 * The training loop: steps over shuffled batches of WikiText-2, with a learning-rate schedule, periodic
 * logging, an evaluation on the valid split after every epoch and on both held-out splits at the end,
 * checkpoints every N steps and at the end, and clean stops on a step limit, a time limit or Ctrl-C.
 *
 * Keeping the device busy: a step only queues work (see step.ts). The loss is read back — which makes
 * the host wait for the device — only every `logEvery` steps, as the sum of the losses since the last
 * read, so the GPU runs `logEvery` steps back to back between synchronisations.
 *
 * Determinism: the data order comes from (seed, epoch), dropout from the global generator, and the
 * schedule from the step number; all three are in the checkpoint, so on the CPU backend a resumed
 * run takes exactly the steps the uninterrupted run would have.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { LanguageModel } from '../models/language-model.js';
import { zeros } from '../tensor/ops/creation.js';
import { globalGenerator } from '../tensor/random.js';
import { keep, tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { CHECKPOINT_FORMAT, removeStaleTemporaries, saveCheckpoint, type TrainerState } from './checkpoint.js';
import { plannedSteps, type TrainConfig } from './config.js';
import { TokenBatcher } from './data/batches.js';
import { type EvalResult, evaluate } from './evaluate.js';
import { writeLossChart } from './loss-chart.js';
import { Adam, AdamW } from './optim/adam.js';
import { warmupCosine } from './optim/schedule.js';
import { ProgressBar, type ProgressStream } from './progress.js';
import { RunLog } from './run-log.js';
import { trainStep } from './step.js';

/** The token streams of the three splits. */
export interface Splits {
  train: Int32Array;
  valid: Int32Array;
  test: Int32Array;
}

export interface TrainOptions {
  config: TrainConfig;
  model: LanguageModel;
  data: Splits;
  /** Where checkpoints, log.jsonl and loss.png go. */
  runDir: string;
  /**
   * When resuming: the checkpoint's trainer state and optimizer moments (the model already holds its
   * weights). The moments are copied into the optimizer and then disposed.
   */
  resume?: { trainer: TrainerState; moments: Map<string, Tensor> };
  /** Stop training after this many seconds of this session (then evaluate and save). */
  timeLimitSec?: number;
  /** When aborted (Ctrl-C), the loop stops at the end of the current step, saves, and returns. */
  signal?: AbortSignal;
  /** Where progress goes (default: stdout). */
  out?: ProgressStream;
}

export type StopReason = 'finished' | 'time-limit' | 'interrupted';

export interface TrainResult {
  /** Optimizer steps taken in all, including earlier sessions. */
  step: number;
  stopReason: StopReason;
  /** The checkpoint written at the end. */
  checkpoint: string;
  /** Final held-out results (absent when interrupted). */
  valid?: EvalResult;
  test?: EvalResult;
  /** Mean training throughput of this session. */
  tokensPerSec: number;
}

/** The optimizer the config asks for, over the model's named parameters. */
export function createOptimizer(config: TrainConfig, model: LanguageModel): Adam {
  const params = model.namedParameters();
  return config.optimizer === 'adamw'
    ? new AdamW(params, { lr: config.lr, weightDecay: config.weightDecay })
    : new Adam(params, { lr: config.lr });
}

/** Trains `model` as `config` says; see the module comment. */
export async function train(options: TrainOptions): Promise<TrainResult> {
  const { config, model, data, runDir, resume, timeLimitSec, signal } = options;
  const { batchSize, seqLen, gradAccum } = config;
  const bar = new ProgressBar(options.out ?? process.stdout);
  const batcher = new TokenBatcher(data.train, { batchSize, seqLen, seed: config.seed });
  const optimizer = createOptimizer(config, model);
  const total = plannedSteps(config, batcher.batchesPerEpoch);
  const schedule = warmupCosine({
    peakLr: config.lr,
    warmupSteps: config.warmupSteps,
    totalSteps: total,
    minLr: config.lr * config.minLrRatio,
    decay: config.decay,
  });
  let step = 0;
  let tokensSeen = 0;
  let elapsedBefore = 0;
  if (resume) {
    optimizer.loadState({ step: resume.trainer.optimizerStep, tensors: resume.moments });
    for (const t of resume.moments.values()) t.dispose();
    batcher.restore(resume.trainer.batcher);
    globalGenerator.restore(resume.trainer.generator);
    ({ step, tokensSeen } = resume.trainer);
    elapsedBefore = resume.trainer.elapsedSeconds;
  }
  await mkdir(runDir, { recursive: true });
  await removeStaleTemporaries(runDir);
  const log = RunLog.open(join(runDir, 'log.jsonl'), resume ? step : undefined);
  const title = `${config.model}, batch ${batchSize}x${seqLen}, ${config.optimizer} lr ${config.lr}`;
  const epochsDone = (): number => {
    const { epoch, position } = batcher.state();
    return epoch + position / batcher.batchesPerEpoch;
  };

  const sessionStart = performance.now();
  const sessionSeconds = (): number => (performance.now() - sessionStart) / 1000;
  const elapsed = (): number => elapsedBefore + sessionSeconds();
  const startStep = step;
  const tokensPerStep = gradAccum * batchSize * seqLen;

  const stats = { lossSum: keep(zeros([])), gradNorm: keep(zeros([])) };
  let pendingSteps = 0; // steps whose losses are in lossSum but not yet logged
  // Throughput windows run from one read-back to the next, minus the time spent evaluating and saving.
  let windowStart = performance.now();
  let trainedSeconds = 0;
  let lastLoss: number | undefined;
  let lastRate: number | undefined;

  const eta = (): number => {
    const perStep = sessionSeconds() / Math.max(1, step - startStep);
    const left = (total - step) * perStep;
    return timeLimitSec === undefined ? left : Math.min(left, Math.max(0, timeLimitSec - sessionSeconds()));
  };
  const showProgress = (fresh: boolean): void =>
    bar.update({ step, total, epoch: epochsDone(), loss: lastLoss, tokensPerSec: lastRate, etaSeconds: eta() }, fresh);

  /** Reads the accumulated loss back (the one synchronisation point) and logs the mean. */
  const flush = async (): Promise<void> => {
    if (pendingSteps === 0) return;
    const lossSum = await stats.lossSum.item();
    const gradNorm = config.clipNorm > 0 ? await stats.gradNorm.item() : null;
    const seconds = (performance.now() - windowStart) / 1000;
    trainedSeconds += seconds;
    lastLoss = lossSum / pendingSteps;
    lastRate = (pendingSteps * tokensPerStep) / seconds;
    log.append({
      kind: 'train',
      step,
      epoch: epochsDone(),
      loss: lastLoss,
      lr: optimizer.lr,
      gradNorm,
      tokensPerSec: lastRate,
      elapsedSec: elapsed(),
    });
    tidy(() => stats.lossSum.assign(zeros([])));
    pendingSteps = 0;
    windowStart = performance.now();
    showProgress(true);
  };

  const runEval = async (split: 'valid' | 'test'): Promise<EvalResult> => {
    const result = await evaluate(model, data[split], {
      batchSize,
      seqLen,
      maxTokens: config.evalTokens,
      onBatch: (done, count) =>
        bar.update({ step, total, epoch: epochsDone(), loss: lastLoss, tokensPerSec: lastRate, phase: `${split} ${done}/${count}` }, false),
    });
    log.append({ kind: 'eval', split, step, epoch: epochsDone(), ...result, elapsedSec: elapsed() });
    bar.println(
      `${split} after step ${step} (epoch ${epochsDone().toFixed(2)}): loss ${result.loss.toFixed(4)}, perplexity ${result.perplexity.toFixed(2)} over ${result.tokens.toLocaleString('en-US')} tokens`,
    );
    await writeLossChart(join(runDir, 'loss.png'), log.entries, title);
    return result;
  };

  const save = async (): Promise<string> => {
    await writeLossChart(join(runDir, 'loss.png'), log.entries, title);
    return saveCheckpoint(runDir, model, optimizer, {
      format: CHECKPOINT_FORMAT,
      step,
      epoch: batcher.state().epoch,
      tokensSeen,
      elapsedSeconds: elapsed(),
      batcher: batcher.state(),
      generator: globalGenerator.state(),
      optimizerStep: optimizer.stepCount,
      config,
    });
  };

  let stopReason: StopReason = 'finished';
  let validAtStep = -1;
  let valid: EvalResult | undefined;
  let checkpoint = '';
  let savedAtStep = -1;
  model.train();
  try {
    while (step < total) {
      if (signal?.aborted) {
        stopReason = 'interrupted';
        break;
      }
      if (timeLimitSec !== undefined && sessionSeconds() >= timeLimitSec) {
        stopReason = 'time-limit';
        break;
      }
      const epochBefore = batcher.state().epoch;
      optimizer.lr = schedule(step);
      const batches = Array.from({ length: gradAccum }, () => batcher.next());
      trainStep(model, optimizer, batches, { batchSize, seqLen, clipNorm: config.clipNorm }, stats);
      step++;
      pendingSteps++;
      tokensSeen += tokensPerStep;
      // The model never yields, so give signal handlers (Ctrl-C) and timers a turn after every step.
      await new Promise((resolve) => setImmediate(resolve));
      const epochEnded = batcher.state().epoch !== epochBefore;
      if (step % config.logEvery === 0 || step === total || epochEnded) await flush();
      else showProgress(false);
      if (epochEnded) {
        const evalStart = performance.now();
        valid = await runEval('valid');
        validAtStep = step;
        windowStart += performance.now() - evalStart;
      }
      if (config.checkpointEvery > 0 && step % config.checkpointEvery === 0) {
        const saveStart = performance.now();
        checkpoint = await save();
        savedAtStep = step;
        windowStart += performance.now() - saveStart;
      }
    }
    await flush();
    if (savedAtStep !== step) checkpoint = await save();
    let test: EvalResult | undefined;
    if (stopReason !== 'interrupted') {
      if (validAtStep !== step) valid = await runEval('valid');
      test = await runEval('test');
    }
    return {
      step,
      stopReason,
      checkpoint,
      ...(valid && stopReason !== 'interrupted' ? { valid } : {}),
      ...(test ? { test } : {}),
      tokensPerSec: trainedSeconds > 0 ? ((step - startStep) * tokensPerStep) / trainedSeconds : 0,
    };
  } finally {
    bar.clear();
    stats.lossSum.dispose();
    stats.gradNorm.dispose();
    optimizer.dispose();
  }
}
