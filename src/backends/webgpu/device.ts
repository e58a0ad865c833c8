/**
 * Finding a GPU and holding on to it: the one `GPUDevice` the WebGPU backend runs everything on.
 *
 * Under Node, WebGPU comes from Dawn (Chrome's implementation) through the npm package `webgpu`, whose
 * `create(flags)` returns the object browsers call `navigator.gpu`. We ask for the adapter's real
 * limits instead of WebGPU's small defaults (a 128 MiB storage binding is the default; big GPUs allow
 * gigabytes) and for the optional features the kernels can use.
 *
 * Errors on a GPU are asynchronous by design: a bad command is reported through the device's
 * `uncapturederror` event, not by the call that made it. We store the first such error and throw it
 * as a plain JS `Error` at the next op or read, naming that op. Losing the device (a driver crash or
 * reset) cannot be recovered from, so it ends the process with one sentence, unless we destroyed the
 * device ourselves.
 */
import type {} from 'webgpu'; // the global WebGPU types (GPUDevice, …) come with the package's typings

/** `GPUBufferUsage` flags, fixed by the WebGPU spec (Dawn's Node binding only exports them lazily). */
export const BufferUsage = {
  MAP_READ: 0x0001,
  COPY_SRC: 0x0004,
  COPY_DST: 0x0008,
  UNIFORM: 0x0040,
  STORAGE: 0x0080,
  QUERY_RESOLVE: 0x0200,
} as const;

/** `GPUMapMode.READ` and `GPUShaderStage.COMPUTE`, likewise fixed by the spec. */
export const MAP_READ_MODE = 0x0001;
export const COMPUTE_STAGE = 0x0004;

/** The limits the kernels are sized by; each is the adapter's own maximum. */
export interface GpuLimits {
  readonly maxStorageBufferBindingSize: number;
  readonly maxBufferSize: number;
  readonly maxComputeWorkgroupStorageSize: number;
  readonly maxComputeInvocationsPerWorkgroup: number;
  readonly maxComputeWorkgroupsPerDimension: number;
  /** WebGPU guarantees 8; the selective scan's backward binds 10. */
  readonly maxStorageBuffersPerShaderStage: number;
  readonly minUniformBufferOffsetAlignment: number;
  readonly minStorageBufferOffsetAlignment: number;
}

/** Optional features we asked for and got. */
export interface GpuFeatures {
  /** `shader-f16`: WGSL `f16`, so float16 tensors can be stored as half precision. */
  readonly f16: boolean;
  /** `subgroups`: cross-lane operations (the selective scan's backward sums over rows with them). */
  readonly subgroups: boolean;
  /** `timestamp-query`: GPU-side timing, for the per-kernel profile (profiler.ts). */
  readonly timestampQuery: boolean;
}

const REQUESTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
] as const;

/**
 * Dawn instances (`navigator.gpu`) of open devices. Held only to keep them alive: a garbage-collected
 * instance tears its device down under our feet (a segfault at the next wait, seen with lavapipe).
 */
const instances = new Set<GPU>();

const NO_ADAPTER =
  'No WebGPU adapter was found: this machine has no GPU that Dawn can use. On Linux without a GPU, ' +
  'run `npm run setup` to install Mesa lavapipe (software Vulkan), or use the CPU backend.';

/** Dawn flags from the environment, e.g. `WEBGPU_FLAGS="backend=vulkan"` (as scripts/webgpu-info.mjs reads them). */
const flagsFromEnv = (): string[] => (process.env.WEBGPU_FLAGS ?? '').split(/\s+/).filter(Boolean);

/**
 * Dawn hides `shader-f16` on NVIDIA's Vulkan driver unless this toggle is on (Dawn's
 * PhysicalDeviceVk.cpp, crbug.com/42251215: some f16 *arithmetic* conformance tests fail there). We
 * use f16 only to store tensors, loading and storing halves and computing in f32, which is the
 * well-trodden part; with the toggle the H200 exposed the feature and an f16 kernel gave correct
 * results. Other drivers ignore the toggle.
 */
const NVIDIA_F16_TOGGLE = 'vulkan_enable_f16_on_nvidia';

/**
 * Dawn rounds timestamp-query results to multiples of 65 536 ns (measured on lavapipe), a browser's
 * defence against timing attacks that would make most kernels read as 0 or 65.5 µs in a profile
 * (profiler.ts). Nothing here needs that defence, so the toggle is turned off.
 */
const TIMESTAMP_QUANTIZATION_TOGGLE = 'timestamp_quantization';

/**
 * WebGPU promises that no index reaches outside its array, and Dawn keeps that promise by clamping
 * every index into every array a kernel touches: storage buffers, workgroup memory, local arrays. A
 * browser needs that, as its shaders come from any web page; our kernels are all our own, and each
 * keeps its own indices in bounds (stores behind the check that makes them valid, loads past an
 * edge at a clamped index, as the selective scan's staging does). The clamps cost a minimum per
 * access and registers: on an H200 the selective scan took 0.71–0.74 ms instead of 0.79–0.82
 * without them, its backward 2.40–2.46 ms instead of 2.71–2.76 (bench/RESULTS.md, eighth session).
 * So they are turned off, as CUDA has none either. The price: a kernel that did index out of bounds
 * would read garbage or overwrite a neighbouring buffer instead of an element of its own, so every
 * kernel's accesses were checked for it, and the tests run this way too. To have the clamps back,
 * e.g. to tell a suspected out-of-bounds index from another bug, run with
 * `WEBGPU_FLAGS=disable-dawn-features=disable_robustness` (Dawn's disable list wins).
 */
const ROBUSTNESS_TOGGLE = 'disable_robustness';

/** `flags` with `toggle` added to (or as) the toggle list `list`, e.g. `enable-dawn-features=`. */
function withToggle(flags: string[], list: string, toggle: string): string[] {
  const i = flags.findIndex((f) => f.startsWith(list));
  if (i < 0) return [...flags, list + toggle];
  return flags.map((f, j) => (j === i ? `${f},${toggle}` : f));
}

export class GpuDevice {
  private firstError: string | null = null;
  private destroyed = false;

  private constructor(
    private readonly instance: GPU,
    readonly device: GPUDevice,
    private readonly info: GPUAdapterInfo,
    readonly limits: GpuLimits,
    readonly features: GpuFeatures,
  ) {
    device.onuncapturederror = (event) => {
      this.firstError ??= event.error.message;
    };
    void device.lost.then((lost) => {
      if (this.destroyed || lost.reason === 'destroyed') return;
      process.stderr.write(`The WebGPU device was lost (${lost.message.trim() || 'no reason given'}); tensorscan cannot continue.\n`);
      process.exit(1);
    });
  }

  /**
   * Opens the high-performance adapter with its full limits; `flags` go to Dawn's `create`. With
   * `subgroups: false` the device goes without cross-lane operations even where the adapter has them,
   * as on adapters that lack them (the tests run the kernels' fallback this way).
   */
  static async open(flags: string[] = flagsFromEnv(), { subgroups = true }: { subgroups?: boolean } = {}): Promise<GpuDevice> {
    // Imported here, not at the top, so that merely registering the backend does not load Dawn.
    const { create } = await import('webgpu');
    const toggles = withToggle(withToggle(flags, 'enable-dawn-features=', NVIDIA_F16_TOGGLE), 'enable-dawn-features=', ROBUSTNESS_TOGGLE);
    const instance = create(withToggle(toggles, 'disable-dawn-features=', TIMESTAMP_QUANTIZATION_TOGGLE));
    instances.add(instance);
    const adapter = await instance.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) throw new Error(NO_ADAPTER);

    const requiredLimits: Record<string, number> = {};
    for (const name of REQUESTED_LIMITS) requiredLimits[name] = adapter.limits[name];
    const wanted: GPUFeatureName[] = ['shader-f16', ...(subgroups ? (['subgroups'] as const) : []), 'timestamp-query'];
    const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
    const device = await adapter.requestDevice({ requiredLimits, requiredFeatures, label: 'tensorscan' });

    const L = device.limits;
    const limits: GpuLimits = {
      maxStorageBufferBindingSize: L.maxStorageBufferBindingSize,
      maxBufferSize: L.maxBufferSize,
      maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: L.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupsPerDimension: L.maxComputeWorkgroupsPerDimension,
      maxStorageBuffersPerShaderStage: L.maxStorageBuffersPerShaderStage,
      minUniformBufferOffsetAlignment: L.minUniformBufferOffsetAlignment,
      minStorageBufferOffsetAlignment: L.minStorageBufferOffsetAlignment,
    };
    const features: GpuFeatures = {
      f16: device.features.has('shader-f16'),
      subgroups: device.features.has('subgroups'),
      timestampQuery: device.features.has('timestamp-query'),
    };
    return new GpuDevice(instance, device, adapter.info, limits, features);
  }

  /**
   * The largest buffer a kernel may bind whole: maxStorageBufferBindingSize, but at most 2 GiB because
   * kernels index with 32-bit integers (strided offsets signed), and 2 GiB keeps every element index,
   * even a float16 one, below 2³¹. Larger buffers are bound a window at a time (executor.ts).
   */
  get bindableBytes(): number {
    return Math.min(this.limits.maxStorageBufferBindingSize, 2 ** 31);
  }

  /**
   * The lanes of a subgroup, when kernels can count on it: the `subgroups` feature is there and the
   * adapter runs every subgroup at one size (32 on NVIDIA, 8 on lavapipe). Otherwise 1: no cross-lane
   * operations.
   */
  get subgroupSize(): number {
    const { subgroupMinSize: min, subgroupMaxSize: max } = this.info;
    return this.features.subgroups && min !== undefined && min === max && min > 1 ? min : 1;
  }

  /** True for a software renderer (Mesa's lavapipe, SwiftShader): a GPU emulated on the CPU's cores. */
  get isSoftware(): boolean {
    return this.info.isFallbackAdapter === true;
  }

  /** One line naming the GPU, for the CLI: vendor, architecture, device and driver description. */
  adapterDescription(): string {
    const { vendor, architecture, device, description } = this.info;
    const parts = [vendor, architecture, device].filter((s) => s !== '');
    return description ? `${parts.join(' ')} (${description})` : parts.join(' ');
  }

  /**
   * Throws the first GPU error seen so far, if any, as a JS Error that names `op`. The error may have
   * come from an earlier op: WebGPU reports errors after the fact, and the message from Dawn names the
   * kernel through the labels we give every pipeline and bind group.
   */
  throwIfFailed(op: string): void {
    if (this.destroyed) throw new Error(`${op}: the WebGPU backend was destroyed.`);
    if (this.firstError === null) return;
    const message = this.firstError;
    this.firstError = null;
    throw new Error(`${op}: the GPU reported an error (at this op or an earlier one): ${message.trim()}`);
  }

  /** Releases the GPU so Node can exit; the device is unusable afterwards. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.device.destroy();
    instances.delete(this.instance);
  }
}
