/**
 * The kernels suite: how close single kernels come to what the device can do.
 *
 * - **copy** of a large contiguous buffer is the memory-bandwidth *ceiling*: it reads and writes each
 *   byte once and computes nothing, so no memory-bound kernel can beat it by much. It is measured
 *   first, in the same run, and the others are stated as a fraction of it.
 * - **element-wise** (unary exp, binary add) and **reductions** (row sums, at three row shapes, because
 *   the kernel picks a different schedule for short rows, square-ish and a few long rows; then the
 *   same matrices summed down their columns) are memory-bound: GB/s of bytes read + written, and the
 *   fraction of the copy ceiling.
 * - **matmul** is compute-bound at these sizes: GFLOP/s (2·n³ per product), and the fraction of a
 *   reference: cuBLAS's fp32 SGEMM on the H200, 50.8 TFLOP/s. That number is a constant measured
 *   elsewhere, not in this run; it is the ceiling only on an H200.
 * - **dispatch overhead**: many tiny ops (allocate, add 64 floats, free) queued back to back, per op —
 *   the fixed cost that dominates small models. Its baseline is the same op waited for one at a time.
 * - **selective scan**: `runSelectiveScanBench` (bench/selective-scan.ts), the fused scan kernels
 *   against the copy ceiling, the CPU's sequential scan and an unfused GPU version (WebGPU only).
 *
 * Every measurement times finished work (timing.ts). A kernel call that takes less than a few
 * milliseconds is repeated inside one timed sample, so that the fixed cost of waiting for the device
 * (a submit and a round trip) is spread over many calls; the count is chosen from one trial run.
 */
import type { BufferHandle, View } from '../src/backends/backend.js';
import { WebGpuBackend } from '../src/backends/webgpu/index.js';
import { contiguousStrides } from '../src/tensor/shape.js';
import type { DeviceClass, SuiteContext } from './context.js';
import { println } from './context.js';
import { runSelectiveScanBench, type SelectiveScanBenchResult } from './selective-scan.js';
import { formatNumber, formatTable } from './table.js';
import { timeFinished } from './timing.js';

/** fp32 matmul on an NVIDIA H200 with cuBLAS (SGEMM, no TF32), a reference constant in FLOP/s. */
export const H200_CUBLAS_FP32_FLOPS = 50.8e12;

/** Sizes by device: ≥ 256 MB tensors on a GPU, less where the device is a CPU. */
const SIZES: Record<DeviceClass | 'quick', { bytes: number; matmul: number[]; tinyOps: number }> = {
  gpu: { bytes: 256 * 2 ** 20, matmul: [1024, 2048, 4096], tinyOps: 2000 },
  software: { bytes: 32 * 2 ** 20, matmul: [256, 512, 1024], tinyOps: 500 },
  cpu: { bytes: 64 * 2 ** 20, matmul: [256, 512, 1024], tinyOps: 2000 },
  quick: { bytes: 4 * 2 ** 20, matmul: [128, 256], tinyOps: 200 },
};
/** A timed sample should last about this long, so that waiting for the device is a small part of it. */
const SAMPLE_MS = 50;
/** Stop taking samples of one measurement after this much time. */
const BUDGET_MS = 5_000;
/** Floats per tiny op: far below anything a GPU notices, so only the fixed cost is left. */
const TINY = 64;

export interface KernelMeasurement {
  kernel: string;
  /** What the kernel works on, in words ("67108864 floats", "1024^3"). */
  size: string;
  /** Median time of one call, in ms. */
  ms: number;
  /** Calls per timed sample, and timed samples. */
  callsPerSample: number;
  samples: number;
  /** Throughput: GB/s for memory-bound kernels, GFLOP/s for matmul, µs per op for dispatch overhead. */
  value: number;
  unit: 'GB/s' | 'GFLOP/s' | 'us/op';
  /** The value as a fraction of its baseline, and what that baseline is. */
  fraction?: number;
  baseline?: string;
}

export interface KernelsResult {
  suite: 'kernels';
  measurements: KernelMeasurement[];
  /** bench/selective-scan.ts's result; null on the CPU backend. */
  selectiveScan: SelectiveScanBenchResult | null;
  referenceFlops: { value: number; what: string };
}

const contiguous = (buffer: BufferHandle, shape: number[]): View => ({
  buffer,
  dtype: 'float32',
  shape,
  strides: contiguousStrides(shape),
  offset: 0,
});

export async function runKernelsSuite(ctx: SuiteContext): Promise<KernelsResult> {
  const { backend, options } = ctx;
  const sizes = SIZES[options.quick ? 'quick' : ctx.device];
  const repeats = options.repeats ?? (options.quick ? 1 : 10);
  const results: KernelMeasurement[] = [];
  const report = (m: KernelMeasurement): void => {
    results.push(m);
    println(ctx, `  ${m.kernel}, ${m.size}: ${formatNumber(m.value)} ${m.unit}${m.fraction === undefined ? '' : `, ${percentOf(m)}`}`);
  };

  /** Median time of one call of `call` (ms), measured as described in the module comment. */
  const perCall = async (call: () => void): Promise<{ ms: number; callsPerSample: number; samples: number }> => {
    const trial = await timeFinished(backend, call, { warmup: 1, repeats: 1, budgetMs: 0 });
    const callsPerSample = Math.min(1000, Math.max(1, Math.ceil(SAMPLE_MS / trial.medianMs)));
    const timing = await timeFinished(
      backend,
      () => {
        for (let i = 0; i < callsPerSample; i++) call();
      },
      { warmup: 0, repeats, budgetMs: BUDGET_MS },
    );
    return { ms: timing.medianMs / callsPerSample, callsPerSample, samples: timing.samplesMs.length };
  };

  println(ctx, `Kernels: float32, ${repeats} timed samples each (median); GB = 1e9 bytes`);
  const n = sizes.bytes / 4;
  const x = backend.random('uniform', n, 1, 'float32');
  const y = backend.random('uniform', n, 2, 'float32');
  const floats = `${n} floats`;

  // ---- the ceiling and the memory-bound kernels ----
  const bandwidth = async (kernel: string, size: string, bytes: number, call: () => void, ceiling?: number): Promise<number> => {
    const t = await perCall(call);
    const gbs = bytes / (t.ms / 1e3) / 1e9;
    report({
      kernel,
      size,
      ...t,
      value: gbs,
      unit: 'GB/s',
      ...(ceiling === undefined ? {} : { fraction: gbs / ceiling, baseline: 'copy' }),
    });
    return gbs;
  };
  const xv = contiguous(x, [n]);
  const copyGbs = await bandwidth('copy (the ceiling)', floats, 2 * sizes.bytes, () => backend.free(backend.copy(xv, 'float32')));
  await bandwidth('unary exp', floats, 2 * sizes.bytes, () => backend.free(backend.unary('exp', xv)), copyGbs);
  await bandwidth('binary add', floats, 3 * sizes.bytes, () => backend.free(backend.binary('add', xv, contiguous(y, [n]))), copyGbs);
  const sum = (outer: number, len: number, inner: number) => () => backend.free(backend.reduce('sum', x, 'float32', outer, len, inner));
  for (const cols of [64, 4096, n / 16]) {
    const rows = n / cols;
    await bandwidth('sum rows', `${rows} x ${cols}`, sizes.bytes + rows * 4, sum(rows, cols, 1), copyGbs);
    // The same matrix summed down its columns where it lies, as a bias gradient is (axis 0).
    await bandwidth('sum columns', `${rows} x ${cols}`, sizes.bytes + cols * 4, sum(1, rows, cols), copyGbs);
  }
  backend.free(x);
  backend.free(y);

  // ---- matmul ----
  for (const size of sizes.matmul) {
    const a = backend.random('uniform', size * size, 3, 'float32');
    const b = backend.random('uniform', size * size, 4, 'float32');
    const [av, bv] = [contiguous(a, [1, size, size]), contiguous(b, [1, size, size])];
    const t = await perCall(() => backend.free(backend.matmul(av, bv)));
    const gflops = (2 * size ** 3) / (t.ms / 1e3) / 1e9;
    report({
      kernel: 'matmul',
      size: `${size}^3`,
      ...t,
      value: gflops,
      unit: 'GFLOP/s',
      fraction: (gflops * 1e9) / H200_CUBLAS_FP32_FLOPS,
      baseline: 'H200 cuBLAS fp32 50.8 TFLOP/s, a reference constant',
    });
    backend.free(a);
    backend.free(b);
  }

  // ---- dispatch overhead ----
  const ta = backend.random('uniform', TINY, 5, 'float32');
  const tb = backend.random('uniform', TINY, 6, 'float32');
  const tiny = (): void => backend.free(backend.binary('add', contiguous(ta, [TINY]), contiguous(tb, [TINY])));
  const waitedUs = await waitedEach(ctx, tiny, Math.max(10, sizes.tinyOps / 10));
  const batched = await timeFinished(
    backend,
    () => {
      for (let i = 0; i < sizes.tinyOps; i++) tiny();
    },
    { warmup: 1, repeats, budgetMs: BUDGET_MS },
  );
  const us = (batched.medianMs * 1e3) / sizes.tinyOps;
  report({
    kernel: `dispatch: ${sizes.tinyOps} tiny adds queued`,
    size: `${TINY} floats each`,
    ms: us / 1e3,
    callsPerSample: sizes.tinyOps,
    samples: batched.samplesMs.length,
    value: us,
    unit: 'us/op',
    fraction: us / waitedUs,
    baseline: `the same op waited for one at a time, ${formatNumber(waitedUs)} us/op`,
  });
  backend.free(ta);
  backend.free(tb);

  printSummary(ctx, results);

  println(ctx);
  let selectiveScan: SelectiveScanBenchResult | null = null;
  if (backend instanceof WebGpuBackend) {
    selectiveScan = await runSelectiveScanBench({
      quick: options.quick,
      repeats: options.repeats,
      print: (line) => println(ctx, line),
      backend,
    });
  } else {
    println(ctx, 'selective scan: skipped; bench/selective-scan.ts measures the WebGPU kernels (run with --backend webgpu)');
  }
  return {
    suite: 'kernels',
    measurements: results,
    selectiveScan,
    referenceFlops: { value: H200_CUBLAS_FP32_FLOPS, what: 'fp32 SGEMM by cuBLAS on an NVIDIA H200 (not measured in this run)' },
  };
}

/** µs per call when every call is waited for before the next (a submit and a round trip each). */
async function waitedEach(ctx: SuiteContext, call: () => void, count: number): Promise<number> {
  call();
  await ctx.backend.sync();
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    call();
    await ctx.backend.sync();
  }
  return ((performance.now() - start) * 1e3) / count;
}

const percentOf = (m: KernelMeasurement): string => `${formatNumber((m.fraction as number) * 100)}% of ${m.baseline}`;

function printSummary(ctx: SuiteContext, results: KernelMeasurement[]): void {
  println(ctx);
  println(ctx, `Kernels on ${ctx.hardware}`);
  const rows = results.map((m) => [
    m.kernel,
    m.size,
    formatNumber(m.ms * 1e3),
    `${formatNumber(m.value)} ${m.unit}`,
    m.fraction === undefined ? '-' : percentOf(m),
  ]);
  for (const line of formatTable(['kernel', 'size', 'us/call', 'throughput', 'vs baseline'], rows)) println(ctx, line);
}
