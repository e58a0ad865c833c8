/**
 * Softmax and log-softmax along each row of a contiguous (rows, cols) buffer. CPU twin: `softmax` in
 * `cpu/reduce.ts`.
 *
 *     lse_r = log Σ_j e^(x_rj)   (stably, in one pass: see row-logsumexp.ts)
 *     softmax:      y_rj = e^(x_rj − lse_r)
 *     log-softmax:  y_rj = x_rj − lse_r
 *
 * One workgroup per row: the row is read twice, once for lse_r and once to write y.
 */
import type { DType } from '../../../tensor/dtype.js';
import type { PooledBuffer } from '../buffer-pool.js';
import type { Executor, Kernel } from '../executor.js';
import { ParamStruct } from '../params.js';
import { enables, GRID_BUILTINS, LINEAR_WORKGROUP, load, storageBinding, store } from '../wgsl.js';
import { rowLogSumExpWgsl } from './row-logsumexp.js';
import { ROW_WORKGROUP } from './workgroup-reduce.js';

const params = new ParamStruct([
  ['rows', 'u32'],
  ['cols', 'u32'],
] as const);

const kernels = new Map<string, Kernel<'rows' | 'cols'>>();

function softmaxKernel(dtype: DType, log: boolean): Kernel<'rows' | 'cols'> {
  const key = `${log ? 'logSoftmax' : 'softmax'} ${dtype}`;
  let kernel = kernels.get(key);
  if (!kernel) {
    const x = load('x', 'base + j', dtype);
    const value = log ? `${x} - lse` : `exp(${x} - lse)`;
    const source = () => `${enables([dtype])}// ${key}: CPU twin \`softmax\` in cpu/reduce.ts.
${params.wgsl(2)}
${storageBinding(0, 'x', 'read', dtype)}
${storageBinding(1, 'y', 'read_write', dtype)}

${rowLogSumExpWgsl(dtype)}
@compute @workgroup_size(${ROW_WORKGROUP})
fn main(${GRID_BUILTINS}) {
  let row = ${LINEAR_WORKGROUP};
  if (row >= params.rows) { return; }
  let base = row * params.cols;
  let lse = rowLogSumExp(base, params.cols, lid);
  for (var j = lid; j < params.cols; j += ${ROW_WORKGROUP}u) {
    ${store('y', 'base + j', value, dtype)}
  }
}
`;
    kernel = { key, bindings: ['read', 'write'], params, source };
    kernels.set(key, kernel);
  }
  return kernel;
}

export function runSoftmax(
  exec: Executor,
  op: string,
  x: PooledBuffer,
  dtype: DType,
  rows: number,
  cols: number,
  log: boolean,
  out: PooledBuffer,
): void {
  if (cols === 0) return;
  exec.dispatch(op, softmaxKernel(dtype, log), [x, out], { rows, cols }, rows);
}
