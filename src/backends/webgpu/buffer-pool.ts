/**
 * Recycling GPU buffers. Creating a `GPUBuffer` costs a driver allocation (and zero-filling), and a
 * training step makes and frees hundreds of temporaries, so freed buffers wait in a pool, sorted into
 * size classes, for the next request of a similar size.
 *
 * Size classes: requests are rounded up to 2ᵏ·{1, 1.25, 1.5, 1.75} bytes (at least 256), four steps
 * per doubling, so a buffer is at most 25% larger than asked for while sizes that differ a little
 * (a batch with one more row) still share buffers.
 *
 * Reuse is safe even while queued commands still use a freed buffer: WebGPU executes commands in queue
 * order, so a later kernel writing the buffer runs after the earlier ones reading it. (The one
 * exception, `queue.writeBuffer`, is handled by the executor; see `Executor.writeBuffer`.)
 *
 * Buffers may be larger than a kernel can bind (WebGPU's maxStorageBufferBindingSize, 2 GiB on big
 * GPUs), up to the device's maxBufferSize: a matmul fills such an output window by window (see
 * `BufferWindow` in executor.ts), and a read copies it back. Requests up to the binding limit never get
 * a size class above it, so every buffer that small stays bindable whole.
 *
 * Destroying is different: a buffer destroyed while the still-unsubmitted command encoder refers to
 * it would make the whole submit invalid. Buffers that must go (the idle cap is exceeded, or `trim`)
 * and were used by the open batch are therefore destroyed only after it has been submitted.
 */
import { BufferUsage } from './device.js';

/** A pooled GPU buffer and the bookkeeping the executor keeps on it. */
export interface PooledBuffer {
  /** Unique among the process's pooled buffers: a number, so that several form one string key (bind groups). */
  readonly id: number;
  readonly buffer: GPUBuffer;
  /** Its size class in bytes; requests up to this size can use it. */
  readonly capacity: number;
  /** The executor's batch number when a command last used it (−1: never). */
  lastBatch: number;
}

/** The smallest size class holding `bytes`: 2ᵏ·{1, 1.25, 1.5, 1.75}, at least 256 bytes. */
export function sizeClass(bytes: number): number {
  if (bytes <= 256) return 256;
  const octave = 2 ** Math.floor(Math.log2(bytes));
  const quarter = octave / 4;
  return octave + Math.ceil((bytes - octave) / quarter) * quarter;
}

export interface PoolOptions {
  /** Largest buffer the device can create (its maxBufferSize). */
  readonly maxBytes: number;
  /** Largest buffer a kernel may bind whole (maxStorageBufferBindingSize, at most 2 GiB): size classes stop there. */
  readonly bindableBytes: number;
  /**
   * Idle bytes kept for reuse before freed buffers are destroyed instead; the cap rises to the most
   * bytes ever handed out at once, so a working set larger than it (a long sequence's logits) is kept
   * too. The pool then holds at most twice the program's peak.
   */
  readonly maxIdleBytes: number;
  /** The batch the executor is currently encoding, to know which buffers it still refers to. */
  readonly openBatch: () => number;
  /** Told about every buffer before it is destroyed (the executor drops bind groups that use it). */
  readonly onDestroy?: (b: PooledBuffer) => void;
}

let nextId = 0;

export class BufferPool {
  private readonly idle = new Map<number, PooledBuffer[]>();
  private idleBytes = 0;
  private allocatedBytes = 0;
  /** The most bytes handed out (allocated and not idle) at any one time. */
  private peakLiveBytes = 0;
  /** Buffers to destroy once the open batch has been submitted. */
  private doomed: PooledBuffer[] = [];

  constructor(
    private readonly device: GPUDevice,
    private readonly options: PoolOptions,
    private readonly usage: number = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST,
    private readonly label = 'tensor',
  ) {}

  /** A buffer of at least `bytes` bytes; `op` names the kernel in the error for an oversized request. */
  acquire(op: string, bytes: number): PooledBuffer {
    const { maxBytes, bindableBytes } = this.options;
    if (bytes > maxBytes) {
      throw new Error(
        `${op}: needs a buffer of ${bytes} bytes (${(bytes / 2 ** 30).toFixed(2)} GiB), more than this GPU ` +
          `can hold in one buffer (maxBufferSize, ${maxBytes} bytes); split the tensor or use the CPU backend.`,
      );
    }
    const limit = bytes <= bindableBytes ? bindableBytes : maxBytes;
    const capacity = Math.min(sizeClass(bytes), limit - (limit % 4));
    const reused = this.idle.get(capacity)?.pop();
    if (reused) this.idleBytes -= capacity;
    else this.allocatedBytes += capacity;
    this.peakLiveBytes = Math.max(this.peakLiveBytes, this.allocatedBytes - this.idleBytes);
    if (reused) return reused;
    const buffer = this.device.createBuffer({ size: capacity, usage: this.usage, label: `${this.label} ${op}` });
    return { id: nextId++, buffer, capacity, lastBatch: -1 };
  }

  /** Takes a buffer back: into the pool, or to be destroyed when the pool is full. */
  release(b: PooledBuffer): void {
    if (this.idleBytes + b.capacity > Math.max(this.options.maxIdleBytes, this.peakLiveBytes)) {
      this.destroy(b);
      return;
    }
    let list = this.idle.get(b.capacity);
    if (!list) {
      list = [];
      this.idle.set(b.capacity, list);
    }
    list.push(b);
    this.idleBytes += b.capacity;
  }

  /** Destroys every idle buffer, giving their memory back to the driver. */
  trim(): void {
    for (const list of this.idle.values()) for (const b of list) this.destroy(b);
    this.idle.clear();
    this.idleBytes = 0;
  }

  /** Called by the executor after each submit: buffers the open batch used may now be destroyed. */
  afterSubmit(): void {
    for (const b of this.doomed) b.buffer.destroy();
    this.doomed = [];
  }

  /** Bytes of GPU memory held: handed-out buffers plus idle ones, by size class. */
  totalBytes(): number {
    return this.allocatedBytes;
  }

  private destroy(b: PooledBuffer): void {
    this.allocatedBytes -= b.capacity;
    this.options.onDestroy?.(b);
    // Submitted work may still use it; WebGPU defers the real release until that work is done.
    if (b.lastBatch === this.options.openBatch()) this.doomed.push(b);
    else b.buffer.destroy();
  }
}

/**
 * The temporary buffers of one op's dispatches, taken from the pool as they are needed and given
 * back together once the op has enqueued its work: later commands may reuse them, and run after it.
 */
export class Temporaries {
  private readonly held: PooledBuffer[] = [];

  constructor(
    private readonly pool: BufferPool,
    private readonly op: string,
  ) {}

  acquire(bytes: number): PooledBuffer {
    const buffer = this.pool.acquire(this.op, bytes);
    this.held.push(buffer);
    return buffer;
  }

  release(): void {
    for (const buffer of this.held.splice(0)) this.pool.release(buffer);
  }
}
