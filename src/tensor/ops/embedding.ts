/**
 * Embedding lookup: row ids[i] of the weight matrix. Its backward scatters each output gradient back
 * onto the row it came from, adding where an id repeats (a word seen twice gets both gradients).
 */
import { record } from '../../autograd/graph.js';
import type { Tensor } from '../tensor.js';
import { fromBuffer } from './creation.js';
import { contiguous } from './elementwise.js';

/** weight (vocab, dim), ids (…) int32 → (…, dim). */
export function embedding(weight: Tensor, ids: Tensor): Tensor {
  if (ids.dtype !== 'int32') throw new Error(`embedding: ids must be int32, got ${ids.dtype}.`);
  if (weight.rank !== 2) throw new Error(`embedding: the weight must be (vocab, dim), got rank ${weight.rank}.`);
  const [vocab, dim] = weight.shape as [number, number];
  const backend = weight.storage.backend;
  const w = contiguous(weight);
  const idx = contiguous(ids);
  const n = ids.size;
  const out = fromBuffer(
    backend.gatherRows(w.storage.buffer, idx.storage.buffer, n, vocab, dim),
    [...ids.shape, dim],
    weight.dtype,
    backend,
  );
  w.dispose();
  return record(out, 'embedding', [weight], (g) => {
    const gc = contiguous(g);
    return [fromBuffer(backend.scatterAddRows(gc.storage.buffer, idx.storage.buffer, n, vocab, dim), [vocab, dim], g.dtype, backend)];
  });
}
