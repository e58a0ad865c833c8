/**
 * Running a row kernel along any axis. Row kernels (softmax, cumsum) work on the last axis of a
 * contiguous (rows, cols) buffer; this moves `axis` last, makes the data contiguous (copying only if
 * needed), runs the kernel, and moves the axis back as a view. Not recorded: callers attach backward.
 */
import type { BufferHandle } from '../../backends/backend.js';
import { normalizeAxis } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { fromBuffer } from './creation.js';
import { contiguous } from './elementwise.js';
import { transpose } from './views.js';

export function alongAxis(
  op: string,
  x: Tensor,
  axis: number,
  kernel: (rows: BufferHandle, n: number, cols: number) => BufferHandle,
): Tensor {
  const ax = normalizeAxis(op, axis, x.rank);
  const last = x.rank - 1;
  const moved = ax === last ? x : transpose(x, ax, last);
  const rows = contiguous(moved);
  const cols = x.shape[ax] as number;
  const out = fromBuffer(kernel(rows.storage.buffer, cols === 0 ? 0 : x.size / cols, cols), rows.shape, x.dtype, x.storage.backend);
  rows.dispose();
  if (moved !== x) moved.dispose();
  if (ax === last) return out;
  const back = transpose(out, ax, last);
  out.dispose();
  return back;
}
