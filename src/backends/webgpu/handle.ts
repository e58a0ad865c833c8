/**
 * The WebGPU backend's buffer handle: a pooled GPU buffer plus what the backend must know about it.
 *
 * A handle is made fresh for every allocation, even when the pool hands out a recycled `GPUBuffer`, so
 * a handle used after `free` is caught here instead of silently reading someone else's data. Handles
 * remember their dtype and length, which the contract's buffer-only kernels (crossEntropy, gatherRows,
 * conv1d, …) need, just as a CPU buffer's typed array knows its own.
 */
import type { DType } from '../../tensor/dtype.js';
import type { BufferHandle } from '../backend.js';
import type { PooledBuffer } from './buffer-pool.js';

export class GpuBuffer implements BufferHandle {
  declare readonly __brand?: 'BufferHandle';
  /** The GPU memory, or null once freed. */
  pooled: PooledBuffer | null;

  constructor(
    pooled: PooledBuffer,
    readonly dtype: DType,
    /** Elements. */
    readonly length: number,
    /** Bytes counted by `liveBytes`: length × bytes per element. */
    readonly bytes: number,
  ) {
    this.pooled = pooled;
  }
}

/** A handle that has not been freed. */
export type LiveBuffer = GpuBuffer & { pooled: PooledBuffer };

/**
 * The live GPU buffer behind `handle`, checked: it must belong to this backend, not be freed, hold
 * `dtype` (when given) and have at least `minLength` elements. `op` names the kernel in the error.
 */
export function gpuBufferOf(handle: BufferHandle, op: string, minLength = 0, dtype?: DType): LiveBuffer {
  if (!(handle instanceof GpuBuffer)) throw new Error(`${op}: the buffer does not belong to the WebGPU backend.`);
  if (handle.pooled === null) throw new Error(`${op}: the buffer was used after it was freed.`);
  if (dtype !== undefined && handle.dtype !== dtype) {
    throw new Error(`${op}: the buffer holds ${handle.dtype} elements, not ${dtype}.`);
  }
  if (handle.length < minLength) {
    throw new Error(`${op}: the buffer has ${handle.length} elements but ${minLength} are needed.`);
  }
  return handle as LiveBuffer;
}
