/**
 * Normalisation layers over the last axis, each one op: one kernel forward, one kernel (plus column
 * sums for the parameters) backward.
 *
 *     LayerNorm(x) = (x − μ)·rstd·γ + β,   μ = mean x,  rstd = 1/√(mean (x − μ)² + ε)   (Ba et al. 2016)
 *     RMSNorm(x)   = x·rstd·γ,                           rstd = 1/√(mean x² + ε)          (Zhang & Sennrich 2019)
 *
 * Composed of the engine's ops, a LayerNorm with γ and β launched 14 kernels forward (two means, the
 * centring, the squares, + ε, the rsqrt, γ, β, and fills for the scalars) and 34 backward, each a pass
 * over the activations and, on a GPU, a launch that costs more than its arithmetic at a Transformer's
 * sizes (7–30 µs each on an H200). As one op it is 1 forward and 3 to 5 backward: `backend.norm` computes
 * each row's statistics and writes y in one kernel, keeping μ and rstd per row (one float each) for
 * the backward, and `backend.normGrad` gives
 *
 *     x̂ = (x − μ)·rstd (RMSNorm: x·rstd),   g' = g·γ
 *     dx = rstd·(g' − mean(g') − x̂·mean(g'·x̂))          (RMSNorm: rstd·(g' − x̂·mean(g'·x̂)))
 *
 * in one kernel (cpu/norm.ts derives it). The parameters' gradients dγ = Σ_rows g·x̂ and dβ = Σ_rows g
 * sum down the columns, across rows: the gradient kernel writes g·x̂ per element beside dx, and
 * `sum(·, 0)` reduces it, and g, in place (two launches each when the columns are long; see
 * webgpu/kernels/reduce.ts, and webgpu/kernels/norm.ts for why not a pass of their own).
 */
import { record } from '../../autograd/graph.js';
import type { NormKind } from '../../backends/backend.js';
import { computeDtype, isFloat } from '../dtype.js';
import { tidy } from '../scope.js';
import { shapesEqual, shapeToString, sizeOf } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { fromBuffer } from './creation.js';
import { checkCompatible, contiguous } from './elementwise.js';
import { sum } from './reduce.js';
import { reshape } from './views.js';

/** x (…, dim), weight γ (dim), bias β (dim) → (…, dim). */
export function layerNorm(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps = 1e-5): Tensor {
  return normalize('layer', x, weight, bias, eps);
}

/** x (…, dim), weight γ (dim) → (…, dim). */
export function rmsNorm(x: Tensor, weight: Tensor | null, eps = 1e-5): Tensor {
  return normalize('rms', x, weight, null, eps);
}

/** Either norm over the last axis of x, as one recorded op of (x, γ, β), the parameters optional. */
function normalize(kind: NormKind, x: Tensor, weight: Tensor | null, bias: Tensor | null, eps: number): Tensor {
  const name = `${kind}Norm`;
  if (x.rank === 0 || !isFloat(x.dtype)) {
    throw new Error(`${name}: expects a floating-point tensor of rank ≥ 1, got ${x.dtype} ${shapeToString(x.shape)}.`);
  }
  const dim = x.shape[x.rank - 1] as number;
  const params = [weight, bias].filter((p) => p !== null);
  for (const p of params) {
    checkCompatible(name, x, p);
    if (!shapesEqual(p.shape, [dim])) {
      throw new Error(`${name}: weight and bias must have shape [${dim}] (x's last axis), got ${shapeToString(p.shape)}.`);
    }
  }
  const rows = sizeOf(x.shape.slice(0, -1));
  const backend = x.storage.backend;
  // The kernels read row-major buffers from element 0, which `contiguous` guarantees (copying if needed).
  const xc = contiguous(x);
  const wc = weight && contiguous(weight);
  const bc = bias && contiguous(bias);
  const out = backend.norm(kind, xc.storage.buffer, wc?.storage.buffer ?? null, bc?.storage.buffer ?? null, rows, dim, eps);
  const y = fromBuffer(out.y, x.shape, x.dtype, backend);
  const mean = out.mean && fromBuffer(out.mean, [rows], computeDtype(x.dtype), backend);
  const rstd = fromBuffer(out.rstd, [rows], computeDtype(x.dtype), backend);
  record(y, name, [x, ...params], (g) =>
    tidy(() => {
      const gc = contiguous(g);
      const { dx, gxhat } = backend.normGrad(
        kind,
        xc.storage.buffer,
        wc?.storage.buffer ?? null,
        mean?.storage.buffer ?? null,
        rstd.storage.buffer,
        gc.storage.buffer,
        rows,
        dim,
        weight?.requiresGrad === true,
      );
      // dγ and dβ: sums down the columns of (rows, dim) matrices, which `sum` reads in place.
      const dWeight = gxhat && sum(fromBuffer(gxhat, [rows, dim], x.dtype, backend), 0);
      const dBias = bias?.requiresGrad ? sum(reshape(gc, [rows, dim]), 0) : null;
      return [fromBuffer(dx, x.shape, x.dtype, backend), ...(weight ? [dWeight] : []), ...(bias ? [dBias] : [])];
    }),
  );
  if (!y.gradFn) for (const t of [mean, rstd, xc, wc, bc]) t?.dispose(); // no backward will read them
  return y;
}
