/**
 * The WebGPU selective scan (kernels/selective-scan*.ts) against the CPU's sequential definition
 * (cpu/selective-scan.ts): y, the last state and all five gradients, on seeded random inputs shaped
 * like Mamba's (A = −exp(randn) < 0, Δ = softplus(randn) > 0).
 *
 * The sizes cover one step, a chunk's worth and less, several chunks with a partial last one (1000,
 * 4097), N = 1, 7, 16 and 64 (several rounds of states, and rounds cut short by N), tiles cut short
 * by dim, several tiles per batch, and more rows than 65535. Rows whose tiles are too few to fill a
 * GPU are cut into blocks of chunks, forward and backward (most sizes here); the sizes with 256
 * tiles or more run each row as one block, and those with 384 tiles of 32 rows or more go through
 * the sequential pair (kernels/selective-scan-sequential*.ts), with and without saved states and
 * subgroup operations. Two cases take float16 tensors.
 * (More than 65535 *workgroups* would take 16·65535 rows here, a minute on lavapipe; the executor's
 * folding of large grids is tested in webgpu-backend.test.ts.)
 *
 * Errors are measured per output as max |gpu − cpu| / max |cpu|: the GPU works in f32 and sums in a
 * different order (a tree over segments, then over tiles), so a single near-zero element may differ
 * relatively much while nothing is wrong. Without a GPU this needs Mesa's lavapipe
 * (`npm run setup`); with no adapter the suite is skipped with the reason printed, except under
 * CI=true, where it fails.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backend, BufferHandle, ScanInputs, ScanSizes } from '../src/backends/backend.js';
import { CpuBackend } from '../src/backends/cpu/index.js';
import { WebGpuBackend } from '../src/backends/webgpu/index.js';
import { chunkStatesSize } from '../src/backends/webgpu/kernels/selective-scan.js';
import { pieceStatesSize, sequentialFits } from '../src/backends/webgpu/kernels/selective-scan-sequential.js';
import { sequentialGradFits } from '../src/backends/webgpu/kernels/selective-scan-sequential-grad.js';
import { normalAt, pcgHash } from '../src/tensor/random.js';
import { openWebGpu } from './webgpu-available.js';

const cpu = new CpuBackend();
const webgpu = await openWebGpu('the WebGPU selective-scan tests');
const gpu = webgpu.backend;

const G = (): WebGpuBackend => gpu as WebGpuBackend;

/** Relative error allowed, against the largest |value| of each output. */
const RTOL = 1e-4;

type ScanDType = 'float32' | 'float16';

/** n standard normals from the engine's counter-based generator. */
const normals = (n: number, seed: number): Float32Array => {
  const key = pcgHash(seed);
  return Float32Array.from({ length: n }, (_, i) => normalAt(key, i));
};

/** Mamba-like inputs: u, B, C ~ N(0, 1), A = −exp(N(0, 1)), Δ = softplus(N(0, 1)). */
function scanData({ batch, dim, len, N }: ScanSizes, seed: number) {
  const rows = batch * dim * len;
  const states = batch * N * len;
  return {
    u: normals(rows, seed),
    delta: normals(rows, seed + 1).map((x) => Math.log1p(Math.exp(x))),
    A: normals(dim * N, seed + 2).map((x) => -Math.exp(x)),
    B: normals(states, seed + 3),
    C: normals(states, seed + 4),
    dy: normals(rows, seed + 5),
  };
}

type Data = ReturnType<typeof scanData>;

function uploadInputs(b: Backend, x: Data, dtype: ScanDType = 'float32'): { inputs: ScanInputs; dy: BufferHandle; free: () => void } {
  const up = (a: Float32Array) => b.upload(a, dtype);
  const inputs = { u: up(x.u), delta: up(x.delta), A: up(x.A), B: up(x.B), C: up(x.C) };
  const dy = up(x.dy);
  return {
    inputs,
    dy,
    free: () => {
      for (const h of [...Object.values(inputs), dy]) b.free(h);
    },
  };
}

/** Reads a result (of `dtype`) as float32 and frees it. */
async function take(b: Backend, h: BufferHandle, size: number, dtype: ScanDType = 'float32'): Promise<Float32Array> {
  const data = Float32Array.from(await b.read(h, dtype, 0, size));
  b.free(h);
  return data;
}

/** max |actual − expected| / max |expected| (0 for an all-zero expected). */
function relativeError(actual: Float32Array, expected: Float32Array): number {
  expect(actual.length).toBe(expected.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs((actual[i] as number) - (expected[i] as number)));
    scale = Math.max(scale, Math.abs(expected[i] as number));
  }
  if (Number.isNaN(diff)) return Number.NaN;
  return scale === 0 ? diff : diff / scale;
}

interface ScanResults {
  y: Float32Array;
  lastState: Float32Array;
  du: Float32Array;
  ddelta: Float32Array;
  dA: Float32Array;
  dB: Float32Array;
  dC: Float32Array;
}

/** Forward and backward on one backend; with `save`, the backward gets the forward's saved states. */
async function runScan(b: Backend, x: Data, sizes: ScanSizes, save: boolean, dtype: ScanDType = 'float32'): Promise<ScanResults> {
  const { batch, dim, len, N } = sizes;
  const { inputs, dy, free } = uploadInputs(b, x, dtype);
  const fwd = b.selectiveScan(inputs, sizes, save);
  const grads = b.selectiveScanGrad(inputs, dy, sizes, fwd.saved);
  if (fwd.saved) b.free(fwd.saved);
  const rows = batch * dim * len;
  const states = batch * N * len;
  const results = {
    y: await take(b, fwd.y, rows, dtype),
    lastState: await take(b, fwd.lastState, batch * dim * N, dtype),
    du: await take(b, grads.du, rows, dtype),
    ddelta: await take(b, grads.ddelta, rows, dtype),
    dA: await take(b, grads.dA, dim * N, dtype),
    dB: await take(b, grads.dB, states, dtype),
    dC: await take(b, grads.dC, states, dtype),
  };
  free();
  return results;
}

/** Every output of the GPU within `rtol` of the CPU's, each error reported by name when it fails. */
async function compare(
  sizes: ScanSizes,
  seed: number,
  save = true,
  on: Backend = G(),
  dtype: ScanDType = 'float32',
  rtol = RTOL,
): Promise<void> {
  const x = scanData(sizes, seed);
  const expected = await runScan(cpu, x, sizes, false, dtype);
  const actual = await runScan(on, x, sizes, save, dtype);
  const errors = Object.fromEntries(
    (Object.keys(expected) as (keyof ScanResults)[]).map((k) => [k, relativeError(actual[k], expected[k])]),
  );
  for (const [name, error] of Object.entries(errors)) {
    expect(error, `${name} at ${JSON.stringify(sizes)}: relative error ${error}`).toBeLessThan(rtol);
  }
}

describe.skipIf(webgpu.skip)('WebGPU selective scan vs the CPU definition', () => {
  beforeAll(webgpu.requireAdapter);
  afterAll(() => {
    gpu?.destroy();
  });

  it.each([
    { batch: 1, dim: 1, len: 1, N: 1 },
    { batch: 2, dim: 3, len: 7, N: 16 },
    { batch: 1, dim: 5, len: 128, N: 64 },
    { batch: 2, dim: 17, len: 1000, N: 16 },
    { batch: 1, dim: 2, len: 4097, N: 16 },
    { batch: 3, dim: 40, len: 65, N: 16 },
    { batch: 1, dim: 3, len: 200, N: 7 },
    { batch: 2, dim: 9, len: 70, N: 3 }, // fewer states than parts: a workgroup of three parts, not a power of two
  ])('forward and all five gradients at %o', async (sizes) => {
    await compare(sizes, 17);
  });

  it('sums dB and dC over the rows without subgroup operations too (tables alone)', async () => {
    const plain = await WebGpuBackend.create(undefined, { subgroups: false });
    try {
      await compare({ batch: 2, dim: 17, len: 300, N: 16 }, 29, true, plain);
    } finally {
      plain.destroy();
    }
  });

  it('takes float16 tensors (f32 inside), every output within one half-precision step of the CPU', async () => {
    // Both backends round each output once to half precision (a step of 2⁻¹⁰ relative, at most).
    // Every adapter this runs on has shader-f16: lavapipe, and the H200 through Dawn's toggle (device.ts).
    expect(G().supportsFloat16, 'this adapter lacks shader-f16').toBe(true);
    await compare({ batch: 2, dim: 17, len: 300, N: 16 }, 43, true, G(), 'float16', 2e-3);
  });

  it('recomputes the chunk states when the forward saved none, with the same results', async () => {
    await compare({ batch: 2, dim: 17, len: 150, N: 16 }, 23, false);
  });

  it('saves N floats per chunk of each row, and refuses a saved buffer of the wrong size', () => {
    const sizes = { batch: 2, dim: 3, len: 130, N: 5 };
    const { inputs, dy, free } = uploadInputs(G(), scanData(sizes, 5));
    const fwd = G().selectiveScan(inputs, sizes, true);
    expect(fwd.saved).toBeDefined();
    expect(chunkStatesSize(sizes)).toBe(2 * 3 * 3 * 5);
    const small = G().full(10, 0, 'float32');
    expect(() => G().selectiveScanGrad(inputs, dy, sizes, small)).toThrow(/selectiveScanGrad: the buffer has 10 elements/);
    for (const h of [fwd.y, fwd.lastState, fwd.saved as BufferHandle, small]) G().free(h);
    free();
  });

  it('runs rows as blocks of several chunks, the last one shorter, forward and backward', async () => {
    // 22 chunks. The forward's 75 tiles of 16 rows want 4 blocks: 6 chunks each, the last 4. The
    // backward's 39 tiles of 32 rows (on a GPU) want 7: 4 chunks each, 6 blocks, the last 2; with
    // 16 rows (lavapipe's smaller workgroup memory), as the forward.
    await compare({ batch: 3, dim: 400, len: 1400, N: 4 }, 37);
  });

  it('runs each row as one block when the tiles fill the GPU', async () => {
    await compare({ batch: 2, dim: 4100, len: 130, N: 4 }, 41); // 514 tiles of 16 rows (258 of 32), 3 chunks each
  });

  it.each([
    { batch: 3, dim: 4097, len: 70, N: 16 }, // 387 tiles of 32, the last of each batch one row; 5 pieces, the last 6 steps; 2 chunk states
    { batch: 1, dim: 12300, len: 33, N: 5 }, // 5 states over 4 parts of 2; the last tile 12 rows
    { batch: 1, dim: 12289, len: 3, N: 64 }, // 16 states per invocation, 21 KB of workgroup memory
  ])('walks each row in one sequential pass when the rows fill the GPU, at %o', async (sizes) => {
    // Every adapter this runs on (lavapipe, the H200) has at least 32 KB of workgroup memory.
    const device = { maxSharedBytes: 32768, unroll: false, subgroupSize: 1 };
    expect(sequentialFits(sizes, device) && sequentialGradFits(sizes.N, device)).toBe(true);
    expect(sequentialFits({ ...sizes, N: 0 }, device), 'N = 0 is left to the chunked runner (y = 0)').toBe(false);
    await compare(sizes, 47);
  });

  it('walks the sequential backward from recomputed piece states when the forward saved none', async () => {
    await compare({ batch: 1, dim: 12300, len: 40, N: 16 }, 61, false);
  });

  it('sums dB and dC over the rows in the sequential backward without subgroup operations too', async () => {
    const plain = await WebGpuBackend.create(undefined, { subgroups: false });
    try {
      await compare({ batch: 1, dim: 12300, len: 33, N: 5 }, 67, true, plain);
    } finally {
      plain.destroy();
    }
  });

  it('saves N floats per piece of 16 steps in the sequential pass, and refuses a buffer of the chunked size', () => {
    const sizes = { batch: 1, dim: 12289, len: 130, N: 3 };
    const { inputs, dy, free } = uploadInputs(G(), scanData(sizes, 7));
    const fwd = G().selectiveScan(inputs, sizes, true);
    expect(pieceStatesSize(sizes)).toBe(9 * 12289 * 3);
    const chunked = G().full(chunkStatesSize(sizes), 0, 'float32');
    expect(() => G().selectiveScanGrad(inputs, dy, sizes, chunked)).toThrow(/selectiveScanGrad: the buffer has 110601 elements/);
    const grads = G().selectiveScanGrad(inputs, dy, sizes, fwd.saved);
    for (const h of [fwd.y, fwd.lastState, fwd.saved as BufferHandle, chunked, ...Object.values(grads)]) G().free(h);
    free();
  });

  it('gives y = 0 for rows enough for the sequential pass but no states', async () => {
    await compare({ batch: 1, dim: 12289, len: 3, N: 0 }, 59);
  });

  it('walks float16 tensors in one pass too (f32 inside)', async () => {
    await compare({ batch: 3, dim: 4097, len: 20, N: 16 }, 53, true, G(), 'float16', 2e-3);
  });

  it('handles more rows than 65535', async () => {
    await compare({ batch: 1, dim: 65537, len: 2, N: 1 }, 31);
  });
});
