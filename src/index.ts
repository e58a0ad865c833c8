/**
 * tensorscan's public API: tensors, ops, autograd, memory scopes and backends.
 *
 *     import { tensor, setBackend } from 'tensorscan';
 *     await setBackend('webgpu');            // or keep the default 'cpu'
 *     const w = tensor([[1, 2], [3, 4]]).requireGrad();
 *     const loss = w.matmul(w).sum();
 *     loss.backward();
 *     console.log(await w.grad!.toArray());
 */
import './backends/cpu/index.js';
import './backends/webgpu/index.js';

export { backward } from './autograd/backward.js';
export { isGradEnabled, noGrad } from './autograd/grad-mode.js';
export { type GradcheckOptions, gradcheck } from './autograd/gradcheck.js';
export type { Backend, View } from './backends/backend.js';
export { backendNames, getBackend, registerBackend, setBackend } from './backends/registry.js';
export { describe } from './models/describe.js';
export { type GenerateOptions, generate, sampleToken } from './models/generate.js';
export { type ArchConfig, type DecodeState, LanguageModel, type ModelOptions } from './models/language-model.js';
export { CausalConv1d } from './models/layers/conv1d.js';
export { Dropout } from './models/layers/dropout.js';
export { Embedding, type EmbeddingOptions } from './models/layers/embedding.js';
export { Linear, type LinearOptions } from './models/layers/linear.js';
export { LayerNorm, RMSNorm } from './models/layers/norm.js';
export { SelectiveSSM, type SelectiveSSMOptions } from './models/layers/selective-ssm.js';
export { MambaBlock, type MambaConfig, MambaLM, MambaMixer, MambaState, mambaConfig, mambaPresets } from './models/mamba.js';
export { Module } from './models/module.js';
export { createModel, type ModelConfig, type PresetName, presets } from './models/presets.js';
export { loadSafetensors, saveSafetensors } from './models/safetensors.js';
export { loadModel, saveModel } from './models/saved-model.js';
export { SeedMamba, type SeedMambaConfig, SeedMambaState, seedMambaConfig } from './models/seed-mamba.js';
export {
  CausalSelfAttention,
  MLP,
  TransformerBlock,
  type TransformerConfig,
  TransformerLM,
  TransformerState,
  transformerPresets,
} from './models/transformer.js';
export type { DType, TypedArray } from './tensor/dtype.js';
export { causalAttention } from './tensor/ops/attention.js';
export { conv1dCausal } from './tensor/ops/conv1d.js';
export * from './tensor/ops/creation.js';
export { cumsum } from './tensor/ops/cumsum.js';
export { dropout } from './tensor/ops/dropout.js';
export {
  abs,
  add,
  astype,
  contiguous,
  div,
  eq,
  exp,
  ge,
  gelu,
  gt,
  le,
  log,
  lt,
  maskedFill,
  maximum,
  minimum,
  mul,
  ne,
  neg,
  pow,
  relu,
  rsqrt,
  sigmoid,
  silu,
  softplus,
  sqrt,
  sub,
  tanh,
  where,
} from './tensor/ops/elementwise.js';
export { embedding } from './tensor/ops/embedding.js';
export { concat, split, stack } from './tensor/ops/join.js';
export { type CrossEntropyOptions, crossEntropy } from './tensor/ops/loss.js';
export { causalMask } from './tensor/ops/mask.js';
export { linear, matmul } from './tensor/ops/matmul.js';
export { layerNorm, rmsNorm } from './tensor/ops/norm.js';
export { argmax, logsumexp, max, mean, min, sum } from './tensor/ops/reduce.js';
export { type SelectiveScanOptions, type SelectiveScanResult, selectiveScan } from './tensor/ops/selective-scan.js';
export { logSoftmax, softmax } from './tensor/ops/softmax.js';
export { expand, flatten, narrow, permute, reshape, select, squeeze, transpose, unsqueeze } from './tensor/ops/views.js';
export { Generator, globalGenerator, manualSeed } from './tensor/random.js';
export { keep, tidy } from './tensor/scope.js';
export { type NestedArray, Tensor } from './tensor/tensor.js';
export { type EvalResult, evaluate } from './train/evaluate.js';
export { Adam, type AdamOptions, AdamW, type AdamWOptions, type OptimizerState } from './train/optim/adam.js';
export { clipGradNorm } from './train/optim/clip.js';
export { type Schedule, type ScheduleOptions, warmupCosine } from './train/optim/schedule.js';
export { decaysWeight } from './train/optim/weight-decay.js';
export { type ChartOptions, renderLineChart, type Series, writeLineChart } from './train/plot/plot.js';
