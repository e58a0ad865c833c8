/**
 * A small GPT-style Transformer (Vaswani et al. 2017; Radford et al. 2019), the baseline Mamba is
 * compared with:
 *
 *     ids (batch, len) → token embedding + learned positions → n_layers × block → LayerNorm → x · embᵀ
 *     block:  x = x + Attention(LayerNorm(x));  x = x + MLP(LayerNorm(x))            (pre-norm)
 *
 * Attention lets every position read every earlier one, at O(len²) cost in time. The forward runs it
 * as one fused op (src/tensor/ops/attention.ts) that never materialises the (len, len) scores, 1 GiB
 * per head and sequence at 16 384 tokens in float32; its backward does, so training memory still
 * grows as len², where Mamba's state stays (batch, d_inner, N). The learned position table
 * (max_len, d_model) is what tells the model where a token is, so it cannot run past max_len
 * positions. For generation it keeps a key/value cache: each new token computes its own key and value
 * once and attends to the cached ones, so a token costs O(position) instead of O(position²).
 */
import { noGrad } from '../autograd/grad-mode.js';
import type { DType } from '../tensor/dtype.js';
import { causalAttention } from '../tensor/ops/attention.js';
import { zeros } from '../tensor/ops/creation.js';
import { keep, tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { type ArchConfig, type DecodeState, LanguageModel, type ModelOptions } from './language-model.js';
import { Dropout } from './layers/dropout.js';
import { Embedding } from './layers/embedding.js';
import { Linear } from './layers/linear.js';
import { LayerNorm } from './layers/norm.js';
import { Module } from './module.js';

export interface TransformerConfig extends ArchConfig {
  readonly arch: 'transformer';
  readonly vocabSize: number;
  readonly dModel: number;
  readonly nLayers: number;
  /** d_head = d_model / n_heads. */
  readonly nHeads: number;
  /** The longest sequence the model can see: the rows of the position table. */
  readonly maxLen: number;
  /** Dropout on the embeddings and on each residual branch while training (GPT-2 uses 0.1). */
  readonly dropout: number;
}

/** One head's keys and values for every position so far, per layer: (batch, n_heads, max_len, d_head). */
export class TransformerState implements DecodeState {
  /** How many positions the cache holds; the next token goes at this position. */
  position = 0;

  constructor(
    readonly keys: Tensor[],
    readonly values: Tensor[],
  ) {}

  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t.dispose();
  }
}

/** Multi-head causal self-attention: softmax(q kᵀ/√d_head + causal mask) v, per head. */
export class CausalSelfAttention extends Module {
  /** (3·d_model, d_model) with bias: x → (q, k, v). */
  readonly qkv: Linear;
  /** (d_model, d_model) with bias: the heads' outputs, concatenated, back to the residual stream. */
  readonly out: Linear;
  readonly dHead: number;

  constructor(
    readonly dModel: number,
    readonly nHeads: number,
    dtype: DType,
  ) {
    super();
    if (dModel % nHeads !== 0) throw new Error(`Transformer: d_model ${dModel} is not divisible by n_heads ${nHeads}.`);
    this.dHead = dModel / nHeads;
    this.qkv = this.child('qkv', new Linear(dModel, 3 * dModel, { dtype }));
    this.out = this.child('out', new Linear(dModel, dModel, { dtype }));
  }

  /** x (batch, len, d_model) → (batch, len, d_model). */
  forward(x: Tensor): Tensor {
    const [batch, len] = x.shape as [number, number, number];
    // (batch, len, 3·d_model) → (3, batch, heads, len, d_head): q, k, v per head.
    const qkv = this.qkv.forward(x).reshape([batch, len, 3, this.nHeads, this.dHead]).permute([2, 0, 3, 1, 4]);
    const [q, k, v] = [0, 1, 2].map((i) => qkv.select(0, i)) as [Tensor, Tensor, Tensor];
    const heads = causalAttention(q, k, v, 1 / Math.sqrt(this.dHead)); // (batch, heads, len, d_head)
    return this.out.forward(heads.permute([0, 2, 1, 3]).reshape([batch, len, this.dModel]));
  }

  /**
   * One token x (batch, d_model) at `position`: writes its key and value into the caches
   * (batch, heads, max_len, d_head) and attends to positions 0 … position.
   */
  step(x: Tensor, keys: Tensor, values: Tensor, position: number): Tensor {
    const batch = x.shape[0] as number;
    const qkv = this.qkv.forward(x).reshape([batch, 3, this.nHeads, 1, this.dHead]);
    const [q, k, v] = [0, 1, 2].map((i) => qkv.select(1, i)) as [Tensor, Tensor, Tensor]; // (batch, heads, 1, d_head)
    keys.narrow(2, position, 1).assign(k);
    values.narrow(2, position, 1).assign(v);
    const seen = position + 1;
    // The one query is the last of `seen` positions, so it attends to all of them: (batch, heads, 1, d_head).
    const heads = causalAttention(q, keys.narrow(2, 0, seen), values.narrow(2, 0, seen), 1 / Math.sqrt(this.dHead));
    return this.out.forward(heads.reshape([batch, this.dModel]));
  }
}

/** The position-wise MLP: d_model → 4·d_model → GELU → d_model. */
export class MLP extends Module {
  readonly fc: Linear;
  readonly proj: Linear;

  constructor(dModel: number, dtype: DType) {
    super();
    this.fc = this.child('fc', new Linear(dModel, 4 * dModel, { dtype }));
    this.proj = this.child('proj', new Linear(4 * dModel, dModel, { dtype }));
  }

  forward(x: Tensor): Tensor {
    return this.proj.forward(this.fc.forward(x).gelu());
  }
}

export class TransformerBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn: CausalSelfAttention;
  readonly norm2: LayerNorm;
  readonly mlp: MLP;
  readonly drop: Dropout;

  constructor(config: TransformerConfig, dtype: DType) {
    super();
    this.norm1 = this.child('norm1', new LayerNorm(config.dModel, 1e-5, dtype));
    this.attn = this.child('attn', new CausalSelfAttention(config.dModel, config.nHeads, dtype));
    this.norm2 = this.child('norm2', new LayerNorm(config.dModel, 1e-5, dtype));
    this.mlp = this.child('mlp', new MLP(config.dModel, dtype));
    this.drop = this.child('drop', new Dropout(config.dropout));
  }

  /** x (batch, len, d_model) → (batch, len, d_model). */
  forward(x: Tensor): Tensor {
    const h = x.add(this.drop.forward(this.attn.forward(this.norm1.forward(x))));
    return h.add(this.drop.forward(this.mlp.forward(this.norm2.forward(h))));
  }

  /** x (batch, d_model) at `position`, with this layer's caches; no dropout (inference). */
  step(x: Tensor, keys: Tensor, values: Tensor, position: number): Tensor {
    const h = x.add(this.attn.step(this.norm1.forward(x), keys, values, position));
    return h.add(this.mlp.forward(this.norm2.forward(h)));
  }
}

export class TransformerLM extends LanguageModel<TransformerState> {
  readonly embedding: Embedding;
  /** The learned position table, (max_len, d_model): max_len·d_model parameters of its own. */
  readonly positions: Embedding;
  readonly drop: Dropout;
  readonly layers: TransformerBlock[];
  readonly normF: LayerNorm;

  constructor(
    readonly config: TransformerConfig,
    { dtype = 'float32' }: ModelOptions = {},
  ) {
    super();
    // std 0.02 as in GPT-2: the token table is also the output head.
    this.embedding = this.child('embedding', new Embedding(config.vocabSize, config.dModel, { dtype, std: 0.02 }));
    this.positions = this.child('positions', new Embedding(config.maxLen, config.dModel, { dtype, std: 0.02 }));
    this.drop = this.child('drop', new Dropout(config.dropout));
    this.layers = Array.from({ length: config.nLayers }, (_, i) => this.child(`layers.${i}`, new TransformerBlock(config, dtype)));
    this.normF = this.child('norm_f', new LayerNorm(config.dModel, 1e-5, dtype));
  }

  /** The final norm and the tied head: LayerNorm(h) (…, d_model) · embeddingᵀ → logits (…, vocab). */
  private head(h: Tensor): Tensor {
    return this.normF.forward(h).matmul(this.embedding.weight.transpose());
  }

  forward(ids: Tensor): Tensor {
    const len = ids.shape[1] as number;
    if (len > this.config.maxLen) {
      throw new Error(`Transformer: a sequence of ${len} tokens is longer than max_len ${this.config.maxLen}.`);
    }
    // (batch, len, d_model) + (len, d_model): position t's vector is added to every sequence's token t.
    let x = this.drop.forward(this.embedding.forward(ids).add(this.positions.weight.narrow(0, 0, len)));
    for (const layer of this.layers) x = layer.forward(x);
    return this.head(x);
  }

  /** An empty cache with room for max_len positions, allocated once so a step only writes into it. */
  initState(batch: number): TransformerState {
    const { nHeads, maxLen, dModel } = this.config;
    const dtype = this.embedding.weight.dtype;
    const cache = (): Tensor[] => this.layers.map(() => keep(zeros([batch, nHeads, maxLen, dModel / nHeads], dtype)));
    return new TransformerState(cache(), cache());
  }

  step(ids: Tensor, state: TransformerState): Tensor {
    const t = state.position;
    if (t >= this.config.maxLen)
      throw new Error(`Transformer: the cache is full; the model cannot see past max_len ${this.config.maxLen} tokens.`);
    return noGrad(() =>
      tidy(() => {
        let x = this.embedding.forward(ids).add(this.positions.weight.select(0, t)); // (batch, d_model)
        this.layers.forEach((layer, i) => {
          x = layer.step(x, state.keys[i]!, state.values[i]!, t);
        });
        state.position = t + 1;
        return this.head(x);
      }),
    );
  }
}

/**
 * Transformer presets; `seed-transformer` is the scaling benchmark's baseline (run at 16 384 tokens).
 * Dropout is 0 like Mamba's (which has none), so the two compare at equal regularisation.
 */
export const transformerPresets = {
  tiny: { arch: 'transformer', vocabSize: 64, dModel: 16, nLayers: 2, nHeads: 2, maxLen: 64, dropout: 0 },
  /** Its position table alone is 16 384 × 128 = 2.1 M parameters. */
  'seed-transformer': { arch: 'transformer', vocabSize: 50257, dModel: 128, nLayers: 2, nHeads: 4, maxLen: 16384, dropout: 0 },
  small: { arch: 'transformer', vocabSize: 50257, dModel: 256, nLayers: 4, nHeads: 4, maxLen: 1024, dropout: 0 },
} as const satisfies Record<string, TransformerConfig>;
