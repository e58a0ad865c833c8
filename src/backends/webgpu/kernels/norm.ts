/**
 * LayerNorm and RMSNorm of each row of a contiguous (rows, dim) buffer, and their gradient, one
 * workgroup per row (on a grid folded into two dimensions past 65535 rows, see wgsl.ts). CPU twins:
 * `norm` and `normGrad` in `cpu/norm.ts`, which derives the gradient.
 *
 *     forward:   μ = Σx/n (RMSNorm: 0),   rstd = 1/√(Σ(x − μ)²/n + ε),   y = (x − μ)·rstd·γ + β
 *     backward:  x̂ = (x − μ)·rstd,   g' = g·γ,   dx = rstd·(g' − Σg'/n − x̂·Σ(g'·x̂)/n)   (RMSNorm: no Σg'/n)
 *
 * Thread t of a row's workgroup walks elements t, t + 256, … and each sum over the row is a workgroup
 * tree reduction of the threads' partial sums (workgroup-reduce.ts). The forward reads the row three
 * times, for Σx, for Σ(x − μ)² (two passes: mean x² − μ² loses every digit when |μ| ≫ σ) and to write
 * y, the later reads from the cache (RMSNorm has no Σx). It writes each row's μ and rstd in f32,
 * whatever x's dtype, for the backward, which so never sums the row's x again: it reads the row
 * twice, once for its two sums and once to write dx.
 *
 * The parameters' gradients, dγ = Σ_rows g·x̂ and dβ = Σ_rows g, are sums down the columns, across
 * the rows' workgroups, which no single workgroup sees. The backward kernel writes g·x̂ beside dx (it
 * has x̂ in hand), and the op sums it, and g, with the column reduction of reduce.ts, which reads a
 * (rows, dim) matrix in place and splits long columns into chunks to keep the GPU busy. A dedicated
 * dγ/dβ pass would save that (rows, dim) buffer but read x and g once more, and it would need the
 * same chunking to fill the GPU with only dim columns: reduce.ts already has it, tested.
 */
import type { DType } from '../../../tensor/dtype.js';
import type { NormKind } from '../../backend.js';
import type { PooledBuffer } from '../buffer-pool.js';
import type { Access, Executor, Kernel } from '../executor.js';
import { ParamStruct } from '../params.js';
import { enables, GRID_BUILTINS, LINEAR_WORKGROUP, load, storageBinding, store } from '../wgsl.js';
import { ROW_WORKGROUP, WORKGROUP_REDUCTIONS } from './workgroup-reduce.js';

type ForwardField = 'rows' | 'dim' | 'eps';
const forwardParams = new ParamStruct<ForwardField>([
  ['rows', 'u32'],
  ['dim', 'u32'],
  ['eps', 'f32'],
]);

type GradField = 'rows' | 'dim';
const gradParams = new ParamStruct<GradField>([
  ['rows', 'u32'],
  ['dim', 'u32'],
]);

/** A storage array a kernel variant binds: its WGSL name, how it is used, and what it holds. */
type StorageArray = readonly [name: string, access: Access, dtype: DType];

/** The declarations of `buffers` at bindings 0, 1, … and their accesses, for the kernel's layout. */
function declare(buffers: readonly StorageArray[]): { wgsl: string; bindings: Access[] } {
  const wgsl = buffers.map(([name, access, dtype], i) => storageBinding(i, name, access === 'read' ? 'read' : 'read_write', dtype));
  return { wgsl: wgsl.join('\n'), bindings: buffers.map(([, access]) => access) };
}

/** The start of both kernels: the workgroup's row, where it begins, and its length as a float. */
const PROLOGUE = `  let row = ${LINEAR_WORKGROUP};
  if (row >= params.rows) { return; }
  let base = row * params.dim;
  let n = f32(params.dim);`;

/** `for` over this thread's elements of the row. */
const EACH = `for (var j = lid; j < params.dim; j += ${ROW_WORKGROUP}u)`;

const forwardKernels = new Map<string, Kernel<ForwardField>>();
const gradKernels = new Map<string, Kernel<GradField>>();

function forwardKernel(kind: NormKind, dtype: DType, weight: boolean, bias: boolean): Kernel<ForwardField> {
  const key = `${kind}Norm ${dtype}${weight ? ' +weight' : ''}${bias ? ' +bias' : ''}`;
  let kernel = forwardKernels.get(key);
  if (!kernel) {
    const layer = kind === 'layer';
    const { wgsl, bindings } = declare([
      ['x', 'read', dtype],
      ...(weight ? [['gamma', 'read', dtype] as const] : []),
      ...(bias ? [['beta', 'read', dtype] as const] : []),
      ['y', 'write', dtype],
      ...(layer ? [['meanOut', 'write', 'float32'] as const] : []),
      ['rstdOut', 'write', 'float32'],
    ]);
    const x = load('x', 'base + j', dtype);
    let value = `(${x} - mu) * rstd`;
    if (weight) value += ` * ${load('gamma', 'j', dtype)}`;
    if (bias) value += ` + ${load('beta', 'j', dtype)}`;
    // μ is measured from the row's first element, x₀ + Σ(x − x₀)/n: a constant row's μ is then that
    // constant exactly and x − μ = 0, whatever the division's accuracy (WGSL allows 2.5 ulp; an H200
    // was an ulp off, which a constant row's rstd = 1/√ε magnifies 316 times).
    const mean = layer
      ? `var origin = 0.0; // x₀, read only where the row has one
  if (params.dim > 0u) { origin = ${load('x', 'base', dtype)}; }
  var sum = 0.0;
  ${EACH} { sum += ${x} - origin; }
  let mu = origin + workgroupSum(sum, lid) / n;`
      : 'let mu = 0.0;';
    const source = () => `${enables([dtype])}// ${key}: CPU twin \`norm\` in cpu/norm.ts.
${forwardParams.wgsl(bindings.length)}
${wgsl}

${WORKGROUP_REDUCTIONS}
@compute @workgroup_size(${ROW_WORKGROUP})
fn main(${GRID_BUILTINS}) {
${PROLOGUE}
  ${mean}
  var squares = 0.0;
  ${EACH} {
    let d = ${x} - mu;
    squares += d * d;
  }
  let rstd = 1.0 / sqrt(workgroupSum(squares, lid) / n + params.eps);
  ${EACH} {
    ${store('y', 'base + j', value, dtype)}
  }
  if (lid == 0u) {
    ${layer ? 'meanOut[row] = mu;\n    ' : ''}rstdOut[row] = rstd;
  }
}
`;
    kernel = { key, bindings, params: forwardParams, source };
    forwardKernels.set(key, kernel);
  }
  return kernel;
}

function gradKernel(kind: NormKind, dtype: DType, weight: boolean, gxhat: boolean): Kernel<GradField> {
  const key = `${kind}NormGrad ${dtype}${weight ? ' +weight' : ''}${gxhat ? ' +gxhat' : ''}`;
  let kernel = gradKernels.get(key);
  if (!kernel) {
    const layer = kind === 'layer';
    const { wgsl, bindings } = declare([
      ['x', 'read', dtype],
      ...(weight ? [['gamma', 'read', dtype] as const] : []),
      ...(layer ? [['meanIn', 'read', 'float32'] as const] : []),
      ['rstdIn', 'read', 'float32'],
      ['grad', 'read', dtype],
      ['dx', 'write', dtype],
      ...(gxhat ? [['gxhat', 'write', dtype] as const] : []),
    ]);
    // This thread's elements: g, x̂ = (x − μ)·rstd and g' = g·γ.
    const element = [
      `let g = ${load('grad', 'base + j', dtype)};`,
      `let xhat = (${load('x', 'base + j', dtype)} - mu) * rstd;`,
      `let gw = ${weight ? `g * ${load('gamma', 'j', dtype)}` : 'g'};`,
    ].join('\n    ');
    const sums = layer ? "var sumG = 0.0; // Σ g'\n  var sumGx = 0.0; // Σ g'·x̂" : "var sumGx = 0.0; // Σ g'·x̂";
    const accumulate = [
      ...(layer ? ['sumG += gw;'] : []),
      'sumGx += gw * xhat;',
      ...(gxhat ? [store('gxhat', 'base + j', 'g * xhat', dtype)] : []),
    ].join('\n    ');
    const source = () => `${enables([dtype])}// ${key}: CPU twin \`normGrad\` in cpu/norm.ts.
${gradParams.wgsl(bindings.length)}
${wgsl}

${WORKGROUP_REDUCTIONS}
@compute @workgroup_size(${ROW_WORKGROUP})
fn main(${GRID_BUILTINS}) {
${PROLOGUE}
  let mu = ${layer ? 'meanIn[row]' : '0.0'};
  let rstd = rstdIn[row];
  ${sums}
  ${EACH} {
    ${element}
    ${accumulate}
  }
  let meanG = ${layer ? 'workgroupSum(sumG, lid) / n' : '0.0'};
  let meanGx = workgroupSum(sumGx, lid) / n;
  ${EACH} {
    ${element}
    ${store('dx', 'base + j', 'rstd * (gw - meanG - xhat * meanGx)', dtype)}
  }
}
`;
    kernel = { key, bindings, params: gradParams, source };
    gradKernels.set(key, kernel);
  }
  return kernel;
}

/** Writes y (rows, dim) in x's dtype, and rstd and, for 'layer', μ (rows) in f32. */
export function runNorm(
  exec: Executor,
  kind: NormKind,
  x: PooledBuffer,
  dtype: DType,
  weight: PooledBuffer | null,
  bias: PooledBuffer | null,
  rows: number,
  dim: number,
  eps: number,
  out: { y: PooledBuffer; mean: PooledBuffer | null; rstd: PooledBuffer },
): void {
  const kernel = forwardKernel(kind, dtype, weight !== null, bias !== null);
  const buffers = [x, weight, bias, out.y, out.mean, out.rstd].filter((b) => b !== null);
  exec.dispatch(`${kind}Norm`, kernel, buffers, { rows, dim, eps }, rows);
}

/** Writes dx (rows, dim) in x's dtype and, when `out.gxhat` is given, g·x̂ (rows, dim) there. */
export function runNormGrad(
  exec: Executor,
  kind: NormKind,
  x: PooledBuffer,
  dtype: DType,
  weight: PooledBuffer | null,
  mean: PooledBuffer | null,
  rstd: PooledBuffer,
  grad: PooledBuffer,
  rows: number,
  dim: number,
  out: { dx: PooledBuffer; gxhat: PooledBuffer | null },
): void {
  const kernel = gradKernel(kind, dtype, weight !== null, out.gxhat !== null);
  const buffers = [x, weight, mean, rstd, grad, out.dx, out.gxhat].filter((b) => b !== null);
  exec.dispatch(`${kind}NormGrad`, kernel, buffers, { rows, dim }, rows);
}
