/**
 * The train suite: training throughput, tokens per second, of the seed presets with the seed recipe
 * (batch 32 × 128 tokens, Adam at lr 3·10⁻⁴, no clipping: the training CLI's defaults), each model the
 * other's baseline.
 *
 * It times the training loop's own step (`trainStep` in src/train/step.ts: forward, cross-entropy,
 * backward, clip, Adam, all inside one `tidy`), not a copy of it. Steps are timed in blocks of
 * `STEPS` with one wait at the end of the block, as the loop itself waits only when it logs (every
 * 10 steps): a wait after every step would stall the GPU between steps and understate throughput.
 * Warm-up blocks come first (pipelines, pool, Adam's moments), then the median block gives tokens/s.
 * Ten of them, 100 steps: a step's JS runs faster once V8 has optimised it and the executor's bind
 * groups are cached, and one block was not enough (the seed Transformer measured 207k tokens/s after
 * one warm-up block, while the training run it stands for ran at 360k after its first hundred steps).
 *
 * The tokens are synthetic (seeded uniform ids over the vocabulary): which ids a batch holds does not
 * change the work, and it spares the benchmark WikiText-2's tokenisation.
 *
 * With --profile, as many blocks as were timed then run again with every kernel timed on the GPU
 * (profile.ts), and a table per model shows where a step's GPU time goes.
 */
import { createModel } from '../src/models/presets.js';
import { zeros } from '../src/tensor/ops/creation.js';
import { uniformAt } from '../src/tensor/random.js';
import { keep } from '../src/tensor/scope.js';
import { DEFAULTS } from '../src/train/config.js';
import type { TokenBatch } from '../src/train/data/batches.js';
import { Adam } from '../src/train/optim/adam.js';
import { trainStep } from '../src/train/step.js';
import { println, type SuiteContext } from './context.js';
import { errorMessage, isOutOfMemory, settleAfterFailure } from './out-of-memory.js';
import { type Profile, printProfile, profileRuns } from './profile.js';
import { formatNumber, formatTable } from './table.js';
import { timeFinished } from './timing.js';

const MODELS = ['seed-mamba', 'seed-transformer'] as const;
/** Steps per timed block: the loop's default logging interval, i.e. its steps between waits. */
const STEPS = 10;
const WARMUP_BLOCKS = 10;
const QUICK = { batchSize: 2, seqLen: 16, steps: 1, warmup: 1 };

export interface TrainMeasurement {
  model: string;
  status: 'ok' | 'out of memory' | 'error';
  tokensPerSec?: number;
  msPerStep?: number;
  /** Timed blocks of `steps` steps each. */
  blocks?: number;
  /** Mean loss over all steps taken (warm-up included): a check that the steps computed something finite. */
  meanLoss?: number;
  message?: string;
  /** With --profile: the GPU time per kernel of as many blocks again. */
  profile?: Profile;
}

export interface TrainResult {
  suite: 'train';
  batchSize: number;
  seqLen: number;
  steps: number;
  optimizer: string;
  clipNorm: number;
  tokens: string;
  measurements: TrainMeasurement[];
  failures: number;
}

/** One synthetic batch: each row is a window of seqLen + 1 random ids, inputs its first seqLen, targets its last. */
function syntheticBatch(batchSize: number, seqLen: number, vocab: number): TokenBatch {
  const inputs = new Int32Array(batchSize * seqLen);
  const targets = new Int32Array(batchSize * seqLen);
  for (let r = 0; r < batchSize; r++) {
    const id = (t: number): number => Math.floor(uniformAt(r, t) * vocab);
    for (let t = 0; t < seqLen; t++) {
      inputs[r * seqLen + t] = id(t);
      targets[r * seqLen + t] = id(t + 1);
    }
  }
  return { inputs, targets, epoch: 0, step: 0 };
}

export async function runTrainSuite(ctx: SuiteContext): Promise<TrainResult> {
  const { backend, options } = ctx;
  const batchSize = options.batch ?? (options.quick ? QUICK.batchSize : DEFAULTS.batchSize);
  const seqLen = options.quick ? QUICK.seqLen : DEFAULTS.seqLen;
  const steps = options.quick ? QUICK.steps : STEPS;
  const repeats = options.repeats ?? (options.quick ? 1 : 3);
  const warmup = options.quick ? QUICK.warmup : WARMUP_BLOCKS;
  const { lr, clipNorm } = DEFAULTS;
  const clip = clipNorm > 0 ? `clip ${clipNorm}` : 'no clipping';
  println(ctx, `Train: trainStep (src/train/step.ts), batch ${batchSize} x ${seqLen} tokens, Adam lr ${lr}, ${clip}`);
  println(
    ctx,
    `${warmup} warm-up block${warmup === 1 ? '' : 's'}, then the median of up to ${repeats} timed blocks of ${steps} steps (one wait per block)`,
  );

  const measurements: TrainMeasurement[] = [];
  for (const name of MODELS) {
    ctx.out.write(`  ${name.padEnd(18)} `);
    const model = createModel(name).train();
    const optimizer = new Adam(model.namedParameters(), { lr });
    const stats = { lossSum: keep(zeros([])), gradNorm: keep(zeros([])) };
    const batch = syntheticBatch(batchSize, seqLen, model.config.vocabSize);
    let taken = 0;
    const block = (): void => {
      for (let s = 0; s < steps; s++) trainStep(model, optimizer, [batch], { batchSize, seqLen, clipNorm }, stats);
      taken += steps;
    };
    let m: TrainMeasurement;
    try {
      const timing = await timeFinished(backend, block, { warmup, repeats, budgetMs: 60_000 });
      const profile = options.profile ? await profileRuns(ctx, block, timing.samplesMs.length) : undefined;
      const meanLoss = (await stats.lossSum.item()) / taken;
      m = {
        model: name,
        status: 'ok',
        tokensPerSec: (steps * batchSize * seqLen) / (timing.medianMs / 1e3),
        msPerStep: timing.medianMs / steps,
        blocks: timing.samplesMs.length,
        meanLoss,
        profile,
      };
      ctx.out.write(
        `${formatNumber(m.tokensPerSec as number)} tokens/s, ${formatNumber(m.msPerStep as number)} ms/step, mean loss ${meanLoss.toFixed(3)}\n`,
      );
    } catch (error) {
      await settleAfterFailure(backend);
      m = { model: name, status: isOutOfMemory(error) ? 'out of memory' : 'error', message: errorMessage(error) };
      ctx.out.write(`${m.status === 'error' ? 'ERROR' : 'out of memory'}: ${m.message}\n`);
    }
    measurements.push(m);
    stats.lossSum.dispose();
    stats.gradNorm.dispose();
    optimizer.dispose();
    model.dispose();
  }

  println(ctx);
  println(ctx, `Training throughput on ${ctx.hardware}`);
  const [mamba, transformer] = measurements as [TrainMeasurement, TrainMeasurement];
  const rows = measurements.map((m) => [
    m.model,
    m.status === 'ok' ? formatNumber(m.tokensPerSec as number) : m.status,
    m.status === 'ok' ? formatNumber(m.msPerStep as number) : '-',
    m.status === 'ok' ? (m.meanLoss as number).toFixed(3) : '-',
  ]);
  for (const line of formatTable(['model', 'tokens/s', 'ms/step', 'mean loss'], rows)) println(ctx, line);
  if (mamba.status === 'ok' && transformer.status === 'ok') {
    const ratio = (mamba.tokensPerSec as number) / (transformer.tokensPerSec as number);
    println(ctx, `${mamba.model} trains at ${ratio.toFixed(2)}x the tokens/s of ${transformer.model} at length ${seqLen}`);
  }
  for (const { model, msPerStep, profile } of measurements) {
    if (!profile) continue;
    const perStep = profile.totalMs / (profile.runs * steps);
    const title = `GPU time per kernel of ${model}, ${profile.runs * steps} steps: ${formatNumber(perStep)} ms of kernels per step (${formatNumber(msPerStep as number)} ms/step unprofiled)`;
    printProfile(ctx, title, profile);
  }
  return {
    suite: 'train',
    batchSize,
    seqLen,
    steps,
    optimizer: 'adam',
    clipNorm,
    tokens: 'synthetic: seeded uniform random ids',
    measurements,
    failures: measurements.filter((m) => m.status === 'error').length,
  };
}
