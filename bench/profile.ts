/**
 * `--profile`: where the GPU time of a measurement goes, kernel by kernel.
 *
 * Once a measurement has been timed, its work runs again, as many times as it was timed, with the
 * WebGPU backend's profiler on (src/backends/webgpu/profiler.ts): every kernel launch in a compute pass
 * of its own, timed by the GPU's timestamps. Not during the timed runs themselves, because a pass per
 * launch costs CPU time and keeps the GPU from overlapping kernels: the profile shows how the GPU time
 * splits, and the timing stays what it is without one. The table lists the kernels with the most GPU
 * time and their share of it; results.json keeps every row.
 */
import type { WebGpuBackend } from '../src/backends/webgpu/index.js';
import type { ProfileRow } from '../src/backends/webgpu/profiler.js';
import { println, type SuiteContext } from './context.js';
import { formatNumber, formatTable } from './table.js';

/** Rows printed; the rest are summed in one line. */
const TOP = 15;

export interface Profile {
  /** Runs of the measured work that were profiled (as many as were timed). */
  runs: number;
  /** The GPU time of all kernels, summed. */
  totalMs: number;
  /** Every kernel, most GPU time first. */
  kernels: ProfileRow[];
}

/** Runs `enqueue` `runs` times, each waited for, with every kernel timed on the GPU. */
export async function profileRuns(ctx: SuiteContext, enqueue: () => void, runs: number): Promise<Profile> {
  const gpu = ctx.backend as WebGpuBackend; // the CLI accepts --profile only on WebGPU
  await gpu.profileReport(); // start from zero: a measurement that failed may have left timings behind
  gpu.profile(true);
  try {
    for (let i = 0; i < runs; i++) {
      enqueue();
      await gpu.sync();
    }
  } finally {
    gpu.profile(false);
  }
  const kernels = await gpu.profileReport();
  return { runs, totalMs: kernels.reduce((sum, k) => sum + k.totalMs, 0), kernels };
}

/** The top kernels as a table under `title`, with their share of the GPU time. */
export function printProfile(ctx: SuiteContext, title: string, profile: Profile): void {
  const share = (ms: number): string => (profile.totalMs > 0 ? `${((100 * ms) / profile.totalMs).toFixed(1)}%` : '-');
  const rows = profile.kernels
    .slice(0, TOP)
    .map((k) => [k.op, String(k.calls), formatNumber(k.totalMs), formatNumber(k.meanUs), share(k.totalMs)]);
  println(ctx);
  println(ctx, title);
  for (const line of formatTable(['kernel', 'calls', 'GPU ms', 'mean us', 'share'], rows)) println(ctx, line);
  const rest = profile.kernels.slice(TOP);
  if (rest.length > 0) {
    const ms = rest.reduce((sum, k) => sum + k.totalMs, 0);
    println(ctx, `... ${rest.length} more kernels: ${formatNumber(ms)} ms, ${share(ms)}`);
  }
}
