/**
 * The selective scan done the straightforward way on the GPU, as the baseline the fused kernel
 * (src/backends/webgpu/kernels/selective-scan.ts) is measured against. It is what one writes first,
 * and what the reference PyTorch code (`selective_scan_ref`) does: discretise into full tensors, scan
 * them, contract.
 *
 *     discretise   ā[b, d, n, t] = exp(Δ[b, d, t]·A[d, n])     b̄[b, d, n, t] = Δ[b, d, t]·B[b, n, t]·u[b, d, t]
 *     scan         one invocation per (b, d, n) walks t:  h = ā·h + b̄, written over b̄
 *     contract     y[b, d, t] = Σ_n C[b, n, t]·h[b, d, n, t]
 *
 * ā and b̄ are (batch, dim, N, len) tensors in global memory: 2·N floats written and read back for
 * every element of u, where the fused kernel keeps them in registers. To bound memory the three
 * kernels run one batch at a time. The scan's invocations each walk their own row, so neighbouring
 * invocations read addresses len apart: uncoalesced, as a first version would be.
 *
 * It runs on its own WebGPU device (same GPU) through the backend's executor, because the backend
 * keeps its executor private; the benchmark uploads the same inputs to both.
 */
import type { ScanSizes } from '../src/backends/backend.js';
import { BufferPool, type PooledBuffer } from '../src/backends/webgpu/buffer-pool.js';
import { BufferUsage, GpuDevice } from '../src/backends/webgpu/device.js';
import { Executor, type Kernel } from '../src/backends/webgpu/executor.js';
import { ParamStruct } from '../src/backends/webgpu/params.js';
import { GRID_BUILTINS, LINEAR_WORKGROUP } from '../src/backends/webgpu/wgsl.js';

const WORKGROUP = 64;

type Field = 'batch' | 'dim' | 'len' | 'N' | 'b';
const params = new ParamStruct<Field>([
  ['batch', 'u32'],
  ['dim', 'u32'],
  ['len', 'u32'],
  ['N', 'u32'],
  ['b', 'u32'], // the batch this dispatch works on
]);

const header = (bindings: string): string => `${params.wgsl(bindings.split('\n').length)}
${bindings}`;

/** One invocation per (d, n, t) of batch b. */
const discretise: Kernel<Field> = {
  key: 'unfused discretise',
  bindings: ['read', 'read', 'read', 'read', 'write', 'write'],
  params,
  source: () => `// Non-fused selective scan, step 1 of 3: ā and b̄ as full tensors. CPU twin: the first two
// lines of rowStates in src/backends/cpu/selective-scan.ts.
${header(`@group(0) @binding(0) var<storage, read> u: array<f32>;
@group(0) @binding(1) var<storage, read> delta: array<f32>;
@group(0) @binding(2) var<storage, read> A: array<f32>;
@group(0) @binding(3) var<storage, read> B: array<f32>;
@group(0) @binding(4) var<storage, read_write> abar: array<f32>;
@group(0) @binding(5) var<storage, read_write> bbar: array<f32>;`)}
@compute @workgroup_size(${WORKGROUP})
fn main(${GRID_BUILTINS}) {
  let i = (${LINEAR_WORKGROUP}) * ${WORKGROUP}u + lid; // (d, n, t) within batch b
  if (i >= params.dim * params.N * params.len) { return; }
  let t = i % params.len;
  let n = (i / params.len) % params.N;
  let d = i / (params.len * params.N);
  let row = (params.b * params.dim + d) * params.len + t;
  abar[i] = exp(delta[row] * A[d * params.N + n]);
  bbar[i] = delta[row] * B[(params.b * params.N + n) * params.len + t] * u[row];
}
`,
};

/** One invocation per (d, n) of batch b, sequential in t. */
const scan: Kernel<Field> = {
  key: 'unfused scan',
  bindings: ['read', 'write'],
  params,
  source: () => `// Non-fused selective scan, step 2 of 3: h_t = ā_t·h_{t−1} + b̄_t, one sequential walk per
// (d, n), over b̄. CPU twin: the recurrence in rowStates, src/backends/cpu/selective-scan.ts.
${header(`@group(0) @binding(0) var<storage, read> abar: array<f32>;
@group(0) @binding(1) var<storage, read_write> h: array<f32>;`)}
@compute @workgroup_size(${WORKGROUP})
fn main(${GRID_BUILTINS}) {
  let chain = (${LINEAR_WORKGROUP}) * ${WORKGROUP}u + lid; // d·N + n
  if (chain >= params.dim * params.N) { return; }
  var state = 0.0;
  for (var t = 0u; t < params.len; t++) {
    let i = chain * params.len + t;
    state = abar[i] * state + h[i];
    h[i] = state;
  }
}
`,
};

/** One invocation per (d, t) of batch b. */
const contract: Kernel<Field> = {
  key: 'unfused contract',
  bindings: ['read', 'read', 'write'],
  params,
  source: () => `// Non-fused selective scan, step 3 of 3: y = Σ_n C·h. CPU twin: the y loop of
// selectiveScanForward, src/backends/cpu/selective-scan.ts.
${header(`@group(0) @binding(0) var<storage, read> h: array<f32>;
@group(0) @binding(1) var<storage, read> C: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;`)}
@compute @workgroup_size(${WORKGROUP})
fn main(${GRID_BUILTINS}) {
  let i = (${LINEAR_WORKGROUP}) * ${WORKGROUP}u + lid; // d·len + t
  if (i >= params.dim * params.len) { return; }
  let t = i % params.len;
  let d = i / params.len;
  var sum = 0.0;
  for (var n = 0u; n < params.N; n++) {
    sum += C[(params.b * params.N + n) * params.len + t] * h[(d * params.N + n) * params.len + t];
  }
  y[(params.b * params.dim + d) * params.len + t] = sum;
}
`,
};

export interface UnfusedInputs {
  readonly u: PooledBuffer;
  readonly delta: PooledBuffer;
  readonly A: PooledBuffer;
  readonly B: PooledBuffer;
  readonly C: PooledBuffer;
}

/** The non-fused scan on a device of its own: upload, run, sync, read, all in f32. */
export class UnfusedScan {
  private constructor(
    private readonly gpu: GpuDevice,
    private readonly pool: BufferPool,
    private readonly exec: Executor,
  ) {}

  static async open(): Promise<UnfusedScan> {
    const gpu = await GpuDevice.open();
    const options = {
      maxBytes: gpu.limits.maxBufferSize,
      bindableBytes: gpu.bindableBytes,
      maxIdleBytes: 4 * 2 ** 30,
      openBatch: () => exec.batch,
    };
    const pool = new BufferPool(gpu.device, options);
    const staging = new BufferPool(gpu.device, options, BufferUsage.MAP_READ | BufferUsage.COPY_DST, 'read-back');
    const exec: Executor = new Executor(gpu, pool, staging);
    return new UnfusedScan(gpu, pool, exec);
  }

  /** Bytes of one materialised tensor (one batch of ā or b̄); the device must bind it. */
  static tensorBytes({ dim, len, N }: ScanSizes): number {
    return 4 * dim * N * len;
  }

  fits(sizes: ScanSizes): boolean {
    return UnfusedScan.tensorBytes(sizes) <= this.gpu.limits.maxStorageBufferBindingSize;
  }

  upload(data: Float32Array): PooledBuffer {
    const b = this.pool.acquire('upload', data.byteLength);
    this.exec.writeBuffer(b, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return b;
  }

  /** Queues the three kernels for every batch; y comes back in a new buffer (give it back with `release`). */
  run(x: UnfusedInputs, sizes: ScanSizes): PooledBuffer {
    const { batch, dim, len, N } = sizes;
    const y = this.pool.acquire('unfused y', 4 * batch * dim * len);
    const abar = this.pool.acquire('unfused ā', UnfusedScan.tensorBytes(sizes));
    const bbar = this.pool.acquire('unfused b̄', UnfusedScan.tensorBytes(sizes));
    const groups = (n: number) => Math.ceil(n / WORKGROUP);
    for (let b = 0; b < batch; b++) {
      const p = { batch, dim, len, N, b };
      this.exec.dispatch('unfused', discretise, [x.u, x.delta, x.A, x.B, abar, bbar], p, groups(dim * N * len));
      this.exec.dispatch('unfused', scan, [abar, bbar], p, groups(dim * N));
      this.exec.dispatch('unfused', contract, [bbar, x.C, y], p, groups(dim * len));
    }
    this.pool.release(abar);
    this.pool.release(bbar);
    return y;
  }

  async read(b: PooledBuffer, floats: number): Promise<Float32Array> {
    return new Float32Array(await this.exec.read('read', b, 0, 4 * floats));
  }

  release(b: PooledBuffer): void {
    this.pool.release(b);
  }

  sync(): Promise<void> {
    return this.exec.sync();
  }

  destroy(): void {
    this.gpu.destroy();
  }
}
