/**
 * The selective scan of Mamba (Gu & Dao 2023, https://arxiv.org/abs/2312.00752), written as the plain
 * sequential loop: the readable definition that every other implementation (the Blelloch scan in
 * `blelloch-scan.ts`, the WebGPU kernels) is tested against. The math is walked through in
 * docs/selective-scan.md.
 *
 * Shapes (all contiguous, row-major):
 *     u, Δ, y   (batch, dim, len)     the input, the step size, the output
 *     A         (dim, N)              the diagonal state matrix (negative, so exp(Δ·A) < 1 decays)
 *     B, C      (batch, N, len)       input and output projections, one per time step ("selective")
 *     h         (batch, dim, N)       the hidden state, N numbers per channel
 *
 * For every (batch b, channel d, state n) the recurrence is eq. 2a/2b of the paper, discretised as in
 * eq. 4 with the zero-order hold for A and the Euler step Δ·B for B (as the reference code does):
 *
 *     ā_t = exp(Δ_t · A[n])                  b̄_t = Δ_t · B_t[n] · u_t
 *     h_t = ā_t · h_{t−1} + b̄_t   (h_0 = 0)     y_t = Σ_n C_t[n] · h_t[n]
 *
 * Everything is accumulated in JS doubles and rounded once into the dtype of u. D·u, the gate silu(z)
 * and Δ's bias and softplus are not here: the op (src/tensor/ops/selective-scan.ts) builds them from
 * ordinary tensor ops, so their gradients come from those ops. The backend checks the arrays' sizes.
 */
import { dtypeOf, type TypedArray } from '../../tensor/dtype.js';
import type { ScanSizes } from '../backend.js';
import { type NumericArray, readable, resultArray, stored } from './buffer.js';

/** The five inputs of the scan, as the backend's buffers hold them. */
export interface ScanArrays {
  u: TypedArray;
  delta: TypedArray;
  A: TypedArray;
  B: TypedArray;
  C: TypedArray;
}

/** The inputs with float16 decoded, so the loops index plain arrays. */
type Decoded = { [K in keyof ScanArrays]: NumericArray };

const decode = (x: ScanArrays): Decoded => ({
  u: readable(x.u),
  delta: readable(x.delta),
  A: readable(x.A),
  B: readable(x.B),
  C: readable(x.C),
});

/**
 * The recurrence along one (b, d) row: h_t[n] goes to `states[t·N + n]` for t = 0 … len, where
 * h_0 = 0 and h_t is the state after step t (so step t reads slot t and writes slot t + 1).
 */
function rowStates(x: Decoded, { dim, len, N }: ScanSizes, b: number, d: number, states: Float64Array): void {
  const row = (b * dim + d) * len; // u and Δ of (b, d) start here
  const bc = b * N * len; //           B and C of batch b start here
  states.fill(0, 0, N);
  for (let t = 0; t < len; t++) {
    const dt = x.delta[row + t];
    const dtu = dt * x.u[row + t];
    for (let n = 0; n < N; n++) {
      states[(t + 1) * N + n] = Math.exp(dt * x.A[d * N + n]) * states[t * N + n] + dtu * x.B[bc + n * len + t];
    }
  }
}

/** The forward scan: y (batch, dim, len) and the last state h_len (batch, dim, N), in u's dtype. */
export function selectiveScanForward(x: ScanArrays, sizes: ScanSizes): { y: TypedArray; lastState: TypedArray } {
  const { batch, dim, len, N } = sizes;
  const dtype = dtypeOf(x.u);
  const xs = decode(x);
  const y = resultArray(dtype, batch * dim * len);
  const lastState = resultArray(dtype, batch * dim * N);
  const states = new Float64Array((len + 1) * N);
  for (let b = 0; b < batch; b++) {
    const bc = b * N * len;
    for (let d = 0; d < dim; d++) {
      const row = (b * dim + d) * len;
      rowStates(xs, sizes, b, d, states);
      for (let t = 0; t < len; t++) {
        let yt = 0;
        for (let n = 0; n < N; n++) yt += xs.C[bc + n * len + t] * states[(t + 1) * N + n];
        y[row + t] = yt;
      }
      for (let n = 0; n < N; n++) lastState[(b * dim + d) * N + n] = states[len * N + n];
    }
  }
  return { y: stored(y, dtype), lastState: stored(lastState, dtype) };
}

/**
 * The backward scan: given dy = ∂L/∂y (batch, dim, len), the gradients of L with respect to the five
 * inputs, in u's dtype.
 *
 * Nothing was saved by the forward, so each (b, d) row first re-runs the recurrence into a scratch of
 * (len + 1)·N doubles, then walks back in time. (Recovering h_{t−1} = (h_t − b̄_t)/ā_t on the way back
 * instead would divide by ā_t ≈ 0 for fast-decaying states and blow rounding errors up.)
 *
 * The chain rule, with ā_t = exp(Δ_t·A), b̄_t = Δ_t·B_t·u_t, h_t = ā_t·h_{t−1} + b̄_t, y_t = C_t·h_t:
 * h_t reaches L through y_t and through h_{t+1} = ā_{t+1}·h_t + b̄_{t+1}, so
 *
 *     dh_t[n] = C_t[n]·dy_t + ā_{t+1}[n]·dh_{t+1}[n]       (dh after the last step is 0)
 *
 * — the same kind of recurrence, run backwards — and each input collects dh_t times the derivative
 * of h_t's right-hand side with respect to it (∂ā/∂Δ = A·ā, ∂b̄/∂Δ = B·u):
 *
 *     dC_t[n] = Σ_d dy_t·h_t[n]                                   (C is shared by the dim channels)
 *     dΔ_t    = Σ_n dh_t[n]·(A[n]·ā_t[n]·h_{t−1}[n] + B_t[n]·u_t)
 *     dA[n]   = Σ_{b,t} dh_t[n]·Δ_t·ā_t[n]·h_{t−1}[n]            (A is shared by batch and time)
 *     dB_t[n] = Σ_d dh_t[n]·Δ_t·u_t
 *     du_t    = Σ_n dh_t[n]·Δ_t·B_t[n]
 */
export function selectiveScanBackward(
  x: ScanArrays,
  dy: TypedArray,
  sizes: ScanSizes,
): { du: TypedArray; ddelta: TypedArray; dA: TypedArray; dB: TypedArray; dC: TypedArray } {
  const { batch, dim, len, N } = sizes;
  const dtype = dtypeOf(x.u);
  const xs = decode(x);
  const g = readable(dy);
  const du = resultArray(dtype, batch * dim * len);
  const ddelta = resultArray(dtype, batch * dim * len);
  // dA, dB and dC are sums over rows, built up across the loop: keep them in doubles until the end.
  const dA = new Float64Array(dim * N);
  const dB = new Float64Array(batch * N * len);
  const dC = new Float64Array(batch * N * len);
  const states = new Float64Array((len + 1) * N);
  /** ā_{t+1}[n]·dh_{t+1}[n]: what step t + 1 hands back to step t (0 after the last step). */
  const carry = new Float64Array(N);
  for (let b = 0; b < batch; b++) {
    const bc = b * N * len;
    for (let d = 0; d < dim; d++) {
      const row = (b * dim + d) * len;
      rowStates(xs, sizes, b, d, states);
      carry.fill(0);
      for (let t = len - 1; t >= 0; t--) {
        const dt = xs.delta[row + t];
        const ut = xs.u[row + t];
        const gt = g[row + t];
        let dDelta = 0;
        let dU = 0;
        for (let n = 0; n < N; n++) {
          const a = xs.A[d * N + n];
          const abar = Math.exp(dt * a);
          const hPrev = states[t * N + n];
          const bn = xs.B[bc + n * len + t];
          const dh = xs.C[bc + n * len + t] * gt + carry[n];
          dC[bc + n * len + t] += gt * states[(t + 1) * N + n];
          dDelta += dh * (a * abar * hPrev + bn * ut);
          dA[d * N + n] += dh * dt * abar * hPrev;
          dB[bc + n * len + t] += dh * dt * ut;
          dU += dh * dt * bn;
          carry[n] = abar * dh;
        }
        du[row + t] = dU;
        ddelta[row + t] = dDelta;
      }
    }
  }
  return {
    du: stored(du, dtype),
    ddelta: stored(ddelta, dtype),
    dA: stored(dA, dtype),
    dB: stored(dB, dtype),
    dC: stored(dC, dtype),
  };
}
