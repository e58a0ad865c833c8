/**
 * Next-token training batches cut from one long stream of token ids.
 *
 * The stream is cut into windows that start every `seqLen` tokens and each take
 * `seqLen + 1` tokens: window w covers tokens [w*seqLen, w*seqLen + seqLen].
 * Its first `seqLen` tokens are the inputs and its last `seqLen` are the targets,
 * so target t is the token after input t. Consecutive windows share one token (the
 * last target of one is the first input of the next), so every token except the
 * first is predicted exactly once per epoch and no prediction crosses two windows.
 */
import { seededPermutation } from './shuffle.js';

/** Everything needed to resume a {@link TokenBatcher} exactly; plain JSON. */
export interface BatcherState {
  /** Epoch of the next batch, counting from 0. */
  epoch: number;
  /** Batches already taken in that epoch, 0..batchesPerEpoch-1. */
  position: number;
  /** Seed of the window order (uint32). */
  seed: number;
}

/** One training batch; `inputs` and `targets` are (batchSize, seqLen), row-major. */
export interface TokenBatch {
  inputs: Int32Array;
  targets: Int32Array;
  /** Epoch this batch belongs to. */
  epoch: number;
  /** Batches taken before this one since epoch 0: epoch * batchesPerEpoch + position. */
  step: number;
}

/** One evaluation batch; `inputs` and `targets` are (rows, seqLen), row-major. */
export interface EvalBatch {
  inputs: Int32Array;
  targets: Int32Array;
  /** Windows in this batch: batchSize, except possibly fewer in the last batch. */
  rows: number;
}

/** Number of whole windows of `seqLen + 1` tokens, starting every `seqLen`, in `tokenCount` tokens. */
export function windowCount(tokenCount: number, seqLen: number): number {
  return Math.max(0, Math.floor((tokenCount - 1) / seqLen));
}

/**
 * Training batches: each epoch visits every window once, in an order shuffled by
 * `(seed, epoch)`, `batchSize` windows per batch. The windows left over after the
 * last full batch are dropped for that epoch (a different few each epoch, because
 * the order changes), so every step sees the same batch shape.
 */
export class TokenBatcher {
  readonly batchSize: number;
  readonly seqLen: number;
  /** Windows in the token stream: floor((tokens - 1) / seqLen). */
  readonly windowCount: number;
  /** Full batches per epoch: floor(windowCount / batchSize); 597 for WikiText-2 train at (32, 128). */
  readonly batchesPerEpoch: number;
  private readonly tokens: Int32Array;
  private seed: number;
  private epoch = 0;
  private position = 0;
  /** Window order of the current epoch; rebuilt from (seed, epoch) rather than saved. */
  private order: Uint32Array;

  /** `tokens` is the whole token stream; `seed` is any integer and fixes every epoch's order. */
  constructor(tokens: Int32Array, options: { batchSize: number; seqLen: number; seed: number }) {
    assertPositiveInteger('batchSize', options.batchSize);
    assertPositiveInteger('seqLen', options.seqLen);
    if (!Number.isInteger(options.seed)) {
      throw new Error(`TokenBatcher seed must be an integer, got ${options.seed}.`);
    }
    this.tokens = tokens;
    this.batchSize = options.batchSize;
    this.seqLen = options.seqLen;
    this.seed = options.seed >>> 0;
    this.windowCount = windowCount(tokens.length, this.seqLen);
    this.batchesPerEpoch = Math.floor(this.windowCount / this.batchSize);
    if (this.batchesPerEpoch === 0) {
      const needed = this.batchSize * this.seqLen + 1;
      throw new Error(`TokenBatcher needs batchSize * seqLen + 1 = ${needed} tokens for one batch, but got ${tokens.length}.`);
    }
    this.order = seededPermutation(this.windowCount, this.seed, this.epoch);
  }

  /** Where the batcher is: save it with a checkpoint and pass it to {@link restore} to continue. */
  state(): BatcherState {
    return { epoch: this.epoch, position: this.position, seed: this.seed };
  }

  /** Continues from a saved {@link state}: the next batches are those the saved batcher would have given. */
  restore(state: BatcherState): void {
    const { epoch, position, seed } = state;
    if (!Number.isInteger(epoch) || epoch < 0 || !Number.isInteger(seed)) {
      throw new Error(`TokenBatcher state ${JSON.stringify(state)} needs a non-negative integer epoch and an integer seed.`);
    }
    if (!Number.isInteger(position) || position < 0 || position >= this.batchesPerEpoch) {
      throw new Error(
        `TokenBatcher state position ${position} is outside 0..${this.batchesPerEpoch - 1}, ` +
          'so it does not belong to this data, batchSize and seqLen.',
      );
    }
    this.epoch = epoch;
    this.position = position;
    this.seed = seed >>> 0;
    this.order = seededPermutation(this.windowCount, this.seed, this.epoch);
  }

  /** The next batch (inputs and targets of batchSize * seqLen ids); after an epoch's last batch, starts the next. */
  next(): TokenBatch {
    const inputs = new Int32Array(this.batchSize * this.seqLen);
    const targets = new Int32Array(this.batchSize * this.seqLen);
    const first = this.position * this.batchSize;
    for (let row = 0; row < this.batchSize; row++) {
      copyWindow(this.tokens, this.order[first + row], this.seqLen, row, inputs, targets);
    }
    const batch = { inputs, targets, epoch: this.epoch, step: this.epoch * this.batchesPerEpoch + this.position };
    this.position++;
    if (this.position === this.batchesPerEpoch) {
      this.epoch++;
      this.position = 0;
      this.order = seededPermutation(this.windowCount, this.seed, this.epoch);
    }
    return batch;
  }
}

/**
 * Evaluation batches: every window once, in stream order, `batchSize` windows at a
 * time. Unlike training, the last batch is kept even if it has fewer rows, so the
 * loss covers the same windows whatever the batch size.
 */
export function* sequentialBatches(tokens: Int32Array, batchSize: number, seqLen: number): Generator<EvalBatch> {
  assertPositiveInteger('batchSize', batchSize);
  assertPositiveInteger('seqLen', seqLen);
  const windows = windowCount(tokens.length, seqLen);
  for (let first = 0; first < windows; first += batchSize) {
    const rows = Math.min(batchSize, windows - first);
    const inputs = new Int32Array(rows * seqLen);
    const targets = new Int32Array(rows * seqLen);
    for (let row = 0; row < rows; row++) copyWindow(tokens, first + row, seqLen, row, inputs, targets);
    yield { inputs, targets, rows };
  }
}

/** Copies window `window` into row `row` of (rows, seqLen) inputs and targets. */
function copyWindow(tokens: Int32Array, window: number, seqLen: number, row: number, inputs: Int32Array, targets: Int32Array): void {
  const start = window * seqLen;
  inputs.set(tokens.subarray(start, start + seqLen), row * seqLen);
  targets.set(tokens.subarray(start + 1, start + seqLen + 1), row * seqLen);
}

/** Throws unless `value` is an integer >= 1. */
function assertPositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`${name} must be a positive integer, got ${value}.`);
  }
}
