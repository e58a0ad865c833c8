/**
 * Timing finished work, the one rule every benchmark here follows.
 *
 * Ops return as soon as their work is *queued*; on a GPU the work runs later. A clock stopped when the
 * JS call returns measures how fast we can enqueue, not how fast the device computes. So a sample runs
 * from the moment the work starts being queued until `backend.sync()` resolves, i.e. until the device
 * has finished everything queued. On the CPU backend every op finishes before it returns and `sync()`
 * resolves at once, so the same code measures both.
 *
 * Why not benny (benchmark.js)? It decides the number of runs itself (many, adaptively), which is
 * minutes for one 16 384-token forward pass on a slow device, and it has no notion of waiting for a
 * device. This harness is small enough to read: warm-up runs (shader compilation, pool growth, JIT),
 * then a fixed number of timed runs, of which we report the median (robust to the odd slow run: a
 * garbage collection, another process on the machine).
 *
 * Warm-up also lasts at least WARMUP_MS: a GPU that has been idle (or only busy with the CPU's setup)
 * runs at low clocks until it has been loaded for a while. On the H200 the first point of the
 * scaling suite, 1024 tokens after building the models, took 3.9 ms against 2.4 ms at 2048 tokens.
 */
import type { Backend } from '../src/backends/backend.js';

/** Warm-up lasts at least this long (when there is any warm-up), to bring the device to full clocks. */
export const WARMUP_MS = 200;

export interface TimingOptions {
  /** Untimed runs first: they compile pipelines and fill the buffer pool. */
  warmup: number;
  /** Timed runs wanted. */
  repeats: number;
  /** Stop taking samples once they add up to this many ms (after at least one), so slow points stay bounded. */
  budgetMs: number;
}

export interface Timing {
  /** Median of the samples, in ms. */
  medianMs: number;
  /** Every timed run, in ms, in order. */
  samplesMs: number[];
}

/** The median of a non-empty list (the mean of the two middle values for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/**
 * Times `enqueue` — which queues work on `backend` and returns — until that work has finished on the
 * device. Errors (an out-of-memory from the backend, a GPU error reported at `sync`) propagate.
 */
export async function timeFinished(backend: Backend, enqueue: () => void, options: TimingOptions): Promise<Timing> {
  const warmupStart = performance.now();
  for (let i = 0; i < options.warmup || (i > 0 && performance.now() - warmupStart < WARMUP_MS); i++) {
    enqueue();
    await backend.sync();
  }
  // Work queued before we were called must not be counted in the first sample.
  await backend.sync();
  const samplesMs: number[] = [];
  let spent = 0;
  while (samplesMs.length < options.repeats && (samplesMs.length === 0 || spent < options.budgetMs)) {
    const start = performance.now();
    enqueue();
    await backend.sync();
    const ms = performance.now() - start;
    samplesMs.push(ms);
    spent += ms;
  }
  return { medianMs: median(samplesMs), samplesMs };
}

/**
 * Runs `enqueue` and waits for it, again and again, for `ms` milliseconds: load that brings an idle
 * GPU to full clocks before anything is timed.
 */
export async function keepBusy(backend: Backend, enqueue: () => void, ms: number): Promise<void> {
  const start = performance.now();
  while (performance.now() - start < ms) {
    enqueue();
    await backend.sync();
  }
}
