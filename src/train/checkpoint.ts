/**
 * Checkpoints: everything needed to continue a run exactly, saved atomically.
 *
 * A checkpoint is a directory `checkpoint-<step>/` inside the run directory, holding
 *
 *     config.json            the model's architecture   } as `saveModel` writes them, so a checkpoint
 *     model.safetensors      the weights, by name       } is also a model directory for `loadModel`
 *     optimizer.safetensors  Adam's moments, "<param>.exp_avg" and "<param>.exp_avg_sq"
 *     trainer.json           step, epoch, data position, PRNG state, elapsed time and the run's config
 *
 * Atomicity: the files are written into a temporary directory `.checkpoint-tmp-…` and that directory is
 * renamed to `checkpoint-<step>` only once every file is complete. Renaming a directory is atomic on
 * POSIX file systems, so a `checkpoint-*` directory is always complete: a crash (or an error) during the
 * writes leaves at most a temporary directory, which is removed, and the previous checkpoint intact.
 * Older checkpoints are deleted only after the new one is in place.
 *
 * Resuming restores the weights, the moments and step count, the batcher's position and the global
 * generator's state, so on the CPU backend the resumed run computes bit for bit what an uninterrupted
 * one would have.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../models/atomic-write.js';
import type { LanguageModel } from '../models/language-model.js';
import { loadSafetensors, saveSafetensors } from '../models/safetensors.js';
import { loadModel, saveModel } from '../models/saved-model.js';
import type { GeneratorState } from '../tensor/random.js';
import type { Tensor } from '../tensor/tensor.js';
import type { TrainConfig } from './config.js';
import type { BatcherState } from './data/batches.js';
import type { Adam } from './optim/adam.js';

/** Bumped when the layout changes, so an old checkpoint is refused in one sentence instead of misread. */
export const CHECKPOINT_FORMAT = 'tensorscan-checkpoint/1';

/** trainer.json: where the run is. */
export interface TrainerState {
  format: typeof CHECKPOINT_FORMAT;
  /** Optimizer steps taken. */
  step: number;
  /** Epoch of the next batch (the batcher's). */
  epoch: number;
  /** Training tokens consumed so far. */
  tokensSeen: number;
  /** Seconds spent training so far, over all sessions of the run. */
  elapsedSeconds: number;
  batcher: BatcherState;
  generator: GeneratorState;
  /** Adam's step count t (equal to `step` unless the run changed optimizers). */
  optimizerStep: number;
  config: TrainConfig;
}

/** A loaded checkpoint: the trainer state, the model with its weights, and the moments (the caller disposes them). */
export interface Checkpoint {
  path: string;
  trainer: TrainerState;
  model: LanguageModel;
  moments: Map<string, Tensor>;
}

const PREFIX = 'checkpoint-';
const TEMP_PREFIX = '.checkpoint-tmp-';

/** The directory name of the checkpoint after `step` steps; zero-padded so names sort by step. */
export const checkpointName = (step: number): string => `${PREFIX}${String(step).padStart(7, '0')}`;

/**
 * Writes a checkpoint of `model`, `optimizer` and `trainer` into `runDir` and returns its path; then
 * deletes all but the newest `keep` checkpoints. On any error nothing new is left in `runDir`.
 */
export async function saveCheckpoint(
  runDir: string,
  model: LanguageModel,
  optimizer: Adam,
  trainer: TrainerState,
  keep = 1,
): Promise<string> {
  await mkdir(runDir, { recursive: true });
  const final = join(runDir, checkpointName(trainer.step));
  // A checkpoint of this step already exists only when a resumed run stops before taking a step; it
  // holds this very state, so it is kept rather than rewritten.
  if (existsSync(final)) return final;
  const temp = join(runDir, `${TEMP_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(temp);
  try {
    const metadata = { format: CHECKPOINT_FORMAT, step: String(trainer.step) };
    await saveModel(temp, model);
    await saveSafetensors(join(temp, 'optimizer.safetensors'), optimizer.state().tensors, metadata);
    await writeFileAtomic(join(temp, 'trainer.json'), [Buffer.from(`${JSON.stringify(trainer, null, 2)}\n`)]);
    await rename(temp, final);
  } catch (error) {
    await rm(temp, { recursive: true, force: true });
    throw error;
  }
  const all = await listCheckpoints(runDir);
  for (const old of all.slice(0, Math.max(0, all.length - keep))) await rm(join(runDir, old), { recursive: true, force: true });
  return final;
}

/** Checkpoint directory names in `runDir`, oldest first. */
async function listCheckpoints(runDir: string): Promise<string[]> {
  if (!existsSync(runDir)) return [];
  const entries = await readdir(runDir, { withFileTypes: true });
  return entries
    .filter((e) => e.isDirectory() && /^checkpoint-\d+$/.test(e.name))
    .map((e) => e.name)
    .sort();
}

/** Removes temporary directories a crashed save left behind (they never count as checkpoints). */
export async function removeStaleTemporaries(runDir: string): Promise<void> {
  if (!existsSync(runDir)) return;
  for (const name of await readdir(runDir)) {
    if (name.startsWith(TEMP_PREFIX)) await rm(join(runDir, name), { recursive: true, force: true });
  }
}

/**
 * The checkpoint to load from `path`: `path` itself if it is a checkpoint directory, else the newest
 * checkpoint inside it (a run directory); null when there is none.
 */
export async function findCheckpoint(path: string): Promise<string | null> {
  if (existsSync(join(path, 'trainer.json'))) return path;
  const all = await listCheckpoints(path);
  const newest = all[all.length - 1];
  return newest === undefined ? null : join(path, newest);
}

/**
 * Reads a checkpoint directory. Any missing, truncated or inconsistent file is reported as one sentence
 * naming the checkpoint; tensors read before the failure are freed.
 */
export async function loadCheckpoint(path: string): Promise<Checkpoint> {
  const fail = (reason: string): Error => new Error(`The checkpoint ${path} is unusable: ${reason}.`);
  let trainer: TrainerState;
  try {
    trainer = JSON.parse(await readFile(join(path, 'trainer.json'), 'utf8')) as TrainerState;
  } catch (error) {
    throw fail(`trainer.json could not be read (${describe(error)})`);
  }
  if (trainer?.format !== CHECKPOINT_FORMAT) {
    throw fail(`trainer.json is not a ${CHECKPOINT_FORMAT} file`);
  }
  for (const key of ['step', 'epoch', 'tokensSeen', 'elapsedSeconds', 'optimizerStep'] as const) {
    if (typeof trainer[key] !== 'number' || !Number.isFinite(trainer[key])) throw fail(`trainer.json has no valid "${key}"`);
  }
  if (typeof trainer.config !== 'object' || typeof trainer.batcher !== 'object' || typeof trainer.generator !== 'object') {
    throw fail('trainer.json lacks the config, batcher or generator state');
  }
  const moments = await readTensors(join(path, 'optimizer.safetensors'), fail);
  try {
    return { path, trainer, model: await loadModel(path), moments };
  } catch (error) {
    for (const t of moments.values()) t.dispose();
    const reason = describe(error);
    throw fail(reason.charAt(0).toLowerCase() + reason.slice(1));
  }
}

async function readTensors(file: string, fail: (reason: string) => Error): Promise<Map<string, Tensor>> {
  try {
    return (await loadSafetensors(file)).tensors;
  } catch (error) {
    throw fail(`${file.split('/').pop()} could not be read (${describe(error)})`);
  }
}

/** An error's message without its trailing full stop, to embed in a sentence. */
const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error)).replace(/\.$/, '');
