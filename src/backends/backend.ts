/**
 * The contract between tensors and the hardware: the small set of kernels a backend must provide.
 *
 * A backend owns opaque buffers (`BufferHandle`): a CPU backend wraps a TypedArray, the WebGPU backend a
 * `GPUBuffer`. Tensors never look inside; they pass *views* — a buffer plus shape, strides, offset and
 * dtype — so transposes, slices and broadcasts reach kernels without copies. Broadcasting is already
 * resolved by the caller: an input broadcast along an axis has stride 0 there.
 *
 * Rules every kernel follows:
 * - Inputs are read-only views; every output is a **new, contiguous** buffer the caller owns
 *   (except `assign`, which writes into an existing view, and `adamStep`, which updates in place).
 * - Calls are synchronous to make; a backend may queue the work (the GPU does). Only `read` waits.
 * - Float inputs are computed in at least f32; `float16` is a storage format.
 * - Output dtype: a's for binary and `where`; int32 for argmax; otherwise the dtype of the first float
 *   input (conv1dGrad: gx as x, gw as w; crossEntropy's lse and norm's mean and rstd: `computeDtype`
 *   of the input's dtype).
 *   int32 results truncate and wrap like JS's ToInt32.
 * - Edge cases: an empty reduction (len = 0) sums to 0 (max −∞, min +∞, argmax an error); a fully −∞
 *   softmax row is NaN; uniform draws are in [0, 1) before rounding to the dtype (float16 may round
 *   up to 1).
 * - Strides are ≥ 0. Out-of-range ids or targets are errors on the CPU, which checks them, and
 *   undefined behaviour on backends that cannot check without a round trip (the GPU).
 *
 * The CPU backend (`cpu/`) is the definition of every kernel; other backends are tested against it.
 * Adding a backend is adding a folder that implements this interface and registers itself.
 */
import type { DType, TypedArray } from '../tensor/dtype.js';
import type { Shape } from '../tensor/shape.js';

/** A backend's buffer; only the backend that made it knows what it is. */
export type BufferHandle = { readonly __brand?: 'BufferHandle' };

/** A strided window onto a buffer: element (i0, i1, …) lives at `offset + Σ ik·strides[k]`. */
export interface View {
  readonly buffer: BufferHandle;
  readonly dtype: DType;
  readonly shape: Shape;
  readonly strides: readonly number[];
  readonly offset: number;
}

export type UnaryOp =
  | 'neg'
  | 'exp'
  | 'log'
  | 'sqrt'
  | 'rsqrt'
  | 'tanh'
  | 'sigmoid'
  | 'silu'
  | 'gelu'
  | 'softplus'
  | 'relu'
  | 'abs'
  | 'sign'
  // derivatives that backward passes need, so they cost one kernel instead of several:
  | 'siluGrad' // d silu / dx = σ(x)·(1 + x·(1 − σ(x)))
  | 'geluGrad'; // d gelu / dx for the tanh approximation

export type BinaryOp =
  | 'add'
  | 'sub'
  | 'mul'
  | 'div'
  | 'pow'
  | 'maximum'
  | 'minimum'
  // comparisons give 1 or 0 in the output dtype
  | 'eq'
  | 'ne'
  | 'lt'
  | 'le'
  | 'gt'
  | 'ge';

export type ReduceOp = 'sum' | 'max' | 'min' | 'argmax';

export type RandomDist = 'uniform' | 'normal';

/** Which normalisation `norm` computes over each row: LayerNorm (centred) or RMSNorm (not). */
export type NormKind = 'layer' | 'rms';

/** Sizes of a selective scan: u and Δ are (batch, dim, len), A is (dim, N), B and C are (batch, N, len). */
export interface ScanSizes {
  batch: number;
  dim: number;
  len: number;
  N: number;
}

/** Inputs of the selective-scan kernels, all contiguous buffers. */
export interface ScanInputs {
  u: BufferHandle;
  delta: BufferHandle;
  A: BufferHandle;
  B: BufferHandle;
  C: BufferHandle;
}

/**
 * The scalars of one Adam/AdamW update (`adamStep`), computed by the optimizer in float64 with the bias
 * corrections and the learning rate folded in (see src/train/optim/adam.ts).
 */
export interface AdamScalars {
  /** β₁, β₂: the share of the old first and second moment that each step keeps. */
  readonly beta1: number;
  readonly beta2: number;
  /** lr / (1 − β₁ᵗ): the learning rate times the first moment's bias correction. */
  readonly stepSize: number;
  /** 1 / √(1 − β₂ᵗ): the second moment's bias correction, applied to √v. */
  readonly rootCorrection: number;
  /** ε, added to the corrected √v̂. */
  readonly eps: number;
  /** 1 − lr·λ: the factor by which decoupled weight decay shrinks the parameter (1 for plain Adam). */
  readonly shrink: number;
}

export interface Backend {
  readonly name: string;

  // ---- memory ----
  /** A new contiguous buffer of `size` elements filled with `value`. */
  full(size: number, value: number, dtype: DType): BufferHandle;
  /** A new buffer holding a copy of `data`. */
  upload(data: TypedArray, dtype: DType): BufferHandle;
  /** Reads `size` elements starting at element `offset` of a buffer; waits for pending work. */
  read(buffer: BufferHandle, dtype: DType, offset: number, size: number): Promise<TypedArray>;
  /** Returns a buffer to the backend. Using it afterwards is an error. */
  free(buffer: BufferHandle): void;
  /** Bytes of live (not freed) buffers, for memory tests. */
  liveBytes(): number;
  /** Waits until all queued work has finished (for benchmarks). */
  sync(): Promise<void>;
  /** Gives idle pooled memory back to the driver (backends that pool buffers). */
  trim?(): void;

  // ---- element-wise ----
  /** Strided → contiguous copy, converting to `dtype`. */
  copy(x: View, dtype: DType): BufferHandle;
  /** Writes `src` into the (possibly strided) destination view; shapes are equal. */
  assign(dst: View, src: View): void;
  unary(op: UnaryOp, x: View): BufferHandle;
  /** `a` and `b` already have the output's shape (broadcast axes have stride 0). */
  binary(op: BinaryOp, a: View, b: View): BufferHandle;
  /** `cond ? a : b` element-wise; all three have the output's shape. */
  where(cond: View, a: View, b: View): BufferHandle;
  /**
   * Counter-based random numbers: element i is a pure function of (seed, i), so every backend
   * produces the same stream. Uniform in [0, 1) or standard normal.
   */
  random(dist: RandomDist, size: number, seed: number, dtype: DType): BufferHandle;

  /**
   * One Adam/AdamW step, in place, over contiguous buffers of `size` elements of `dtype` (float32, and
   * float64 on the CPU): with the scalars `s`, every element updates
   *     m ← β₁·m + (1 − β₁)·g,   v ← β₂·v + (1 − β₂)·g²,
   *     param ← shrink·param − stepSize·m / (√v·rootCorrection + ε)
   * using the new m and v: one kernel per parameter, where separate element-wise ops take about twenty.
   */
  adamStep(param: BufferHandle, grad: BufferHandle, m: BufferHandle, v: BufferHandle, size: number, dtype: DType, s: AdamScalars): void;

  // ---- reductions and scans over contiguous buffers ----
  /**
   * Reduces the middle axis of a contiguous (outer, len, inner) buffer: (outer, len, inner) → (outer,
   * inner), y[o, i] = op over j of x[o, j, i]. A row reduction (rows, cols) → (rows) is (rows, cols, 1);
   * a sum over axis 0 of a contiguous (n, d) matrix is (1, n, d), read in place. argmax gives the int32
   * index j of the first maximum (NaN wins max, min and argmax).
   */
  reduce(op: ReduceOp, x: BufferHandle, dtype: DType, outer: number, len: number, inner: number): BufferHandle;
  /** Inclusive prefix sum along each row of (rows, cols); `reverse` sums from the end (cumsum's backward). */
  cumsum(x: BufferHandle, dtype: DType, rows: number, cols: number, reverse: boolean): BufferHandle;
  /** Softmax (or log-softmax) along each row. */
  softmax(x: BufferHandle, dtype: DType, rows: number, cols: number, log: boolean): BufferHandle;

  // ---- linear algebra ----
  /**
   * (batch, M, K) @ (batch, K, N) → contiguous (batch, M, N); views may be transposed or broadcast.
   * `bias` (N), when given, is added to every row as the product is written (a Linear layer's x Wᵀ + b).
   */
  matmul(a: View, b: View, bias?: View): BufferHandle;

  // ---- neural-network kernels ----
  /**
   * Per-row cross-entropy from logits (rows, cols) and int32 targets (rows):
   *     lse_r = log Σ_j e^(x_rj),   loss_r = lse_r − x_r[target_r] = −log softmax(x_r)[target_r]
   * Gives loss (rows), 0 where target = ignoreIndex, in the logits' dtype, and lse (rows) of every row,
   * ignored ones too, for the backward, in `computeDtype` of the logits' dtype: float32 for float16
   * logits, since an lse rounded to float16 would scale every probability of its row alike, by up to
   * 0.4 % at lse ≈ 11.
   */
  crossEntropy(
    logits: BufferHandle,
    targets: BufferHandle,
    rows: number,
    cols: number,
    ignoreIndex: number,
  ): { loss: BufferHandle; lse: BufferHandle };
  /**
   * d loss_r / d logits = (softmax(x_r) − onehot(target_r))·g_r = (e^(x_r − lse_r) − onehot(target_r))·g_r,
   * 0 rows where ignored, from the `lse` that crossEntropy gave for these logits: one read of each
   * logit, one write of each gradient.
   */
  crossEntropyGrad(
    logits: BufferHandle,
    lse: BufferHandle,
    targets: BufferHandle,
    gradLoss: BufferHandle,
    rows: number,
    cols: number,
    ignoreIndex: number,
  ): BufferHandle;
  /**
   * LayerNorm or RMSNorm of each row of a contiguous (rows, dim) x, see src/tensor/ops/norm.ts:
   *     'layer': μ = mean_j x_j,  rstd = 1/√(mean_j (x_j − μ)² + ε),  y = (x − μ)·rstd·γ + β
   *     'rms':   μ = 0,           rstd = 1/√(mean_j x_j² + ε),         y = x·rstd·γ + β
   * with γ = `weight` and β = `bias` (dim), each optional (null: γ = 1, β = 0). Gives y (rows, dim) in
   * x's dtype and, for the backward, rstd (rows) and, for 'layer', μ (rows; null for 'rms'), in
   * `computeDtype` of x's dtype.
   */
  norm(
    kind: NormKind,
    x: BufferHandle,
    weight: BufferHandle | null,
    bias: BufferHandle | null,
    rows: number,
    dim: number,
    eps: number,
  ): { y: BufferHandle; mean: BufferHandle | null; rstd: BufferHandle };
  /**
   * The gradient of `norm` from the output gradient g (rows, dim) and the forward's μ ('layer') and
   * rstd: with x̂ = (x − μ)·rstd and g' = g·γ,
   *     'layer': dx = rstd·(g' − mean_j g' − x̂·mean_j(g'·x̂))
   *     'rms':   dx = rstd·(g' − x̂·mean_j(g'·x̂))
   * in x's dtype. With `withGxhat` it also gives g·x̂ (rows, dim), in x's dtype too, whose column sums
   * are dγ (dβ is the column sums of g): the caller sums them with `reduce`, which reads them in place.
   */
  normGrad(
    kind: NormKind,
    x: BufferHandle,
    weight: BufferHandle | null,
    mean: BufferHandle | null,
    rstd: BufferHandle,
    grad: BufferHandle,
    rows: number,
    dim: number,
    withGxhat: boolean,
  ): { dx: BufferHandle; gxhat: BufferHandle | null };
  /** Gathers rows of `weight` (vocab, dim): out[i] = weight[ids[i]], giving (n, dim). */
  gatherRows(weight: BufferHandle, ids: BufferHandle, n: number, vocab: number, dim: number): BufferHandle;
  /** The backward of gatherRows: out (vocab, dim) = Σ over i with ids[i] = v of grad[i]. */
  scatterAddRows(grad: BufferHandle, ids: BufferHandle, n: number, vocab: number, dim: number): BufferHandle;
  /**
   * Depthwise causal conv1d: y[b,c,t] = bias[c] + Σ_k w[c,k]·x[b,c,t−K+1+k] (zero before t = 0).
   * x (batch, channels, len), w (channels, K), bias (channels).
   */
  conv1d(x: BufferHandle, w: BufferHandle, bias: BufferHandle, batch: number, channels: number, len: number, K: number): BufferHandle;
  /** Gradients of conv1d for x (batch, channels, len) and w (channels, K); bias's is a plain sum. */
  conv1dGrad(
    gy: BufferHandle,
    x: BufferHandle,
    w: BufferHandle,
    batch: number,
    channels: number,
    len: number,
    K: number,
  ): { gx: BufferHandle; gw: BufferHandle };
  /**
   * Causal attention, see src/tensor/ops/attention.ts: q (batch, heads, Lq, dh), k and v (batch, heads,
   * Lk, dh), Lq ≤ Lk, dh ≥ 1, views of any strides. Query row i sits at position p = Lk − Lq + i and
   * attends to keys 0 … p:
   *     s_j = scale·q_i·k_j,   lse_i = log Σ_{j≤p} e^(s_j),   out_i = Σ_{j≤p} e^(s_j − lse_i)·v_j
   * Gives out (batch, heads, Lq, dh) and lse (batch·heads·Lq), the softmax's normaliser from which the
   * backward rebuilds the attention weights, both in q's dtype.
   */
  causalAttention(q: View, k: View, v: View, scale: number): { out: BufferHandle; lse: BufferHandle };

  // ---- selective scan (Mamba), see src/tensor/ops/selective-scan.ts for the math ----
  /**
   * The recurrence, discretised inside the kernel:
   *     h_t = exp(Δ_t·A) ⊙ h_{t−1} + Δ_t·B_t·u_t  (h_0 = 0),   y_t = Σ_n C_t[n]·h_t[n]
   * per (batch, dim) row and state n. Gives y (batch, dim, len) and the last state h_len (batch, dim, N).
   *
   * With `save`, the backend may also return `saved`: what its backward wants kept from this forward
   * (the WebGPU backend: the state entering every chunk of 64 steps, N/64 floats per element of u).
   * The caller hands it to `selectiveScanGrad` and frees it afterwards. A backend may return none (the
   * CPU backend recomputes everything).
   */
  selectiveScan(x: ScanInputs, sizes: ScanSizes, save?: boolean): { y: BufferHandle; lastState: BufferHandle; saved?: BufferHandle };
  /**
   * Gradients of Σ dy ⊙ y with respect to u, Δ (batch, dim, len), A (dim, N) and B, C (batch, N, len),
   * by the reverse recurrence dh_t = C_t·dy_t + exp(Δ_{t+1}·A) ⊙ dh_{t+1}. `saved` is the forward's,
   * if it returned one; without it the backend recomputes what it needs.
   */
  selectiveScanGrad(
    x: ScanInputs,
    dy: BufferHandle,
    sizes: ScanSizes,
    saved?: BufferHandle,
  ): { du: BufferHandle; ddelta: BufferHandle; dA: BufferHandle; dB: BufferHandle; dC: BufferHandle };
}
