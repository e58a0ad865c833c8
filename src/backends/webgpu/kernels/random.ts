/**
 * Counter-based random numbers. CPU twin: `random` in `cpu/elementwise.ts`; the formulas are those of
 * `tensor/random.ts`, so both backends draw the same stream (equal up to f32 rounding for normals,
 * whose log and cos are evaluated in f32 here and in doubles there):
 *
 *     pcg(x) = let s = x·747796405 + 2891336453,  w = ((s >> ((s >> 28) + 4)) ^ s)·277803737
 *              in (w >> 22) ^ w                                   (u32 arithmetic, mod 2³²)
 *     uniform:  y[i] = (pcg(i + k) >> 8) · 2⁻²⁴
 *     normal:   u1 = ((pcg(2i + k) >> 8) + 1) · 2⁻²⁴,  u2 = (pcg(2i + 1 + k) >> 8) · 2⁻²⁴
 *               y[i] = √(−2 ln u1) · cos(2π u2)
 *
 * with k = pcg(seed), computed once on the CPU. Every thread computes its own element: no state.
 */
import type { DType } from '../../../tensor/dtype.js';
import { pcgHash } from '../../../tensor/random.js';
import type { RandomDist } from '../../backend.js';
import type { PooledBuffer } from '../buffer-pool.js';
import type { Executor, Kernel } from '../executor.js';
import { ParamStruct } from '../params.js';
import { enables, GRID_BUILTINS, LINEAR_WORKGROUP, storageBinding, store } from '../wgsl.js';

const WORKGROUP = 64;
const params = new ParamStruct([
  ['size', 'u32'],
  ['key', 'u32'],
] as const);

const kernels = new Map<string, Kernel<'size' | 'key'>>();

function randomKernel(dist: RandomDist, dtype: DType): Kernel<'size' | 'key'> {
  const key = `random ${dist} ${dtype}`;
  let kernel = kernels.get(key);
  if (!kernel) {
    // cos(θ) = −cos(θ − π) keeps the argument in [−π, π), where GPU cosines are accurate.
    const value =
      dist === 'uniform'
        ? 'f32(pcg(i + params.key) >> 8u) * TWO_POW_MINUS_24'
        : `sqrt(-2.0 * log(f32((pcg(2u * i + params.key) >> 8u) + 1u) * TWO_POW_MINUS_24))
      * -cos(6.283185307179586 * f32(pcg(2u * i + 1u + params.key) >> 8u) * TWO_POW_MINUS_24 - 3.141592653589793)`;
    const source = () => `${enables([dtype])}// ${key}: CPU twin \`random\` in cpu/elementwise.ts.
${params.wgsl(1)}
${storageBinding(0, 'y', 'read_write', dtype)}

const TWO_POW_MINUS_24: f32 = 5.9604644775390625e-8;

// The PCG hash (Jarzynski & Olano 2020), exactly as pcgHash in tensor/random.ts.
fn pcg(x: u32) -> u32 {
  let s = x * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}

@compute @workgroup_size(${WORKGROUP})
fn main(${GRID_BUILTINS}) {
  let i = (${LINEAR_WORKGROUP}) * ${WORKGROUP}u + lid;
  if (i >= params.size) { return; }
  ${store('y', 'i', value, dtype)}
}
`;
    kernel = { key, bindings: ['write'], params, source };
    kernels.set(key, kernel);
  }
  return kernel;
}

export function runRandom(exec: Executor, out: PooledBuffer, dist: RandomDist, size: number, seed: number, dtype: DType): void {
  exec.dispatch(`random ${dist}`, randomKernel(dist, dtype), [out], { size, key: pcgHash(seed) }, Math.ceil(size / WORKGROUP));
}
