/**
 * The seed experiment's model, kept to reproduce it: "Embedding → one selective SSM (B, C, Δ
 * input-dependent) → Linear head, d_model 128", on GPT-2's vocabulary of 50 257 tokens.
 *
 *     ids (batch, len) → embedding (vocab, 128) → S6 over the 128 channels → Linear (128 → vocab) → logits
 *
 * It is the selective SSM alone (layers/selective-ssm.ts: x_proj makes Δ, B and C from each token,
 * d_state 16), not a Mamba block: there is no in_proj, no conv, no gate, no norm, and one layer. The
 * only path from one token to the next is the SSM state; D·u is the skip connection that carries the
 * current token straight through. The head is its own `nn.Linear` with a bias (not tied to the
 * embedding), and the embedding and head use PyTorch's default initialisation, as a plain
 * `nn.Embedding`/`nn.Linear` model would. So does the SSM's dt_proj (`dtInit: 'linear'`), as minimal
 * implementations such as mamba-minimal leave it, instead of mamba_simple's small initial Δ: with
 * Δ ≈ 0.7 at the start the state carries the previous tokens from the first step, and the seed recipe
 * (3 epochs at a constant lr 3·10⁻⁴) ended at a valid loss of 5.38 instead of 5.53 (with Δ at rank
 * 8; H200, see bench/RESULTS.md).
 *
 * Δ is projected at full rank (dt_rank = d_model), not at mamba_simple's ⌈d_model/16⌉: a minimal
 * selective SSM makes Δ from the token by a d_model × d_model map, as it does B and C. Here it is the
 * product dt_proj·x_proj[Δ rows], two 128 × 128 matrices, so the model stays the SelectiveSSM that a
 * Mamba block uses. With rank 8 the recipe ended at valid 5.39, with 16 at 5.34, with 128 at 5.22,
 * which is PyTorch's figure for the seed SSM (bench/RESULTS.md). Almost all of its 12.96 M
 * parameters are in the two tables; the SSM has 39 168.
 */
import { noGrad } from '../autograd/grad-mode.js';
import { zeros } from '../tensor/ops/creation.js';
import { keep, tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { type ArchConfig, type DecodeState, LanguageModel, type ModelOptions } from './language-model.js';
import { Embedding } from './layers/embedding.js';
import { Linear } from './layers/linear.js';
import { SelectiveSSM } from './layers/selective-ssm.js';

export interface SeedMambaConfig extends ArchConfig {
  readonly arch: 'seed-mamba';
  readonly vocabSize: number;
  readonly dModel: number;
  /** N, the SSM state size per channel. */
  readonly dState: number;
  /** Rank of Δ's projection (mamba_simple's rule is ⌈d_model/16⌉; the seed preset uses d_model). */
  readonly dtRank: number;
}

/** The SSM state h (batch, d_model, N): everything the model remembers of the past. */
export class SeedMambaState implements DecodeState {
  constructor(public ssm: Tensor) {}

  dispose(): void {
    this.ssm.dispose();
  }
}

export class SeedMamba extends LanguageModel<SeedMambaState> {
  readonly embedding: Embedding;
  readonly ssm: SelectiveSSM;
  readonly head: Linear;

  constructor(
    readonly config: SeedMambaConfig,
    { dtype = 'float32' }: ModelOptions = {},
  ) {
    super();
    this.embedding = this.child('embedding', new Embedding(config.vocabSize, config.dModel, { dtype }));
    this.ssm = this.child(
      'ssm',
      new SelectiveSSM(config.dModel, { dState: config.dState, dtRank: config.dtRank, dtInit: 'linear', dtype }),
    );
    this.head = this.child('head', new Linear(config.dModel, config.vocabSize, { dtype }));
  }

  forward(ids: Tensor): Tensor {
    const u = this.embedding.forward(ids).transpose(1, 2); // (batch, d_model, len), the scan's layout
    return this.head.forward(this.ssm.scan(u).transpose(1, 2));
  }

  initState(batch: number): SeedMambaState {
    return new SeedMambaState(keep(zeros([batch, this.config.dModel, this.config.dState], this.embedding.weight.dtype)));
  }

  step(ids: Tensor, state: SeedMambaState): Tensor {
    return noGrad(() =>
      tidy(() => {
        const { y, h } = this.ssm.recurrentStep(this.embedding.forward(ids), state.ssm);
        state.ssm.dispose();
        state.ssm = keep(h);
        return this.head.forward(y);
      }),
    );
  }
}

/** The seed experiment: d_model 128, d_state 16, Δ at full rank (dt_rank 128), GPT-2's vocabulary. */
export const seedMambaConfig: SeedMambaConfig = { arch: 'seed-mamba', vocabSize: 50257, dModel: 128, dState: 16, dtRank: 128 };
