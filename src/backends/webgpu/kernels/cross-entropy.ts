/**
 * Cross-entropy from logits, fused with its softmax, and its gradient. CPU twins: `crossEntropy` and
 * `crossEntropyGrad` in `cpu/loss.ts`.
 *
 *     loss_r = lse_r − x[r, t_r]                          (0 where t_r = ignoreIndex)
 *     dx_rj  = (e^(x_rj − lse_r) − [j = t_r]) · g_r       (0 rows where t_r = ignoreIndex)
 *
 * with lse_r = log Σ_j e^(x_rj) (row-logsumexp.ts), one workgroup per row. A target outside
 * [0, cols) makes the CPU throw; a kernel cannot, so it makes that row's loss and gradient NaN, which
 * no training run can miss. (The NaN is passed in as a parameter: WGSL constants cannot be NaN.)
 */
import type { DType } from '../../../tensor/dtype.js';
import type { PooledBuffer } from '../buffer-pool.js';
import type { Executor, Kernel } from '../executor.js';
import { ParamStruct } from '../params.js';
import { enables, GRID_BUILTINS, LINEAR_WORKGROUP, load, storageBinding, store } from '../wgsl.js';
import { ROW_WORKGROUP, rowLogSumExpWgsl } from './row-logsumexp.js';

type Field = 'rows' | 'cols' | 'ignoreIndex' | 'nan';
const params = new ParamStruct<Field>([
  ['rows', 'u32'],
  ['cols', 'u32'],
  ['ignoreIndex', 'i32'],
  ['nan', 'f32'],
]);

const kernels = new Map<string, Kernel<Field>>();

/**
 * The start of both kernels: the row's log-sum-exp and its target class, `label` (`target` is a
 * WGSL keyword). The lse is computed even for ignored rows: the label is read from memory, so the
 * compiler cannot prove that all threads of the workgroup agree on it, and a branch on it may not
 * skip the barriers inside rowLogSumExp.
 */
const PROLOGUE = `  let row = ${LINEAR_WORKGROUP};
  if (row >= params.rows) { return; }
  let base = row * params.cols;
  let lse = rowLogSumExp(base, params.cols, lid);
  let label = targets[row];
  let valid = label >= 0 && u32(label) < params.cols;`;

function lossKernel(dtype: DType): Kernel<Field> {
  const key = `crossEntropy ${dtype}`;
  let kernel = kernels.get(key);
  if (!kernel) {
    const source = () => `${enables([dtype])}// ${key}: CPU twin \`crossEntropy\` in cpu/loss.ts.
${params.wgsl(3)}
${storageBinding(0, 'x', 'read', dtype)}
${storageBinding(1, 'targets', 'read', 'int32')}
${storageBinding(2, 'loss', 'read_write', dtype)}

${rowLogSumExpWgsl(dtype)}
@compute @workgroup_size(${ROW_WORKGROUP})
fn main(${GRID_BUILTINS}) {
${PROLOGUE}
  if (lid == 0u) {
    let picked = ${load('x', 'base + u32(clamp(label, 0, i32(params.cols) - 1))', dtype)};
    let value = select(select(params.nan, lse - picked, valid), 0.0, label == params.ignoreIndex);
    ${store('loss', 'row', 'value', dtype)}
  }
}
`;
    kernel = { key, bindings: ['read', 'read', 'write'], params, source };
    kernels.set(key, kernel);
  }
  return kernel;
}

function gradKernel(dtype: DType, gradDtype: DType): Kernel<Field> {
  const key = `crossEntropyGrad ${dtype} ${gradDtype}`;
  let kernel = kernels.get(key);
  if (!kernel) {
    const source = () => `${enables([dtype, gradDtype])}// ${key}: CPU twin \`crossEntropyGrad\` in cpu/loss.ts.
${params.wgsl(4)}
${storageBinding(0, 'x', 'read', dtype)}
${storageBinding(1, 'targets', 'read', 'int32')}
${storageBinding(2, 'gradLoss', 'read', gradDtype)}
${storageBinding(3, 'dx', 'read_write', dtype)}

${rowLogSumExpWgsl(dtype)}
@compute @workgroup_size(${ROW_WORKGROUP})
fn main(${GRID_BUILTINS}) {
${PROLOGUE}
  let ignored = label == params.ignoreIndex;
  let g = select(params.nan, ${load('gradLoss', 'row', gradDtype)}, valid);
  for (var j = lid; j < params.cols; j += ${ROW_WORKGROUP}u) {
    let p = exp(${load('x', 'base + j', dtype)} - lse);
    ${store('dx', 'base + j', 'select(p * g - select(0.0, g, i32(j) == label), 0.0, ignored)', dtype)}
  }
}
`;
    kernel = { key, bindings: ['read', 'read', 'read', 'write'], params, source };
    kernels.set(key, kernel);
  }
  return kernel;
}

export function runCrossEntropy(
  exec: Executor,
  x: PooledBuffer,
  dtype: DType,
  targets: PooledBuffer,
  rows: number,
  cols: number,
  ignoreIndex: number,
  out: PooledBuffer,
): void {
  exec.dispatch('crossEntropy', lossKernel(dtype), [x, targets, out], { rows, cols, ignoreIndex, nan: Number.NaN }, rows);
}

export function runCrossEntropyGrad(
  exec: Executor,
  x: PooledBuffer,
  dtype: DType,
  targets: PooledBuffer,
  gradLoss: PooledBuffer,
  gradDtype: DType,
  rows: number,
  cols: number,
  ignoreIndex: number,
  out: PooledBuffer,
): void {
  const kernel = gradKernel(dtype, gradDtype);
  exec.dispatch('crossEntropyGrad', kernel, [x, targets, gradLoss, out], { rows, cols, ignoreIndex, nan: Number.NaN }, rows);
}
