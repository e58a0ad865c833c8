/**
 * Cross-entropy from logits, fused with its softmax, and its gradient. CPU twins: `crossEntropy` and
 * `crossEntropyGrad` in `cpu/loss.ts`.
 *
 *     lse_r  = log Σ_j e^(x_rj)                           (row-logsumexp.ts: one read of the row)
 *     loss_r = lse_r − x[r, t_r]                          (0 where t_r = ignoreIndex)
 *     dx_rj  = (e^(x_rj − lse_r) − [j = t_r]) · g_r       (0 rows where t_r = ignoreIndex)
 *
 * The forward gives each row a workgroup and writes lse_r (in f32, whatever the logits' dtype) beside
 * the loss; the gradient reads it back instead of computing it again: each logit is read once by the
 * forward, and once more by the gradient, which writes each dx once. Given lse_r the gradient is
 * element-wise, so it runs over the flat (rows, cols) array, four elements per thread wherever the
 * rows begin: with a workgroup per row it took 0.90 ms at 4096 × 50,257 on an H200, flat 0.65 ms
 * (2.5 TB/s read and written). A target outside [0, cols) makes the CPU throw; a kernel cannot, so it
 * makes that row's loss and gradient NaN, which no training run can miss. (The NaN is passed in as a
 * parameter: WGSL constants cannot be NaN.) Rows of no columns have lse = −∞, as on the CPU.
 */
import type { DType } from '../../../tensor/dtype.js';
import type { PooledBuffer } from '../buffer-pool.js';
import type { Executor, Kernel } from '../executor.js';
import { ParamStruct } from '../params.js';
import { enables, GRID_BUILTINS, LINEAR_WORKGROUP, load, storageBinding, store } from '../wgsl.js';
import { rowLogSumExpWgsl } from './row-logsumexp.js';
import { ROW_WORKGROUP } from './workgroup-reduce.js';

type Field = 'rows' | 'cols' | 'ignoreIndex' | 'nan' | 'negInf';
const params = new ParamStruct<Field>([
  ['rows', 'u32'],
  ['cols', 'u32'],
  ['ignoreIndex', 'i32'],
  ['nan', 'f32'],
  ['negInf', 'f32'], // −∞, likewise passed in
]);

const kernels = new Map<string, Kernel<Field>>();

function lossKernel(dtype: DType): Kernel<Field> {
  const key = `crossEntropy ${dtype}`;
  let kernel = kernels.get(key);
  if (!kernel) {
    // The lse is computed for every row, ignored ones too: the label is read from memory, so the
    // compiler cannot prove that all threads of the workgroup agree on it, and a branch on it may not
    // skip the barriers inside rowLogSumExp.
    const source = () => `${enables([dtype])}// ${key}: CPU twin \`crossEntropy\` in cpu/loss.ts.
${params.wgsl(4)}
${storageBinding(0, 'x', 'read', dtype)}
${storageBinding(1, 'targets', 'read', 'int32')}
${storageBinding(2, 'loss', 'read_write', dtype)}
${storageBinding(3, 'lseOut', 'read_write', 'float32')}

${rowLogSumExpWgsl(dtype)}
@compute @workgroup_size(${ROW_WORKGROUP})
fn main(${GRID_BUILTINS}) {
  let row = ${LINEAR_WORKGROUP};
  if (row >= params.rows) { return; }
  let base = row * params.cols;
  let label = targets[row]; // the row's target class (\`target\` is a WGSL keyword)
  let valid = label >= 0 && u32(label) < params.cols;
  let ignored = label == params.ignoreIndex;
  if (params.cols == 0u) { // empty rows: lse = log 0, and no class to pick (params are uniform: no barrier is skipped)
    if (lid == 0u) {
      ${store('loss', 'row', 'select(params.nan, 0.0, ignored)', dtype)}
      lseOut[row] = params.negInf;
    }
    return;
  }
  let lse = rowLogSumExp(base, params.cols, lid);
  if (lid == 0u) {
    let picked = ${load('x', 'base + u32(clamp(label, 0, i32(params.cols) - 1))', dtype)};
    let value = select(select(params.nan, lse - picked, valid), 0.0, ignored);
    ${store('loss', 'row', 'value', dtype)}
    lseOut[row] = lse;
  }
}
`;
    kernel = { key, bindings: ['read', 'read', 'write', 'write'], params, source };
    kernels.set(key, kernel);
  }
  return kernel;
}

/** Logits per workgroup of the gradient: four per thread. */
const GRAD_ELEMENTS = 4 * ROW_WORKGROUP;

function gradKernel(dtype: DType, gradDtype: DType): Kernel<Field> {
  const key = `crossEntropyGrad ${dtype} ${gradDtype}`;
  let kernel = kernels.get(key);
  if (!kernel) {
    const elements = [0, 1, 2, 3].map((k) => ({ e: `e${k}`, x: `x${k}`, offset: k * ROW_WORKGROUP }));
    const source = () => `${enables([dtype, gradDtype])}// ${key}: CPU twin \`crossEntropyGrad\` in cpu/loss.ts.
${params.wgsl(5)}
${storageBinding(0, 'x', 'read', dtype)}
${storageBinding(1, 'lseIn', 'read', 'float32')}
${storageBinding(2, 'targets', 'read', 'int32')}
${storageBinding(3, 'gradLoss', 'read', gradDtype)}
${storageBinding(4, 'dx', 'read_write', dtype)}

@compute @workgroup_size(${ROW_WORKGROUP})
fn main(${GRID_BUILTINS}) {
  // Elements e of the flat (rows, cols) logits, coalesced: all four loaded before any is used, so
  // that they are in flight together.
  let total = params.rows * params.cols;
  let first = (${LINEAR_WORKGROUP}) * ${GRAD_ELEMENTS}u + lid;
${elements.map(({ e, x, offset }) => `  let ${e} = first + ${offset}u;\n  let ${x} = ${load('x', `min(${e}, total - 1u)`, dtype)};`).join('\n')}
${elements.map(({ e, x }) => `  if (${e} < total) { ${store('dx', e, `gradAt(${x}, ${e})`, dtype)} }`).join('\n')}
}

// dx[e] for e = r·cols + j: (e^(x − lse_r) − [j = t_r])·g_r, 0 in an ignored row, NaN where t_r is
// out of range. Rows are long, so the per-row values come from the cache.
fn gradAt(x: f32, e: u32) -> f32 {
  let row = e / params.cols;
  let label = targets[row];
  let valid = label >= 0 && u32(label) < params.cols;
  let g = select(params.nan, ${load('gradLoss', 'row', gradDtype)}, valid);
  let onehot = select(0.0, g, i32(e % params.cols) == label);
  return select(exp(x - lseIn[row]) * g - onehot, 0.0, label == params.ignoreIndex);
}
`;
    kernel = { key, bindings: ['read', 'read', 'read', 'read', 'write'], params, source };
    kernels.set(key, kernel);
  }
  return kernel;
}

/** Writes the per-row loss (the logits' dtype) to `loss` and the per-row lse (f32) to `lse`. */
export function runCrossEntropy(
  exec: Executor,
  x: PooledBuffer,
  dtype: DType,
  targets: PooledBuffer,
  rows: number,
  cols: number,
  ignoreIndex: number,
  out: { loss: PooledBuffer; lse: PooledBuffer },
): void {
  const buffers = [x, targets, out.loss, out.lse];
  exec.dispatch('crossEntropy', lossKernel(dtype), buffers, { rows, cols, ignoreIndex, nan: Number.NaN, negInf: -Infinity }, rows);
}

/** Writes the gradient of the logits to `out`, from the lse that runCrossEntropy wrote. */
export function runCrossEntropyGrad(
  exec: Executor,
  x: PooledBuffer,
  dtype: DType,
  lse: PooledBuffer,
  targets: PooledBuffer,
  gradLoss: PooledBuffer,
  gradDtype: DType,
  rows: number,
  cols: number,
  ignoreIndex: number,
  out: PooledBuffer,
): void {
  const kernel = gradKernel(dtype, gradDtype);
  const buffers = [x, lse, targets, gradLoss, out];
  const workgroups = Math.ceil((rows * cols) / GRAD_ELEMENTS);
  exec.dispatch('crossEntropyGrad', kernel, buffers, { rows, cols, ignoreIndex, nan: Number.NaN, negInf: -Infinity }, workgroups);
}
