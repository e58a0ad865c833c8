/**
 * The CPU reference backend: plain TypeScript over typed arrays, single-threaded and synchronous.
 *
 * It is the definition of every kernel in the `Backend` contract — other backends are tested against
 * it — so it favours exactness (double accumulation, one rounding per result) and checks its inputs:
 * a freed buffer, a buffer of the wrong dtype or one too small for the requested size is an error
 * here rather than silent garbage. The kernels live one family per file; this class unwraps handles,
 * checks them, and wraps results, keeping count of live bytes.
 */
import { BYTES_PER_ELEMENT, computeDtype, type DType, dtypeOf, type TypedArray } from '../../tensor/dtype.js';
import { sizeOf } from '../../tensor/shape.js';
import type {
  AdamScalars,
  Backend,
  BinaryOp,
  BufferHandle,
  NormKind,
  RandomDist,
  ReduceOp,
  ScanInputs,
  ScanSizes,
  UnaryOp,
  View,
} from '../backend.js';
import { registerBackend } from '../registry.js';
import { adamStep } from './adam.js';
import { causalAttention } from './attention.js';
import { arrayOf, type CpuBuffer, converted, resultArray, stored } from './buffer.js';
import { conv1d, conv1dGrad } from './conv1d.js';
import { assign, binary, copy, random, unary, where } from './elementwise.js';
import { gatherRows, scatterAddRows } from './embedding.js';
import { crossEntropy, crossEntropyGrad } from './loss.js';
import { matmul } from './matmul.js';
import { norm, normGrad } from './norm.js';
import { cumsum, reduce, softmax } from './reduce.js';
import { type ScanArrays, selectiveScanBackward, selectiveScanForward } from './selective-scan.js';

/** One past the furthest buffer element the view touches (0 for an empty view): its minimum length. */
function extent(view: View): number {
  if (sizeOf(view.shape) === 0) return 0;
  let last = view.offset;
  for (let k = 0; k < view.shape.length; k++) last += (view.shape[k] - 1) * Math.max(view.strides[k], 0);
  return last + 1;
}

export class CpuBackend implements Backend {
  readonly name = 'cpu';
  #liveBytes = 0;

  /** Wraps a kernel's result (which the caller now owns) and counts its bytes as live. */
  #wrap(data: TypedArray): BufferHandle {
    this.#liveBytes += data.length * BYTES_PER_ELEMENT[dtypeOf(data)];
    const buffer: CpuBuffer = { data };
    return buffer;
  }

  /** The elements behind a view, checked to be live, of the view's dtype and large enough. */
  #viewData(view: View, op: string): TypedArray {
    return arrayOf(view.buffer, op, extent(view), view.dtype);
  }

  // ---- memory ----

  full(size: number, value: number, dtype: DType): BufferHandle {
    return this.#wrap(stored(resultArray(dtype, size).fill(value), dtype));
  }

  upload(data: TypedArray, dtype: DType): BufferHandle {
    return this.#wrap(converted(data, dtype));
  }

  async read(buffer: BufferHandle, dtype: DType, offset: number, size: number): Promise<TypedArray> {
    return arrayOf(buffer, 'read', offset + size, dtype).slice(offset, offset + size);
  }

  free(buffer: BufferHandle): void {
    const data = arrayOf(buffer, 'free');
    this.#liveBytes -= data.length * BYTES_PER_ELEMENT[dtypeOf(data)];
    (buffer as CpuBuffer).data = null; // drops the array for the garbage collector; later uses throw
  }

  liveBytes(): number {
    return this.#liveBytes;
  }

  async sync(): Promise<void> {
    // Every kernel has already finished when its call returns.
  }

  // ---- element-wise ----

  copy(x: View, dtype: DType): BufferHandle {
    return this.#wrap(copy(x, this.#viewData(x, 'copy'), dtype));
  }

  assign(dst: View, src: View): void {
    assign(dst, this.#viewData(dst, 'assign'), src, this.#viewData(src, 'assign'));
  }

  unary(op: UnaryOp, x: View): BufferHandle {
    return this.#wrap(unary(op, x, this.#viewData(x, op)));
  }

  binary(op: BinaryOp, a: View, b: View): BufferHandle {
    return this.#wrap(binary(op, a, this.#viewData(a, op), b, this.#viewData(b, op)));
  }

  where(cond: View, a: View, b: View): BufferHandle {
    const data = (v: View) => this.#viewData(v, 'where');
    return this.#wrap(where(cond, data(cond), a, data(a), b, data(b)));
  }

  random(dist: RandomDist, size: number, seed: number, dtype: DType): BufferHandle {
    return this.#wrap(random(dist, size, seed, dtype));
  }

  adamStep(param: BufferHandle, grad: BufferHandle, m: BufferHandle, v: BufferHandle, size: number, dtype: DType, s: AdamScalars): void {
    const data = (b: BufferHandle) => arrayOf(b, 'adamStep', size, dtype);
    adamStep(data(param), data(grad), data(m), data(v), size, s);
  }

  // ---- reductions and scans ----

  reduce(op: ReduceOp, x: BufferHandle, dtype: DType, outer: number, len: number, inner: number): BufferHandle {
    return this.#wrap(reduce(op, arrayOf(x, 'reduce', outer * len * inner, dtype), dtype, outer, len, inner));
  }

  cumsum(x: BufferHandle, dtype: DType, rows: number, cols: number, reverse: boolean): BufferHandle {
    return this.#wrap(cumsum(arrayOf(x, 'cumsum', rows * cols, dtype), dtype, rows, cols, reverse));
  }

  softmax(x: BufferHandle, dtype: DType, rows: number, cols: number, log: boolean): BufferHandle {
    return this.#wrap(softmax(arrayOf(x, 'softmax', rows * cols, dtype), dtype, rows, cols, log));
  }

  // ---- linear algebra ----

  matmul(a: View, b: View, bias?: View): BufferHandle {
    const withBias = bias && { view: bias, data: this.#viewData(bias, 'matmul') };
    return this.#wrap(matmul(a, this.#viewData(a, 'matmul'), b, this.#viewData(b, 'matmul'), withBias));
  }

  // ---- neural-network kernels ----

  crossEntropy(
    logits: BufferHandle,
    targets: BufferHandle,
    rows: number,
    cols: number,
    ignoreIndex: number,
  ): { loss: BufferHandle; lse: BufferHandle } {
    const op = 'crossEntropy';
    const { loss, lse } = crossEntropy(arrayOf(logits, op, rows * cols), arrayOf(targets, op, rows, 'int32'), rows, cols, ignoreIndex);
    return { loss: this.#wrap(loss), lse: this.#wrap(lse) };
  }

  crossEntropyGrad(
    logits: BufferHandle,
    lse: BufferHandle,
    targets: BufferHandle,
    gradLoss: BufferHandle,
    rows: number,
    cols: number,
    ignoreIndex: number,
  ): BufferHandle {
    const op = 'crossEntropyGrad';
    const x = arrayOf(logits, op, rows * cols);
    return this.#wrap(
      crossEntropyGrad(
        x,
        arrayOf(lse, op, rows, computeDtype(dtypeOf(x))),
        arrayOf(targets, op, rows, 'int32'),
        arrayOf(gradLoss, op, rows),
        rows,
        cols,
        ignoreIndex,
      ),
    );
  }

  norm(
    kind: NormKind,
    x: BufferHandle,
    weight: BufferHandle | null,
    bias: BufferHandle | null,
    rows: number,
    dim: number,
    eps: number,
  ): { y: BufferHandle; mean: BufferHandle | null; rstd: BufferHandle } {
    const op = `${kind}Norm`;
    const xs = arrayOf(x, op, rows * dim);
    const param = (h: BufferHandle | null) => h && arrayOf(h, op, dim, dtypeOf(xs));
    const { y, mean, rstd } = norm(kind, xs, param(weight), param(bias), rows, dim, eps);
    return { y: this.#wrap(y), mean: mean && this.#wrap(mean), rstd: this.#wrap(rstd) };
  }

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
  ): { dx: BufferHandle; gxhat: BufferHandle | null } {
    const op = `${kind}NormGrad`;
    if ((kind === 'layer') !== (mean !== null)) throw new Error(`${op}: 'layer' needs the forward's mean, and 'rms' has none.`);
    const xs = arrayOf(x, op, rows * dim);
    const dtype = dtypeOf(xs);
    const stats = (h: BufferHandle) => arrayOf(h, op, rows, computeDtype(dtype));
    const w = weight && arrayOf(weight, op, dim, dtype);
    const g = arrayOf(grad, op, rows * dim, dtype);
    const { dx, gxhat } = normGrad(kind, xs, w, mean && stats(mean), stats(rstd), g, rows, dim, withGxhat);
    return { dx: this.#wrap(dx), gxhat: gxhat && this.#wrap(gxhat) };
  }

  gatherRows(weight: BufferHandle, ids: BufferHandle, n: number, vocab: number, dim: number): BufferHandle {
    const op = 'gatherRows';
    return this.#wrap(gatherRows(arrayOf(weight, op, vocab * dim), arrayOf(ids, op, n, 'int32'), n, vocab, dim));
  }

  scatterAddRows(grad: BufferHandle, ids: BufferHandle, n: number, vocab: number, dim: number): BufferHandle {
    const op = 'scatterAddRows';
    return this.#wrap(scatterAddRows(arrayOf(grad, op, n * dim), arrayOf(ids, op, n, 'int32'), n, vocab, dim));
  }

  conv1d(x: BufferHandle, w: BufferHandle, bias: BufferHandle, batch: number, channels: number, len: number, K: number): BufferHandle {
    const op = 'conv1d';
    const xs = arrayOf(x, op, batch * channels * len);
    return this.#wrap(conv1d(xs, arrayOf(w, op, channels * K), arrayOf(bias, op, channels), batch, channels, len, K));
  }

  conv1dGrad(
    gy: BufferHandle,
    x: BufferHandle,
    w: BufferHandle,
    batch: number,
    channels: number,
    len: number,
    K: number,
  ): { gx: BufferHandle; gw: BufferHandle } {
    const op = 'conv1dGrad';
    const size = batch * channels * len;
    const { gx, gw } = conv1dGrad(arrayOf(gy, op, size), arrayOf(x, op, size), arrayOf(w, op, channels * K), batch, channels, len, K);
    return { gx: this.#wrap(gx), gw: this.#wrap(gw) };
  }

  causalAttention(q: View, k: View, v: View, scale: number): { out: BufferHandle; lse: BufferHandle } {
    const data = (x: View) => this.#viewData(x, 'causalAttention');
    const { out, lse } = causalAttention(q, data(q), k, data(k), v, data(v), scale);
    return { out: this.#wrap(out), lse: this.#wrap(lse) };
  }

  // ---- selective scan ----

  /** The scan's input arrays, each checked to be live and of its size. */
  #scanArrays(x: ScanInputs, { batch, dim, len, N }: ScanSizes, op: string): ScanArrays {
    const rowsByLen = batch * dim * len;
    const statesByLen = batch * N * len;
    return {
      u: arrayOf(x.u, op, rowsByLen),
      delta: arrayOf(x.delta, op, rowsByLen),
      A: arrayOf(x.A, op, dim * N),
      B: arrayOf(x.B, op, statesByLen),
      C: arrayOf(x.C, op, statesByLen),
    };
  }

  selectiveScan(x: ScanInputs, sizes: ScanSizes): { y: BufferHandle; lastState: BufferHandle } {
    const { y, lastState } = selectiveScanForward(this.#scanArrays(x, sizes, 'selectiveScan'), sizes);
    return { y: this.#wrap(y), lastState: this.#wrap(lastState) };
  }

  selectiveScanGrad(
    x: ScanInputs,
    dy: BufferHandle,
    sizes: ScanSizes,
  ): { du: BufferHandle; ddelta: BufferHandle; dA: BufferHandle; dB: BufferHandle; dC: BufferHandle } {
    const op = 'selectiveScanGrad';
    const dyData = arrayOf(dy, op, sizes.batch * sizes.dim * sizes.len);
    const g = selectiveScanBackward(this.#scanArrays(x, sizes, op), dyData, sizes);
    return { du: this.#wrap(g.du), ddelta: this.#wrap(g.ddelta), dA: this.#wrap(g.dA), dB: this.#wrap(g.dB), dC: this.#wrap(g.dC) };
  }
}

registerBackend('cpu', () => new CpuBackend());
