/**
 * LayerNorm and RMSNorm over the rows of a (rows, dim) array, the definition: one row at a time, in
 * doubles. The WebGPU kernels (webgpu/kernels/norm.ts) give each row a workgroup; this file is what
 * they are tested against.
 *
 * For a row x of n = dim elements, LayerNorm centres it and RMSNorm does not (μ = 0):
 *
 *     μ    = mean_j x_j                          (LayerNorm; 0 for RMSNorm)
 *     rstd = 1/√(mean_j (x_j − μ)² + ε)          (1/√ε for a constant row: σ² = 0)
 *     x̂_j  = (x_j − μ)·rstd,    y_j = x̂_j·γ_j + β_j
 *
 * The variance sums (x − μ)² once μ is known, rather than mean x² − μ², which loses every digit when
 * |μ| ≫ σ. The forward keeps μ and rstd of each row for the backward, in `computeDtype` of x's dtype
 * (float32 for float16, whose 11 bits would put an error of 2⁻¹¹ into every gradient of the row).
 *
 * The backward. Every x̂_j depends on every x_k of its row, directly and through μ and rstd:
 *
 *     ∂x̂_j/∂x_k = rstd·(δ_jk − 1/n − x̂_j·x̂_k/n)       (LayerNorm; RMSNorm has no 1/n term)
 *
 * so with g' = g·γ (the gradient reaching x̂), summing over j:
 *
 *     dx = rstd·(g' − mean(g') − x̂·mean(g'·x̂))         (RMSNorm: rstd·(g' − x̂·mean(g'·x̂)))
 *     dγ = Σ_rows g·x̂,   dβ = Σ_rows g
 *
 * `normGrad` gives dx and, when asked, g·x̂ per element; the op sums it and g over the rows.
 */
import { computeDtype, dtypeOf, type TypedArray } from '../../tensor/dtype.js';
import type { NormKind } from '../backend.js';
import { readable, resultArray, stored } from './buffer.js';

/**
 * x (rows, dim) with γ, β (dim) or null → y (rows, dim) in x's dtype; rstd (rows) and, for 'layer', μ
 * (rows), in `computeDtype` of x's dtype.
 */
export function norm(
  kind: NormKind,
  data: TypedArray,
  weight: TypedArray | null,
  bias: TypedArray | null,
  rows: number,
  dim: number,
  eps: number,
): { y: TypedArray; mean: TypedArray | null; rstd: TypedArray } {
  const dtype = dtypeOf(data);
  const statsDtype = computeDtype(dtype);
  const x = readable(data);
  const w = weight && readable(weight);
  const b = bias && readable(bias);
  const y = resultArray(dtype, rows * dim);
  const mean = kind === 'layer' ? resultArray(statsDtype, rows) : null;
  const rstd = resultArray(statsDtype, rows);
  for (let r = 0; r < rows; r++) {
    const start = r * dim;
    let mu = 0;
    if (mean) {
      for (let j = 0; j < dim; j++) mu += x[start + j];
      mu /= dim;
      mean[r] = mu;
    }
    let squares = 0;
    for (let j = 0; j < dim; j++) squares += (x[start + j] - mu) ** 2;
    const s = 1 / Math.sqrt(squares / dim + eps);
    rstd[r] = s;
    // From the doubles μ and s, not the stored ones: each y is rounded once.
    for (let j = 0; j < dim; j++) y[start + j] = (x[start + j] - mu) * s * (w ? w[j] : 1) + (b ? b[j] : 0);
  }
  return { y: stored(y, dtype), mean: mean && stored(mean, statsDtype), rstd: stored(rstd, statsDtype) };
}

/**
 * dx (rows, dim) in x's dtype from the output gradient g (rows, dim), γ (dim) or null, and the
 * forward's μ ('layer'; null for 'rms') and rstd; with `withGxhat`, also g·x̂ (rows, dim).
 */
export function normGrad(
  kind: NormKind,
  data: TypedArray,
  weight: TypedArray | null,
  meanData: TypedArray | null,
  rstdData: TypedArray,
  gradData: TypedArray,
  rows: number,
  dim: number,
  withGxhat: boolean,
): { dx: TypedArray; gxhat: TypedArray | null } {
  const dtype = dtypeOf(data);
  const x = readable(data);
  const w = weight && readable(weight);
  const mean = meanData && readable(meanData);
  const rstd = readable(rstdData);
  const g = readable(gradData);
  const dx = resultArray(dtype, rows * dim);
  const gxhat = withGxhat ? resultArray(dtype, rows * dim) : null;
  for (let r = 0; r < rows; r++) {
    const start = r * dim;
    const mu = mean ? mean[r] : 0;
    const s = rstd[r];
    let sumG = 0; // Σ g'
    let sumGx = 0; // Σ g'·x̂
    for (let j = 0; j < dim; j++) {
      const xhat = (x[start + j] - mu) * s;
      const gw = g[start + j] * (w ? w[j] : 1);
      sumG += gw;
      sumGx += gw * xhat;
      if (gxhat) gxhat[start + j] = g[start + j] * xhat;
    }
    const meanG = kind === 'layer' ? sumG / dim : 0;
    const meanGx = sumGx / dim;
    for (let j = 0; j < dim; j++) {
      const xhat = (x[start + j] - mu) * s;
      dx[start + j] = s * (g[start + j] * (w ? w[j] : 1) - meanG - xhat * meanGx);
    }
  }
  return { dx: stored(dx, dtype), gxhat: gxhat && stored(gxhat, dtype) };
}
