/**
 * What every suite runs with: the active backend, a one-line description of the hardware (for tables
 * and plot titles), the command line's options, and where to write progress and result files.
 */
import type { Backend } from '../src/backends/backend.js';

/** What kind of device the suites size their work for. */
export type DeviceClass =
  /** A real GPU: full sizes (256 MB tensors, 4096³ products, 16k tokens). */
  | 'gpu'
  /** A software renderer such as Mesa's lavapipe: WebGPU on the CPU's cores, roughly 1–2 GB/s. */
  | 'software'
  /** The CPU reference backend: single-threaded TypeScript. */
  | 'cpu';

export interface BenchOptions {
  /** Small sizes, one timed run, a few steps: finishes in under a minute on a CPU, for CI. */
  quick: boolean;
  /** --models: the seed presets or the full-size ones (scaling). */
  models: 'seed' | 'full';
  /** --lengths, when given (scaling). */
  lengths: number[] | undefined;
  /** --batch, when given: the second batch size of the scaling suite, the train suite's batch. */
  batch: number | undefined;
  /** --repeats, when given: timed runs per measurement (timed steps for train). */
  repeats: number | undefined;
  /** --profile: after each measurement, the GPU time per kernel of the same work (profile.ts). */
  profile: boolean;
}

export interface SuiteContext {
  readonly backend: Backend;
  readonly backendName: 'cpu' | 'webgpu';
  /** The device in one line: the GPU adapter's description, or the CPU's model. */
  readonly hardware: string;
  readonly device: DeviceClass;
  readonly options: BenchOptions;
  /** The results directory (exists); suites write their plots here. */
  readonly outDir: string;
  /** Progress and tables go here as they happen. */
  readonly out: NodeJS.WritableStream;
}

/** Writes one line of progress or table output. */
export const println = (ctx: SuiteContext, line = ''): void => {
  ctx.out.write(`${line}\n`);
};
