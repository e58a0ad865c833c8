/**
 * Depthwise causal 1-D convolution (Mamba's short convolution before the scan) and its gradients.
 *
 * Each channel c has its own K taps w[c, 0..K): y[b,c,t] = bias[c] + Σ_k w[c,k]·x[b,c,t−K+1+k].
 * Tap K−1 sees the current step and tap 0 the step K−1 back; steps before t = 0 are zero, so the
 * output at t depends on no future input. All arrays are contiguous, x and y (batch, channels, len).
 */
import { dtypeOf, type TypedArray } from '../../tensor/dtype.js';
import { readable, resultArray, stored } from './buffer.js';

/** y (batch, channels, len) in x's dtype, from x (batch, channels, len), w (channels, K), bias (channels). */
export function conv1d(
  xData: TypedArray,
  wData: TypedArray,
  biasData: TypedArray,
  batch: number,
  channels: number,
  len: number,
  K: number,
): TypedArray {
  const x = readable(xData);
  const w = readable(wData);
  const bias = readable(biasData);
  const y = resultArray(dtypeOf(xData), batch * channels * len);
  for (let b = 0; b < batch; b++) {
    for (let c = 0; c < channels; c++) {
      const row = (b * channels + c) * len;
      for (let t = 0; t < len; t++) {
        let s = bias[c];
        // Taps k < K−1−t would read before t = 0 (zero padding): start past them.
        for (let k = Math.max(0, K - 1 - t); k < K; k++) s += w[c * K + k] * x[row + t - K + 1 + k];
        y[row + t] = s;
      }
    }
  }
  return stored(y, dtypeOf(xData));
}

/**
 * From gy (batch, channels, len): gx (batch, channels, len) in x's dtype, gx[b,c,s] = Σ_k w[c,k]·gy[b,c,s+K−1−k]
 * (each input step feeds outputs s … s+K−1), and gw (channels, K) in w's dtype,
 * gw[c,k] = Σ_{b,t} gy[b,c,t]·x[b,c,t−K+1+k]. The bias gradient is a plain sum of gy, left to the caller.
 */
export function conv1dGrad(
  gyData: TypedArray,
  xData: TypedArray,
  wData: TypedArray,
  batch: number,
  channels: number,
  len: number,
  K: number,
): { gx: TypedArray; gw: TypedArray } {
  const gy = readable(gyData);
  const x = readable(xData);
  const w = readable(wData);
  const gx = resultArray(dtypeOf(xData), batch * channels * len);
  const gw = new Float64Array(channels * K); // summed over batch and time: accumulate in doubles
  for (let b = 0; b < batch; b++) {
    for (let c = 0; c < channels; c++) {
      const row = (b * channels + c) * len;
      for (let s = 0; s < len; s++) {
        let acc = 0;
        // Output t = s+K−1−k must exist (t < len), i.e. k > s+K−1−len.
        for (let k = Math.max(0, s + K - len); k < K; k++) acc += w[c * K + k] * gy[row + s + K - 1 - k];
        gx[row + s] = acc;
      }
      for (let k = 0; k < K; k++) {
        let acc = 0;
        for (let t = Math.max(0, K - 1 - k); t < len; t++) acc += gy[row + t] * x[row + t - K + 1 + k];
        gw[c * K + k] += acc;
      }
    }
  }
  return { gx: stored(gx, dtypeOf(xData)), gw: stored(gw, dtypeOf(wData)) };
}
