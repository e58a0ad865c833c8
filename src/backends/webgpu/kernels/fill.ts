/**
 * `full`: every element of a new buffer set to one value. CPU twin: `full` in `cpu/index.ts`.
 *
 *     y[i] = value
 *
 * The value travels as its stored bit pattern (computed on the CPU by a typed array of the dtype), so
 * the GPU writes exactly what a CPU array would hold, ±∞ and NaN included, with no second rounding.
 */
import { Float16Array } from '@petamoriken/float16';
import type { DType } from '../../../tensor/dtype.js';
import type { PooledBuffer } from '../buffer-pool.js';
import type { Executor, Kernel } from '../executor.js';
import { ParamStruct } from '../params.js';
import { enables, GRID_BUILTINS, LINEAR_WORKGROUP, storageBinding, storageType } from '../wgsl.js';

const WORKGROUP = 64;
const params = new ParamStruct([
  ['size', 'u32'],
  ['bits', 'u32'],
] as const);

const kernels = new Map<DType, Kernel<'size' | 'bits'>>();

function fillKernel(dtype: DType): Kernel<'size' | 'bits'> {
  let kernel = kernels.get(dtype);
  if (!kernel) {
    const t = storageType(dtype);
    // f16 bits sit in the low half of the u32; bitcast to a pair of halves and take the first.
    const value = t === 'f16' ? 'bitcast<vec2<f16>>(params.bits).x' : `bitcast<${t}>(params.bits)`;
    const source = () => `${enables([dtype])}// fill ${dtype}: CPU twin \`full\` in cpu/index.ts.
${params.wgsl(1)}
${storageBinding(0, 'y', 'read_write', dtype)}

@compute @workgroup_size(${WORKGROUP})
fn main(${GRID_BUILTINS}) {
  let i = (${LINEAR_WORKGROUP}) * ${WORKGROUP}u + lid;
  if (i < params.size) { y[i] = ${value}; }
}
`;
    kernel = { key: `fill ${dtype}`, bindings: ['write'], params, source };
    kernels.set(dtype, kernel);
  }
  return kernel;
}

/** The bit pattern `value` has when stored as `dtype`, as a u32. */
function bitsOf(value: number, dtype: DType): number {
  if (dtype === 'int32') return value | 0;
  if (dtype === 'float16') return new Uint16Array(new Float16Array([value]).buffer)[0] as number;
  return new Uint32Array(new Float32Array([value]).buffer)[0] as number;
}

export function runFill(exec: Executor, op: string, out: PooledBuffer, size: number, value: number, dtype: DType): void {
  exec.dispatch(op, fillKernel(dtype), [out], { size, bits: bitsOf(value, dtype) }, Math.ceil(size / WORKGROUP));
}
