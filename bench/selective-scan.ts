/**
 * The selective scan on the WebGPU backend: how fast the fused kernels are, against what bounds them.
 *
 *     npx tsx bench/selective-scan.ts [--quick] [--repeats N]
 *
 * For every shape it times, on finished GPU work only (each sample waits for `backend.sync()`; the
 * median of several samples after a warm-up is reported):
 *
 * - **forward** (`selectiveScan`), **forward + save** (also writing the chunk states for the
 *   backward, as training does) and **backward** (`selectiveScanGrad` given those states);
 * - **GB/s**, effective: the bytes the pass must move at the least, over its time — forward: u, Δ,
 *   B, C read and y written; backward: u, Δ, dy, B, C read and du, dΔ, dB, dC written. Intermediate
 *   traffic (chunk states, partial sums) is not counted, so it only lowers the figure;
 * - **of copy**: that as a fraction of a plain copy of a large buffer (the backend's `copy`, bytes
 *   read + written), measured in the same run: the memory-bandwidth ceiling;
 * - **vs CPU**: speedup over the CPU backend's sequential scan (cpu/selective-scan.ts). The CPU runs a
 *   smaller shape, and its time per (row, step, state) is scaled to the GPU shape: the sequential
 *   scan's cost is linear in batch·dim·len·N;
 * - **vs unfused**: speedup over the non-fused GPU version in bench/selective-scan-unfused.ts
 *   (ā, b̄ materialised as (batch, dim, N, len) tensors, a sequential scan per (b, d, n), then
 *   y = Σ_n C·h), forward only, on the same inputs (and its y is checked against the fused one).
 *
 * The shapes: Mamba's (batch 8, dim 1536, len 4096, N 16), then len from 256 to 65536 at a smaller
 * batch·dim. `--quick` shrinks everything to finish within a minute on lavapipe (software Vulkan).
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { BufferHandle, ScanInputs, ScanSizes } from '../src/backends/backend.js';
import { CpuBackend } from '../src/backends/cpu/index.js';
import { WebGpuBackend } from '../src/backends/webgpu/index.js';
import { normalAt, pcgHash } from '../src/tensor/random.js';
import { UnfusedScan } from './selective-scan-unfused.js';
import { formatNumber, formatTable } from './table.js';
import { median, WARMUP_MS } from './timing.js';

export interface SelectiveScanBenchOptions {
  /** Small shapes, for lavapipe or CI: under a minute. */
  readonly quick?: boolean;
  /** Timed samples per measurement (default 7, or 3 with quick). */
  readonly repeats?: number;
  /** Where lines of progress and the table go (default console.log). */
  readonly print?: (line: string) => void;
  /** The backend to measure; one is opened (and destroyed afterwards) when not given. */
  readonly backend?: WebGpuBackend;
}

export type ScanPass = 'forward' | 'forward + save' | 'backward';

export interface ScanMeasurement {
  readonly sizes: ScanSizes;
  readonly pass: ScanPass;
  /** Median time of one call, ms. */
  readonly ms: number;
  /** Effective GB/s (see the file comment). */
  readonly gbPerS: number;
  /** gbPerS over the copy's GB/s. */
  readonly ofCopy: number;
  /** Scaled CPU time over GPU time. */
  readonly vsCpu: number;
  /** Non-fused GPU time over fused time (forward only; null where not measured or too large). */
  readonly vsUnfused: number | null;
}

export interface SelectiveScanBenchResult {
  readonly adapter: string;
  readonly copyGbPerS: number;
  /** The CPU's time per (row, step, state), ns, and the shape it was measured on. */
  readonly cpu: { readonly forwardNs: number; readonly backwardNs: number; readonly sizes: ScanSizes };
  readonly measurements: ScanMeasurement[];
}

const SHAPES = {
  full: {
    main: [{ batch: 8, dim: 1536, len: 4096, N: 16 }],
    sweep: [256, 1024, 4096, 16384, 65536].map((len) => ({ batch: 2, dim: 512, len, N: 16 })),
    cpu: { batch: 1, dim: 4, len: 1024, N: 16 },
    copyFloats: 64 * 2 ** 20,
  },
  quick: {
    main: [{ batch: 2, dim: 64, len: 1024, N: 16 }],
    sweep: [256, 1024, 4096].map((len) => ({ batch: 1, dim: 16, len, N: 16 })),
    cpu: { batch: 1, dim: 2, len: 512, N: 16 },
    copyFloats: 4 * 2 ** 20,
  },
} as const;

/** A timed sample should last about this long, so that the wait for the device is a small part of it. */
const SAMPLE_MS = 50;
const MAX_CALLS = 200;

/**
 * Median ms of one call of `enqueue`, on finished work: a warm-up of at least WARMUP_MS (pipelines,
 * pool, and full clocks: see timing.ts), one trial to choose how many calls share a sample, then
 * `repeats` samples each ending in `sync`.
 */
async function timeCalls(enqueue: () => void, sync: () => Promise<void>, repeats: number): Promise<number> {
  let start = performance.now();
  do {
    enqueue();
    await sync();
  } while (performance.now() - start < WARMUP_MS);
  start = performance.now();
  enqueue();
  await sync();
  const calls = Math.min(MAX_CALLS, Math.max(1, Math.ceil(SAMPLE_MS / (performance.now() - start))));
  const samples: number[] = [];
  for (let s = 0; s < repeats; s++) {
    start = performance.now();
    for (let c = 0; c < calls; c++) enqueue();
    await sync();
    samples.push((performance.now() - start) / calls);
  }
  return median(samples);
}

const elements = ({ batch, dim, len }: ScanSizes): number => batch * dim * len;
const stateSteps = (s: ScanSizes): number => elements(s) * s.N;
/** Bytes a pass must move at the least (f32): see the file comment. */
const forwardBytes = (s: ScanSizes): number => 4 * (3 * elements(s) + 2 * s.batch * s.N * s.len);
const backwardBytes = (s: ScanSizes): number => 4 * (5 * elements(s) + 4 * s.batch * s.N * s.len);

/** Inputs like Mamba's, made on the GPU: u, B, C, dy ~ N(0, 1), Δ = softplus(N(0, 1)), A = −exp(N(0, 1)). */
function gpuInputs(backend: WebGpuBackend, s: ScanSizes): { inputs: ScanInputs; dy: BufferHandle; free: () => void } {
  const normal = (n: number, seed: number) => backend.random('normal', n, seed, 'float32');
  const contiguous = (buffer: BufferHandle, n: number) => ({ buffer, dtype: 'float32' as const, shape: [n], strides: [1], offset: 0 });
  const then = (op: 'softplus' | 'exp' | 'neg', h: BufferHandle, n: number) => {
    const out = backend.unary(op, contiguous(h, n));
    backend.free(h);
    return out;
  };
  const rows = elements(s);
  const inputs = {
    u: normal(rows, 1),
    delta: then('softplus', normal(rows, 2), rows),
    A: then('neg', then('exp', normal(s.dim * s.N, 3), s.dim * s.N), s.dim * s.N),
    B: normal(s.batch * s.N * s.len, 4),
    C: normal(s.batch * s.N * s.len, 5),
  };
  const dy = normal(rows, 6);
  return {
    inputs,
    dy,
    free: () => {
      for (const h of [...Object.values(inputs), dy]) backend.free(h);
    },
  };
}

/** The CPU's sequential scan, ns per (row, step, state), forward and backward. */
function measureCpu(s: ScanSizes): { forwardNs: number; backwardNs: number } {
  const cpu = new CpuBackend();
  const normals = (n: number, seed: number, f: (x: number) => number = (x) => x) =>
    cpu.upload(
      Float32Array.from({ length: n }, (_, i) => f(normalAt(pcgHash(seed), i))),
      'float32',
    );
  const rows = elements(s);
  const inputs = {
    u: normals(rows, 1),
    delta: normals(rows, 2, (x) => Math.log1p(Math.exp(x))),
    A: normals(s.dim * s.N, 3, (x) => -Math.exp(x)),
    B: normals(s.batch * s.N * s.len, 4),
    C: normals(s.batch * s.N * s.len, 5),
  };
  const dy = normals(rows, 6);
  const time = (f: () => void) => {
    f(); // JIT warm-up
    const samples = [0, 1, 2].map(() => {
      const start = performance.now();
      f();
      return performance.now() - start;
    });
    return (median(samples) * 1e6) / stateSteps(s);
  };
  return {
    forwardNs: time(() => {
      const out = cpu.selectiveScan(inputs, s);
      cpu.free(out.y);
      cpu.free(out.lastState);
    }),
    backwardNs: time(() => {
      const g = cpu.selectiveScanGrad(inputs, dy, s);
      for (const h of Object.values(g)) cpu.free(h);
    }),
  };
}

/** The non-fused forward's time at `s` on the same inputs, and the largest |y − y_fused| / max |y_fused|. */
async function measureUnfused(
  unfused: UnfusedScan,
  backend: WebGpuBackend,
  inputs: ScanInputs,
  s: ScanSizes,
  repeats: number,
): Promise<{ ms: number; error: number }> {
  const read = async (h: BufferHandle, n: number) => (await backend.read(h, 'float32', 0, n)) as Float32Array;
  const sizes = { u: elements(s), delta: elements(s), A: s.dim * s.N, B: s.batch * s.N * s.len, C: s.batch * s.N * s.len };
  const x = {
    u: unfused.upload(await read(inputs.u, sizes.u)),
    delta: unfused.upload(await read(inputs.delta, sizes.delta)),
    A: unfused.upload(await read(inputs.A, sizes.A)),
    B: unfused.upload(await read(inputs.B, sizes.B)),
    C: unfused.upload(await read(inputs.C, sizes.C)),
  };
  const ms = await timeCalls(
    () => unfused.release(unfused.run(x, s)),
    () => unfused.sync(),
    repeats,
  );
  const y = unfused.run(x, s);
  const got = await unfused.read(y, elements(s));
  unfused.release(y);
  for (const b of Object.values(x)) unfused.release(b);
  const fused = backend.selectiveScan(inputs, s);
  const want = await read(fused.y, elements(s));
  backend.free(fused.y);
  backend.free(fused.lastState);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs((got[i] as number) - (want[i] as number)));
    scale = Math.max(scale, Math.abs(want[i] as number));
  }
  return { ms, error: scale === 0 ? diff : diff / scale };
}

const shapeLabel = ({ batch, dim, len, N }: ScanSizes): string => `(${batch}, ${dim}, ${len}, ${N})`;

export async function runSelectiveScanBench(options: SelectiveScanBenchOptions = {}): Promise<SelectiveScanBenchResult> {
  const print = options.print ?? ((line: string) => console.log(line));
  const shapes = SHAPES[options.quick ? 'quick' : 'full'];
  const repeats = options.repeats ?? (options.quick ? 3 : 7);
  const backend = options.backend ?? (await WebGpuBackend.create());
  const unfused = await UnfusedScan.open();
  try {
    const adapter = backend.adapterDescription();
    print(`selective scan on ${adapter}`);

    // The ceiling: a contiguous copy, bytes read + written.
    const n = shapes.copyFloats;
    const source = backend.full(n, 1, 'float32');
    const copyView = { buffer: source, dtype: 'float32' as const, shape: [n], strides: [1], offset: 0 };
    const copyMs = await timeCalls(
      () => backend.free(backend.copy(copyView, 'float32')),
      () => backend.sync(),
      repeats,
    );
    backend.free(source);
    const copyGbPerS = (8 * n) / copyMs / 1e6;
    print(`copy of ${(4 * n) / 2 ** 20} MiB: ${formatNumber(copyGbPerS)} GB/s (read + write)`);

    const cpu = { ...measureCpu(shapes.cpu), sizes: shapes.cpu };
    print(
      `CPU sequential scan at ${shapeLabel(shapes.cpu)}: ${formatNumber(cpu.forwardNs)} ns forward, ` +
        `${formatNumber(cpu.backwardNs)} ns backward per (row, step, state); scaled to each shape below`,
    );

    const measurements: ScanMeasurement[] = [];
    for (const s of [...shapes.main, ...shapes.sweep]) {
      const { inputs, dy, free } = gpuInputs(backend, s);
      const forwardMs = await timeCalls(
        () => {
          const out = backend.selectiveScan(inputs, s);
          backend.free(out.y);
          backend.free(out.lastState);
        },
        () => backend.sync(),
        repeats,
      );
      const savingMs = await timeCalls(
        () => {
          const out = backend.selectiveScan(inputs, s, true);
          for (const h of [out.y, out.lastState, out.saved]) if (h) backend.free(h);
        },
        () => backend.sync(),
        repeats,
      );
      const forward = backend.selectiveScan(inputs, s, true);
      const backwardMs = await timeCalls(
        () => {
          const g = backend.selectiveScanGrad(inputs, dy, s, forward.saved);
          for (const h of Object.values(g)) backend.free(h);
        },
        () => backend.sync(),
        repeats,
      );
      for (const h of [forward.y, forward.lastState, forward.saved]) if (h) backend.free(h);

      let vsUnfused: number | null = null;
      if (unfused.fits(s)) {
        const base = await measureUnfused(unfused, backend, inputs, s, repeats);
        vsUnfused = base.ms / forwardMs;
        if (!(base.error < 1e-3))
          print(`  warning: the unfused y differs from the fused y by ${base.error} (relative) at ${shapeLabel(s)}`);
      }
      free();

      const row = (pass: ScanPass, ms: number, bytes: number, cpuNs: number, vs: number | null): ScanMeasurement => {
        const gbPerS = bytes / ms / 1e6;
        return { sizes: s, pass, ms, gbPerS, ofCopy: gbPerS / copyGbPerS, vsCpu: (cpuNs * stateSteps(s)) / 1e6 / ms, vsUnfused: vs };
      };
      const rows = [
        row('forward', forwardMs, forwardBytes(s), cpu.forwardNs, vsUnfused),
        row('forward + save', savingMs, forwardBytes(s), cpu.forwardNs, null),
        row('backward', backwardMs, backwardBytes(s), cpu.backwardNs, null),
      ];
      for (const m of rows) print(`  ${shapeLabel(s)} ${m.pass}: ${formatNumber(m.ms)} ms, ${formatNumber(m.gbPerS)} GB/s`);
      measurements.push(...rows);
    }

    print('');
    print('(batch, dim, len, N); GB/s effective; of copy = GB/s / copy GB/s; vs = speedup of the fused kernels');
    const table = formatTable(
      ['shape', 'pass', 'ms', 'GB/s', 'of copy', 'vs CPU', 'vs unfused', 'bwd/fwd'],
      measurements.map((m) => {
        const fwd = measurements.find((f) => f.sizes === m.sizes && f.pass === 'forward') as ScanMeasurement;
        return [
          shapeLabel(m.sizes),
          m.pass,
          formatNumber(m.ms),
          formatNumber(m.gbPerS),
          `${(100 * m.ofCopy).toFixed(0)}%`,
          `${formatNumber(m.vsCpu)}x`,
          m.vsUnfused === null ? '-' : `${formatNumber(m.vsUnfused)}x`,
          m.pass === 'backward' ? `${formatNumber(m.ms / fwd.ms)}x` : '',
        ];
      }),
    );
    for (const line of table) print(line);
    return { adapter, copyGbPerS, cpu, measurements };
  } finally {
    unfused.destroy();
    if (!options.backend) backend.destroy();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean' }, repeats: { type: 'string' } }, strict: true });
  const repeats = values.repeats === undefined ? undefined : Number.parseInt(values.repeats, 10);
  await runSelectiveScanBench({ quick: values.quick ?? false, ...(repeats ? { repeats } : {}) });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(`bench/selective-scan: ${error instanceof Error ? error.message : String(error)}`);
      process.exit(1);
    },
  );
}
