/**
 * Cross-entropy from logits, fused with its softmax, and its gradient. CPU twins: `crossEntropy` and
 * `crossEntropyGrad` in `cpu/loss.ts`.
 *
 *     lse_r  = log Σ_j e^(x_rj)                           (row-logsumexp.ts: one read of the row)
 *     loss_r = lse_r − x[r, t_r]                          (0 where t_r = ignoreIndex)
 *     dx_rj  = (e^(x_rj − lse_r) − [j = t_r]) · g_r       (0 rows where t_r = ignoreIndex)
 *
 * one workgroup per row in both kernels. The forward writes lse_r (in f32, whatever the logits' dtype)
 * beside the loss, and the gradient reads it back instead of computing it again: each logit is read
 * once by the forward, and once more by the gradient, which writes each dx once. A target outside
 * [0, cols) makes the CPU throw; a kernel cannot, so it makes that row's loss and gradient NaN, which
 * no training run can miss. (The NaN is passed in as a parameter: WGSL constants cannot be NaN.)
 */
import type { DType } from '../../../tensor/dtype.js';
import type { PooledBuffer } from '../buffer-pool.js';
import type { Executor, Kernel } from '../executor.js';
import { ParamStruct } from '../params.js';
import { enables, GRID_BUILTINS, LINEAR_WORKGROUP, load, storageBinding, store } from '../wgsl.js';
import { rowLogSumExpWgsl } from './row-logsumexp.js';
import { ROW_WORKGROUP } from './workgroup-reduce.js';

type Field = 'rows' | 'cols' | 'ignoreIndex' | 'nan';
const params = new ParamStruct<Field>([
  ['rows', 'u32'],
  ['cols', 'u32'],
  ['ignoreIndex', 'i32'],
  ['nan', 'f32'],
]);

const kernels = new Map<string, Kernel<Field>>();

/**
 * The start of both kernels: the workgroup's row and its target class, `label` (`target` is a WGSL
 * keyword), which is `valid` inside [0, cols) and may be `ignored`.
 */
const PROLOGUE = `  let row = ${LINEAR_WORKGROUP};
  if (row >= params.rows) { return; }
  let base = row * params.cols;
  let label = targets[row];
  let valid = label >= 0 && u32(label) < params.cols;
  let ignored = label == params.ignoreIndex;`;

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
${PROLOGUE}
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

function gradKernel(dtype: DType, gradDtype: DType): Kernel<Field> {
  const key = `crossEntropyGrad ${dtype} ${gradDtype}`;
  let kernel = kernels.get(key);
  if (!kernel) {
    const source = () => `${enables([dtype, gradDtype])}// ${key}: CPU twin \`crossEntropyGrad\` in cpu/loss.ts.
${params.wgsl(5)}
${storageBinding(0, 'x', 'read', dtype)}
${storageBinding(1, 'lseIn', 'read', 'float32')}
${storageBinding(2, 'targets', 'read', 'int32')}
${storageBinding(3, 'gradLoss', 'read', gradDtype)}
${storageBinding(4, 'dx', 'read_write', dtype)}

@compute @workgroup_size(${ROW_WORKGROUP})
fn main(${GRID_BUILTINS}) {
${PROLOGUE}
  let lse = lseIn[row];
  let g = select(params.nan, ${load('gradLoss', 'row', gradDtype)}, valid);
  // Four logits loaded before any is used, so that four loads are in flight at a time (one at a
  // time, each waits out the memory's latency: 48% of the copy bandwidth on an H200).
  var j = lid;
  for (; j + ${3 * ROW_WORKGROUP}u < params.cols; j += ${4 * ROW_WORKGROUP}u) {
${[0, 1, 2, 3].map((k) => `    let x${k} = ${load('x', `base + j + ${k * ROW_WORKGROUP}u`, dtype)};`).join('\n')}
${[0, 1, 2, 3].map((k) => `    ${store('dx', `base + j + ${k * ROW_WORKGROUP}u`, `gradAt(x${k}, j + ${k * ROW_WORKGROUP}u, lse, g, label, ignored)`, dtype)}`).join('\n')}
  }
  for (; j < params.cols; j += ${ROW_WORKGROUP}u) {
    ${store('dx', 'base + j', `gradAt(${load('x', 'base + j', dtype)}, j, lse, g, label, ignored)`, dtype)}
  }
}

// dx_rj = (e^(x_rj − lse_r) − [j = t_r]) · g_r, and 0 in an ignored row.
fn gradAt(x: f32, j: u32, lse: f32, g: f32, label: i32, ignored: bool) -> f32 {
  return select(exp(x - lse) * g - select(0.0, g, i32(j) == label), 0.0, ignored);
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
  exec.dispatch('crossEntropy', lossKernel(dtype), buffers, { rows, cols, ignoreIndex, nan: Number.NaN }, rows);
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
  exec.dispatch('crossEntropyGrad', kernel, buffers, { rows, cols, ignoreIndex, nan: Number.NaN }, rows);
}
