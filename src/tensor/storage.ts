/**
 * A reference-counted backend buffer. Several tensors (a tensor and its views) may share one storage;
 * the buffer goes back to its backend when the last of them is disposed.
 */
import type { Backend, BufferHandle } from '../backends/backend.js';
import type { DType } from './dtype.js';

export class Storage {
  private refs = 1;

  constructor(
    readonly backend: Backend,
    readonly buffer: BufferHandle,
    readonly dtype: DType,
    /** Elements in the buffer. */
    readonly size: number,
  ) {}

  retain(): this {
    this.refs++;
    return this;
  }

  release(): void {
    if (--this.refs === 0) this.backend.free(this.buffer);
  }
}
