/**
 * The WebGPU backend: every kernel of the `Backend` contract as a WGSL compute shader, run through
 * Dawn (Chrome's WebGPU) under Node.
 *
 * The pieces, one per file:
 * - `device.ts`       finds the GPU, asks for its real limits, turns GPU errors into JS errors;
 * - `buffer-pool.ts`  recycles GPU buffers by size class;
 * - `executor.ts`     encodes kernel calls into one compute pass, submits in batches, reads back;
 * - `params.ts`       packs each dispatch's sizes and strides into a uniform struct;
 * - `profiler.ts`     times each kernel on the GPU when asked to (`profile`, `profileReport`);
 * - `kernels/*.ts`    the WGSL, one op family per file, each naming its CPU twin in `cpu/`.
 *
 * This class only checks and unwraps handles, allocates outputs and calls the kernels. Calls return
 * at once with work queued; `read` and `sync` wait. The CPU backend defines every kernel, and
 * test/webgpu-backend.test.ts compares the two.
 *
 * dtypes: float32 and int32 everywhere; float16 as storage when the GPU has `shader-f16` (and refused
 * with a clear error when it has not); float64 is refused (WGSL has no f64).
 */

import { Float16Array } from '@petamoriken/float16';
import { BYTES_PER_ELEMENT, type DType, type TypedArray, toTypedArray } from '../../tensor/dtype.js';
import { contiguousStrides, shapesEqual, shapeToString, sizeOf } from '../../tensor/shape.js';
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
import { BufferPool, type PooledBuffer } from './buffer-pool.js';
import { BufferUsage, GpuDevice } from './device.js';
import { Executor, tooLargeToBind } from './executor.js';
import { GpuBuffer, gpuBufferOf, type LiveBuffer } from './handle.js';
import { runAdamStep } from './kernels/adam.js';
import { runCausalAttention } from './kernels/attention.js';
import { runConv1d, runConv1dGrad } from './kernels/conv1d.js';
import { runCrossEntropy, runCrossEntropyGrad } from './kernels/cross-entropy.js';
import { runCumsum } from './kernels/cumsum.js';
import { type Expression, type Operand, runElementwise } from './kernels/elementwise.js';
import { runGatherRows, runScatterAddRows } from './kernels/embedding.js';
import { runFill } from './kernels/fill.js';
import { runMatmul } from './kernels/matmul.js';
import { runNorm, runNormGrad } from './kernels/norm.js';
import { runRandom } from './kernels/random.js';
import { runReduce } from './kernels/reduce.js';
import { chunkStatesSize, runSelectiveScan, scanBuffers } from './kernels/selective-scan.js';
import { runSelectiveScanGrad } from './kernels/selective-scan-grad.js';
import { pieceStatesSize, runSequentialScan, sequentialFits } from './kernels/selective-scan-sequential.js';
import { runSequentialScanGrad, sequentialGradFits } from './kernels/selective-scan-sequential-grad.js';
import { runSoftmax } from './kernels/softmax.js';
import type { ProfileRow } from './profiler.js';
import { kernelDevice, storageType } from './wgsl.js';

/**
 * Idle bytes the pool keeps for reuse; past this, freed buffers are destroyed (see also `trim`).
 * It must hold a whole step's working set: one seed-recipe step cycles several 0.8 GB logits-sized
 * buffers, and with a 1 GiB cap they were destroyed and re-created every step (measured on the H200:
 * a seed-mamba forward went from 1.9 ms at 1024 tokens to 38 ms at 2048, where the set outgrew 1 GiB).
 * A larger working set raises the cap to its own size (buffer-pool.ts): a forward over 4 × 16,384
 * tokens holds 13 GB of logits, and re-creating them took 620 of its 707 ms on the H200.
 */
const MAX_IDLE_BYTES = 8 * 2 ** 30;
/** Idle read-back staging bytes kept. */
const MAX_IDLE_STAGING_BYTES = 64 << 20;

/** One past the furthest element the view touches (0 when empty), as the CPU backend computes it. */
function extent(view: View): number {
  if (sizeOf(view.shape) === 0) return 0;
  let last = view.offset;
  for (let k = 0; k < view.shape.length; k++) last += ((view.shape[k] as number) - 1) * Math.max(view.strides[k] as number, 0);
  return last + 1;
}

export class WebGpuBackend implements Backend {
  readonly name = 'webgpu';
  private readonly pool: BufferPool;
  private readonly exec: Executor;
  private live = 0;

  private constructor(private readonly gpu: GpuDevice) {
    // The pools and the executor refer to each other; these run only after all three exist.
    const openBatch = () => this.exec.batch;
    const onDestroy = (b: PooledBuffer) => this.exec.forget(b);
    const maxBytes = gpu.limits.maxBufferSize;
    const bindableBytes = gpu.bindableBytes;
    this.pool = new BufferPool(gpu.device, { maxBytes, bindableBytes, maxIdleBytes: MAX_IDLE_BYTES, openBatch, onDestroy });
    const staging = new BufferPool(
      gpu.device,
      { maxBytes, bindableBytes: maxBytes, maxIdleBytes: MAX_IDLE_STAGING_BYTES, openBatch, onDestroy },
      BufferUsage.MAP_READ | BufferUsage.COPY_DST,
      'read-back',
    );
    this.exec = new Executor(gpu, this.pool, staging);
  }

  /** Opens the GPU (see `GpuDevice.open`); throws a plain sentence when there is none. */
  static async create(flags?: string[], options?: { subgroups?: boolean }): Promise<WebGpuBackend> {
    return new WebGpuBackend(await GpuDevice.open(flags, options));
  }

  /** True when the adapter is a software renderer (see GpuDevice.isSoftware). */
  get isSoftware(): boolean {
    return this.gpu.isSoftware;
  }

  /** The GPU in one line (vendor, architecture, device, driver), for the CLI to print. */
  adapterDescription(): string {
    return this.gpu.adapterDescription();
  }

  /** Whether float16 tensors are supported (the GPU has `shader-f16`). */
  get supportsFloat16(): boolean {
    return this.gpu.features.f16;
  }

  /** The largest buffer a kernel binds whole; matmul outputs may be larger (see executor.ts). */
  get bindableBytes(): number {
    return this.gpu.bindableBytes;
  }

  /** Whether kernels can be timed on this GPU (`profile`): it has the `timestamp-query` feature. */
  get canProfile(): boolean {
    return this.gpu.features.timestampQuery;
  }

  /**
   * Turns the per-kernel GPU time profile on or off (profiler.ts); off by default, and free when off.
   * On, every kernel runs in a compute pass of its own, which costs time: profile, then time without.
   */
  profile(on: boolean): void {
    this.exec.profile(on);
  }

  /** GPU time per kernel since the last report, most first; waits for the queued work, then resets. */
  profileReport(): Promise<ProfileRow[]> {
    return this.exec.profileReport();
  }

  /** Gives idle pooled buffers back to the driver. */
  trim(): void {
    this.pool.trim();
  }

  /** Bytes of GPU memory the pool holds, live and idle. */
  gpuBytes(): number {
    return this.pool.totalBytes();
  }

  /** Releases the GPU so that Node can exit; the backend is unusable afterwards. */
  destroy(): void {
    this.gpu.destroy();
  }

  // ---- memory ----

  full(size: number, value: number, dtype: DType): BufferHandle {
    const out = this.alloc('full', size, dtype);
    runFill(this.exec, 'full', out.pooled, size, value, dtype);
    return out;
  }

  upload(data: TypedArray, dtype: DType): BufferHandle {
    const values = toTypedArray(data, dtype);
    const out = this.alloc('upload', values.length, dtype);
    this.exec.writeBuffer(out.pooled, new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
    return out;
  }

  async read(buffer: BufferHandle, dtype: DType, offset: number, size: number): Promise<TypedArray> {
    const b = gpuBufferOf(buffer, 'read', offset + size, dtype);
    const bytesPer = BYTES_PER_ELEMENT[dtype];
    const bytes = await this.exec.read('read', b.pooled, offset * bytesPer, size * bytesPer);
    if (dtype === 'int32') return new Int32Array(bytes);
    return dtype === 'float16' ? new Float16Array(bytes) : new Float32Array(bytes);
  }

  free(buffer: BufferHandle): void {
    const b = gpuBufferOf(buffer, 'free');
    this.pool.release(b.pooled);
    (b as GpuBuffer).pooled = null;
    this.live -= b.bytes;
  }

  liveBytes(): number {
    return this.live;
  }

  sync(): Promise<void> {
    return this.exec.sync();
  }

  // ---- element-wise ----

  copy(x: View, dtype: DType): BufferHandle {
    return this.elementwise('copy', { kind: 'copy' }, [x], dtype);
  }

  assign(dst: View, src: View): void {
    const target = this.operand(dst, 'assign');
    if (dst.buffer === src.buffer) {
      // A buffer cannot be bound for reading and writing in one dispatch (and the views may overlap):
      // copy the source out first, as the CPU backend does.
      const clone = this.copy(src, dst.dtype);
      const contiguous: View = { buffer: clone, shape: src.shape, dtype: dst.dtype, offset: 0, strides: contiguousStrides(src.shape) };
      runElementwise(this.exec, 'assign', { kind: 'copy' }, dst.shape, [this.operand(contiguous, 'assign')], target, true);
      this.free(clone);
      return;
    }
    runElementwise(this.exec, 'assign', { kind: 'copy' }, dst.shape, [this.operand(src, 'assign')], target, true);
  }

  unary(op: UnaryOp, x: View): BufferHandle {
    return this.elementwise(op, { kind: 'unary', op }, [x], x.dtype);
  }

  binary(op: BinaryOp, a: View, b: View): BufferHandle {
    return this.elementwise(op, { kind: 'binary', op }, [a, b], a.dtype);
  }

  where(cond: View, a: View, b: View): BufferHandle {
    return this.elementwise('where', { kind: 'where' }, [cond, a, b], a.dtype);
  }

  random(dist: RandomDist, size: number, seed: number, dtype: DType): BufferHandle {
    if (dtype === 'int32') throw new Error('random: dtype must be a float type, not int32.');
    const out = this.alloc('random', size, dtype);
    runRandom(this.exec, out.pooled, dist, size, seed, dtype);
    return out;
  }

  adamStep(param: BufferHandle, grad: BufferHandle, m: BufferHandle, v: BufferHandle, size: number, dtype: DType, s: AdamScalars): void {
    const pooled = (b: BufferHandle) => gpuBufferOf(b, 'adamStep', size, dtype).pooled;
    runAdamStep(this.exec, { param: pooled(param), grad: pooled(grad), m: pooled(m), v: pooled(v) }, size, dtype, s);
  }

  // ---- reductions and scans ----

  reduce(op: ReduceOp, x: BufferHandle, dtype: DType, outer: number, len: number, inner: number): BufferHandle {
    if (op === 'argmax' && len === 0 && outer * inner > 0) throw new Error('reduce: argmax over an empty axis is undefined.');
    const input = gpuBufferOf(x, 'reduce', outer * len * inner, dtype);
    const outDtype: DType = op === 'argmax' ? 'int32' : dtype;
    const out = this.alloc(`reduce ${op}`, outer * inner, outDtype);
    if (len === 0) {
      // An empty axis: the sum is 0, the max −∞ and the min +∞, as on the CPU.
      runFill(this.exec, `reduce ${op}`, out.pooled, outer * inner, op === 'sum' ? 0 : op === 'max' ? -Infinity : Infinity, outDtype);
    } else {
      runReduce(this.exec, this.pool, op, input.pooled, dtype, outer, len, inner, out.pooled);
    }
    return out;
  }

  cumsum(x: BufferHandle, dtype: DType, rows: number, cols: number, reverse: boolean): BufferHandle {
    const input = gpuBufferOf(x, 'cumsum', rows * cols, dtype);
    const out = this.alloc('cumsum', rows * cols, dtype);
    runCumsum(this.exec, input.pooled, dtype, rows, cols, reverse, out.pooled);
    return out;
  }

  softmax(x: BufferHandle, dtype: DType, rows: number, cols: number, log: boolean): BufferHandle {
    const op = log ? 'logSoftmax' : 'softmax';
    const input = gpuBufferOf(x, op, rows * cols, dtype);
    const out = this.alloc(op, rows * cols, dtype);
    runSoftmax(this.exec, op, input.pooled, dtype, rows, cols, log, out.pooled);
    return out;
  }

  // ---- linear algebra ----

  matmul(a: View, b: View, bias?: View): BufferHandle {
    if (a.shape.length !== 3 || b.shape.length !== 3 || a.shape[0] !== b.shape[0] || a.shape[2] !== b.shape[1]) {
      throw new Error(`matmul: shapes [${a.shape.join(', ')}] and [${b.shape.join(', ')}] are not (batch, M, K) and (batch, K, N).`);
    }
    const [batch, M] = a.shape as [number, number, number];
    const N = b.shape[2] as number;
    if (bias && (bias.shape.length !== 1 || bias.shape[0] !== N || bias.dtype !== a.dtype)) {
      throw new Error(`matmul: the bias must be (${N}) of ${a.dtype}, got ${shapeToString(bias.shape)} of ${bias.dtype}.`);
    }
    const [A, B, C] = [this.operand(a, 'matmul'), this.operand(b, 'matmul'), bias ? this.operand(bias, 'matmul') : null];
    const out = this.alloc('matmul', batch * M * N, a.dtype, batch === 1); // 2-D products are written in windows
    const device = { pool: this.pool, bindable: this.gpu.bindableBytes, offsetAlign: this.gpu.limits.minStorageBufferOffsetAlignment };
    runMatmul(this.exec, A, B, C, a.shape as [number, number, number], N, out.pooled, a.dtype, device);
    return out;
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
    const x = gpuBufferOf(logits, op, rows * cols);
    const t = gpuBufferOf(targets, op, rows, 'int32');
    const loss = this.alloc(op, rows, x.dtype);
    const lse = this.alloc(op, rows, 'float32'); // computeDtype of every GPU float dtype
    runCrossEntropy(this.exec, x.pooled, x.dtype, t.pooled, rows, cols, ignoreIndex, { loss: loss.pooled, lse: lse.pooled });
    return { loss, lse };
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
    const x = gpuBufferOf(logits, op, rows * cols);
    const l = gpuBufferOf(lse, op, rows, 'float32');
    const t = gpuBufferOf(targets, op, rows, 'int32');
    const g = gpuBufferOf(gradLoss, op, rows);
    const out = this.alloc(op, rows * cols, x.dtype);
    runCrossEntropyGrad(this.exec, x.pooled, x.dtype, l.pooled, t.pooled, g.pooled, g.dtype, rows, cols, ignoreIndex, out.pooled);
    return out;
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
    const xs = gpuBufferOf(x, op, rows * dim);
    const param = (h: BufferHandle | null) => h && gpuBufferOf(h, op, dim, xs.dtype).pooled;
    const y = this.alloc(op, rows * dim, xs.dtype);
    const mean = kind === 'layer' ? this.alloc(op, rows, 'float32') : null; // computeDtype of every GPU float dtype
    const rstd = this.alloc(op, rows, 'float32');
    const out = { y: y.pooled, mean: mean?.pooled ?? null, rstd: rstd.pooled };
    runNorm(this.exec, kind, xs.pooled, xs.dtype, param(weight), param(bias), rows, dim, eps, out);
    return { y, mean, rstd };
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
    const xs = gpuBufferOf(x, op, rows * dim);
    const w = weight && gpuBufferOf(weight, op, dim, xs.dtype).pooled;
    const m = mean && gpuBufferOf(mean, op, rows, 'float32').pooled;
    const r = gpuBufferOf(rstd, op, rows, 'float32');
    const g = gpuBufferOf(grad, op, rows * dim, xs.dtype);
    const dx = this.alloc(op, rows * dim, xs.dtype);
    const gxhat = withGxhat ? this.alloc(op, rows * dim, xs.dtype) : null;
    runNormGrad(this.exec, kind, xs.pooled, xs.dtype, w, m, r.pooled, g.pooled, rows, dim, { dx: dx.pooled, gxhat: gxhat?.pooled ?? null });
    return { dx, gxhat };
  }

  gatherRows(weight: BufferHandle, ids: BufferHandle, n: number, vocab: number, dim: number): BufferHandle {
    const op = 'gatherRows';
    const w = gpuBufferOf(weight, op, vocab * dim);
    const i = gpuBufferOf(ids, op, n, 'int32');
    const out = this.alloc(op, n * dim, w.dtype);
    runGatherRows(this.exec, w.pooled, w.dtype, i.pooled, n, vocab, dim, out.pooled);
    return out;
  }

  scatterAddRows(grad: BufferHandle, ids: BufferHandle, n: number, vocab: number, dim: number): BufferHandle {
    const op = 'scatterAddRows';
    const g = gpuBufferOf(grad, op, n * dim);
    const i = gpuBufferOf(ids, op, n, 'int32');
    const out = this.alloc(op, vocab * dim, g.dtype);
    runScatterAddRows(this.exec, this.pool, g.pooled, g.dtype, i.pooled, n, vocab, dim, out.pooled);
    return out;
  }

  conv1d(x: BufferHandle, w: BufferHandle, bias: BufferHandle, batch: number, channels: number, len: number, K: number): BufferHandle {
    const op = 'conv1d';
    const xs = gpuBufferOf(x, op, batch * channels * len);
    const ws = gpuBufferOf(w, op, channels * K);
    const bs = gpuBufferOf(bias, op, channels);
    const out = this.alloc(op, batch * channels * len, xs.dtype);
    runConv1d(this.exec, [xs, ws, bs], { batch, channels, len, K }, out.pooled);
    return out;
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
    const gys = gpuBufferOf(gy, op, size);
    const xs = gpuBufferOf(x, op, size);
    const ws = gpuBufferOf(w, op, channels * K);
    const gx = this.alloc(op, size, xs.dtype);
    const gw = this.alloc(op, channels * K, ws.dtype);
    runConv1dGrad(this.exec, [gys, xs, ws], { batch, channels, len, K }, gx, gw);
    return { gx, gw };
  }

  causalAttention(q: View, k: View, v: View, scale: number): { out: BufferHandle; lse: BufferHandle } {
    const op = 'causalAttention';
    const [batch, heads, lq, dh] = q.shape as [number, number, number, number];
    const lk = k.shape[2] as number;
    const kv = [batch, heads, lk, dh];
    if (!shapesEqual(k.shape, kv) || !shapesEqual(v.shape, kv) || lq > lk || dh === 0 || k.dtype !== q.dtype || v.dtype !== q.dtype) {
      const [qs, ks, vs] = [q, k, v].map((x) => shapeToString(x.shape));
      throw new Error(`${op}: q ${qs}, k ${ks}, v ${vs} are not (batch, heads, Lq ≤ Lk, dh ≥ 1) of one dtype.`);
    }
    const out = this.alloc(op, batch * heads * lq * dh, q.dtype);
    const lse = this.alloc(op, batch * heads * lq, q.dtype);
    const inputs = [this.operand(q, op), this.operand(k, op), this.operand(v, op)] as const;
    const sizes = { batch, heads, lq, lk, dh };
    runCausalAttention(this.exec, inputs, sizes, scale, kernelDevice(this.gpu), { out: out.pooled, lse: lse.pooled });
    return { out, lse };
  }

  // ---- selective scan ----

  selectiveScan(x: ScanInputs, sizes: ScanSizes, save = false): { y: BufferHandle; lastState: BufferHandle; saved?: BufferHandle } {
    const op = 'selectiveScan';
    const { buffers, dtype } = scanBuffers(x, sizes, op);
    const { batch, dim, len, N } = sizes;
    const y = this.alloc(op, batch * dim * len, dtype);
    const lastState = this.alloc(op, batch * dim * N, dtype);
    const sequential = this.scansSequentially(sizes);
    // The saved states are the backward's, so always f32 (see kernels/selective-scan.ts).
    const saved = save ? this.alloc(op, this.savedStatesSize(sizes), 'float32') : null;
    const device = kernelDevice(this.gpu);
    if (sequential) {
      runSequentialScan(this.exec, buffers, dtype, sizes, device, {
        y: y.pooled,
        lastState: lastState.pooled,
        pieceStates: saved?.pooled ?? null,
      });
    } else {
      const out = { y: y.pooled, lastState: lastState.pooled, chunkStates: saved?.pooled ?? null };
      runSelectiveScan(this.exec, this.pool, buffers, dtype, sizes, device, out);
    }
    return saved ? { y, lastState, saved } : { y, lastState };
  }

  selectiveScanGrad(
    x: ScanInputs,
    dy: BufferHandle,
    sizes: ScanSizes,
    saved?: BufferHandle,
  ): { du: BufferHandle; ddelta: BufferHandle; dA: BufferHandle; dB: BufferHandle; dC: BufferHandle } {
    const op = 'selectiveScanGrad';
    const { buffers, dtype } = scanBuffers(x, sizes, op);
    const { batch, dim, len, N } = sizes;
    const g = gpuBufferOf(dy, op, batch * dim * len, dtype);
    const states = saved ? gpuBufferOf(saved, op, this.savedStatesSize(sizes), 'float32').pooled : null;
    const out = {
      du: this.alloc(op, batch * dim * len, dtype),
      ddelta: this.alloc(op, batch * dim * len, dtype),
      dA: this.alloc(op, dim * N, dtype),
      dB: this.alloc(op, batch * N * len, dtype),
      dC: this.alloc(op, batch * N * len, dtype),
    };
    const grads = { du: out.du.pooled, ddelta: out.ddelta.pooled, dA: out.dA.pooled, dB: out.dB.pooled, dC: out.dC.pooled };
    const device = kernelDevice(this.gpu);
    if (this.scansSequentially(sizes)) runSequentialScanGrad(this.exec, this.pool, buffers, g.pooled, dtype, sizes, device, states, grads);
    else runSelectiveScanGrad(this.exec, this.pool, buffers, g.pooled, dtype, sizes, device, states, grads);
    return out;
  }

  /**
   * Whether the scan of these sizes runs as the sequential pair (forward and backward walking each
   * row in order) rather than the chunked work-efficient one: where the rows fill the GPU and both
   * kernels fit its workgroup memory. One answer for both passes, as each backward reads only its
   * own forward's saved states.
   */
  private scansSequentially(sizes: ScanSizes): boolean {
    const device = kernelDevice(this.gpu);
    return sequentialFits(sizes, device) && sequentialGradFits(sizes.N, device);
  }

  /** f32s the forward saves for the backward: a state per piece (sequential) or per chunk (chunked). */
  private savedStatesSize(sizes: ScanSizes): number {
    return this.scansSequentially(sizes) ? pieceStatesSize(sizes) : chunkStatesSize(sizes);
  }

  // ---- helpers ----

  /**
   * A new buffer for `size` elements of `dtype`, counted as live. Only a kernel that writes its output
   * a window at a time (`windowed`) may get one larger than a binding; any other is refused before
   * anything is allocated.
   */
  private alloc(op: string, size: number, dtype: DType, windowed = false): LiveBuffer {
    if (dtype === 'float16' && !this.gpu.features.f16) {
      throw new Error(`${op}: float16 needs a GPU with the 'shader-f16' feature, which this one lacks; use float32.`);
    }
    storageType(dtype); // refuses float64 with a sentence
    const bytes = size * BYTES_PER_ELEMENT[dtype];
    if (!windowed && bytes > this.gpu.bindableBytes) throw new Error(tooLargeToBind(op, 'its output', bytes, this.gpu.bindableBytes));
    const handle = new GpuBuffer(this.pool.acquire(op, bytes), dtype, size, bytes);
    this.live += bytes;
    return handle as LiveBuffer;
  }

  /** A view as a kernel operand, checked to be live, of its dtype, within its buffer and bindable. */
  private operand(view: View, op: string): Operand {
    // Kernels index from the offset upwards, unchecked (device.ts: robustness is off), so the extent
    // below must be the whole range a view reaches.
    if (view.offset < 0 || view.strides.some((s) => s < 0)) {
      throw new Error(
        `${op}: a view with offset ${view.offset} and strides ${shapeToString(view.strides)} reaches below its buffer's start.`,
      );
    }
    const b = gpuBufferOf(view.buffer, op, extent(view), view.dtype);
    if (b.bytes > this.gpu.bindableBytes) throw new Error(tooLargeToBind(op, 'an operand', b.bytes, this.gpu.bindableBytes));
    return { buffer: b.pooled, dtype: view.dtype, strides: view.strides, offset: view.offset };
  }

  /** A fresh contiguous output of `dtype` holding `expr` over the views (all of the first's shape). */
  private elementwise(op: string, expr: Expression, views: readonly View[], dtype: DType): BufferHandle {
    const shape = (views[0] as View).shape;
    const inputs = views.map((v) => this.operand(v, op));
    const out = this.alloc(op, sizeOf(shape), dtype);
    const target: Operand = { buffer: out.pooled, dtype, strides: contiguousStrides(shape), offset: 0 };
    runElementwise(this.exec, op, expr, shape, inputs, target, false);
    return out;
  }
}

registerBackend('webgpu', () => WebGpuBackend.create());
