/**
 * A model on disk: a directory with `config.json` (the architecture and sizes) and `model.safetensors`
 * (the weights by parameter name), the layout Hugging Face's `save_pretrained` uses.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Tensor } from '../tensor/tensor.js';
import { writeFileAtomic } from './atomic-write.js';
import type { LanguageModel } from './language-model.js';
import { createModel, type ModelConfig } from './presets.js';
import { loadSafetensors, saveSafetensors } from './safetensors.js';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';

/** Writes `dir/config.json` and `dir/model.safetensors` (each atomically), creating `dir` if needed. */
export async function saveModel(dir: string, model: LanguageModel, config: ModelConfig = model.config as ModelConfig): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(join(dir, CONFIG_FILE), [Buffer.from(`${JSON.stringify(config, null, 2)}\n`)]);
  await saveSafetensors(join(dir, WEIGHTS_FILE), model.stateDict());
}

/**
 * Rebuilds the model that `saveModel` wrote. The parameters take the dtype the file holds. Weights
 * whose names, shapes or dtypes do not match the config are refused, naming the first mismatch.
 */
export async function loadModel(dir: string): Promise<LanguageModel> {
  const configPath = join(dir, CONFIG_FILE);
  const weightsPath = join(dir, WEIGHTS_FILE);
  let config: ModelConfig;
  try {
    config = JSON.parse(await readFile(configPath, 'utf8')) as ModelConfig;
  } catch (error) {
    throw new Error(`Cannot load ${configPath}: ${(error as Error).message}`, { cause: error });
  }
  const { tensors } = await loadSafetensors(weightsPath);
  const dispose = (): void => {
    for (const t of tensors.values()) t.dispose();
  };
  const first: Tensor | undefined = tensors.values().next().value;
  let model: LanguageModel;
  try {
    model = createModel(config, { dtype: first?.dtype ?? 'float32' });
  } catch (error) {
    dispose();
    throw new Error(`Cannot build a model from ${configPath}: ${(error as Error).message}`, { cause: error });
  }
  try {
    model.loadStateDict(tensors);
  } catch (error) {
    model.dispose();
    throw new Error(`${weightsPath} does not match ${configPath}: ${(error as Error).message}`, { cause: error });
  } finally {
    dispose();
  }
  return model;
}
