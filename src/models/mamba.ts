/**
 * Mamba: a language model built from selective state space blocks, as in state-spaces/mamba
 * (`mamba_ssm/modules/mamba_simple.py` for the block, `models/mixer_seq_simple.py` for the model).
 *
 *     ids (batch, len) → embedding → n_layers × [x + Mamba(RMSNorm(x))] → RMSNorm → x · embᵀ → logits
 *
 * One Mamba block (Gu & Dao 2023, Figure 3), with d_inner = expand·d_model:
 *
 *     (x, z) = in_proj(h)                      (batch, 2·d_inner, len), split in two
 *     u = silu(conv1d(x))                      depthwise causal conv, kernel d_conv
 *     y = S6(u) ⊙ silu(z)                      the selective SSM (layers/selective-ssm.ts), gated by z
 *     out = out_proj(y)                        (batch, len, d_model)
 *
 * The SSM mixes information along the sequence; the conv gives it a short local window first; the
 * projections mix channels. There is no attention and no MLP: each block is the whole layer.
 *
 * For generation, each block keeps a fixed-size state — the last d_conv inputs of the conv
 * (batch, d_inner, d_conv) and the SSM state (batch, d_inner, N) — so a token costs the same work and
 * memory at position 10 as at position 10 000 (`step`).
 */
import { noGrad } from '../autograd/grad-mode.js';
import type { DType } from '../tensor/dtype.js';
import { zeros } from '../tensor/ops/creation.js';
import { concat, split } from '../tensor/ops/join.js';
import { keep, tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { type ArchConfig, type DecodeState, LanguageModel, type ModelOptions } from './language-model.js';
import { CausalConv1d } from './layers/conv1d.js';
import { Embedding } from './layers/embedding.js';
import { Linear } from './layers/linear.js';
import { RMSNorm } from './layers/norm.js';
import { SelectiveSSM } from './layers/selective-ssm.js';
import { Module } from './module.js';

export interface MambaConfig extends ArchConfig {
  readonly arch: 'mamba';
  readonly vocabSize: number;
  readonly dModel: number;
  readonly nLayers: number;
  /** N, the SSM state size per channel. */
  readonly dState: number;
  /** Kernel size of the causal conv. */
  readonly dConv: number;
  /** d_inner = expand · d_model. */
  readonly expand: number;
  /** Rank of Δ's projection. */
  readonly dtRank: number;
}

/** A full config from the required sizes, with the reference's defaults for the rest. */
export function mambaConfig(
  sizes: Pick<MambaConfig, 'vocabSize' | 'dModel' | 'nLayers'> & Partial<Omit<MambaConfig, 'arch'>>,
): MambaConfig {
  return { arch: 'mamba', dState: 16, dConv: 4, expand: 2, dtRank: Math.ceil(sizes.dModel / 16), ...sizes };
}

/** The Mamba block ("mixer"): a selective SSM with its input projection, conv, gate and output projection. */
export class MambaMixer extends SelectiveSSM {
  readonly dInner: number;
  /** (2·d_inner, d_model), no bias. */
  readonly inProj: Linear;
  readonly conv1d: CausalConv1d;
  /** (d_model, d_inner), no bias. */
  readonly outProj: Linear;

  constructor(config: MambaConfig, dtype: DType) {
    const dInner = config.expand * config.dModel;
    super(dInner, { dState: config.dState, dtRank: config.dtRank, dtype });
    this.dInner = dInner;
    this.inProj = this.child('in_proj', new Linear(config.dModel, 2 * dInner, { bias: false, dtype }));
    this.conv1d = this.child('conv1d', new CausalConv1d(dInner, config.dConv, dtype));
    // mixer_seq_simple's _init_weights scales out_proj by 1/√n_layers, so the residual stream's
    // variance does not grow with depth (GPT-2's scheme; one residual branch per layer here).
    const bound = 1 / Math.sqrt(dInner) / Math.sqrt(config.nLayers);
    this.outProj = this.child('out_proj', new Linear(dInner, config.dModel, { bias: false, dtype, bound }));
  }

  /** hidden (batch, len, d_model) → (batch, len, d_model). */
  forward(hidden: Tensor): Tensor {
    // in_proj.weight @ hiddenᵀ puts channels before positions, the (batch, d, len) layout of the conv
    // and the scan, as mamba_simple does.
    const [x, z] = split(this.inProj.weight.matmul(hidden.transpose(1, 2)), 2, 1) as [Tensor, Tensor];
    const u = this.conv1d.forward(x).silu();
    return this.outProj.forward(this.scan(u, z).transpose(1, 2));
  }

  /**
   * One token: hidden (batch, d_model), the conv window (batch, d_inner, d_conv) and the SSM state
   * (batch, d_inner, N) → the output (batch, d_model) and both next states.
   */
  step(hidden: Tensor, conv: Tensor, ssm: Tensor): { out: Tensor; conv: Tensor; ssm: Tensor } {
    const [x, z] = split(this.inProj.forward(hidden), 2, -1) as [Tensor, Tensor];
    // Slide the window: drop the oldest input, append x.
    const window = concat([conv.narrow(2, 1, this.conv1d.kernelSize - 1), x.unsqueeze(2)], 2);
    const u = this.conv1d.stepWindow(window).silu();
    const { y, h } = this.recurrentStep(u, ssm, z);
    return { out: this.outProj.forward(y), conv: window, ssm: h };
  }
}

/** A pre-norm residual block: x + mixer(RMSNorm(x)). */
export class MambaBlock extends Module {
  readonly norm: RMSNorm;
  readonly mixer: MambaMixer;

  constructor(config: MambaConfig, dtype: DType) {
    super();
    this.mixer = this.child('mixer', new MambaMixer(config, dtype));
    this.norm = this.child('norm', new RMSNorm(config.dModel, 1e-5, dtype));
  }

  forward(x: Tensor): Tensor {
    return x.add(this.mixer.forward(this.norm.forward(x)));
  }
}

/** Per layer: the conv window (batch, d_inner, d_conv) and the SSM state (batch, d_inner, N). */
export class MambaState implements DecodeState {
  constructor(
    readonly conv: Tensor[],
    readonly ssm: Tensor[],
  ) {}

  dispose(): void {
    for (const t of [...this.conv, ...this.ssm]) t.dispose();
  }
}

export class MambaLM extends LanguageModel<MambaState> {
  readonly embedding: Embedding;
  readonly layers: MambaBlock[];
  readonly normF: RMSNorm;

  constructor(
    readonly config: MambaConfig,
    { dtype = 'float32' }: ModelOptions = {},
  ) {
    super();
    // std 0.02 as in mixer_seq_simple's _init_weights: the table is also the output head.
    this.embedding = this.child('embedding', new Embedding(config.vocabSize, config.dModel, { dtype, std: 0.02 }));
    this.layers = Array.from({ length: config.nLayers }, (_, i) => this.child(`layers.${i}`, new MambaBlock(config, dtype)));
    this.normF = this.child('norm_f', new RMSNorm(config.dModel, 1e-5, dtype));
  }

  /** The final norm and the tied head: RMSNorm(h) (…, d_model) · embeddingᵀ → logits (…, vocab). */
  private head(h: Tensor): Tensor {
    return this.normF.forward(h).matmul(this.embedding.weight.transpose());
  }

  forward(ids: Tensor): Tensor {
    let x = this.embedding.forward(ids);
    for (const layer of this.layers) x = layer.forward(x);
    return this.head(x);
  }

  initState(batch: number): MambaState {
    const dInner = this.config.expand * this.config.dModel;
    const dtype = this.embedding.weight.dtype;
    const make = (size: number): Tensor[] => this.layers.map(() => keep(zeros([batch, dInner, size], dtype)));
    return new MambaState(make(this.config.dConv), make(this.config.dState));
  }

  step(ids: Tensor, state: MambaState): Tensor {
    return noGrad(() =>
      tidy(() => {
        let x = this.embedding.forward(ids); // (batch, d_model)
        this.layers.forEach((layer, i) => {
          const { out, conv, ssm } = layer.mixer.step(layer.norm.forward(x), state.conv[i]!, state.ssm[i]!);
          x = x.add(out);
          state.conv[i]!.dispose();
          state.ssm[i]!.dispose();
          state.conv[i] = keep(conv);
          state.ssm[i] = keep(ssm);
        });
        return this.head(x);
      }),
    );
  }
}

/** Mamba presets. `tiny` is for tests; `small` is a GPT-2-vocabulary model for training runs. */
export const mambaPresets = {
  tiny: mambaConfig({ vocabSize: 64, dModel: 16, nLayers: 2, dState: 4 }),
  small: mambaConfig({ vocabSize: 50257, dModel: 256, nLayers: 4 }),
} as const;
