/**
 * What the two command lines (train, generate) share: one-sentence errors with exit codes, parsing of
 * numeric flags, and choosing the backend.
 *
 * Exit codes: 0 success; 1 a failure while running; 2 bad input (a flag, a missing or corrupt file, a
 * checkpoint that does not fit) — detected before anything is written; 130 stopped by Ctrl-C.
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import '../backends/cpu/index.js'; // registers 'cpu'
import { setBackend } from '../backends/registry.js';
import type { WebGpuBackend } from '../backends/webgpu/index.js';

/** Bad input from the user: printed as one sentence, exit code 2. */
export class UsageError extends Error {}

/** Runs a command-line `main`, turning any error into one sentence on stderr and an exit code. */
export async function runCli(main: () => Promise<number>): Promise<never> {
  let code: number;
  try {
    code = await main();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`${message}\n`);
    code = error instanceof UsageError ? 2 : 1;
  }
  // Exit explicitly: a GPU device (Dawn) keeps handles open that would otherwise keep Node alive.
  process.exit(code);
}

/** An integer flag ≥ `min`, or a UsageError naming the flag. */
export function integerFlag(name: string, value: string, min: number): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < min) {
    const what = min === 1 ? 'a positive integer' : min === 0 ? 'a non-negative integer' : `an integer of at least ${min}`;
    throw new UsageError(`--${name} must be ${what}, got "${value}".`);
  }
  return n;
}

/** A finite number flag, > 0 when `positive`, else ≥ 0. */
export function numberFlag(name: string, value: string, positive: boolean): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || (positive && n === 0)) {
    throw new UsageError(`--${name} must be a ${positive ? 'positive' : 'non-negative'} number, got "${value}".`);
  }
  return n;
}

/** A duration: seconds ("90"), or with a unit ("90s", "10m", "1.5h"). */
export function durationFlag(name: string, value: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([smh]?)$/.exec(value.trim());
  if (!match) throw new UsageError(`--${name} must be a duration such as 90, 90s, 10m or 2h, got "${value}".`);
  const unit = { '': 1, s: 1, m: 60, h: 3600 }[match[2] as '' | 's' | 'm' | 'h'];
  return Number(match[1]) * unit;
}

/** One of `choices`, or a UsageError listing them. */
export function choiceFlag<T extends string>(name: string, value: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(value)) {
    throw new UsageError(`Unknown ${name} "${value}"; choose one of ${choices.join(', ')}.`);
  }
  return value as T;
}

/** parseArgs' errors (unknown flag, missing value) as one sentence. */
function describeParseError(error: unknown): UsageError {
  const message = error instanceof Error ? error.message : String(error);
  const flag = /'(--?[\w-]+)/.exec(message)?.[1];
  if (flag && /Unknown option/.test(message)) return new UsageError(`Unknown option ${flag}; see --help.`);
  if (flag && /argument missing/.test(message)) return new UsageError(`Option ${flag} needs a value; see --help.`);
  return new UsageError(`${message.split('. ')[0]?.replace(/\.$/, '')}; see --help.`);
}

/** The command line's flags against `options` (no positionals), or a one-sentence UsageError. */
export function parseFlags<O extends NonNullable<ParseArgsConfig['options']>>(
  options: O,
): ReturnType<typeof parseArgs<{ options: O }>>['values'] {
  try {
    return parseArgs({ options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw describeParseError(error);
  }
}

export interface BackendChoice {
  name: 'cpu' | 'webgpu';
  /** Why this backend, in words, for the first printed line. */
  reason: string;
}

/**
 * Activates the backend: the requested one, or by default WebGPU when a hardware adapter exists and
 * the CPU backend otherwise. Returns the choice with its reason (the adapter, for WebGPU).
 */
export async function chooseBackend(requested: 'cpu' | 'webgpu' | undefined): Promise<BackendChoice> {
  if (requested === 'cpu') {
    await setBackend('cpu');
    return { name: 'cpu', reason: 'as requested' };
  }
  let gpu: WebGpuBackend;
  try {
    await import('../backends/webgpu/index.js'); // registers 'webgpu'
    gpu = (await setBackend('webgpu')) as WebGpuBackend;
  } catch (error) {
    const why = (error instanceof Error ? error.message : String(error)).replace(/\.$/, '');
    if (requested === 'webgpu') throw new UsageError(`The WebGPU backend is unavailable: ${why}.`);
    await setBackend('cpu');
    return { name: 'cpu', reason: `WebGPU is unavailable (${why})` };
  }
  // A software renderer (what `npm run setup` installs on machines without a GPU) emulates the GPU
  // on the same cores, which is slower than the CPU backend: use it only when asked for.
  if (requested === undefined && gpu.isSoftware) {
    await setBackend('cpu');
    return {
      name: 'cpu',
      reason: `the only WebGPU adapter is a software renderer (${gpu.adapterDescription()}); pass --backend webgpu to use it anyway`,
    };
  }
  return { name: 'webgpu', reason: gpu.adapterDescription() };
}
