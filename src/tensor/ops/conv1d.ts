/**
 * Depthwise causal 1-D convolution, as Mamba uses before its scan (kernel 4, one filter per channel):
 *
 *     y[b, c, t] = bias[c] + Σ_{k<K} w[c, k] · x[b, c, t − (K−1) + k]      (x = 0 before t = 0)
 *
 * "Causal" means y at t sees only x up to t, so the model can never peek at the next token.
 */
import { record } from '../../autograd/graph.js';
import { shapeToString } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { fromBuffer, zeros } from './creation.js';
import { checkCompatible, contiguous } from './elementwise.js';
import { sum } from './reduce.js';

/** x (batch, channels, len), w (channels, K), bias (channels) or null → (batch, channels, len). */
export function conv1dCausal(x: Tensor, w: Tensor, bias: Tensor | null = null): Tensor {
  if (x.rank !== 3 || w.rank !== 2 || w.shape[0] !== x.shape[1] || (bias && (bias.rank !== 1 || bias.shape[0] !== x.shape[1]))) {
    throw new Error(
      `conv1dCausal: expected x (batch, channels, len), w (channels, K), bias (channels); got x ${shapeToString(x.shape)}, w ${shapeToString(w.shape)}${bias ? `, bias ${shapeToString(bias.shape)}` : ''}.`,
    );
  }
  checkCompatible('conv1dCausal', x, w);
  const [batch, channels, len] = x.shape as [number, number, number];
  const K = w.shape[1] as number;
  const backend = x.storage.backend;
  const xc = contiguous(x);
  const wc = contiguous(w);
  const b = bias ? contiguous(bias) : zeros([channels], x.dtype);
  const y = fromBuffer(
    backend.conv1d(xc.storage.buffer, wc.storage.buffer, b.storage.buffer, batch, channels, len, K),
    x.shape,
    x.dtype,
    backend,
  );
  const inputs = bias ? [x, w, bias] : [x, w];
  return record(y, 'conv1dCausal', inputs, (g) => {
    const gc = contiguous(g);
    const { gx, gw } = backend.conv1dGrad(gc.storage.buffer, xc.storage.buffer, wc.storage.buffer, batch, channels, len, K);
    const grads = [fromBuffer(gx, x.shape, x.dtype, backend), fromBuffer(gw, w.shape, w.dtype, backend)];
    if (bias) grads.push(sum(g, [0, 2]));
    return grads;
  });
}
