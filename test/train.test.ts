/**
 * Training: the optimizers, clipping and schedule against hand computations; the loop on tiny models
 * (the loss falls, memory stays flat); checkpoints (bit-exact resume, atomic writes, corrupt files);
 * and the command line's error paths. Everything runs on the CPU backend.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { getBackend, globalGenerator, manualSeed, setBackend, type Tensor, tensor } from '../src/index.js';
import type { LanguageModel } from '../src/models/language-model.js';
import { createModel, presets } from '../src/models/presets.js';
import { findCheckpoint, loadCheckpoint, saveCheckpoint } from '../src/train/checkpoint.js';
import type { TrainConfig } from '../src/train/config.js';
import { type Splits, train } from '../src/train/loop.js';
import { Adam, AdamW } from '../src/train/optim/adam.js';
import { clipGradNorm } from '../src/train/optim/clip.js';
import { warmupCosine } from '../src/train/optim/schedule.js';
import { decaysWeight } from '../src/train/optim/weight-decay.js';
import { renderLineChart } from '../src/train/plot/plot.js';
import { crc32, encodePng } from '../src/train/plot/png.js';
import { formatDuration, ProgressBar } from '../src/train/progress.js';
import type { LogEntry } from '../src/train/run-log.js';
import { sampleToken } from '../src/train/sample.js';
import { openWebGpu } from './webgpu-available.js';

/** Lets a test make the next safetensors write fail *after* its file is complete (a crash mid-checkpoint). */
const crash = vi.hoisted(() => ({ afterWriting: null as string | null }));
vi.mock('../src/models/safetensors.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/models/safetensors.js')>();
  return {
    ...real,
    saveSafetensors: async (path: string, ...rest: [never, never?]) => {
      await real.saveSafetensors(path, ...rest);
      if (crash.afterWriting !== null && path.endsWith(crash.afterWriting)) throw new Error('simulated crash');
    },
  };
});

await setBackend('cpu');

const dirs: string[] = [];
const tempDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'tensorscan-train-'));
  dirs.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const values = async (t: Tensor): Promise<number[]> => Array.from(await t.data());

describe('Adam and AdamW', () => {
  it('matches a hand-computed two-step Adam update', async () => {
    const p = tensor([1, -2]).requireGrad();
    const adam = new Adam([['w', p]], { lr: 0.1 });
    const grads = [
      [0.5, -1],
      [0.1, 0.3],
    ];
    // By hand, in float64: m, v, bias corrections, update.
    const expected = [1, -2];
    const m = [0, 0];
    const v = [0, 0];
    for (let t = 1; t <= 2; t++) {
      const g = grads[t - 1] as number[];
      for (let i = 0; i < 2; i++) {
        m[i] = 0.9 * (m[i] as number) + 0.1 * (g[i] as number);
        v[i] = 0.999 * (v[i] as number) + 0.001 * (g[i] as number) ** 2;
        const mHat = (m[i] as number) / (1 - 0.9 ** t);
        const vHat = (v[i] as number) / (1 - 0.999 ** t);
        expected[i] = (expected[i] as number) - (0.1 * mHat) / (Math.sqrt(vHat) + 1e-8);
      }
      p.grad = tensor(g);
      adam.step();
      adam.zeroGrad();
    }
    const got = await values(p);
    for (let i = 0; i < 2; i++) expect(got[i]).toBeCloseTo(expected[i] as number, 6);
    expect(adam.stepCount).toBe(2);
    const state = adam.state();
    expect([...state.tensors.keys()]).toEqual(['w.exp_avg', 'w.exp_avg_sq']);
    expect((await values(state.tensors.get('w.exp_avg') as Tensor))[0]).toBeCloseTo(m[0] as number, 7);
  });

  it('moves every weight by about lr·sign(g) on its first step (m̂/√v̂ = g/|g|)', async () => {
    const p = tensor([0, 0, 0]).requireGrad();
    const adam = new Adam([['w', p]], { lr: 0.5 });
    p.grad = tensor([3, -0.001, 1e4]);
    adam.step();
    const got = await values(p);
    [-0.5, 0.5, -0.5].forEach((x, i) => {
      expect(got[i]).toBeCloseTo(x, 4);
    });
  });

  it('AdamW decays matrices but not norms, biases, A_log or D', async () => {
    const named: [string, Tensor][] = [
      ['layers.0.mixer.in_proj.weight', tensor([[1, 1]])],
      ['embedding.weight', tensor([[1, 1]])],
      ['layers.0.norm.weight', tensor([1, 1])],
      ['norm_f.weight', tensor([1, 1])],
      ['head.bias', tensor([1, 1])],
      ['layers.0.mixer.A_log', tensor([[1, 1]])],
      ['layers.0.mixer.D', tensor([1, 1])],
    ];
    for (const [, p] of named) p.requireGrad();
    const adamw = new AdamW(named, { lr: 0.1, weightDecay: 0.5 });
    // A zero gradient makes the Adam part of the update exactly 0, leaving only the decay p·(1 − lr·λ).
    for (const [, p] of named) p.grad = tensor(new Float32Array(p.size), [...p.shape]);
    adamw.step();
    const decayed = Math.fround(1 * Math.fround(1 - 0.1 * 0.5));
    for (const [name, p] of named) {
      const expected = ['layers.0.mixer.in_proj.weight', 'embedding.weight'].includes(name) ? decayed : 1;
      expect((await values(p))[0], name).toBe(expected);
    }
    // The rule on a real model's parameter names.
    const model = createModel('mamba-tiny');
    const notDecayed = model
      .namedParameters()
      .filter(([name, p]) => !decaysWeight(name, p))
      .map(([name]) => name.replace(/^layers\.\d+\./, 'layers.N.'));
    expect(new Set(notDecayed)).toEqual(
      new Set([
        'layers.N.mixer.dt_proj.bias',
        'layers.N.mixer.A_log',
        'layers.N.mixer.D',
        'layers.N.mixer.conv1d.bias',
        'layers.N.norm.weight',
        'norm_f.weight',
      ]),
    );
    model.dispose();
  });

  it('updates each parameter in one fused kernel that matches float64 Adam and AdamW at t = 1, 2 and 10', async () => {
    const [rows, cols] = [5, 7]; // a matrix under a weight's name, so AdamW decays it
    const n = rows * cols;
    const wave = (i: number, t: number): number => Math.fround(Math.sin(1.3 * i + 0.7 * t)); // float32 values
    for (const dtype of ['float32', 'float64'] as const) {
      // float32 rounds p, m and v when it stores them (about 6e-8 relative per step); float64 does not.
      const rtol = dtype === 'float32' ? 1e-6 : 1e-14;
      for (const weightDecay of [0, 0.1]) {
        const p = tensor(
          Float64Array.from({ length: n }, (_, i) => wave(i, 0)),
          [rows, cols],
          { dtype },
        ).requireGrad();
        const named: [string, Tensor][] = [['layer.weight', p]];
        const optimizer = weightDecay > 0 ? new AdamW(named, { lr: 0.01, weightDecay }) : new Adam(named, { lr: 0.01 });
        // The textbook formulas in plain float64 numbers.
        const ref = { p: await values(p), m: new Array<number>(n).fill(0), v: new Array<number>(n).fill(0) };
        for (let t = 1; t <= 10; t++) {
          const lr = 0.01 * (1 + t / 10); // changed every step, as the schedule does
          optimizer.lr = lr;
          const g = Array.from({ length: n }, (_, i) => wave(i, t));
          // The gradient as a transposed view, the layout Linear layers produce: (r, c) at c·rows + r.
          const columns = Float64Array.from({ length: n }, (_, j) => g[(j % rows) * cols + Math.floor(j / rows)] as number);
          p.grad = tensor(columns, [cols, rows], { dtype }).transpose();
          optimizer.step();
          optimizer.zeroGrad();
          for (let i = 0; i < n; i++) {
            const gi = g[i] as number;
            ref.m[i] = 0.9 * (ref.m[i] as number) + 0.1 * gi;
            ref.v[i] = 0.999 * (ref.v[i] as number) + 0.001 * gi ** 2;
            const mHat = (ref.m[i] as number) / (1 - 0.9 ** t);
            const vHat = (ref.v[i] as number) / (1 - 0.999 ** t);
            ref.p[i] = (ref.p[i] as number) * (1 - lr * weightDecay) - (lr * mHat) / (Math.sqrt(vHat) + 1e-8);
          }
          if (![1, 2, 10].includes(t)) continue;
          const moments = optimizer.state().tensors;
          const got = {
            p: await values(p),
            m: await values(moments.get('layer.weight.exp_avg') as Tensor),
            v: await values(moments.get('layer.weight.exp_avg_sq') as Tensor),
          };
          for (const key of ['p', 'm', 'v'] as const) {
            // Relative to the largest element: m sums terms of both signs, so a small element carries
            // the absolute rounding error of the larger terms that formed it.
            const scale = Math.max(...ref[key].map(Math.abs));
            got[key].forEach((x, i) => {
              const error = Math.abs(x - (ref[key][i] as number));
              expect(error, `${key}[${i}], ${dtype}, λ = ${weightDecay}, t = ${t}`).toBeLessThanOrEqual(rtol * scale);
            });
          }
        }
        optimizer.dispose();
        p.dispose();
      }
    }
  });

  it('refuses a strided parameter and one its backend cannot update, in one sentence', () => {
    const transposed = tensor([
      [1, 2],
      [3, 4],
    ]).transpose();
    expect(() => new Adam([['w', transposed]], { lr: 0.1 })).toThrow(
      'Adam: the parameter "w" is a strided view; the update needs it dense from the start of its buffer.',
    );
    const half = tensor([1, 2], { dtype: 'float16' }).requireGrad();
    half.grad = tensor([1, 1], { dtype: 'float16' });
    expect(() => new Adam([['h', half]], { lr: 0.1 }).step()).toThrow(
      'adamStep: the CPU updates float32 and float64 parameters, not float16.',
    );
  });

  it('round-trips its state and refuses a state for other parameters', async () => {
    const p = tensor([1, 2, 3]).requireGrad();
    const a = new Adam([['w', p]], { lr: 0.01 });
    p.grad = tensor([1, -1, 2]);
    a.step();
    const b = new Adam([['w', tensor([0, 0, 0]).requireGrad()]], { lr: 0.01 });
    b.loadState(a.state());
    expect(b.stepCount).toBe(1);
    expect(await values(b.state().tensors.get('w.exp_avg_sq') as Tensor)).toEqual(
      await values(a.state().tensors.get('w.exp_avg_sq') as Tensor),
    );
    const c = new Adam([['other', tensor([0, 0, 0]).requireGrad()]], { lr: 0.01 });
    expect(() => c.loadState(a.state())).toThrow('The optimizer state has no moment "other.exp_avg".');
  });
});

describe('clipping and schedule', () => {
  it('scales gradients to the max global norm, and leaves smaller ones bit for bit', async () => {
    const a = tensor([0, 0]).requireGrad();
    const b = tensor([0]).requireGrad();
    a.grad = tensor([3, 4]);
    b.grad = tensor([12]); // global norm √(9 + 16 + 144) = 13
    const norm = clipGradNorm([a, b, a], 1); // a listed twice (tied) counts once
    expect(await norm.item()).toBeCloseTo(13, 5);
    const clipped = [...(await values(a.grad)), ...(await values(b.grad))];
    expect(Math.hypot(...clipped)).toBeCloseTo(1, 5);
    expect(clipped[0]! / clipped[2]!).toBeCloseTo(3 / 12, 6); // the direction is kept
    a.grad = tensor([0.3, 0.4]);
    b.grad = null;
    expect(await clipGradNorm([a, b], 1).item()).toBeCloseTo(0.5, 6);
    expect(await values(a.grad)).toEqual(Array.from(new Float32Array([0.3, 0.4])));
  });

  it('warms up linearly, peaks, and decays along a cosine to the minimum', () => {
    const lr = warmupCosine({ peakLr: 1, warmupSteps: 10, totalSteps: 110, minLr: 0.1 });
    expect(lr(0)).toBeCloseTo(0.1, 12); // first step: peak / warmup
    expect(lr(4)).toBeCloseTo(0.5, 12);
    expect(lr(9)).toBe(1); // end of warm-up: the peak
    expect(lr(10)).toBe(1); // cosine starts at the peak
    expect(lr(60)).toBeCloseTo(0.55, 12); // halfway: (peak + min) / 2
    expect(lr(109)).toBeCloseTo(0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * 0.99)), 12);
    expect(lr(110)).toBe(0.1);
    const constant = warmupCosine({ peakLr: 2, warmupSteps: 0, totalSteps: 5, decay: 'constant' });
    expect([0, 4, 9].map(constant)).toEqual([2, 2, 2]);
  });
});

// ---- the loop, on tiny models and synthetic text ----

/**
 * A learnable synthetic stream over the tiny models' 64-token vocabulary: one fixed random permutation
 * of the tokens applied over and over from `start`, so each token determines the next one.
 */
const SUCCESSOR = (() => {
  const next = Array.from({ length: 64 }, (_, i) => i);
  let s = 1;
  for (let i = 63; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const j = s % (i + 1);
    [next[i], next[j]] = [next[j] as number, next[i] as number];
  }
  return next;
})();

function syntheticTokens(length: number, start: number): Int32Array {
  const out = new Int32Array(length);
  out[0] = start;
  for (let i = 1; i < length; i++) out[i] = SUCCESSOR[out[i - 1] as number] as number;
  return out;
}

const data: Splits = { train: syntheticTokens(4096, 1), valid: syntheticTokens(300, 2), test: syntheticTokens(300, 3) };

function tinyConfig(overrides: Partial<TrainConfig> = {}): TrainConfig {
  return {
    model: 'mamba-tiny',
    arch: presets['mamba-tiny'],
    batchSize: 4,
    seqLen: 16,
    epochs: 100,
    maxSteps: 8,
    optimizer: 'adamw',
    lr: 1e-2,
    weightDecay: 0.1,
    warmupSteps: 2,
    decay: 'cosine',
    minLrRatio: 0.1,
    clipNorm: 1,
    gradAccum: 1,
    seed: 7,
    logEvery: 1,
    checkpointEvery: 0,
    evalTokens: 128,
    ...overrides,
  };
}

function freshModel(config: TrainConfig): LanguageModel {
  manualSeed(config.seed);
  return createModel(config.arch);
}

/** A non-terminal output that records the lines and can run a callback on each. */
function recorder(onLine: (line: string) => void = () => {}): { write(text: string): boolean; lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    write(text: string) {
      for (const line of text.split('\n').filter(Boolean)) {
        lines.push(line);
        onLine(line);
      }
      return true;
    },
  };
}

const readLog = (dir: string): LogEntry[] =>
  readFileSync(join(dir, 'log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as LogEntry);

async function weightsOf(model: LanguageModel): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, p] of model.namedParameters()) out.set(name, (await p.data()) as Float32Array);
  return out;
}

const webgpu = await openWebGpu('the training loop on WebGPU');

// The loop's tests run on the CPU and, as the CI's short training run, on WebGPU (lavapipe there).
describe.each([
  ['cpu', false],
  ['webgpu', webgpu.skip],
] as const)('training loop on %s', (backend, skip) => {
  beforeAll(async () => {
    if (skip) return;
    if (backend === 'webgpu') webgpu.requireAdapter();
    await setBackend(backend);
  });
  afterAll(async () => {
    await setBackend('cpu');
  });
  it.skipIf(skip)('lowers the loss over a few dozen steps on a tiny Mamba and a tiny Transformer', async () => {
    for (const model of ['mamba-tiny', 'transformer-tiny'] as const) {
      const config = tinyConfig({ model, arch: presets[model], maxSteps: 40, logEvery: 10, optimizer: 'adam', warmupSteps: 4 });
      const dir = tempDir();
      const net = freshModel(config);
      const result = await train({ config, model: net, data, runDir: dir, out: recorder() });
      const losses = readLog(dir)
        .filter((e) => e.kind === 'train')
        .map((e) => e.loss);
      expect(losses.length).toBe(4);
      expect(losses[3]!, model).toBeLessThan(losses[0]! - 0.5);
      expect(result.valid!.loss).toBeLessThan(Math.log(64)); // better than uniform guessing
      expect(result.valid!.perplexity).toBeCloseTo(Math.exp(result.valid!.loss), 6);
      expect(existsSync(join(dir, 'loss.png'))).toBe(true);
      net.dispose();
    }
  });

  it.skipIf(skip)('accumulates gradients: 2 micro-batches of 2 equal one batch of 4', async () => {
    const run = async (overrides: Partial<TrainConfig>): Promise<Map<string, Float32Array>> => {
      const config = tinyConfig({ maxSteps: 3, clipNorm: 0, ...overrides });
      const net = freshModel(config);
      await train({ config, model: net, data, runDir: tempDir(), out: recorder() });
      const w = await weightsOf(net);
      net.dispose();
      return w;
    };
    // The window order depends on the seed and the sequence length, not the batch size, so both runs
    // see the same 4 windows per step; only the float rounding of the averaged gradient differs.
    const one = await run({ batchSize: 4 });
    const two = await run({ batchSize: 2, gradAccum: 2 });
    let largest = 0;
    for (const [name, w] of one) {
      const v = two.get(name)!;
      for (let i = 0; i < w.length; i++) largest = Math.max(largest, Math.abs(w[i]! - v[i]!));
    }
    expect(largest).toBeLessThan(1e-4); // vs. steps of ~lr = 1e-2
  });

  it.skipIf(skip)('keeps memory flat over 200 steps', async () => {
    const config = tinyConfig({ maxSteps: 200, logEvery: 10, batchSize: 2, seqLen: 8, evalTokens: 32 });
    const net = freshModel(config);
    const live: number[] = [];
    const heap: number[] = [];
    const gc = (globalThis as { gc?: () => void }).gc;
    const out = recorder((line) => {
      if (!line.startsWith('step ')) return;
      live.push(getBackend().liveBytes());
      gc?.();
      heap.push(process.memoryUsage().heapUsed);
    });
    const before = getBackend().liveBytes();
    await train({ config, model: net, data, runDir: tempDir(), out });
    expect(live.length).toBe(20);
    expect(new Set(live).size).toBe(1); // the same live bytes after step 10, 20, …, 200
    expect(getBackend().liveBytes()).toBe(before); // and everything the run made is freed
    if (gc) expect(heap[heap.length - 1]! - heap[1]!).toBeLessThan(8 * 1024 * 1024);
    net.dispose();
  });
});

describe('checkpoints', () => {
  it('resumes bit for bit: N steps straight = N/2, checkpoint, resume, N/2', async () => {
    const config = tinyConfig({ maxSteps: 8 });
    const straight = freshModel(config);
    await train({ config, model: straight, data, runDir: tempDir(), out: recorder() });
    const expected = await weightsOf(straight);
    const generatorAfter = globalGenerator.state();

    // The same run, stopped after step 4 as Ctrl-C would stop it.
    const dir = tempDir();
    const first = freshModel(config);
    const stop = new AbortController();
    const halfway = await train({
      config,
      model: first,
      data,
      runDir: dir,
      signal: stop.signal,
      out: recorder((line) => line.startsWith('step 4/') && stop.abort()),
    });
    expect(halfway).toMatchObject({ step: 4, stopReason: 'interrupted' });
    first.dispose();
    manualSeed(12345); // scramble the generator: the checkpoint must restore it

    const checkpoint = await loadCheckpoint((await findCheckpoint(dir))!);
    expect(checkpoint.trainer.step).toBe(4);
    const resumed = checkpoint.model;
    const result = await train({
      config: checkpoint.trainer.config,
      model: resumed,
      data,
      runDir: dir,
      resume: { trainer: checkpoint.trainer, moments: checkpoint.moments },
      out: recorder(),
    });
    expect(result.step).toBe(8);
    const got = await weightsOf(resumed);
    for (const [name, w] of expected) expect(Buffer.from(got.get(name)!.buffer).equals(Buffer.from(w.buffer)), name).toBe(true);
    expect(globalGenerator.state()).toEqual(generatorAfter);
    // The log reads as one run: steps 1–8 once each.
    expect(
      readLog(dir)
        .filter((e) => e.kind === 'train')
        .map((e) => e.step),
    ).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    straight.dispose();
    resumed.dispose();
  });

  it('appear atomically, keep only the newest, and survive a crash mid-write', async () => {
    const dir = tempDir();
    const config = tinyConfig({ maxSteps: 6, checkpointEvery: 2 });
    const net = freshModel(config);
    await train({ config, model: net, data, runDir: dir, out: recorder() });
    expect(readdirSync(dir).sort()).toEqual(['checkpoint-0000006', 'log.jsonl', 'loss.png']);
    expect(readdirSync(join(dir, 'checkpoint-0000006')).sort()).toEqual([
      'config.json',
      'model.safetensors',
      'optimizer.safetensors',
      'trainer.json',
    ]);

    // A crash after the weights and moments are written, before the checkpoint is complete.
    const { trainer, moments } = await loadCheckpoint(join(dir, 'checkpoint-0000006'));
    const optimizer = new AdamW(net.namedParameters(), { lr: 1, weightDecay: 0 });
    optimizer.loadState({ step: trainer.optimizerStep, tensors: moments });
    crash.afterWriting = 'optimizer.safetensors';
    try {
      await expect(saveCheckpoint(dir, net, optimizer, { ...trainer, step: 7 })).rejects.toThrow('simulated crash');
    } finally {
      crash.afterWriting = null;
    }
    expect(readdirSync(dir).sort()).toEqual(['checkpoint-0000006', 'log.jsonl', 'loss.png']); // no temp dir, no checkpoint-0000007
    const intact = await loadCheckpoint((await findCheckpoint(dir))!);
    expect(intact.trainer.step).toBe(6);
    const before = await weightsOf(net);
    const after = await weightsOf(intact.model);
    for (const [name, w] of before) expect(after.get(name), name).toEqual(w);
    for (const t of [...moments.values(), ...intact.moments.values()]) t.dispose();
    intact.model.dispose();
    optimizer.dispose();
    net.dispose();
  });

  it('refuses a corrupt checkpoint with one sentence', async () => {
    const dir = tempDir();
    const config = tinyConfig({ maxSteps: 1 });
    const net = freshModel(config);
    await train({ config, model: net, data, runDir: dir, out: recorder() });
    net.dispose();
    const path = join(dir, 'checkpoint-0000001');
    truncateSync(join(path, 'model.safetensors'), 100);
    const error = await loadCheckpoint(path).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(/^The checkpoint .*checkpoint-0000001 is unusable: .*truncated.*\.$/);
    expect((error as Error).message).not.toContain('\n');
    writeFileSync(join(path, 'trainer.json'), '{"format": "tensorscan-checkpoint/1", "step": 1');
    await expect(loadCheckpoint(path)).rejects.toThrow(/^The checkpoint .* is unusable: trainer\.json could not be read \(.*\)\.$/);
  });
});

// ---- the command lines ----

/**
 * Runs a CLI and returns its exit code and output: through `npx tsx` as `npm run` does, or, to save
 * npx's start-up time, through `node --import tsx` (the same program).
 */
function cli(
  script: string,
  args: string[],
  via: 'npx' | 'node' = 'node',
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const [command, prefix] = via === 'npx' ? ['npx', ['tsx']] : [process.execPath, ['--import', 'tsx']];
    const child = spawn(command, [...prefix, script, ...args], { cwd: join(import.meta.dirname, '..') });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('command line', () => {
  let corruptRun: string;
  beforeAll(async () => {
    // A run directory whose only checkpoint is corrupt, for --resume and generate.
    corruptRun = tempDir();
    const config = tinyConfig({ maxSteps: 1 });
    const net = freshModel(config);
    await train({ config, model: net, data, runDir: corruptRun, out: recorder() });
    net.dispose();
    writeFileSync(join(corruptRun, 'checkpoint-0000001', 'optimizer.safetensors'), 'garbage');
  });

  it('answers bad input with one sentence and exit code 2, writing nothing', async () => {
    const out = join(tempDir(), 'run');
    const cases: [string, string[], RegExp][] = [
      ['src/train/cli.ts', ['--model', 'nope', '--out', out], /^Unknown model "nope"; choose one of seed-mamba, .*\.$/],
      ['src/train/cli.ts', ['--batch-size', '0', '--out', out], /^--batch-size must be a positive integer, got "0"\.$/],
      ['src/train/cli.ts', ['--bogus'], /^Unknown option --bogus; see --help\.$/],
      [
        'src/train/cli.ts',
        ['--backend', 'cpu', '--model', 'transformer', '--seq-len', '4096', '--out', out],
        /^--seq-len 4096 is longer than the transformer model's 1024 positions \(max_len\)\.$/,
      ],
      [
        'src/train/cli.ts',
        ['--backend', 'cpu', '--resume', '--out', corruptRun],
        /^The checkpoint .* is unusable: optimizer\.safetensors could not be read \(.*\)\.$/,
      ],
      ['src/train/generate-cli.ts', ['--prompt', 'x'], /^--checkpoint DIR is required: .*\.$/],
    ];
    const results = await Promise.all(cases.map(([script, args], i) => cli(script, args, i === 0 ? 'npx' : 'node')));
    results.forEach(({ code, stderr }, i) => {
      const [, args, pattern] = cases[i]!;
      const lines = stderr.trim().split('\n');
      expect(lines.length, args.join(' ')).toBe(1);
      expect(lines[0], args.join(' ')).toMatch(pattern);
      expect(code, args.join(' ')).toBe(2);
    });
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(corruptRun).sort()).toEqual(['checkpoint-0000001', 'log.jsonl', 'loss.png']);
  });
});

// ---- plotting and sampling ----

describe('PNG charts', () => {
  it('computes the standard CRC-32 and writes a well-formed PNG', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    const png = encodePng(2, 1, new Uint8Array([255, 0, 0, 0, 0, 255]));
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    expect(png.subarray(12, 16).toString('latin1')).toBe('IHDR');
    expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([2, 1]);
    expect(png.readUInt32BE(29)).toBe(crc32(png.subarray(12, 29))); // IHDR's CRC covers type + data
    const chart = renderLineChart([{ label: 'a', x: [1, 10, 100], y: [3, 2, 1] }], {
      logX: true,
      logY: true,
      title: 'T',
      width: 320,
      height: 200,
    });
    expect(chart.readUInt32BE(16)).toBe(320);
  });
});

describe('progress display', () => {
  it('redraws one line on a terminal and prints plain lines otherwise', () => {
    const info = { step: 5, total: 10, epoch: 0.5, loss: 2.5, tokensPerSec: 1234.4, etaSeconds: 754 };
    const tty: string[] = [];
    const bar = new ProgressBar({ write: (t: string) => tty.push(t), isTTY: true, columns: 100 });
    bar.update(info, true);
    const clearLine = '\r\x1b[2K'; // back to column 0, erase the line
    expect(tty[0]!.startsWith(clearLine)).toBe(true);
    expect(tty[0]!.slice(clearLine.length)).toMatch(
      /^step 5\/10 \[█+░+\] {2}50\.0% │ epoch 0\.50 │ loss 2\.5000 │ 1,234 tok\/s │ ETA 12m34s$/,
    );
    expect(tty[0]!.length - clearLine.length).toBeLessThan(100);
    const plain: string[] = [];
    const log = new ProgressBar({ write: (t: string) => plain.push(t) });
    log.update(info, false); // not fresh, and printed less than 30 s ago: skipped
    log.update(info, true);
    expect(plain).toEqual(['step 5/10 | epoch 0.50 | loss 2.5000 | 1,234 tok/s | ETA 12m34s\n']);
    expect([formatDuration(45), formatDuration(3720)]).toEqual(['45s', '1h02m']);
  });
});

describe('sampling', () => {
  it('is greedy at temperature 0 and stays within the top k', () => {
    const logits = [0, 5, 1, 4, 2];
    expect(sampleToken(logits, { temperature: 0, topK: 0 }, 0.99)).toBe(1);
    const drawn = new Set(Array.from({ length: 50 }, (_, i) => sampleToken(logits, { temperature: 1, topK: 2 }, i / 50)));
    expect(drawn).toEqual(new Set([1, 3]));
    expect(sampleToken(logits, { temperature: 1, topK: 0 }, 0)).toBe(0); // u = 0 picks the first candidate
  });
});
