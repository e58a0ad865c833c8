/**
 * Depthwise causal 1-D convolution and its gradients. CPU twins: `conv1d` and `conv1dGrad` in
 * `cpu/conv1d.ts`. x, y, gy, gx are (batch, channels, len); w is (channels, K); bias is (channels).
 *
 *     y[b,c,t]  = bias[c] + Σ_{k ≥ K−1−t} w[c,k]·x[b,c,t−K+1+k]      (inputs before t = 0 are zero)
 *     gx[b,c,s] = Σ_{k ≥ s+K−len} w[c,k]·gy[b,c,s+K−1−k]             (outputs past len do not exist)
 *     gw[c,k]   = Σ_{b, t ≥ K−1−k} gy[b,c,t]·x[b,c,t−K+1+k]
 *
 * y and gx are one thread per element, each a K-term sum (K is small: 4 in Mamba). gw sums over
 * batch × len for each of the channels × K taps: one workgroup per tap, its threads striding over
 * (b, t) and combining partial sums as a tree in workgroup memory (see `reduce.ts`).
 */
import type { DType } from '../../../tensor/dtype.js';
import type { PooledBuffer } from '../buffer-pool.js';
import type { Executor, Kernel } from '../executor.js';
import type { LiveBuffer } from '../handle.js';
import { ParamStruct } from '../params.js';
import { enables, GRID_BUILTINS, LINEAR_WORKGROUP, load, storageBinding, store } from '../wgsl.js';

const WORKGROUP = 64;
const TAP_WORKGROUP = 256;

type Field = 'batch' | 'channels' | 'len' | 'K';
const params = new ParamStruct<Field>([
  ['batch', 'u32'],
  ['channels', 'u32'],
  ['len', 'u32'],
  ['K', 'u32'],
]);

export type ConvSizes = Readonly<Record<Field, number>>;

const kernels = new Map<string, Kernel<Field>>();

function cached(key: string, bindings: Kernel['bindings'], source: () => string): Kernel<Field> {
  let kernel = kernels.get(key);
  if (!kernel) {
    kernel = { key, bindings, params, source };
    kernels.set(key, kernel);
  }
  return kernel;
}

/** Start of the one-thread-per-element kernels: the element e = (b·channels + c)·len + t. */
const ELEMENT = `  let e = (${LINEAR_WORKGROUP}) * ${WORKGROUP}u + lid;
  if (e >= params.batch * params.channels * params.len) { return; }
  let t = e % params.len;
  let c = (e / params.len) % params.channels;
  let row = e - t; // where (b, c, 0) is`;

function forwardKernel(x: DType, w: DType, bias: DType): Kernel<Field> {
  const key = `conv1d ${x},${w},${bias}`;
  return cached(
    key,
    ['read', 'read', 'read', 'write'],
    () => `${enables([x, w, bias])}// ${key}: CPU twin \`conv1d\` in cpu/conv1d.ts.
${params.wgsl(4)}
${storageBinding(0, 'x', 'read', x)}
${storageBinding(1, 'w', 'read', w)}
${storageBinding(2, 'bias', 'read', bias)}
${storageBinding(3, 'y', 'read_write', x)}

@compute @workgroup_size(${WORKGROUP})
fn main(${GRID_BUILTINS}) {
${ELEMENT}
  var s = ${load('bias', 'c', bias)};
  // Taps k < K−1−t would read before t = 0 (zero padding): start past them.
  for (var k = u32(max(0, i32(params.K) - 1 - i32(t))); k < params.K; k++) {
    s += ${load('w', 'c * params.K + k', w)} * ${load('x', 'row + t + k + 1u - params.K', x)};
  }
  ${store('y', 'e', 's', x)}
}
`,
  );
}

function inputGradKernel(gy: DType, w: DType, gx: DType): Kernel<Field> {
  const key = `conv1dGrad x ${gy},${w}->${gx}`;
  return cached(
    key,
    ['read', 'read', 'write'],
    () => `${enables([gy, w, gx])}// ${key}: CPU twin \`conv1dGrad\` in cpu/conv1d.ts.
${params.wgsl(3)}
${storageBinding(0, 'gy', 'read', gy)}
${storageBinding(1, 'w', 'read', w)}
${storageBinding(2, 'gx', 'read_write', gx)}

@compute @workgroup_size(${WORKGROUP})
fn main(${GRID_BUILTINS}) {
${ELEMENT}
  var s = 0.0;
  // Input step t feeds outputs t … t+K−1; output t+K−1−k must exist (< len), i.e. k > t+K−1−len.
  for (var k = u32(max(0, i32(t) + i32(params.K) - i32(params.len))); k < params.K; k++) {
    s += ${load('w', 'c * params.K + k', w)} * ${load('gy', 'row + t + params.K - 1u - k', gy)};
  }
  ${store('gx', 'e', 's', gx)}
}
`,
  );
}

function weightGradKernel(gy: DType, x: DType, gw: DType): Kernel<Field> {
  const key = `conv1dGrad w ${gy},${x}->${gw}`;
  return cached(
    key,
    ['read', 'read', 'write'],
    () => `${enables([gy, x, gw])}// ${key}: CPU twin \`conv1dGrad\` in cpu/conv1d.ts.
${params.wgsl(3)}
${storageBinding(0, 'gy', 'read', gy)}
${storageBinding(1, 'x', 'read', x)}
${storageBinding(2, 'gw', 'read_write', gw)}

var<workgroup> partial: array<f32, ${TAP_WORKGROUP}>;

// Workgroup (c, k) sums gy[b,c,t]·x[b,c,t−K+1+k] over b and t ≥ K−1−k.
@compute @workgroup_size(${TAP_WORKGROUP})
fn main(${GRID_BUILTINS}) {
  let tap = ${LINEAR_WORKGROUP}; // = c·K + k
  if (tap >= params.channels * params.K) { return; }
  let c = tap / params.K;
  let k = tap % params.K;
  let skip = params.K - 1u - k; // the first t with an input
  let perBatch = params.len - min(skip, params.len);
  var s = 0.0;
  for (var j = lid; j < params.batch * perBatch; j += ${TAP_WORKGROUP}u) {
    let b = j / perBatch;
    let t = skip + j % perBatch;
    let row = (b * params.channels + c) * params.len;
    s += ${load('gy', 'row + t', gy)} * ${load('x', 'row + t - skip', x)};
  }
  partial[lid] = s;
  workgroupBarrier();
  for (var half = ${TAP_WORKGROUP / 2}u; half > 0u; half >>= 1u) {
    if (lid < half) { partial[lid] += partial[lid + half]; }
    workgroupBarrier();
  }
  if (lid == 0u) { ${store('gw', 'tap', 'partial[0]', gw)} }
}
`,
  );
}

export function runConv1d(
  exec: Executor,
  [x, w, bias]: readonly [LiveBuffer, LiveBuffer, LiveBuffer],
  sizes: ConvSizes,
  out: PooledBuffer,
): void {
  const kernel = forwardKernel(x.dtype, w.dtype, bias.dtype);
  const n = sizes.batch * sizes.channels * sizes.len;
  exec.dispatch('conv1d', kernel, [x.pooled, w.pooled, bias.pooled, out], sizes, Math.ceil(n / WORKGROUP));
}

export function runConv1dGrad(
  exec: Executor,
  [gy, x, w]: readonly [LiveBuffer, LiveBuffer, LiveBuffer],
  sizes: ConvSizes,
  gx: LiveBuffer,
  gw: LiveBuffer,
): void {
  const n = sizes.batch * sizes.channels * sizes.len;
  exec.dispatch(
    'conv1dGrad',
    inputGradKernel(gy.dtype, w.dtype, gx.dtype),
    [gy.pooled, w.pooled, gx.pooled],
    sizes,
    Math.ceil(n / WORKGROUP),
  );
  exec.dispatch(
    'conv1dGrad',
    weightGradKernel(gy.dtype, x.dtype, gw.dtype),
    [gy.pooled, x.pooled, gw.pooled],
    sizes,
    sizes.channels * sizes.K,
  );
}
