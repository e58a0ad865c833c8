/**
 * The train command: parses the flags, checks them, picks the backend, loads the data and the model
 * (or the checkpoint to resume), and runs the training loop. It runs in a worker thread started by
 * cli.ts; Ctrl-C arrives as `interruptSignal()`. Run with --help for the options and defaults.
 */
import { resolve } from 'node:path';
import { createModel, type PresetName, presets } from '../models/presets.js';
import { manualSeed } from '../tensor/random.js';
import { type Checkpoint, findCheckpoint, loadCheckpoint } from './checkpoint.js';
import { choiceFlag, chooseBackend, durationFlag, integerFlag, numberFlag, parseFlags, runCli, UsageError } from './cli-support.js';
import { DEFAULTS, plannedSteps, type TrainConfig } from './config.js';
import { TokenBatcher } from './data/batches.js';
import { loadSplitTokens, WIKITEXT2_DIR } from './data/wikitext.js';
import { interruptSignal, terminalStdout } from './interruptible.js';
import { type Splits, train } from './loop.js';

/** The names --model accepts, and the preset each one builds. */
const MODELS: Record<string, PresetName> = {
  'seed-mamba': 'seed-mamba',
  'seed-transformer': 'seed-transformer',
  mamba: 'mamba-small',
  transformer: 'transformer-small',
  'mamba-small': 'mamba-small',
  'transformer-small': 'transformer-small',
};

/** GPT-2's vocabulary: every model trained here must have at least this many token embeddings. */
const GPT2_VOCAB = 50257;

/**
 * A quick run for the CPU backend, which is ~1000× slower than a GPU: the seed recipe (1,791 steps of
 * 4,096 tokens) would take days there. These apply to flags not given on the command line.
 */
const CPU_QUICK = { 'batch-size': '8', 'seq-len': '64', 'max-steps': '12', 'eval-tokens': '2048' } as const;

const HELP = `Train a language model on WikiText-2 (GPT-2 tokenizer).

  npm run train -- [options]

Model and hardware
  --model NAME           seed-mamba (default), seed-transformer, mamba (= mamba-small),
                         transformer (= transformer-small)
  --backend NAME         webgpu or cpu. Default: webgpu when a hardware GPU adapter exists, else cpu
                         (a software adapter such as llvmpipe counts as none). The first line printed
                         says which backend and adapter are used.

Data and optimisation (defaults: the seed recipe)
  --epochs N             passes over the training split (3; 597 steps each at 32x128)
  --batch-size N         sequences per micro-batch (32)
  --seq-len N            tokens per sequence (128); at most a Transformer's max_len
  --lr X                 peak learning rate (3e-4)
  --optimizer NAME       adam (default) or adamw
  --weight-decay X       AdamW's decoupled weight decay (0.1); never applied to norms, biases,
                         A_log or D (see src/train/optim/weight-decay.ts)
  --warmup-steps N       linear warm-up steps (0)
  --decay NAME           constant (default) or cosine (down to --min-lr-ratio x lr at the last step)
  --min-lr-ratio X       final learning rate as a fraction of --lr (0.1)
  --clip-norm X          clip gradients to this global norm (1; 0 turns clipping off)
  --grad-accum N         micro-batches per optimizer step (1)
  --seed N               seeds the weights, the data order and dropout (0)

Run length, output and resuming
  --max-steps N          stop after N optimizer steps (0 = run all epochs); the schedule fits the run
  --time-limit T         stop training after T (90, 90s, 10m, 2h) of this session, then evaluate
  --out DIR              run directory (default runs/<model>-<date>-<time>): checkpoints,
                         log.jsonl and loss.png
  --resume               continue the run in --out from its newest checkpoint (bit for bit on
                         the CPU backend); --epochs, --max-steps, --time-limit, --backend and the
                         logging flags may change, the rest come from the checkpoint
  --log-every N          read the loss back and log every N steps (10)
  --checkpoint-every N   save a checkpoint every N steps (200; 0 = only at the end)
  --eval-tokens N        evaluate on the first N tokens of valid/test (0 = the whole split)
  -h, --help             show this help

On the CPU backend, flags not given default to a quick demonstration run instead of the seed
recipe (which needs days there): --batch-size 8 --seq-len 64 --max-steps 12 --eval-tokens 2048.

Ctrl-C stops at the end of the current step and saves a checkpoint (a second Ctrl-C quits at once;
the previous checkpoint stays intact). Exit codes: 0 done, 1 failed, 2 bad input, 130 interrupted.`;

const OPTIONS = {
  model: { type: 'string' },
  backend: { type: 'string' },
  epochs: { type: 'string' },
  'batch-size': { type: 'string' },
  'seq-len': { type: 'string' },
  lr: { type: 'string' },
  optimizer: { type: 'string' },
  'weight-decay': { type: 'string' },
  'warmup-steps': { type: 'string' },
  decay: { type: 'string' },
  'min-lr-ratio': { type: 'string' },
  'clip-norm': { type: 'string' },
  'grad-accum': { type: 'string' },
  seed: { type: 'string' },
  'max-steps': { type: 'string' },
  'time-limit': { type: 'string' },
  out: { type: 'string' },
  resume: { type: 'boolean' },
  'log-every': { type: 'string' },
  'checkpoint-every': { type: 'string' },
  'eval-tokens': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Flags = Partial<Record<Exclude<keyof typeof OPTIONS, 'resume' | 'help'>, string>>;

/** The flags that may differ from the checkpoint's when resuming (they do not change what a step computes). */
const RESUMABLE = new Set(['epochs', 'max-steps', 'time-limit', 'backend', 'out', 'log-every', 'checkpoint-every', 'eval-tokens']);

/** Reads every flag that sets a TrainConfig field; `fallback` supplies defaults for flags not given. */
function configFromFlags(flags: Flags, fallback: Flags): Omit<TrainConfig, 'arch'> {
  const get = (name: keyof Flags): string | undefined => flags[name] ?? fallback[name];
  const int = (name: keyof Flags, min: number, dflt: number): number => {
    const value = get(name);
    return value === undefined ? dflt : integerFlag(name, value, min);
  };
  const num = (name: keyof Flags, positive: boolean, dflt: number): number => {
    const value = get(name);
    return value === undefined ? dflt : numberFlag(name, value, positive);
  };
  return {
    model: choiceFlag('model', get('model') ?? 'seed-mamba', Object.keys(MODELS)),
    batchSize: int('batch-size', 1, DEFAULTS.batchSize),
    seqLen: int('seq-len', 1, DEFAULTS.seqLen),
    epochs: int('epochs', 1, DEFAULTS.epochs),
    maxSteps: int('max-steps', 0, DEFAULTS.maxSteps),
    optimizer: choiceFlag('optimizer', get('optimizer') ?? DEFAULTS.optimizer, ['adam', 'adamw'] as const),
    lr: num('lr', true, DEFAULTS.lr),
    weightDecay: num('weight-decay', false, DEFAULTS.weightDecay),
    warmupSteps: int('warmup-steps', 0, DEFAULTS.warmupSteps),
    decay: choiceFlag('decay', get('decay') ?? DEFAULTS.decay, ['cosine', 'constant'] as const),
    minLrRatio: num('min-lr-ratio', false, DEFAULTS.minLrRatio),
    clipNorm: num('clip-norm', false, DEFAULTS.clipNorm),
    gradAccum: int('grad-accum', 1, DEFAULTS.gradAccum),
    seed: int('seed', Number.MIN_SAFE_INTEGER, DEFAULTS.seed),
    logEvery: int('log-every', 1, DEFAULTS.logEvery),
    checkpointEvery: int('checkpoint-every', 0, DEFAULTS.checkpointEvery),
    evalTokens: int('eval-tokens', 0, DEFAULTS.evalTokens),
  };
}

/** Loads the three splits; a missing or corrupt data file is bad input (exit 2). */
function loadData(): Splits {
  try {
    return {
      train: loadSplitTokens(WIKITEXT2_DIR, 'train'),
      valid: loadSplitTokens(WIKITEXT2_DIR, 'valid'),
      test: loadSplitTokens(WIKITEXT2_DIR, 'test'),
    };
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
}

/** "2024-05-01-134501": a run directory name that sorts by time. */
const timestamp = (): string => new Date().toISOString().slice(0, 19).replace('T', '-').replace(/:/g, '');

async function main(): Promise<number> {
  const parsedValues = parseFlags(OPTIONS);
  const { resume: resuming = false, help = false, ...flags } = parsedValues as Flags & { resume?: boolean; help?: boolean };
  if (help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }

  // Everything that needs no I/O is checked first, so bad flags fail fast.
  const backendRequest = flags.backend === undefined ? undefined : choiceFlag('backend', flags.backend, ['cpu', 'webgpu'] as const);
  const timeLimitSec = flags['time-limit'] === undefined ? undefined : durationFlag('time-limit', flags['time-limit']);
  const asGiven = configFromFlags(flags, {}); // validates every flag's value
  if (resuming && flags.out === undefined) throw new UsageError('--resume needs --out DIR, the run directory to continue.');

  const backend = await chooseBackend(backendRequest);
  console.log(`tensorscan train: backend ${backend.name} (${backend.reason})`);

  const runDir = resolve(flags.out ?? `runs/${asGiven.model}-${timestamp()}`);
  let config: TrainConfig;
  let resumed: Checkpoint | undefined;
  const existing = await findCheckpoint(runDir);
  if (resuming) {
    if (existing === null) throw new UsageError(`There is no checkpoint in ${runDir} to resume from.`);
    const checkpoint = await loadCheckpoint(existing).catch((error: Error) => {
      throw new UsageError(error.message);
    });
    const saved = checkpoint.trainer.config;
    for (const [name, value] of Object.entries(flags)) {
      if (RESUMABLE.has(name)) continue;
      const key = name.replace(/-(.)/g, (_, c: string) => c.toUpperCase()) as keyof TrainConfig;
      const given = (asGiven as Record<string, unknown>)[key];
      if (given !== saved[key]) {
        checkpoint.model.dispose();
        throw new UsageError(
          `--${name} ${value} differs from the checkpoint's ${String(saved[key])}; resume with the run's own settings or start a new --out.`,
        );
      }
    }
    config = {
      ...saved,
      epochs: flags.epochs === undefined ? saved.epochs : asGiven.epochs,
      maxSteps: flags['max-steps'] === undefined ? saved.maxSteps : asGiven.maxSteps,
      logEvery: flags['log-every'] === undefined ? saved.logEvery : asGiven.logEvery,
      checkpointEvery: flags['checkpoint-every'] === undefined ? saved.checkpointEvery : asGiven.checkpointEvery,
      evalTokens: flags['eval-tokens'] === undefined ? saved.evalTokens : asGiven.evalTokens,
    };
    resumed = checkpoint;
    console.log(`resuming ${existing} at step ${checkpoint.trainer.step}`);
  } else {
    if (existing !== null) {
      throw new UsageError(`${runDir} already holds a run (${existing}); pass --resume to continue it or choose another --out.`);
    }
    const quick = backend.name === 'cpu' ? CPU_QUICK : {};
    const chosen = configFromFlags(flags, quick);
    const arch = presets[MODELS[chosen.model] as PresetName];
    config = { ...chosen, arch };
    if (backend.name === 'cpu') {
      const applied = Object.entries(CPU_QUICK).filter(([name]) => flags[name as keyof Flags] === undefined);
      if (applied.length > 0)
        console.log(`CPU quick-run defaults: ${applied.map(([n, v]) => `--${n} ${v}`).join(' ')} (give a flag to override)`);
    }
  }

  // Checks that need the model's shape and the data; nothing has been written yet.
  const { arch } = config;
  if (arch.vocabSize < GPT2_VOCAB) {
    throw new UsageError(`The model ${config.model} has a vocabulary of ${arch.vocabSize} tokens, fewer than GPT-2's ${GPT2_VOCAB}.`);
  }
  if ('maxLen' in arch && config.seqLen > arch.maxLen) {
    throw new UsageError(`--seq-len ${config.seqLen} is longer than the ${config.model} model's ${arch.maxLen} positions (max_len).`);
  }
  const data = loadData();
  let batchesPerEpoch: number;
  try {
    batchesPerEpoch = new TokenBatcher(data.train, { batchSize: config.batchSize, seqLen: config.seqLen, seed: config.seed })
      .batchesPerEpoch;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const total = plannedSteps(config, batchesPerEpoch);
  if (total === 0) {
    throw new UsageError(
      `--grad-accum ${config.gradAccum} is more than the ${batchesPerEpoch * config.epochs} batches of the run, so it has no step.`,
    );
  }
  if (!resumed) manualSeed(config.seed); // before building the model: the initial weights are drawn from it
  const model = resumed ? resumed.model : createModel(config.arch);
  const resume = resumed && { trainer: resumed.trainer, moments: resumed.moments };
  const stepsPerEpoch = Math.floor(batchesPerEpoch / config.gradAccum);
  console.log(
    `model ${config.model}: ${(model.parameterCount() / 1e6).toFixed(2)} M parameters; ` +
      `${total} steps of ${config.gradAccum > 1 ? `${config.gradAccum}x` : ''}${config.batchSize}x${config.seqLen} tokens ` +
      `(${stepsPerEpoch} per epoch); ${config.optimizer} lr ${config.lr}, warm-up ${config.warmupSteps}, ${config.decay} decay; run directory ${runDir}`,
  );

  const result = await train({ config, model, data, runDir, resume, timeLimitSec, signal: interruptSignal(), out: terminalStdout() });
  const evals = [
    result.valid && `valid loss ${result.valid.loss.toFixed(4)} (perplexity ${result.valid.perplexity.toFixed(2)})`,
    result.test && `test loss ${result.test.loss.toFixed(4)} (perplexity ${result.test.perplexity.toFixed(2)})`,
  ].filter(Boolean);
  const how = { finished: 'finished', 'time-limit': 'stopped at the time limit', interrupted: 'interrupted' }[result.stopReason];
  console.log(
    `${how} at step ${result.step}${evals.length > 0 ? `: ${evals.join(', ')}` : ''}; ${Math.round(result.tokensPerSec).toLocaleString('en-US')} tokens/s`,
  );
  console.log(`checkpoint ${result.checkpoint}; log ${runDir}/log.jsonl; plot ${runDir}/loss.png`);
  if (result.stopReason === 'interrupted') console.log(`continue with: npm run train -- --out ${runDir} --resume`);
  console.log(`generate with: npm run generate -- --checkpoint ${runDir} --prompt "The"`);
  model.dispose();
  return result.stopReason === 'interrupted' ? 130 : 0;
}

await runCli(main);
