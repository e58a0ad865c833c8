/**
 * Telling "this size does not fit" apart from a real failure, so that a benchmark can report the point
 * as out of memory and go on with the next one instead of stopping.
 *
 * What "does not fit" looks like, by where it is detected:
 * - the WebGPU buffer pool refuses a buffer over maxBufferSize, and the executor a kernel operand over
 *   the binding limit (maxStorageBufferBindingSize);
 * - Dawn refuses a buffer over maxBufferSize, or the driver runs out of device memory (reported
 *   asynchronously and rethrown by the backend at the next op or sync, with Dawn's message);
 * - on the CPU, V8 cannot allocate the typed array.
 */
import type { Backend } from '../src/backends/backend.js';

const DOES_NOT_FIT = [
  /more than this GPU can (hold|bind)/i, // buffer-pool.ts, executor.ts
  /out of memory|OUT_OF_(DEVICE|HOST)_MEMORY/i, // Dawn / Vulkan
  /max(imum)? ?buffer ?size/i, // Dawn's createBuffer validation
  /allocation failed|Invalid typed array length|Invalid array length/i, // V8
];

/** Whether `error` says the work needed more memory than the backend can give. */
export function isOutOfMemory(error: unknown): boolean {
  const message = error instanceof Error ? error.message : String(error);
  return DOES_NOT_FIT.some((pattern) => pattern.test(message));
}

/** The error's message on one line. */
export function errorMessage(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, ' ').trim();
}

/**
 * After a failed point: lets the backend report what is left of the failure. A GPU error is reported
 * after the fact, and the work queued with the failed op may raise further errors at the next sync;
 * they belong to the failed point, not to the next one. The failed point's tensors were freed by its
 * `tidy`; a pooling backend (the GPU's) then also destroys its idle buffers, so that the memory the
 * failed point grabbed (and any buffer the driver could not back) is not handed to the next point.
 */
export async function settleAfterFailure(backend: Backend): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await backend.sync();
      break;
    } catch {
      // an error of the failed point's queued work; sync again until the queue is clean
    }
  }
  backend.trim?.();
}
