/**
 * `npm run bench -- [options]`: the benchmark suites. Run with --help for the options.
 *
 *   scaling (default)  forward time and memory against sequence length, Mamba vs Transformer (scaling.ts)
 *   kernels            single kernels against the device's copy bandwidth and a matmul reference (kernels.ts)
 *   train              training tokens/s of the seed presets (train.ts)
 *
 * Every run writes `results.json` (and the scaling suite its plots) into a fresh results directory,
 * prints progress as it goes, and exits with 1 if a measurement failed for a reason other than
 * running out of memory. `--profile` adds the GPU time per kernel (profile.ts) to train and scaling.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getBackend } from '../src/backends/registry.js';
import type { WebGpuBackend } from '../src/backends/webgpu/index.js';
import { choiceFlag, chooseBackend, integerFlag, parseFlags, runCli, UsageError } from '../src/train/cli-support.js';
import type { BenchOptions, DeviceClass, SuiteContext } from './context.js';
import { runKernelsSuite } from './kernels.js';
import { runScalingSuite } from './scaling.js';
import { runTrainSuite } from './train.js';

const HELP = `Benchmarks of tensorscan; every time waits for the device to finish.

  npm run bench -- [options]

  --suite NAME       scaling (default): forward time and memory vs sequence length, Mamba vs
                     Transformer, with the growth exponent k of time ~ L^k and log-log plots;
                     kernels: copy bandwidth (the ceiling), exp, add, row sums, matmul GFLOP/s,
                     dispatch overhead, the selective scan;
                     train: training tokens/s of seed-mamba and seed-transformer
  --backend NAME     webgpu or cpu. Default: webgpu when a hardware GPU adapter exists, else cpu
                     (a software adapter such as llvmpipe counts as none, as for npm run train)
  --models NAME      scaling: seed (seed-mamba vs seed-transformer, default) or full
                     (mamba-small vs transformer-small)
  --lengths LIST     scaling: sequence lengths, e.g. 64,128,256 (default 64,128,...,65536 on a GPU,
                     64,...,1024 on a CPU or software adapter)
  --batch N          scaling: the batch size measured besides 1 (default 8);
                     train: the batch size (default 32)
  --repeats N        timed runs per measurement, median reported (scaling 5, kernels 10);
                     train: timed blocks of 10 steps (3)
  --out DIR          results directory (default bench/results/<date>T<time>Z/)
  --profile          train, scaling: then run each measurement's work again with every kernel timed
                     on the GPU, and print the kernels with the most GPU time (WebGPU with the
                     adapter's timestamp-query feature)
  --quick            tiny sizes, one timed run, few steps: under a minute on a CPU (for CI)
  --help             this text
`;

const OPTIONS = {
  suite: { type: 'string' },
  backend: { type: 'string' },
  models: { type: 'string' },
  lengths: { type: 'string' },
  batch: { type: 'string' },
  repeats: { type: 'string' },
  out: { type: 'string' },
  profile: { type: 'boolean' },
  quick: { type: 'boolean' },
  help: { type: 'boolean' },
} as const;

const SUITES = {
  scaling: runScalingSuite,
  kernels: runKernelsSuite,
  train: runTrainSuite,
} as const;

/** Like 2026-11-29T23-40-12Z: sortable, and valid in a path on every OS. */
const timestamp = (): string =>
  new Date()
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/:/g, '-');

async function main(): Promise<number> {
  const parsedValues = parseFlags(OPTIONS);
  const flags = parsedValues;
  if (flags.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const suite = choiceFlag('suite', flags.suite ?? 'scaling', Object.keys(SUITES) as (keyof typeof SUITES)[]);
  const backendRequest = flags.backend === undefined ? undefined : choiceFlag('backend', flags.backend, ['cpu', 'webgpu'] as const);
  const options: BenchOptions = {
    quick: flags.quick ?? false,
    models: choiceFlag('models', flags.models ?? 'seed', ['seed', 'full'] as const),
    lengths: flags.lengths?.split(',').map((n) => integerFlag('lengths', n, 1)),
    batch: flags.batch === undefined ? undefined : integerFlag('batch', flags.batch, 1),
    repeats: flags.repeats === undefined ? undefined : integerFlag('repeats', flags.repeats, 1),
    profile: flags.profile ?? false,
  };
  if (options.profile && suite === 'kernels') throw new UsageError('--profile applies to the train and scaling suites, not kernels.');

  const choice = await chooseBackend(backendRequest);
  const backend = getBackend();
  let hardware: string;
  let device: DeviceClass;
  if (choice.name === 'webgpu') {
    const gpu = backend as WebGpuBackend;
    hardware = gpu.adapterDescription();
    device = gpu.isSoftware ? 'software' : 'gpu';
    if (options.profile && !gpu.canProfile) {
      throw new UsageError(
        `--profile times kernels with GPU timestamps, but this adapter (${hardware}) lacks the timestamp-query feature.`,
      );
    }
  } else {
    if (options.profile) throw new UsageError('--profile times kernels on the GPU: it needs the WebGPU backend (--backend webgpu).');
    const cores = cpus();
    hardware = `${cores[0]?.model.trim() ?? 'unknown CPU'} (${cores.length} cores; the CPU backend uses one)`;
    device = 'cpu';
  }
  console.log(`tensorscan bench: suite ${suite}${options.quick ? ' (quick)' : ''}, backend ${choice.name} (${choice.reason})`);

  const outDir = resolve(flags.out ?? join(fileURLToPath(new URL('./results/', import.meta.url)), timestamp()));
  await mkdir(outDir, { recursive: true });
  const ctx: SuiteContext = { backend, backendName: choice.name, hardware, device, options, outDir, out: process.stdout };
  const started = new Date();
  const result = await SUITES[suite](ctx);

  const file = join(outDir, 'results.json');
  const record = {
    tool: 'tensorscan bench',
    command: process.argv.slice(2).join(' '),
    date: started.toISOString(),
    backend: choice.name,
    hardware,
    device,
    node: process.version,
    options,
    result,
  };
  await writeFile(file, `${JSON.stringify(record, null, 2)}\n`);
  const plots = 'plots' in result ? result.plots.map((p) => join(outDir, p)) : [];
  console.log(`\nwrote ${[file, ...plots].join(', ')}`);
  const failures = 'failures' in result ? result.failures : 0;
  if (failures > 0) console.log(`${failures} measurement(s) failed with an error other than running out of memory (see above).`);
  return failures > 0 ? 1 : 0;
}

await runCli(main);
