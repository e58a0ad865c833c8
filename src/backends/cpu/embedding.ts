/**
 * Embedding lookup and its backward: gathering rows of a table by id, and scatter-adding gradient
 * rows back onto the ids they came from.
 */
import { allocArray, dtypeOf, type TypedArray } from '../../tensor/dtype.js';
import { rawElements, readable, stored } from './buffer.js';

/** ids[i] as a row index, checked against [0, rows) with a one-sentence error naming the op. */
function rowOf(op: string, ids: TypedArray, i: number, rows: number): number {
  const id = ids[i];
  if (!(id >= 0 && id < rows)) throw new Error(`${op}: index ${id} is out of range for ${rows} rows.`);
  return id;
}

/**
 * out (n, dim) with out[i] = weight[ids[i]], weight (vocab, dim), ids (n) int32; in weight's dtype.
 * Rows are copied as stored elements (a float16 row as its bit patterns), so no value is re-rounded.
 */
export function gatherRows(weight: TypedArray, ids: TypedArray, n: number, vocab: number, dim: number): TypedArray {
  const out = allocArray(dtypeOf(weight), n * dim);
  const src = rawElements(weight);
  const dst = rawElements(out);
  for (let i = 0; i < n; i++) {
    const row = rowOf('gatherRows', ids, i, vocab);
    dst.set(src.subarray(row * dim, (row + 1) * dim), i * dim);
  }
  return out;
}

/**
 * The backward of gatherRows: out (vocab, dim) = Σ over i with ids[i] = v of grad[i], grad (n, dim),
 * in grad's dtype. Repeated ids accumulate (in doubles); rows no id points at are 0.
 */
export function scatterAddRows(grad: TypedArray, ids: TypedArray, n: number, vocab: number, dim: number): TypedArray {
  const g = readable(grad);
  const out = new Float64Array(vocab * dim);
  for (let i = 0; i < n; i++) {
    const at = rowOf('scatterAddRows', ids, i, vocab) * dim;
    for (let j = 0; j < dim; j++) out[at + j] += g[i * dim + j];
  }
  return stored(out, dtypeOf(grad));
}
