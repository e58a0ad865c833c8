/**
 * One generated kernel family for every element-wise op: copy (with dtype conversion), assign, unary,
 * binary and where. CPU twins: `copy`, `assign`, `unary`, `binary`, `where` in `cpu/elementwise.ts`.
 *
 * Each output element i is
 *
 *     (c0, …, c_{r−1}) = the row-major coordinates of i in the shape
 *     v_j  = x_j[offset_j + Σ_k c_k·stride_jk]          for each input view j
 *     y[i] = op(v_0, v_1, …)      (or y[offset + Σ_k c_k·stride_k] for assign)
 *
 * so transposed, sliced and broadcast (stride 0) inputs need no copies. Shapes and strides are runtime
 * parameters; only the rank is baked into the WGSL (the coordinate loop is unrolled), along with the
 * op's expression and the dtypes, which together form the pipeline's key.
 *
 * A thread computes ELEMENTS_PER_THREAD outputs, a workgroup's width apart, and loads the inputs of
 * all of them before it stores any: each load instruction of a workgroup still reads consecutive
 * elements, and each thread has four loads in flight instead of one. On an H200 a copy of 64 MiB went
 * from 1.2–1.3 to 3.3–3.6 TB/s (one of 256 MiB from 1.8 to 2.9), an add of two 64 MiB arrays from 1.8
 * to 3.8 TB/s.
 *
 * Before launching, axes are *coalesced*: size-1 axes are dropped and neighbouring axes that every
 * view steps through as one (stride_k = stride_{k+1}·shape_{k+1}) are merged. Contiguous tensors of any
 * shape thus become rank 1, which keeps the index arithmetic (a division per axis) and the number of
 * distinct pipelines small.
 */

import type { DType } from '../../../tensor/dtype.js';
import type { BinaryOp, UnaryOp } from '../../backend.js';
import type { PooledBuffer } from '../buffer-pool.js';
import type { Executor, Kernel } from '../executor.js';
import { ParamStruct, type ParamType } from '../params.js';
import { computeType, convert, enables, GRID_BUILTINS, LINEAR_WORKGROUP, load, storageBinding, store } from '../wgsl.js';
import { binaryExpr, helpersFor, unaryExpr } from './elementwise-ops.js';

export type Expression =
  | { readonly kind: 'copy' } // y = x, converted to y's dtype (also assign's expression)
  | { readonly kind: 'unary'; readonly op: UnaryOp }
  | { readonly kind: 'binary'; readonly op: BinaryOp }
  | { readonly kind: 'where' }; // y = x0 ≠ 0 ? x1 : x2

/** A view as a kernel operand: its buffer, dtype and layout. */
export interface Operand {
  readonly buffer: PooledBuffer;
  readonly dtype: DType;
  readonly strides: readonly number[];
  readonly offset: number;
}

// 256 threads a workgroup. On the H200, with one output per thread, a copy ran at 770 GB/s with 64
// threads and 1866 GB/s with 256; with four per thread, 2.9–3.0 TB/s with 128 or 256 (64 MiB: 3.3–3.6
// with 256, 1.5 with 64).
export const ELEMENTWISE_WORKGROUP = 256;
/** Output elements per thread (see the file comment). */
const ELEMENTS_PER_THREAD = 4;
/** Output elements per workgroup of the element-wise kernels. */
export const ELEMENTWISE_ELEMENTS = ELEMENTWISE_WORKGROUP * ELEMENTS_PER_THREAD;

/**
 * Axes with size-1 dropped and mergeable neighbours merged, for all layouts at once
 * (the CPU's `coalesce` in `cpu/strided.ts`, extended to several views).
 */
export function coalesce(shape: readonly number[], layouts: readonly (readonly number[])[]): { shape: number[]; strides: number[][] } {
  const outShape: number[] = [];
  const outStrides: number[][] = layouts.map(() => []);
  for (let k = 0; k < shape.length; k++) {
    const size = shape[k] as number;
    if (size === 1) continue;
    const last = outShape.length - 1;
    const mergeable = last >= 0 && layouts.every((s, j) => outStrides[j]?.[last] === (s[k] as number) * size);
    if (mergeable) {
      outShape[last] = (outShape[last] as number) * size;
      layouts.forEach((s, j) => {
        (outStrides[j] as number[])[last] = s[k] as number;
      });
    } else {
      outShape.push(size);
      layouts.forEach((s, j) => {
        (outStrides[j] as number[]).push(s[k] as number);
      });
    }
  }
  return { shape: outShape, strides: outStrides };
}

/**
 * Runs `expr` over `inputs` (all of `shape`) into `output`. A fresh output is written contiguously
 * from element 0 (`outputIsView` false: its layout is ignored); assign writes through the destination
 * view's strides and offset instead (`outputIsView` true).
 */
export function runElementwise(
  exec: Executor,
  op: string,
  expr: Expression,
  shape: readonly number[],
  inputs: readonly Operand[],
  output: Operand,
  outputIsView: boolean,
): void {
  const size = shape.reduce((n, d) => n * d, 1);
  if (size === 0) return;
  const views = outputIsView ? [...inputs, output] : inputs;
  const layout = coalesce(
    shape,
    views.map((v) => v.strides),
  );
  const rank = layout.shape.length;
  const kernel = elementwiseKernel(
    expr,
    inputs.map((x) => x.dtype),
    output.dtype,
    rank,
    outputIsView,
  );

  const values: Record<string, number> = { size };
  layout.shape.forEach((d, k) => {
    values[`shape${k}`] = d;
  });
  views.forEach((v, j) => {
    const name = j < inputs.length ? `x${j}` : 'y';
    values[`${name}_offset`] = v.offset;
    layout.strides[j]?.forEach((s, k) => {
      values[`${name}_stride${k}`] = s;
    });
  });
  exec.dispatch(op, kernel, [...inputs.map((x) => x.buffer), output.buffer], values, Math.ceil(size / ELEMENTWISE_ELEMENTS));
}

const kernels = new Map<string, Kernel>();

function elementwiseKernel(expr: Expression, inputs: readonly DType[], output: DType, rank: number, outputIsView: boolean): Kernel {
  const name = expr.kind === 'unary' || expr.kind === 'binary' ? `${expr.kind} ${expr.op}` : expr.kind;
  const key = `elementwise ${name} (${inputs.join(',')})->${output}${outputIsView ? ' strided' : ''} rank ${rank}`;
  let kernel = kernels.get(key);
  if (!kernel) {
    const fields: [string, ParamType][] = [['size', 'u32']];
    for (let k = 0; k < rank; k++) fields.push([`shape${k}`, 'u32']);
    const viewNames = [...inputs.map((_, j) => `x${j}`), ...(outputIsView ? ['y'] : [])];
    for (const v of viewNames) {
      fields.push([`${v}_offset`, 'i32']);
      for (let k = 0; k < rank; k++) fields.push([`${v}_stride${k}`, 'i32']);
    }
    const params = new ParamStruct(fields);
    const source = () => elementwiseSource(key, expr, inputs, output, rank, outputIsView, params);
    kernel = { key, bindings: [...inputs.map(() => 'read' as const), 'write'], params, source };
    kernels.set(key, kernel);
  }
  return kernel;
}

/** The op applied to the loaded values v0, v1, … as an expression of y's compute type. */
function opExpression(expr: Expression, inputs: readonly DType[], output: DType): string {
  const t = computeType(output);
  switch (expr.kind) {
    case 'copy':
      return convert('v0', computeType(inputs[0] as DType), t);
    case 'unary':
      return unaryExpr(expr.op, t, 'v0');
    case 'binary':
      return binaryExpr(expr.op, t, 'v0', 'v1');
    case 'where': {
      // !(c == 0) rather than c != 0, so that a NaN condition counts as true even when the compiler
      // assumes there are no NaNs (see elementwise-ops.ts).
      const zero = computeType(inputs[0] as DType) === 'f32' ? '0.0' : '0';
      return `select(v2, v1, !(v0 == ${zero}))`;
    }
  }
}

function elementwiseSource(
  key: string,
  expr: Expression,
  inputs: readonly DType[],
  output: DType,
  rank: number,
  outputIsView: boolean,
  params: ParamStruct,
): string {
  // The buffer index of view v at flat element i: offset + Σ c_k·stride_k, with (c_0, …) the
  // coordinates of i in the shape, last axis fastest.
  const indexFn = (v: string): string => {
    const lines = ['  var rest = i;'];
    for (let k = rank - 1; k > 0; k--) lines.push(`  let c${k} = rest % params.shape${k};`, `  rest = rest / params.shape${k};`);
    lines.push('  let c0 = rest;');
    const terms = [`params.${v}_offset`, ...Array.from({ length: rank }, (_, k) => `i32(c${k}) * params.${v}_stride${k}`)];
    return `fn index_${v}(i: u32) -> u32 {\n${rank > 0 ? `${lines.join('\n')}\n` : ''}  return u32(${terms.join(' + ')});\n}`;
  };
  const views = [...inputs.map((_, j) => `x${j}`), ...(outputIsView ? ['y'] : [])];
  const args = inputs.map((dtype, j) => `v${j}: ${computeType(dtype)}`).join(', ');
  const elements = Array.from({ length: ELEMENTS_PER_THREAD }, (_, k) => k);
  // Loads at a clamped element, so that the last workgroup's spare threads read in bounds.
  const results = elements.map((k) => {
    const loads = inputs.map((dtype, j) => load(`x${j}`, `index_x${j}(min(e${k}, params.size - 1u))`, dtype));
    return `  let e${k} = first + ${k * ELEMENTWISE_WORKGROUP}u;\n  let r${k} = op(${loads.join(', ')});`;
  });
  const stores = elements.map(
    (k) => `  if (e${k} < params.size) { ${store('y', outputIsView ? `index_y(e${k})` : `e${k}`, `r${k}`, output)} }`,
  );
  const value = opExpression(expr, inputs, output);
  return `${enables([...inputs, output])}// ${key}: CPU twin in cpu/elementwise.ts.
${params.wgsl(inputs.length + 1)}
${inputs.map((dtype, j) => storageBinding(j, `x${j}`, 'read', dtype)).join('\n')}
${storageBinding(inputs.length, 'y', 'read_write', output)}

${helpersFor(value)}

fn op(${args}) -> ${computeType(output)} { return ${value}; }

${views.map(indexFn).join('\n\n')}

@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(${GRID_BUILTINS}) {
  let first = (${LINEAR_WORKGROUP}) * ${ELEMENTWISE_ELEMENTS}u + lid;
${results.join('\n')}
${stores.join('\n')}
}
`;
}
