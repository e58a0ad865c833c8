/**
 * The scaling suite: how a forward pass's time and memory grow with the sequence length, for Mamba
 * (linear: the selective scan does O(L) work) against the Transformer (quadratic: attention scores
 * every pair of positions, an (L × L) matrix per head).
 *
 * Each point is one model at one (batch, length): `model.forward(ids)` on random token ids, under
 * `noGrad` (nothing recorded for backward) and inside `tidy` (everything freed afterwards), the model
 * in eval mode. It is timed until the device has finished (timing.ts), once untimed to warm up, then
 * the median of the timed runs. Memory is sampled as the backend's live bytes at the end of the
 * forward, inside the `tidy` — so every intermediate of the pass is still held — minus the live bytes
 * before it (the weights): the memory the pass needs. The backends have no peak counter, so
 * temporaries that an op frees before returning are not seen; see RESULTS.md.
 *
 * A point that does not fit (out-of-memory.ts) is reported as such, and longer lengths of the same
 * model and batch are not attempted (they need more). The growth exponent k of time ∝ L^k is fitted
 * over the long lengths (fit.ts); the tables, `results.json` and two log-log plots record it all.
 *
 * With --profile every point also gets its GPU time per kernel (profile.ts), in `results.json`; the
 * table is printed for each model's longest point at the larger batch.
 */
import { join } from 'node:path';
import { noGrad } from '../src/autograd/grad-mode.js';
import type { LanguageModel } from '../src/models/language-model.js';
import { createModel, presets } from '../src/models/presets.js';
import { tensor } from '../src/tensor/ops/creation.js';
import { uniformAt } from '../src/tensor/random.js';
import { tidy } from '../src/tensor/scope.js';
import type { Tensor } from '../src/tensor/tensor.js';
import { type Series, writeLineChart } from '../src/train/plot/plot.js';
import { println, type SuiteContext } from './context.js';
import { fitPowerLaw, type PowerLawFit } from './fit.js';
import { errorMessage, isOutOfMemory, settleAfterFailure } from './out-of-memory.js';
import { type Profile, printProfile, profileRuns } from './profile.js';
import { formatNumber, formatTable } from './table.js';
import { keepBusy, timeFinished } from './timing.js';

/** The fit uses lengths in this range: long enough that per-token work dominates fixed costs. */
const FIT_FROM = 1024;
const FIT_TO = 16384;
/** Load before the first point, to bring the GPU to full clocks (see runScalingSuite). */
const GPU_WARMUP_MS = 1500;
/** A point stops taking timed runs once they add up to this (at least one is taken). */
const POINT_BUDGET_MS = 20_000;

const powersOfTwo = (from: number, to: number): number[] => {
  const out: number[] = [];
  for (let n = from; n <= to; n *= 2) out.push(n);
  return out;
};

/**
 * Lengths by device when --lengths is not given; a CPU would take hours over the long ones. On a GPU
 * they go past the fitted range to 65,536, where the Transformer's quadratic attention dominates.
 */
const DEFAULT_LENGTHS = { gpu: powersOfTwo(64, 65536), software: powersOfTwo(64, 1024), cpu: powersOfTwo(64, 1024) };
const QUICK_LENGTHS = [16, 32];

export interface ScalingPoint {
  model: string;
  batch: number;
  length: number;
  status: 'ok' | 'out of memory' | 'error';
  /** Median forward time in ms (ok points). */
  medianMs?: number;
  samplesMs?: number[];
  /** Live bytes added by the forward pass, sampled at its end (ok points). */
  forwardBytes?: number;
  /** Why the point failed. */
  message?: string;
  /** With --profile: the GPU time per kernel of as many forward passes again (ok points). */
  profile?: Profile;
}

export interface ScalingFit extends PowerLawFit {
  model: string;
  batch: number;
}

export interface ScalingResult {
  suite: 'scaling';
  models: { name: string; parameters: number; config: unknown }[];
  lengths: number[];
  batches: number[];
  warmup: number;
  repeats: number;
  memory: string;
  points: ScalingPoint[];
  fits: ScalingFit[];
  plots: string[];
  /** Points that failed with an error other than running out of memory. */
  failures: number;
}

interface NamedModel {
  name: string;
  model: LanguageModel;
}

/**
 * The two models. The Transformer's max_len is raised to the longest length benchmarked when needed:
 * it sizes only the position table, so it changes no cost but lets the long lengths run at all.
 */
function buildModels(which: 'seed' | 'full', longest: number): NamedModel[] {
  const [mamba, transformer] =
    which === 'seed' ? (['seed-mamba', 'seed-transformer'] as const) : (['mamba-small', 'transformer-small'] as const);
  const tConfig = presets[transformer];
  return [
    { name: mamba, model: createModel(mamba).eval() },
    { name: transformer, model: createModel({ ...tConfig, maxLen: Math.max(tConfig.maxLen, longest) }).eval() },
  ];
}

/** Random token ids (batch, len), the same for every model. */
function randomIds(batch: number, length: number, vocab: number): Int32Array {
  return Int32Array.from({ length: batch * length }, (_, i) => Math.floor(uniformAt(length, i) * vocab));
}

export async function runScalingSuite(ctx: SuiteContext): Promise<ScalingResult> {
  const { options } = ctx;
  const lengths = options.lengths ?? (options.quick ? QUICK_LENGTHS : DEFAULT_LENGTHS[ctx.device]);
  const second = options.batch ?? (options.quick ? 2 : 8);
  const batches = second === 1 ? [1] : [1, second];
  const warmup = 1;
  const repeats = options.repeats ?? (options.quick ? 1 : 5);
  const models = buildModels(options.models, Math.max(...lengths));

  println(ctx, `Scaling: forward pass (noGrad, eval) of ${models.map((m) => m.name).join(' vs ')}`);
  println(
    ctx,
    `lengths ${lengths.join(', ')}; batch ${batches.join(' and ')}; ${warmup} warm-up + median of up to ${repeats} timed runs per point`,
  );
  println(ctx);

  if (ctx.device === 'gpu') {
    // Per-point warm-up is not enough after an idle start: on the H200 the first points measured
    // (64 and 128 tokens) took 2–3× longer than the 256-token ones after them, until about a second
    // of load had raised the clocks. So a second and a half of 1024-token forwards comes first.
    const ids = tensor(randomIds(1, 1024, models[0]!.model.config.vocabSize), [1, 1024], { dtype: 'int32' });
    await keepBusy(ctx.backend, () => noGrad(() => tidy(() => void models[0]!.model.forward(ids))), GPU_WARMUP_MS);
    ids.dispose();
  }

  const points: ScalingPoint[] = [];
  /** The first length that did not fit, per model and batch. */
  const tooLong = new Map<string, number>();
  const total = batches.length * lengths.length * models.length;
  for (const batch of batches) {
    for (const length of lengths) {
      const ids = tensor(randomIds(batch, length, models[0]!.model.config.vocabSize), [batch, length], { dtype: 'int32' });
      for (const { name, model } of models) {
        ctx.out.write(
          `  [${points.length + 1}/${total}] ${name.padEnd(18)} batch ${String(batch).padStart(3)}  length ${String(length).padStart(6)}  `,
        );
        const key = `${name}/${batch}`;
        const failedAt = tooLong.get(key);
        let point: ScalingPoint;
        if (failedAt !== undefined) {
          point = { model: name, batch, length, status: 'out of memory', message: `not attempted: length ${failedAt} already did not fit` };
        } else {
          point = await measurePoint(ctx, model, ids, { model: name, batch, length }, warmup, repeats);
          if (point.status === 'out of memory') tooLong.set(key, length);
        }
        points.push(point);
        ctx.out.write(`${describePoint(point)}\n`);
      }
      ids.dispose();
    }
  }

  const fits: ScalingFit[] = [];
  for (const batch of batches) {
    for (const { name } of models) {
      const ok = points.filter((p) => p.model === name && p.batch === batch && p.status === 'ok');
      const long = ok.filter((p) => p.length >= FIT_FROM && p.length <= FIT_TO);
      const fit = fitPowerLaw((long.length >= 2 ? long : ok).map((p) => ({ x: p.length, y: p.medianMs as number })));
      if (fit) fits.push({ model: name, batch, ...fit });
    }
  }
  for (const batch of batches) printTable(ctx, models, batch, points, fits);
  for (const { name } of models) {
    const profiled = points.filter((p) => p.model === name && p.batch === batches.at(-1) && p.profile);
    const p = profiled.at(-1);
    if (!p?.profile) continue;
    const perRun = formatNumber(p.profile.totalMs / p.profile.runs);
    printProfile(
      ctx,
      `GPU time per kernel of ${name}'s forward at batch ${p.batch}, length ${p.length}: ${perRun} ms of kernels per pass`,
      p.profile,
    );
  }

  const plots = await writePlots(ctx, models, batches, points);
  for (const { model } of models) model.dispose();
  return {
    suite: 'scaling',
    models: models.map(({ name, model }) => ({ name, parameters: model.parameterCount(), config: model.config })),
    lengths,
    batches,
    warmup,
    repeats,
    memory: 'forwardBytes = backend.liveBytes() at the end of the forward (inside tidy) minus before it; a sample, not a peak',
    points,
    fits,
    plots,
    failures: points.filter((p) => p.status === 'error').length,
  };
}

/** Times one model at one (batch, length); failures become the point's status. */
async function measurePoint(
  ctx: SuiteContext,
  model: LanguageModel,
  ids: Tensor,
  where: Pick<ScalingPoint, 'model' | 'batch' | 'length'>,
  warmup: number,
  repeats: number,
): Promise<ScalingPoint> {
  const { backend } = ctx;
  let forwardBytes = 0;
  const forward = (): void => {
    const before = backend.liveBytes();
    noGrad(() =>
      tidy(() => {
        model.forward(ids);
        forwardBytes = backend.liveBytes() - before; // everything the pass made is still held here
      }),
    );
  };
  // The previous point's idle buffers (another model, another length) would crowd this point's out
  // of the pool's idle cap, and buffers re-created every run would be timed as part of the forward.
  backend.trim?.();
  try {
    const timing = await timeFinished(backend, forward, { warmup, repeats, budgetMs: POINT_BUDGET_MS });
    const profile = ctx.options.profile ? await profileRuns(ctx, forward, timing.samplesMs.length) : undefined;
    return { ...where, status: 'ok', medianMs: timing.medianMs, samplesMs: timing.samplesMs, forwardBytes, profile };
  } catch (error) {
    await settleAfterFailure(backend);
    return { ...where, status: isOutOfMemory(error) ? 'out of memory' : 'error', message: errorMessage(error) };
  }
}

const mib = (bytes: number): string => formatNumber(bytes / 2 ** 20);

function describePoint(p: ScalingPoint): string {
  if (p.status === 'ok') {
    return `${formatNumber(p.medianMs as number)} ms (${(p.samplesMs as number[]).length} runs), ${mib(p.forwardBytes as number)} MiB`;
  }
  return p.status === 'error' ? `ERROR: ${p.message}` : `out of memory (${p.message})`;
}

/** The seed experiment's table for one batch size: length, each model's time, the speedup, and memory. */
function printTable(ctx: SuiteContext, models: NamedModel[], batch: number, points: ScalingPoint[], fits: ScalingFit[]): void {
  const [m, t] = models.map((x) => x.name) as [string, string];
  const find = (model: string, length: number): ScalingPoint | undefined =>
    points.find((p) => p.model === model && p.batch === batch && p.length === length);
  const time = (p: ScalingPoint | undefined): string =>
    p?.status === 'ok' ? formatNumber(p.medianMs as number) : p?.status === 'error' ? 'error' : 'OOM';
  const memory = (p: ScalingPoint | undefined): string => (p?.status === 'ok' ? mib(p.forwardBytes as number) : '-');
  const lengths = [...new Set(points.filter((p) => p.batch === batch).map((p) => p.length))];
  const rows = lengths.map((length) => {
    const pm = find(m, length);
    const pt = find(t, length);
    const speedup = pm?.status === 'ok' && pt?.status === 'ok' ? `${((pt.medianMs as number) / (pm.medianMs as number)).toFixed(2)}x` : '-';
    return [String(length), time(pm), time(pt), speedup, memory(pm), memory(pt)];
  });
  println(ctx);
  println(ctx, `Batch ${batch}: forward time (median, ms) and forward memory (MiB) on ${ctx.hardware}`);
  for (const line of formatTable(['length', `${m} ms`, `${t} ms`, 'speedup', `${m} MiB`, `${t} MiB`], rows)) println(ctx, line);
  println(ctx, `speedup = ${t} time / ${m} time; MiB = memory the forward pass holds at its end`);
  for (const name of [m, t]) {
    const fit = fits.find((f) => f.model === name && f.batch === batch);
    const range = fit ? `${Math.min(...fit.lengths)}-${Math.max(...fit.lengths)}` : '';
    println(
      ctx,
      fit
        ? `growth exponent of ${name}: time ~ L^${fit.k.toFixed(2)} (least squares over lengths ${range})`
        : `growth exponent of ${name}: too few points to fit`,
    );
  }
}

/** Log-log plots of time and of memory against length, one line per model and batch. */
async function writePlots(ctx: SuiteContext, models: NamedModel[], batches: number[], points: ScalingPoint[]): Promise<string[]> {
  const series = (value: (p: ScalingPoint) => number): Series[] =>
    batches.flatMap((batch) =>
      models.map(({ name }) => {
        const ok = points.filter((p) => p.model === name && p.batch === batch && p.status === 'ok');
        return { label: `${name}, batch ${batch}`, x: ok.map((p) => p.length), y: ok.map(value), markers: true };
      }),
    );
  const width = 1200;
  const title = (what: string): string => asciiTitle(`${what} - ${ctx.backendName} on ${ctx.hardware}`, width);
  const files = ['scaling.png', 'memory.png'];
  await writeLineChart(
    join(ctx.outDir, files[0]!),
    series((p) => p.medianMs as number),
    {
      title: title('Forward time vs sequence length'),
      xLabel: 'sequence length (tokens)',
      yLabel: 'forward time (ms)',
      logX: true,
      logY: true,
      width,
      height: 750,
    },
  );
  await writeLineChart(
    join(ctx.outDir, files[1]!),
    series((p) => (p.forwardBytes as number) / 2 ** 20),
    {
      title: title('Forward memory vs sequence length'),
      xLabel: 'sequence length (tokens)',
      yLabel: 'memory held by the forward pass (MiB)',
      logX: true,
      logY: true,
      width,
      height: 750,
    },
  );
  return files;
}

/** The plot font has printable ASCII only, 12 px per character at the chart's scale; longer titles are cut. */
function asciiTitle(text: string, width: number): string {
  const ascii = text.replace(/[^\x20-\x7e]/g, '?');
  const fits = Math.floor((width - 60) / 12);
  return ascii.length <= fits ? ascii : `${ascii.slice(0, fits - 3)}...`;
}
