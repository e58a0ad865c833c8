/**
 * Small pieces of WGSL that every kernel generator shares: how each dtype is stored and computed,
 * storage-buffer declarations, and the 2-D folding of large 1-D grids.
 *
 * Storage vs compute types: float32 and int32 are stored and computed as `f32` and `i32`. float16 is
 * stored as `f16` (which needs the device's `shader-f16` feature) but, like on the CPU, every kernel
 * widens it to `f32` on load and rounds back on store, so only memory traffic is halved.
 */
import type { DType } from '../../tensor/dtype.js';
import type { GpuDevice } from './device.js';

export type StorageType = 'f32' | 'i32' | 'f16';
export type ComputeType = 'f32' | 'i32';

/** The WGSL type a buffer of `dtype` holds. */
export function storageType(dtype: DType): StorageType {
  switch (dtype) {
    case 'float32':
      return 'f32';
    case 'int32':
      return 'i32';
    case 'float16':
      return 'f16';
    case 'float64':
      throw new Error('float64 is CPU-only; WGSL has no 64-bit floats. Use float32 on the GPU, or the CPU backend.');
  }
}

/** The WGSL type a kernel does arithmetic in for `dtype`. */
export const computeType = (dtype: DType): ComputeType => (dtype === 'int32' ? 'i32' : 'f32');

/** `enable f16;` when any of the dtypes is float16, else nothing. */
export const enables = (dtypes: readonly DType[]): string => (dtypes.includes('float16') ? 'enable f16;\n' : '');

/** `@group(0) @binding(i) var<storage, …> name: array<T>;` */
export function storageBinding(binding: number, name: string, access: 'read' | 'read_write', dtype: DType | 'u32'): string {
  const type = dtype === 'u32' ? 'u32' : storageType(dtype);
  return `@group(0) @binding(${binding}) var<storage, ${access}> ${name}: array<${type}>;`;
}

/** Reads `array[index]` as its compute type (widening f16 to f32). */
export const load = (array: string, index: string, dtype: DType): string =>
  dtype === 'float16' ? `f32(${array}[${index}])` : `${array}[${index}]`;

/** An expression of compute type `from` converted to compute type `to` (exactly like JS stores do). */
export function convert(expr: string, from: ComputeType, to: ComputeType): string {
  if (from === to) return expr;
  return to === 'f32' ? `f32(${expr})` : `toInt32(${expr})`;
}

/** `array[index] = value` for a value of the dtype's compute type (rounding to f16 when stored so). */
export const store = (array: string, index: string, value: string, dtype: DType): string =>
  dtype === 'float16' ? `${array}[${index}] = f16(${value});` : `${array}[${index}] = ${value};`;

/**
 * ToInt32 as JS's `Int32Array` stores do it: truncate toward zero, wrap modulo 2³², and map NaN and
 * ±∞ to 0. WGSL's own `i32(f)` clamps instead of wrapping, so the wrap is done in f32 first, where it
 * is exact (a float ≥ 2³¹ is a whole number, and so is its remainder modulo 2³²).
 */
export const TO_INT32 = /* wgsl */ `
fn toInt32(v: f32) -> i32 {
  if (!(abs(v) <= 3.4028234e38)) { return 0; } // NaN or ±∞
  let t = trunc(v);
  if (abs(t) < 2147483648.0) { return i32(t); }
  let r = t - 4294967296.0 * floor(t / 4294967296.0); // in [0, 2³²)
  return select(i32(r), i32(r - 4294967296.0), r >= 2147483648.0);
}
`;

/**
 * Workgroups per grid dimension are limited (65535 by default), so a long 1-D grid is folded into
 * (x, y) with x ≤ the limit. Kernels recover the linear workgroup number with this expression, given
 * the `workgroup_id` and `num_workgroups` builtins as `wid` and `nwg`.
 */
export const LINEAR_WORKGROUP = 'wid.y * nwg.x + wid.x';

/** Builtins a kernel on a folded 1-D grid declares. */
export const GRID_BUILTINS =
  '@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32';

/**
 * What kernel generators need to know of the device: its workgroup memory, its subgroups' width, and
 * whether to write their fixed-count loops out. Written out, a loop's arrays stay in registers and
 * its iterations interleave (a GPU's compiler is then free to schedule them); on a CPU-emulated
 * adapter (lavapipe) LLVM needs tens of seconds to compile written-out kernels, so there they stay
 * loops (see `Loops` in kernels/selective-scan.ts).
 */
export interface KernelDevice {
  readonly maxSharedBytes: number;
  readonly unroll: boolean;
  /** Lanes per subgroup that kernels may exchange values across (1: none; see GpuDevice.subgroupSize). */
  readonly subgroupSize: number;
}

export const kernelDevice = (gpu: GpuDevice): KernelDevice => ({
  maxSharedBytes: gpu.limits.maxComputeWorkgroupStorageSize,
  unroll: !gpu.isSoftware,
  subgroupSize: gpu.subgroupSize,
});
