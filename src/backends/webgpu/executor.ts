/**
 * Turning kernel calls into GPU work, cheaply.
 *
 * The cost of a GPU op from JS is mostly fixed overhead, not arithmetic: measured on an H200 through
 * Dawn, a dispatch costs ~3.7 µs when many share one compute pass, ~11 µs with a pass each, and ~21 µs
 * with a queue submit each. So the executor keeps **one command encoder with one open compute pass**,
 * encodes every kernel call into it as a dispatch, and submits only when someone waits for a result
 * (`read`, `sync`) or after `MAX_DISPATCHES` dispatches, so the GPU never idles for long behind a JS
 * loop that never reads.
 *
 * Parameters (sizes, strides, offsets) go in a uniform struct per dispatch. They are packed on the CPU
 * into one staging array per batch, each dispatch taking a slice at the device's uniform-offset
 * alignment (256 bytes), and the whole used range is uploaded with ONE `writeBuffer` just before the
 * submit; each dispatch points at its slice with a *dynamic offset*. Why not a small buffer per
 * dispatch written with `queue.writeBuffer`? Because `writeBuffer` runs at submit time *before* all
 * commands of that submit, so a buffer rewritten within one batch would feed its last value to every
 * dispatch: we would need one buffer and one `writeBuffer` call per dispatch. The batch's slices are
 * never rewritten within a batch, and the next batch's upload is queued after this batch's commands,
 * so one uniform buffer serves every batch.
 *
 * Dynamic offsets also make bind groups reusable: a bind group names only buffers (the uniform slice
 * comes with `setBindGroup`), and since the pool recycles buffers, a training loop binds the same few
 * combinations step after step. Creating a bind group is the most expensive part of a dispatch in
 * Dawn (measured ~50–100 µs on lavapipe), so they are cached by (layout, buffers), least recently
 * used dropped first, and dropped too when one of their buffers is destroyed.
 *
 * Pipelines are compiled once per kernel key and cached; each kernel names its bindings, so bind
 * group layouts are explicit (never `'auto'`, which silently drops bindings a shader does not use).
 *
 * `profile(true)` times every dispatch on the GPU (profiler.ts): each then gets a pass of its own with
 * timestamps at its beginning and end. Off, the default, dispatches share the pass as above.
 */
import type { BufferPool, PooledBuffer } from './buffer-pool.js';
import { BufferUsage, COMPUTE_STAGE, type GpuDevice, MAP_READ_MODE } from './device.js';
import type { ParamStruct } from './params.js';
import { NO_TIMESTAMP_QUERY, type ProfileRow, Profiler } from './profiler.js';

/** How a kernel uses each storage buffer it binds. */
export type Access = 'read' | 'write';

/** A compute kernel: WGSL with entry point `main`, its storage bindings, and its parameter struct. */
export interface Kernel<P extends string = string> {
  /** Identifies the WGSL: two kernels with equal keys must have equal sources. */
  readonly key: string;
  /** Storage bindings 0 … n−1 in order; the parameter struct, if any, is binding n. */
  readonly bindings: readonly Access[];
  readonly params: ParamStruct<P> | null;
  /** Generates the WGSL; called only the first time the key is seen. */
  readonly source: () => string;
}

/**
 * Part of a buffer bound to a kernel: `size` bytes from byte `offset` (a multiple of the device's
 * minStorageBufferOffsetAlignment). Kernels see the window as a whole array starting at index 0. This
 * is how a matmul writes an output larger than one binding may be: a window of rows at a time.
 */
export interface BufferWindow {
  readonly pooled: PooledBuffer;
  readonly offset: number;
  readonly size: number;
}

/** What a storage binding takes: a whole buffer, or a window of one. */
export type Binding = PooledBuffer | BufferWindow;

const isWindow = (b: Binding): b is BufferWindow => 'pooled' in b;
const pooledOf = (b: Binding): PooledBuffer => (isWindow(b) ? b.pooled : b);

/** The sentence for a tensor of `bytes` that a kernel would have to bind whole but cannot. */
export const tooLargeToBind = (op: string, what: string, bytes: number, bindable: number): string =>
  `${op}: ${what} of ${(bytes / 2 ** 30).toFixed(2)} GiB is more than this GPU can bind to one kernel (${bindable} bytes); ` +
  'only matmul produces tensors that large (to be read back).';

/** Workgroups to launch: a 1-D count (folded into 2-D when it is too large), or an explicit 3-D grid. */
export type Grid = number | readonly [number, number, number];

/** Dispatches per submit: enough to amortise a submit (~21 µs), few enough that the GPU starts early. */
const MAX_DISPATCHES = 128;
/** Bind groups kept for reuse; the least recently used go first. */
const MAX_BIND_GROUPS = 4096;

interface Pipeline {
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
  /** The layout's binding signature, e.g. "read,read,write+params". */
  readonly signature: string;
}

export class Executor {
  /** Increases with every submit; a buffer whose `lastBatch` equals it is used by unsubmitted work. */
  batch = 0;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private dispatches = 0;
  private readonly pipelines = new Map<string, Pipeline>();
  private readonly layouts = new Map<string, GPUBindGroupLayout>();
  /** Bind groups by layout signature, parameter size and buffer ids; a Map iterates oldest first. */
  private readonly bindGroups = new Map<string, { group: GPUBindGroup; ids: number[] }>();
  /** The cache keys that use each buffer, by buffer id, to drop them when it is destroyed. */
  private readonly keysByBuffer = new Map<number, Set<string>>();
  /** Whether dispatches are timed; the profiler is made by the first `profile(true)` and kept for its rows. */
  private profiling = false;
  private profiler: Profiler | null = null;

  // The per-batch uniform slices: a CPU staging array and the GPU buffer it is uploaded to.
  private readonly uniformAlign: number;
  private readonly uniformCapacity: number;
  private readonly uniformStaging: ArrayBuffer;
  private readonly uniformView: DataView;
  private readonly uniformBuffer: GPUBuffer;
  private uniformUsed = 0;

  constructor(
    private readonly gpu: GpuDevice,
    private readonly pool: BufferPool,
    private readonly staging: BufferPool,
  ) {
    this.uniformAlign = Math.max(256, gpu.limits.minUniformBufferOffsetAlignment);
    this.uniformCapacity = 2 * MAX_DISPATCHES * this.uniformAlign;
    this.uniformStaging = new ArrayBuffer(this.uniformCapacity);
    this.uniformView = new DataView(this.uniformStaging);
    this.uniformBuffer = gpu.device.createBuffer({
      size: this.uniformCapacity,
      usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST,
      label: 'kernel parameters',
    });
  }

  /**
   * Encodes one kernel launch. `op` labels the GPU objects so that an error names it; `buffers` are
   * bound in order to the kernel's storage bindings (whole, or a window each), and `params` fills its
   * parameter struct.
   */
  dispatch<P extends string>(
    op: string,
    kernel: Kernel<P>,
    buffers: readonly Binding[],
    params: Readonly<Record<P, number>> | null,
    grid: Grid,
  ): void {
    const [x, y, z] = this.fold(op, grid);
    if (x * y * z === 0) return;
    const struct = kernel.params;
    const bytes = struct ? align(struct.byteLength, this.uniformAlign) : 0;
    if (this.dispatches >= MAX_DISPATCHES || this.uniformUsed + bytes > this.uniformCapacity) this.submit();

    for (const b of buffers) {
      const bound = isWindow(b) ? b.size : b.capacity;
      if (bound > this.gpu.bindableBytes) throw new Error(tooLargeToBind(op, 'an operand', bound, this.gpu.bindableBytes));
    }
    const pipeline = this.pipeline(op, kernel);
    for (const b of buffers) pooledOf(b).lastBatch = this.batch;
    const offsets: number[] = [];
    let paramsSize = 0;
    if (struct && params) {
      struct.pack(params, this.uniformView, this.uniformUsed);
      paramsSize = align(struct.byteLength, 16);
      offsets.push(this.uniformUsed);
      this.uniformUsed += bytes;
    }
    const pass = this.profiling ? this.timedPass(op, kernel.key) : this.computePass();
    pass.setPipeline(pipeline.pipeline);
    pass.setBindGroup(0, this.bindGroup(op, pipeline, buffers, paramsSize), offsets);
    pass.dispatchWorkgroups(x, y, z);
    if (this.profiling) this.endPass();
    this.dispatches++;
    this.gpu.throwIfFailed(op);
  }

  /** Encodes a buffer-to-buffer copy (offsets and size in bytes, multiples of 4) in queue order. */
  copy(src: PooledBuffer, srcOffset: number, dst: PooledBuffer, dstOffset: number, bytes: number): void {
    this.endPass();
    src.lastBatch = this.batch;
    dst.lastBatch = this.batch;
    this.commandEncoder().copyBufferToBuffer(src.buffer, srcOffset, dst.buffer, dstOffset, bytes);
  }

  /**
   * Uploads `data` into `dst` from byte 0. `queue.writeBuffer` takes effect before every command of
   * the next submit, so if the open batch already used `dst` (a freed buffer handed out again), that
   * batch is submitted first; otherwise its earlier commands would see the new contents.
   */
  writeBuffer(dst: PooledBuffer, data: Uint8Array): void {
    if (dst.lastBatch === this.batch) this.submit();
    const padded = data.byteLength % 4 === 0 ? data : padTo4(data);
    this.gpu.device.queue.writeBuffer(dst.buffer, 0, padded);
  }

  /** Copies `bytes` bytes at byte `offset` of `src` back to the CPU; waits for all queued work. */
  async read(op: string, src: PooledBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
    if (bytes === 0) return new ArrayBuffer(0);
    // Copies must start and end on 4-byte boundaries; float16 reads may not, so widen and trim.
    const start = offset - (offset % 4);
    const length = align(offset + bytes, 4) - start;
    const staging = this.staging.acquire(op, length);
    this.copy(src, start, staging, 0, length);
    this.submit();
    try {
      await staging.buffer.mapAsync(MAP_READ_MODE, 0, length);
    } catch (e) {
      this.staging.release(staging);
      this.gpu.throwIfFailed(op); // the GPU error behind the failure, if there is one
      throw new Error(`${op}: reading the GPU buffer failed: ${String(e)}`);
    }
    const result = staging.buffer.getMappedRange(0, length).slice(offset - start, offset - start + bytes);
    staging.buffer.unmap();
    this.staging.release(staging);
    this.gpu.throwIfFailed(op);
    return result;
  }

  /** Submits everything encoded so far and waits until the GPU has finished it. */
  async sync(): Promise<void> {
    this.submit();
    await this.gpu.device.queue.onSubmittedWorkDone();
    this.gpu.throwIfFailed('sync');
  }

  /** Sends the open batch to the GPU: first its uniform slices, then its commands. */
  submit(): void {
    if (!this.encoder) return;
    this.endPass();
    if (this.uniformUsed > 0) {
      this.gpu.device.queue.writeBuffer(this.uniformBuffer, 0, this.uniformStaging, 0, this.uniformUsed);
    }
    this.profiler?.beforeSubmit(this.encoder);
    this.gpu.device.queue.submit([this.encoder.finish()]);
    this.profiler?.afterSubmit();
    this.encoder = null;
    this.dispatches = 0;
    this.uniformUsed = 0;
    this.batch++;
    this.pool.afterSubmit();
    this.staging.afterSubmit();
    this.gpu.throwIfFailed('submit');
  }

  /** Starts or stops timing every dispatch on the GPU; throws a sentence when the GPU has no timestamps. */
  profile(on: boolean): void {
    if (on && !this.gpu.features.timestampQuery) throw new Error(NO_TIMESTAMP_QUERY);
    if (on) this.profiler ??= new Profiler(this.gpu.device, MAX_DISPATCHES);
    this.profiling = on;
  }

  /** GPU time per kernel since the last report, most first (see profiler.ts); waits for queued work. */
  async profileReport(): Promise<ProfileRow[]> {
    this.submit();
    return this.profiler ? this.profiler.report() : [];
  }

  /**
   * Forgets the bind groups that use `b`, which is about to be destroyed. (Buffer ids never recur, so
   * they could never be hit again; this frees them and the buffers they hold on to.)
   */
  forget(b: PooledBuffer): void {
    for (const key of this.keysByBuffer.get(b.id) ?? []) this.dropBindGroup(key);
    this.keysByBuffer.delete(b.id);
  }

  /** A bind group of `buffers` (and the uniform buffer, `paramsSize` bytes at a dynamic offset). */
  private bindGroup(op: string, pipeline: Pipeline, buffers: readonly Binding[], paramsSize: number): GPUBindGroup {
    let key = `${pipeline.signature}/${paramsSize}`;
    for (const b of buffers) key += isWindow(b) ? `/${b.pooled.id}@${b.offset}+${b.size}` : `/${b.id}`;
    const cached = this.bindGroups.get(key);
    if (cached) {
      this.bindGroups.delete(key); // and back in at the end: the most recently used
      this.bindGroups.set(key, cached);
      return cached.group;
    }
    const entries: GPUBindGroupEntry[] = buffers.map((b, binding) => ({
      binding,
      resource: isWindow(b) ? { buffer: b.pooled.buffer, offset: b.offset, size: b.size } : { buffer: b.buffer },
    }));
    if (paramsSize > 0) entries.push({ binding: buffers.length, resource: { buffer: this.uniformBuffer, offset: 0, size: paramsSize } });
    const group = this.gpu.device.createBindGroup({ layout: pipeline.layout, entries, label: op });
    if (this.bindGroups.size >= MAX_BIND_GROUPS) this.dropBindGroup(this.bindGroups.keys().next().value as string);
    const ids = buffers.map((b) => pooledOf(b).id);
    this.bindGroups.set(key, { group, ids });
    for (const id of ids) {
      const keys = this.keysByBuffer.get(id);
      if (keys) keys.add(key);
      else this.keysByBuffer.set(id, new Set([key]));
    }
    return group;
  }

  private dropBindGroup(key: string): void {
    const entry = this.bindGroups.get(key);
    if (!entry) return;
    this.bindGroups.delete(key);
    for (const id of entry.ids) this.keysByBuffer.get(id)?.delete(key);
  }

  /** The kernel's compiled pipeline, compiling it on first use. */
  private pipeline(op: string, kernel: Kernel): Pipeline {
    const cached = this.pipelines.get(kernel.key);
    if (cached) return cached;
    const allowed = this.gpu.limits.maxStorageBuffersPerShaderStage;
    if (kernel.bindings.length > allowed) {
      throw new Error(`${op}: its kernel binds ${kernel.bindings.length} storage buffers, and this GPU allows ${allowed}.`);
    }
    const device = this.gpu.device;
    const signature = kernel.bindings.join(',') + (kernel.params ? '+params' : '');
    const layout = this.bindGroupLayout(kernel, signature);
    const module = device.createShaderModule({ code: kernel.source(), label: kernel.key });
    const pipeline = device.createComputePipeline({
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
      label: `${op} [${kernel.key}]`,
    });
    const entry = { pipeline, layout, signature };
    this.pipelines.set(kernel.key, entry);
    return entry;
  }

  /** One layout per binding signature, e.g. read, read, write + params. */
  private bindGroupLayout(kernel: Kernel, signature: string): GPUBindGroupLayout {
    let layout = this.layouts.get(signature);
    if (!layout) {
      const entries: GPUBindGroupLayoutEntry[] = kernel.bindings.map((access, binding) => ({
        binding,
        visibility: COMPUTE_STAGE,
        buffer: { type: access === 'read' ? 'read-only-storage' : 'storage' },
      }));
      if (kernel.params) {
        entries.push({ binding: entries.length, visibility: COMPUTE_STAGE, buffer: { type: 'uniform', hasDynamicOffset: true } });
      }
      layout = this.gpu.device.createBindGroupLayout({ entries, label: signature });
      this.layouts.set(signature, layout);
    }
    return layout;
  }

  /** A 1-D workgroup count folded into (x, y) under the per-dimension limit; 3-D grids are checked. */
  private fold(op: string, grid: Grid): [number, number, number] {
    const max = this.gpu.limits.maxComputeWorkgroupsPerDimension;
    if (typeof grid === 'number') {
      if (grid <= max) return [grid, 1, 1];
      const y = Math.ceil(grid / max);
      if (y > max) throw new Error(`${op}: ${grid} workgroups are more than this GPU can launch (${max}² at most).`);
      return [max, y, 1];
    }
    if (grid.some((n) => n > max)) throw new Error(`${op}: the grid ${grid.join('×')} exceeds ${max} workgroups in a dimension.`);
    return [grid[0], grid[1], grid[2]];
  }

  private commandEncoder(): GPUCommandEncoder {
    this.encoder ??= this.gpu.device.createCommandEncoder({ label: 'tensorscan batch' });
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    this.pass ??= this.commandEncoder().beginComputePass();
    return this.pass;
  }

  /** A pass of its own for one dispatch, with timestamps at its beginning and end for the profile. */
  private timedPass(op: string, key: string): GPUComputePassEncoder {
    this.endPass();
    const timestampWrites = (this.profiler as Profiler).timestampWrites(op, key);
    this.pass = this.commandEncoder().beginComputePass({ label: op, timestampWrites });
    return this.pass;
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }
}

/** `n` rounded up to a multiple of `to`. */
export const align = (n: number, to: number): number => Math.ceil(n / to) * to;

function padTo4(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(align(data.byteLength, 4));
  out.set(data);
  return out;
}
