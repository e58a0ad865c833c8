/**
 * Every model by name, and building a model from its config (what `loadModel` does with config.json).
 *
 * | preset              | model        | shape                                                    |
 * |---------------------|--------------|----------------------------------------------------------|
 * | `mamba-tiny`        | MambaLM      | vocab 64, d_model 16, 2 layers, d_state 4 (tests)        |
 * | `seed-mamba`        | SeedMamba    | vocab 50257, embedding → one S6 (d 128, N 16) → Linear   |
 * | `mamba-small`       | MambaLM      | vocab 50257, d_model 256, 4 layers, d_state 16           |
 * | `transformer-tiny`  | TransformerLM| vocab 64, d_model 16, 2 layers, 2 heads, max_len 64      |
 * | `seed-transformer`  | TransformerLM| vocab 50257, d_model 128, 2 layers, 4 heads, max_len 16384 |
 * | `transformer-small` | TransformerLM| vocab 50257, d_model 256, 4 layers, 4 heads, max_len 1024 |
 */
import type { LanguageModel, ModelOptions } from './language-model.js';
import { type MambaConfig, MambaLM, mambaPresets } from './mamba.js';
import { SeedMamba, type SeedMambaConfig, seedMambaConfig } from './seed-mamba.js';
import { type TransformerConfig, TransformerLM, transformerPresets } from './transformer.js';

export type ModelConfig = MambaConfig | SeedMambaConfig | TransformerConfig;

export const presets = {
  'mamba-tiny': mambaPresets.tiny,
  'seed-mamba': seedMambaConfig,
  'mamba-small': mambaPresets.small,
  'transformer-tiny': transformerPresets.tiny,
  'seed-transformer': transformerPresets['seed-transformer'],
  'transformer-small': transformerPresets.small,
} as const satisfies Record<string, ModelConfig>;

export type PresetName = keyof typeof presets;

/** A new model with freshly initialised weights (drawn from the global seeded generator). */
export function createModel(config: ModelConfig | PresetName, options: ModelOptions = {}): LanguageModel {
  const c: ModelConfig = typeof config === 'string' ? presets[config] : config;
  switch (c.arch) {
    case 'mamba':
      return new MambaLM(c, options);
    case 'seed-mamba':
      return new SeedMamba(c, options);
    case 'transformer':
      return new TransformerLM(c, options);
    default:
      throw new Error(`Unknown model architecture "${(c as { arch: unknown }).arch}"; known: mamba, seed-mamba, transformer.`);
  }
}
