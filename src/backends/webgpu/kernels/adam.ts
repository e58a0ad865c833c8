/**
 * The fused Adam/AdamW update. CPU twin: `adamStep` in `cpu/adam.ts`.
 *
 * One thread per element i updates the parameter p and its moments m and v in place, from the gradient g:
 *
 *     m[i] ← β₁·m[i] + (1 − β₁)·g[i]
 *     v[i] ← β₂·v[i] + (1 − β₂)·g[i]²
 *     p[i] ← shrink·p[i] − stepSize · m[i] / (√v[i]·rootCorrection + ε)
 *
 * with the bias corrections and the learning rate folded into the scalars by the optimizer (see
 * src/train/optim/adam.ts). Why one kernel: written as element-wise ops, the update took about twenty
 * dispatches per parameter (sub, mul, add, square, sqrt, div, three assigns, and a `full` for every
 * scalar operand), and on an H200 each tiny dispatch costs 4–8 µs of GPU time whatever its size; one
 * step of the seed Transformer (AdamW, clipping) went from 1103 dispatches to 587. Fused, it is one
 * dispatch that reads p, g, m and v once and writes p, m and v once.
 *
 * The scalars travel as f32 uniform parameters, rounded from the optimizer's doubles; 1 − β₁ and 1 − β₂
 * are rounded from doubles too rather than recomputed in f32 from a rounded β. Threads are independent,
 * so the result is deterministic. The grid is 1-D, folded into 2-D past 65535 workgroups (wgsl.ts).
 */
import type { DType } from '../../../tensor/dtype.js';
import type { AdamScalars } from '../../backend.js';
import type { PooledBuffer } from '../buffer-pool.js';
import type { Executor, Kernel } from '../executor.js';
import { ParamStruct } from '../params.js';
import { GRID_BUILTINS, LINEAR_WORKGROUP, storageBinding } from '../wgsl.js';
import { ELEMENTWISE_WORKGROUP } from './elementwise.js';

type Field = 'size' | 'beta1' | 'oneMinusBeta1' | 'beta2' | 'oneMinusBeta2' | 'stepSize' | 'rootCorrection' | 'eps' | 'shrink';
const params = new ParamStruct<Field>([
  ['size', 'u32'],
  ['beta1', 'f32'],
  ['oneMinusBeta1', 'f32'],
  ['beta2', 'f32'],
  ['oneMinusBeta2', 'f32'],
  ['stepSize', 'f32'],
  ['rootCorrection', 'f32'],
  ['eps', 'f32'],
  ['shrink', 'f32'],
]);

const kernel: Kernel<Field> = {
  key: 'adamStep float32',
  bindings: ['write', 'read', 'write', 'write'],
  params,
  source: () => `// adamStep float32: CPU twin \`adamStep\` in cpu/adam.ts.
${params.wgsl(4)}
${storageBinding(0, 'p', 'read_write', 'float32')}
${storageBinding(1, 'g', 'read', 'float32')}
${storageBinding(2, 'm', 'read_write', 'float32')}
${storageBinding(3, 'v', 'read_write', 'float32')}

@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(${GRID_BUILTINS}) {
  let i = (${LINEAR_WORKGROUP}) * ${ELEMENTWISE_WORKGROUP}u + lid;
  if (i >= params.size) { return; }
  let gi = g[i];
  let mi = params.beta1 * m[i] + params.oneMinusBeta1 * gi;
  let vi = params.beta2 * v[i] + params.oneMinusBeta2 * gi * gi;
  m[i] = mi;
  v[i] = vi;
  p[i] = params.shrink * p[i] - params.stepSize * (mi / (sqrt(vi) * params.rootCorrection + params.eps));
}
`,
};

/** The four buffers of one update: p, m and v are updated in place, g is only read. */
export interface AdamBuffers {
  readonly param: PooledBuffer;
  readonly grad: PooledBuffer;
  readonly m: PooledBuffer;
  readonly v: PooledBuffer;
}

/** Updates `size` elements of param, m and v in place (float32 only: the GPU trains in f32). */
export function runAdamStep(exec: Executor, b: AdamBuffers, size: number, dtype: DType, s: AdamScalars): void {
  if (dtype !== 'float32') throw new Error(`adamStep: the GPU updates float32 parameters, not ${dtype}.`);
  const { beta1, beta2, stepSize, rootCorrection, eps, shrink } = s;
  const values = { size, beta1, oneMinusBeta1: 1 - beta1, beta2, oneMinusBeta2: 1 - beta2, stepSize, rootCorrection, eps, shrink };
  exec.dispatch('adamStep', kernel, [b.param, b.grad, b.m, b.v], values, Math.ceil(size / ELEMENTWISE_WORKGROUP));
}
