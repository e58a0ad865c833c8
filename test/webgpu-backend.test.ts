/**
 * The WebGPU backend, kernel by kernel, against the CPU backend (the definition of every kernel):
 * seeded random inputs of awkward sizes (1 element, odd, non-powers of two, several workgroups, past
 * 65535 workgroups), non-contiguous views (transposed, sliced, stride-0 broadcast), every dtype the
 * GPU supports, and the pool's memory accounting.
 *
 * Without a GPU this needs Mesa's lavapipe (`npm run setup`). When no adapter is found the suite is
 * skipped with the reason printed, except under CI=true, where it fails: CI must test the GPU path.
 * Sizes stay small because lavapipe runs shaders on the CPU.
 */
import { Float16Array } from '@petamoriken/float16';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AdamScalars, Backend, BinaryOp, BufferHandle, NormKind, UnaryOp, View } from '../src/backends/backend.js';
import type { CpuBuffer } from '../src/backends/cpu/buffer.js';
import { CpuBackend } from '../src/backends/cpu/index.js';
import { BufferPool } from '../src/backends/webgpu/buffer-pool.js';
import { BufferUsage, GpuDevice } from '../src/backends/webgpu/device.js';
import { Executor } from '../src/backends/webgpu/executor.js';
import type { WebGpuBackend } from '../src/backends/webgpu/index.js';
import { ELEMENTWISE_ELEMENTS, ELEMENTWISE_WORKGROUP } from '../src/backends/webgpu/kernels/elementwise.js';
import { profileLabel } from '../src/backends/webgpu/profiler.js';
import type { DType, TypedArray } from '../src/tensor/dtype.js';
import { pcgHash, uniformAt } from '../src/tensor/random.js';
import { contiguousStrides, sizeOf } from '../src/tensor/shape.js';
import { openWebGpu } from './webgpu-available.js';

const cpu = new CpuBackend();
const webgpu = await openWebGpu('the WebGPU backend tests');
const gpu = webgpu.backend;

/** The GPU backend inside tests (beforeAll has thrown if there is none). */
const G = (): WebGpuBackend => gpu as WebGpuBackend;

// ---- inputs ----

/** n seeded values uniform in [lo, hi), from the engine's counter-based generator. */
const randomValues = (n: number, seed: number, lo = -1, hi = 1): number[] =>
  Array.from({ length: n }, (_, i) => lo + (hi - lo) * uniformAt(pcgHash(seed), i));

function typed(values: ArrayLike<number>, dtype: DType): TypedArray {
  if (dtype === 'int32') return Int32Array.from(values, Math.trunc);
  if (dtype === 'float16') return Float16Array.from(values);
  return Float32Array.from(values);
}

/** The same data on both backends. */
interface Pair {
  readonly cpu: BufferHandle;
  readonly gpu: BufferHandle;
  readonly dtype: DType;
}

const pairs: Pair[] = [];

function upload(values: ArrayLike<number>, dtype: DType = 'float32'): Pair {
  const data = typed(values, dtype);
  const p = { cpu: cpu.upload(data, dtype), gpu: G().upload(data, dtype), dtype };
  pairs.push(p);
  return p;
}

const random = (n: number, seed: number, dtype: DType = 'float32', lo = -1, hi = 1): Pair => upload(randomValues(n, seed, lo, hi), dtype);

/** A view of a pair on each backend: `shape` with `strides` (row-major by default) from `offset`. */
function view(p: Pair, shape: number[], strides = contiguousStrides(shape), offset = 0): { cpu: View; gpu: View } {
  const make = (buffer: BufferHandle): View => ({ buffer, dtype: p.dtype, shape, strides, offset });
  return { cpu: make(p.cpu), gpu: make(p.gpu) };
}

/** Picks one backend's side of a pair (or of a pair of views). */
type Side = <T>(x: { cpu: T; gpu: T }) => T;
const cpuSide: Side = (x) => x.cpu;
const gpuSide: Side = (x) => x.gpu;

// ---- comparison ----

interface Tolerance {
  rtol: number;
  atol: number;
}
const EXACT: Tolerance = { rtol: 0, atol: 0 };
const F32: Tolerance = { rtol: 2e-6, atol: 1e-6 };

/** Fails naming the worst element when |gpu − cpu| > atol + rtol·|cpu| anywhere (NaN only matches NaN). */
function expectClose(label: string, actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance): void {
  expect(actual.length, `${label}: length`).toBe(expected.length);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i] as number;
    const e = expected[i] as number;
    if (Number.isNaN(e) || Number.isNaN(a)) {
      if (Number.isNaN(e) !== Number.isNaN(a)) {
        worst = i;
        worstExcess = Infinity;
        break;
      }
      continue;
    }
    if (a === e) continue; // also equal infinities
    const excess = Math.abs(a - e) - (tol.atol + tol.rtol * Math.abs(e));
    if (excess > worstExcess || (excess > 0 && worst < 0)) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    expect.fail(
      `${label}: element ${worst} is ${actual[worst]} on the GPU but ${expected[worst]} on the CPU (tolerance ${JSON.stringify(tol)})`,
    );
  }
}

const readAll = (b: Backend, h: BufferHandle, dtype: DType, size: number): Promise<TypedArray> => b.read(h, dtype, 0, size);

/** Runs `op` on both backends, compares the results (of `dtype`), and frees them. */
async function check(label: string, dtype: DType, op: (b: Backend, s: Side) => BufferHandle, tol: Tolerance = F32): Promise<TypedArray> {
  const c = op(cpu, cpuSide);
  const g = op(G(), gpuSide);
  const size = ((c as CpuBuffer).data as TypedArray).length;
  const [actual, expected] = [await readAll(G(), g, dtype, size), await readAll(cpu, c, dtype, size)];
  cpu.free(c);
  G().free(g);
  expectClose(label, actual, expected, tol);
  return actual;
}

/** Odd, tiny and multi-workgroup sizes. */
const SIZES = [1, 7, 33, 1000, 4099];

// ---- the suite ----

describe.skipIf(webgpu.skip)('WebGPU backend vs the CPU backend', () => {
  beforeAll(webgpu.requireAdapter);
  afterAll(() => {
    for (const p of pairs.splice(0)) {
      cpu.free(p.cpu);
      G().free(p.gpu);
    }
    gpu?.destroy();
  });

  describe('memory', () => {
    it('describes its adapter', () => {
      expect(G().adapterDescription()).toMatch(/\S/);
    });

    it('round-trips every dtype, reading at any offset (odd float16 offsets too)', async () => {
      for (const dtype of ['float32', 'int32', 'float16'] as const) {
        if (dtype === 'float16' && !G().supportsFloat16) continue;
        const values = randomValues(37, 1, -100, 100);
        const h = G().upload(typed(values, dtype), dtype);
        const expected = Array.from(typed(values, dtype));
        expect(Array.from(await readAll(G(), h, dtype, 37))).toEqual(expected);
        expect(Array.from(await G().read(h, dtype, 5, 3))).toEqual(expected.slice(5, 8));
        expect(Array.from(await G().read(h, dtype, 36, 1))).toEqual(expected.slice(36));
        G().free(h);
      }
    });

    it('fills with any value, ±∞ and NaN included, bit-exactly like the CPU', async () => {
      for (const dtype of ['float32', 'int32', 'float16'] as const) {
        if (dtype === 'float16' && !G().supportsFloat16) continue;
        for (const value of [0, -1.5, 1 / 3, 3e9, -Infinity, Number.NaN]) {
          await check(`full ${dtype} ${value}`, dtype, (b) => b.full(33, value, dtype), EXACT);
        }
      }
    });

    it('counts live bytes and catches use after free', async () => {
      const before = G().liveBytes();
      const h = G().full(10, 1, 'float32');
      const h16 = G().supportsFloat16 ? G().full(3, 1, 'float16') : null;
      expect(G().liveBytes()).toBe(before + 40 + (h16 ? 6 : 0));
      G().free(h);
      if (h16) G().free(h16);
      expect(G().liveBytes()).toBe(before);
      await expect(G().read(h, 'float32', 0, 10)).rejects.toThrow(/after it was freed/);
      expect(() => G().free(h)).toThrow(/after it was freed/);
      expect(() => G().unary('exp', { buffer: h, dtype: 'float32', shape: [10], strides: [1], offset: 0 })).toThrow(/freed/);
    });

    it('refuses float64, reads of the wrong dtype and views past either end, with sentences', async () => {
      expect(() => G().full(4, 0, 'float64')).toThrow(/float64 is CPU-only/);
      expect(() => G().upload(new Float64Array(4), 'float64')).toThrow(/float64 is CPU-only/);
      const h = G().full(4, 0, 'float32');
      await expect(G().read(h, 'int32', 0, 4)).rejects.toThrow(/holds float32/);
      expect(() => G().unary('neg', { buffer: h, dtype: 'float32', shape: [5], strides: [1], offset: 0 })).toThrow(/5 are needed/);
      expect(() => G().unary('neg', { buffer: h, dtype: 'float32', shape: [4], strides: [-1], offset: 3 })).toThrow(/reaches below/);
      G().free(h);
    });

    it("refuses operands that do not fit the kernel: a bias not of the product's width, attention of unlike shapes", () => {
      const gpuView = (shape: number[], seed: number) => view(random(sizeOf(shape), seed), shape).gpu;
      const [a, b] = [gpuView([1, 2, 3], 60), gpuView([1, 3, 4], 61)];
      expect(() => G().matmul(a, b, gpuView([1], 62))).toThrow('matmul: the bias must be (4) of float32, got [1] of float32.');
      const [q, k] = [gpuView([1, 2, 5, 8], 63), gpuView([1, 2, 4, 8], 64)];
      expect(() => G().causalAttention(q, k, k, 1)).toThrow(/causalAttention: q \[1, 2, 5, 8\], k \[1, 2, 4, 8\]/);
    });

    it('turns a GPU error, reported after the fact, into a JS Error naming the op', async () => {
      const device = await GpuDevice.open();
      // MAP_READ may only be combined with COPY_DST: an invalid buffer, reported asynchronously.
      device.device.createBuffer({ size: 16, usage: BufferUsage.MAP_READ | BufferUsage.STORAGE });
      await device.device.queue.onSubmittedWorkDone();
      expect(() => device.throwIfFailed('myOp')).toThrow(/^myOp: the GPU reported an error.*usage/s);
      expect(() => device.throwIfFailed('next')).not.toThrow(); // reported once
      device.destroy();
      expect(() => device.throwIfFailed('late')).toThrow(/late: the WebGPU backend was destroyed/);
    });

    it('refuses a buffer larger than the GPU can hold, naming the op and the size', () => {
      // A matmul may make outputs past the binding limit (in windows), but not past maxBufferSize.
      const e = G().upload(new Float32Array(0), 'float32');
      const v = (shape: number[]): View => ({ buffer: e, dtype: 'float32', shape, strides: [0, 0, 0], offset: 0 });
      expect(() => G().matmul(v([1, 2 ** 23, 0]), v([1, 0, 2 ** 23]))).toThrow(
        /^matmul: needs a buffer of 281474976710656 bytes \(262144\.00 GiB\), more than this GPU can hold in one buffer \(maxBufferSize/,
      );
      G().free(e);
    });

    it('refuses an output over the binding limit before allocating it, naming the op', () => {
      const live = G().liveBytes();
      const n = G().bindableBytes / 4 + 1; // one float32 more than a binding holds
      expect(() => G().full(n, 0, 'float32')).toThrow(/^full: its output of \d+\.\d\d GiB is more than this GPU can bind to one kernel/);
      expect(G().liveBytes()).toBe(live);
    });

    it('uploads into a recycled buffer without changing what queued kernels read from it', async () => {
      // queue.writeBuffer runs before every command of the next submit: reusing the freed buffer of a
      // still-queued kernel's input must not feed that kernel the new data.
      const v = (h: BufferHandle): View => ({ buffer: h, dtype: 'float32', shape: [3], strides: [1], offset: 0 });
      const a = G().upload(new Float32Array([1, 2, 3]), 'float32');
      const negA = G().unary('neg', v(a));
      G().free(a);
      const b = G().upload(new Float32Array([7, 8, 9]), 'float32'); // same size class: a's buffer
      expect(Array.from(await readAll(G(), negA, 'float32', 3))).toEqual([-1, -2, -3]);
      expect(Array.from(await readAll(G(), b, 'float32', 3))).toEqual([7, 8, 9]);
      G().free(negA);
      G().free(b);
    });

    it('keeps idle buffers up to the larger of its cap and the most it ever handed out at once', async () => {
      const device = await GpuDevice.open();
      const limits = { maxBytes: device.limits.maxBufferSize, bindableBytes: device.bindableBytes, openBatch: () => -1 };
      const pool = new BufferPool(device.device, { ...limits, maxIdleBytes: 1024 });
      const big = pool.acquire('test', 4096); // the peak is now 4096 bytes, above the 1024-byte cap
      pool.release(big);
      expect(pool.totalBytes()).toBe(4096); // kept, not destroyed
      expect(pool.acquire('test', 4096)).toBe(big);
      const small = pool.acquire('test', 256); // peak 4352
      pool.release(big);
      pool.release(small); // 4352 idle bytes fit the peak
      expect(pool.totalBytes()).toBe(4352);
      const extra = pool.acquire('test', 8192); // a new class: 8192 live, peak 8192
      pool.release(extra); // 4352 + 8192 idle would pass the peak: destroyed instead
      expect(pool.totalBytes()).toBe(4352);
      device.destroy();
    });

    it('keeps liveBytes and the pool flat over 200 iterations of alloc, compute, free', async () => {
      const x = G().upload(typed(randomValues(1000, 2), 'float32'), 'float32');
      const v = (h: BufferHandle, n = 1000): View => ({ buffer: h, dtype: 'float32', shape: [n], strides: [1], offset: 0 });
      const step = () => {
        const a = G().unary('exp', v(x));
        const b = G().binary('mul', v(a), v(x));
        const s = G().reduce('sum', b, 'float32', 10, 100, 1);
        G().free(a);
        G().free(b);
        return s;
      };
      G().free(step());
      await G().sync();
      const live = G().liveBytes();
      const held = G().gpuBytes();
      for (let i = 0; i < 200; i++) {
        const s = step();
        if (i % 50 === 0) await G().read(s, 'float32', 0, 10);
        G().free(s);
      }
      await G().sync();
      expect(G().liveBytes()).toBe(live);
      expect(G().gpuBytes()).toBe(held);
      G().free(x);
      G().trim(); // idle buffers go back to the driver; live ones stay
      expect(G().gpuBytes()).toBeLessThan(held);
      expect(G().liveBytes()).toBe(live - 4000);
    });
  });

  describe('element-wise', () => {
    const UNARY: UnaryOp[] = [
      'neg',
      'exp',
      'log',
      'sqrt',
      'rsqrt',
      'tanh',
      'sigmoid',
      'silu',
      'gelu',
      'softplus',
      'relu',
      'abs',
      'sign',
      'siluGrad',
      'geluGrad',
    ];
    const POSITIVE_ONLY = new Set<UnaryOp>(['log', 'sqrt', 'rsqrt']);

    it('computes every unary op on float32, at every size', async () => {
      for (const op of UNARY) {
        for (const n of SIZES) {
          const x = POSITIVE_ONLY.has(op) ? random(n, n, 'float32', 0.01, 10) : random(n, n, 'float32', -30, 30);
          // exp of up to 30 is ~1e13: its f32 rounding differs from the CPU's doubles by a few ulp.
          await check(`${op} n=${n}`, 'float32', (b, s) => b.unary(op, s(view(x, [n]))), { rtol: 4e-6, atol: 1e-6 });
        }
      }
    });

    it('handles the edges JS defines: softplus above 20, tanh of huge inputs, relu/sign of 0', async () => {
      const x = upload([-100, -20.5, -1e-8, 0, 1e-8, 19.9, 20.1, 50, 100, 1e30, -1e30]);
      for (const op of ['softplus', 'tanh', 'sigmoid', 'gelu', 'relu', 'sign', 'silu'] as const) {
        await check(op, 'float32', (b, s) => b.unary(op, s(view(x, [11]))), { rtol: 4e-6, atol: 1e-30 });
      }
    });

    it('computes unary ops on int32 like a JS Int32Array store (truncating, wrapping)', async () => {
      // neg, abs, sign and relu are exact in i32, even at the extremes. The others compute in f32
      // (the CPU in doubles) and truncate, so a result within an f32 rounding of a whole number may
      // truncate to the neighbouring integer (gelu(5) = 4.99999977 in doubles, 5 in f32).
      const extremes = upload([-7, 0, 1, 2147483647, -2147483648], 'int32');
      for (const op of ['neg', 'abs', 'sign', 'relu'] as const) {
        await check(`${op} int32 extremes`, 'int32', (b, s) => b.unary(op, s(view(extremes, [5]))), EXACT);
      }
      const x = upload([-7, -1, 0, 1, 2, 5, 100, 16777216, -16777216], 'int32');
      for (const op of UNARY) {
        await check(`${op} int32`, 'int32', (b, s) => b.unary(op, s(view(x, [9]))), { rtol: 0, atol: 1 });
      }
    });

    it('reads transposed, sliced and rank-5 views', async () => {
      const x = random(6 * 35, 3);
      // The transpose of a (6, 35) matrix, and a (3, 7)-step slice starting at element 4.
      await check('transpose', 'float32', (b, s) => b.unary('exp', s(view(x, [35, 6], [1, 35]))));
      await check('slice', 'float32', (b, s) => b.unary('neg', s(view(x, [3, 7], [70, 2], 4))));
      await check('rank 5', 'float32', (b, s) => b.copy(s(view(x, [2, 3, 5, 1, 7], [3, 70, 1, 999, 10])), 'float32'), EXACT);
    });

    it('computes every binary op with broadcasting (stride 0) and transposes', async () => {
      const ops: BinaryOp[] = ['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum', 'eq', 'ne', 'lt', 'le', 'gt', 'ge'];
      const a = random(33 * 7, 4, 'float32', 0.1, 3);
      const row = random(7, 5, 'float32', -3, 3);
      const col = upload([...randomValues(32, 6, -3, 3).map((v) => Math.round(v)), 2]); // whole numbers: pow of negatives
      for (const op of ops) {
        await check(`${op} row`, 'float32', (b, s) => b.binary(op, s(view(a, [33, 7])), s(view(row, [33, 7], [0, 1]))), {
          rtol: 8e-6,
          atol: 1e-6,
        });
        await check(`${op} col`, 'float32', (b, s) => b.binary(op, s(view(col, [33, 7], [1, 0])), s(view(a, [33, 7], [1, 33]))), {
          rtol: 8e-6,
          atol: 1e-6,
        });
      }
      const special = upload([0, -0, 2, -2, -8, Number.NaN, Infinity, -Infinity, 0.5]);
      for (const op of ops) {
        const t = view(special, [9, 9], [1, 0]);
        const u = view(special, [9, 9], [0, 1]);
        await check(`${op} specials`, 'float32', (b, s) => b.binary(op, s(t), s(u)), { rtol: 8e-6, atol: 0 });
      }
    });

    it('computes binary ops on int32 exactly (division by zero gives 0, as in JS)', async () => {
      const ops: BinaryOp[] = ['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum', 'eq', 'lt', 'ge'];
      const a = upload([7, -7, 0, 3, -1, 2, 1, 5, 2147483647], 'int32');
      const b2 = upload([2, 2, 0, -3, -3, 10, -2, 0, 1], 'int32');
      for (const op of ops) {
        await check(`${op} int32`, 'int32', (b, s) => b.binary(op, s(view(a, [9])), s(view(b2, [9]))), EXACT);
      }
    });

    it('selects with where (any non-zero condition, NaN included)', async () => {
      const cond = upload([0, 1, -2, Number.NaN, 0, 0.5, 0]);
      const a = random(7, 7);
      const b = random(1, 8);
      await check('where', 'float32', (be, s) => be.where(s(view(cond, [7])), s(view(a, [7])), s(view(b, [7], [0]))), EXACT);
      const icond = upload([0, 1, 0, 3], 'int32');
      await check(
        'where int cond',
        'float32',
        (be, s) => be.where(s(view(icond, [2, 2])), s(view(a, [2, 2])), s(view(b, [2, 2], [0, 0]))),
        EXACT,
      );
    });

    it('converts between dtypes like a JS typed-array store', async () => {
      const f = upload([-2.7, -0.5, 0.5, 2.7, 1e10, -3e9, Number.NaN, Infinity, 65519, 1e-8]);
      await check('f32->i32', 'int32', (b, s) => b.copy(s(view(f, [10])), 'int32'), EXACT);
      const i = upload([-5, 0, 7, 16777217, -2147483648], 'int32');
      await check('i32->f32', 'float32', (b, s) => b.copy(s(view(i, [5])), 'float32'), EXACT);
      if (G().supportsFloat16) {
        const small = upload(randomValues(33, 9, -1000, 1000));
        await check('f32->f16', 'float16', (b, s) => b.copy(s(view(small, [33])), 'float16'), EXACT);
        const h = upload(randomValues(33, 10, -1000, 1000), 'float16');
        await check('f16->f32', 'float32', (b, s) => b.copy(s(view(h, [33])), 'float32'), EXACT);
        await check('f16 gelu', 'float16', (b, s) => b.unary('gelu', s(view(h, [33]))), { rtol: 1e-3, atol: 0 });
      }
    });

    it('assigns into a strided view, and between overlapping views of one buffer', async () => {
      const src = random(5, 11);
      const run = async (label: string, body: (b: Backend, s: Side, dst: Pair) => void) => {
        const dst = random(5 * 6, 12);
        body(cpu, cpuSide, dst);
        body(G(), gpuSide, dst);
        expectClose(label, await readAll(G(), dst.gpu, 'float32', 30), await readAll(cpu, dst.cpu, 'float32', 30), EXACT);
      };
      // column 2 of a (5, 6) matrix
      await run('column', (b, s, dst) => b.assign(s(view(dst, [5], [6], 2)), s(view(src, [5]))));
      // x[1:] = x[:-1] on the same buffer: the source must be read before it is overwritten
      await run('overlap', (b, s, dst) => b.assign(s(view(dst, [29], [1], 1)), s(view(dst, [29]))));
    });

    it('draws the same random numbers as the CPU', async () => {
      for (const n of [1, 7, 1000]) {
        await check(`uniform ${n}`, 'float32', (b) => b.random('uniform', n, 1234 + n, 'float32'), EXACT);
        await check(`normal ${n}`, 'float32', (b) => b.random('normal', n, 99 + n, 'float32'), { rtol: 1e-5, atol: 2e-6 });
      }
      expect(() => G().random('uniform', 3, 1, 'int32')).toThrow(/not int32/);
    });

    it('folds a grid of more than 65535 workgroups into two dimensions', async () => {
      // One more workgroup than one dimension holds: a row of 1999 values broadcast down the rows
      // keeps the input small, and a float16 output (128 MiB less 870 bytes) within lavapipe's
      // 128 MiB binding. Every output row must be the CPU's copy of the row, bit for bit (compared
      // as raw half-precision bits: a Float16Array read element by element would take a minute).
      const rows = Math.ceil((65535 * ELEMENTWISE_ELEMENTS + 1) / 1999);
      const x = upload(Float32Array.from({ length: 1999 }, (_, i) => i - 999));
      const bits = (a: TypedArray) => new Uint16Array(a.buffer, a.byteOffset, a.length);
      const c = cpu.copy(view(x, [1999]).cpu, 'float16');
      const want = bits(await readAll(cpu, c, 'float16', 1999));
      cpu.free(c);
      const g = G().copy(view(x, [rows, 1999], [0, 1]).gpu, 'float16');
      const got = bits(await readAll(G(), g, 'float16', rows * 1999));
      G().free(g);
      let wrong = 0;
      for (let i = 0; i < got.length; i++) if (got[i] !== want[i % 1999]) wrong++;
      expect(wrong, `elements of ${rows} × 1999 unlike the CPU's row`).toBe(0);
    });
  });

  describe('rows', () => {
    const SHAPES: [number, number][] = [
      [1, 1],
      [3, 7],
      [5, 33],
      [2, 1000],
      [300, 5], // more rows than the busy-GPU threshold
      [2, 20000], // long rows: the two-pass reduction
    ];

    /**
     * Reductions of the middle of (outer, len, inner): rows (inner = 1), then columns in one pass and in
     * chunks (long columns, few of them: chunks of max(len·columns / 2¹⁸, √len) elements).
     */
    const REDUCE_SHAPES: [number, number, number][] = [
      ...SHAPES.map(([rows, cols]): [number, number, number] => [rows, cols, 1]),
      [1, 7, 3], // axis 0 of a (7, 3) matrix
      [3, 33, 7], // axis 1 of (3, 33, 7)
      [5, 1, 4],
      [2, 9, 300], // columns past one workgroup
      [1, 4096, 5], // few long columns: 64 chunks of 64
      [2, 3000, 7], // 55 chunks of 55, the last one of 30
      [1, 300, 1000], // 17 chunks of 18 over columns past one workgroup
    ];
    const shape = ([outer, len, inner]: number[]) => `(${outer}, ${len}, ${inner})`;

    it('reduces (outer, len, inner) to (outer, inner): sum, max, min, argmax', async () => {
      for (const [outer, len, inner] of REDUCE_SHAPES) {
        const n = outer * len * inner;
        const x = random(n, outer + len + inner, 'float32', -10, 10);
        const at = shape([outer, len, inner]);
        await check(`sum ${at}`, 'float32', (b, s) => b.reduce('sum', s(x), 'float32', outer, len, inner), {
          rtol: 1e-5,
          atol: 2e-5 * Math.sqrt(n),
        });
        for (const op of ['max', 'min'] as const) {
          await check(`${op} ${at}`, 'float32', (b, s) => b.reduce(op, s(x), 'float32', outer, len, inner), EXACT);
        }
        await check(`argmax ${at}`, 'int32', (b, s) => b.reduce('argmax', s(x), 'float32', outer, len, inner), EXACT);
      }
    });

    it('breaks argmax ties toward the first index and lets NaN win, in both passes', async () => {
      const cols = 20000;
      const values = Array.from({ length: 2 * cols }, (_, i) => (i * 7919) % 5); // many equal maxima
      values[cols + 15000] = Number.NaN;
      values[cols + 17000] = Number.NaN;
      const x = upload(values);
      // As rows, the NaNs fall in row 1; as (1, 10000, 4) columns, both in column 0, in different chunks.
      const layouts: [string, number, number, number][] = [
        ['rows', 2, cols, 1],
        ['short rows', 40, 1000, 1],
        ['columns', 1, cols / 2, 4],
        ['short columns', 200, 50, 4],
      ];
      for (const op of ['argmax', 'max', 'min'] as const) {
        const dtype = op === 'argmax' ? 'int32' : 'float32';
        for (const [name, outer, len, inner] of layouts) {
          await check(`${op} ties/NaN ${name}`, dtype, (b, s) => b.reduce(op, s(x), 'float32', outer, len, inner), EXACT);
        }
      }
      const inf = upload([-Infinity, -Infinity, -Infinity, -Infinity]);
      await check('argmax all −∞', 'int32', (b, s) => b.reduce('argmax', s(inf), 'float32', 1, 4, 1), EXACT);
      await check('max all −∞', 'float32', (b, s) => b.reduce('max', s(inf), 'float32', 1, 4, 1), EXACT);
      await check('argmax all −∞ columns', 'int32', (b, s) => b.reduce('argmax', s(inf), 'float32', 1, 2, 2), EXACT);
    });

    it('reduces int32 and float16, and empty axes', async () => {
      for (const [outer, len, inner] of [
        [3, 33, 1],
        [3, 33, 7],
        [1, 3000, 3], // chunked
      ]) {
        const n = outer * len * inner;
        const at = shape([outer, len, inner]);
        const xi = upload(randomValues(n, 14 + n, -1000, 1000), 'int32');
        for (const op of ['sum', 'max', 'min', 'argmax'] as const) {
          await check(`${op} int32 ${at}`, 'int32', (b, s) => b.reduce(op, s(xi), 'int32', outer, len, inner), EXACT);
        }
        if (G().supportsFloat16) {
          const xh = random(n, 15 + n, 'float16', -10, 10);
          const f16: Tolerance = { rtol: 1e-3, atol: 1e-2 };
          await check(`sum f16 ${at}`, 'float16', (b, s) => b.reduce('sum', s(xh), 'float16', outer, len, inner), f16);
          await check(`max f16 ${at}`, 'float16', (b, s) => b.reduce('max', s(xh), 'float16', outer, len, inner), EXACT);
        }
      }
      const empty = upload([]);
      for (const [outer, len, inner] of [
        [3, 0, 1],
        [3, 0, 4],
        [0, 5, 3],
        [1, 300, 0],
      ]) {
        const at = shape([outer, len, inner]);
        for (const op of ['sum', 'max', 'min'] as const) {
          await check(`${op} ${at}`, 'float32', (b, s) => b.reduce(op, s(empty), 'float32', outer, len, inner), EXACT);
        }
      }
      expect(() => G().reduce('argmax', empty.gpu, 'float32', 3, 0, 1)).toThrow(/empty axis/);
      expect(() => G().reduce('argmax', empty.gpu, 'float32', 1, 0, 4)).toThrow(/empty axis/);
    });

    it('folds a grid of more than 65535 workgroups of columns into two dimensions', async () => {
      const inner = 65535 * 128 + 500; // (2, 1, inner): a thread per column, 65535 · 256 + 1000 of them
      const x = upload(Float32Array.from({ length: 2 * inner }, (_, i) => (i % 1999) - 999));
      await check(`max (2, 1, ${inner})`, 'float32', (b, s) => b.reduce('max', s(x), 'float32', 2, 1, inner), EXACT);
    });

    it('takes prefix sums along rows, forwards and in reverse', async () => {
      for (const [rows, cols] of [...SHAPES.slice(0, 5), [2, 2500]] as [number, number][]) {
        const x = random(rows * cols, 16 + cols, 'float32', -1, 1);
        for (const reverse of [false, true]) {
          await check(
            `cumsum ${rows}x${cols} ${reverse ? 'reverse' : ''}`,
            'float32',
            (b, s) => b.cumsum(s(x), 'float32', rows, cols, reverse),
            {
              rtol: 1e-5,
              atol: 1e-5 * Math.sqrt(cols),
            },
          );
        }
      }
      const xi = upload(randomValues(2 * 1500, 17, -100, 100), 'int32');
      await check('cumsum int32', 'int32', (b, s) => b.cumsum(s(xi), 'int32', 2, 1500, true), EXACT);
    });

    it('computes softmax and log-softmax, with −∞ (masked) entries', async () => {
      for (const [rows, cols] of SHAPES.slice(0, 5)) {
        const x = random(rows * cols, 18 + rows, 'float32', -20, 20);
        for (const log of [false, true]) {
          await check(`${log ? 'log' : ''}softmax ${rows}x${cols}`, 'float32', (b, s) => b.softmax(s(x), 'float32', rows, cols, log), {
            rtol: 1e-5,
            atol: 1e-6,
          });
        }
      }
      const masked = upload([1, -Infinity, 2, -Infinity, 0.5, 3, -Infinity, -Infinity]);
      await check('softmax masked', 'float32', (b, s) => b.softmax(s(masked), 'float32', 2, 4, false), { rtol: 1e-6, atol: 1e-7 });
      await check('logSoftmax masked', 'float32', (b, s) => b.softmax(s(masked), 'float32', 2, 4, true), { rtol: 1e-6, atol: 1e-6 });
      // A row with a NaN, or of all −∞, is all NaN (as on the CPU and in PyTorch).
      const bad = upload([1, Number.NaN, 2, -Infinity, -Infinity, -Infinity]);
      for (const log of [false, true]) {
        await check(`softmax NaN rows ${log}`, 'float32', (b, s) => b.softmax(s(bad), 'float32', 2, 3, log), EXACT);
      }
      // The same cases in rows long enough that each thread reads four elements at a time (and a
      // rest): a NaN, all −∞, −∞ beside a few finite values, and +∞.
      const cols = 2100;
      const wide = randomValues(4 * cols, 19, -5, 5);
      wide[1234] = Number.NaN;
      wide.fill(-Infinity, cols, 3 * cols);
      for (const j of [5, 700, 2099]) wide[2 * cols + j] = j / 1000;
      wide[3 * cols + 1500] = Infinity;
      for (const log of [false, true]) {
        await check(`softmax wide edge rows ${log}`, 'float32', (b, s) => b.softmax(s(upload(wide)), 'float32', 4, cols, log), {
          rtol: 1e-5,
          atol: 1e-7,
        });
      }
    });
  });

  describe('matmul', () => {
    /** (batch, M, K) @ (batch, K, N) with each operand laid out as asked. */
    async function product(
      batch: number,
      M: number,
      K: number,
      N: number,
      layout: { aT?: boolean; bT?: boolean; bShared?: boolean; bias?: boolean },
      dtype: DType = 'float32',
    ) {
      const a = random(batch * M * K, M * 31 + K, dtype);
      // The bias as a strided view: every other element of a (2N + 1) buffer, from element 1.
      const bias = layout.bias ? view(random(2 * N + 1, N + 5, dtype), [N], [2], 1) : undefined;
      const b = random((layout.bShared ? 1 : batch) * K * N, N * 17 + K, dtype);
      // A transposed: stored as (batch, K, M); B transposed: stored as (K, N)ᵀ = (N, K).
      const aStrides = layout.aT ? [M * K, 1, M] : [M * K, K, 1];
      const bBatch = layout.bShared ? 0 : K * N;
      const bStrides = layout.bT ? [bBatch, 1, K] : [bBatch, N, 1];
      const va = view(a, [batch, M, K], aStrides);
      const vb = view(b, [batch, K, N], bStrides);
      const tol = dtype === 'float16' ? { rtol: 2e-3, atol: 2e-3 * Math.sqrt(K) } : { rtol: 1e-5, atol: 2e-6 * Math.sqrt(K) };
      await check(
        `matmul ${batch}x${M}x${K}x${N} ${JSON.stringify(layout)} ${dtype}`,
        dtype,
        (be, s) => be.matmul(s(va), s(vb), bias && s(bias)),
        dtype === 'int32' ? EXACT : tol,
      );
    }

    it('multiplies tiny, odd and multi-tile shapes', async () => {
      for (const [batch, M, K, N] of [
        [1, 1, 1, 1],
        [1, 7, 5, 3],
        [2, 33, 17, 65],
        [3, 64, 64, 64],
        [1, 130, 70, 129],
        [2, 1, 300, 1],
      ] as const) {
        await product(batch, M, K, N, {});
      }
    });

    it('reads transposed operands and a B shared across the batch (stride 0)', async () => {
      for (const layout of [{ aT: true }, { bT: true }, { aT: true, bT: true }, { bShared: true }, { aT: true, bShared: true, bT: true }]) {
        await product(3, 37, 19, 45, layout);
      }
    });

    it('uses 128 × 128 tiles for large products', async () => {
      await product(1, 2050, 16, 2049, {});
      await product(1, 2050, 8, 2049, { aT: true, bT: true });
    });

    it('adds a bias to every row', async () => {
      await product(1, 7, 5, 3, { bias: true });
      await product(2, 130, 70, 129, { bT: true, bias: true });
    });

    it('splits a long K across workgroups when the output has few tiles', async () => {
      await product(1, 37, 1000, 45, { bias: true }); // one tile: K in 3 ranges of 336, 336, 328
      await product(2, 65, 4099, 3, { aT: true, bT: true }); // 4 tiles: 16 ranges
      await product(1, 1024, 4096, 256, { bT: true, bias: true }); // 16 tiles of 128 × 128, 16 ranges: the LM head's dX
      const ai = upload(randomValues(70 * 600, 22, -50, 50), 'int32');
      const bi = upload(randomValues(600 * 5, 23, -50, 50), 'int32');
      await check('split-K int32', 'int32', (b, s) => b.matmul(s(view(ai, [1, 70, 600])), s(view(bi, [1, 600, 5]))), EXACT);
    });

    it('writes an output larger than one binding a window of rows at a time', async () => {
      // Just over the binding limit (lavapipe: 128 MiB), as the LM head's logits of a long sequence are.
      const N = 50257;
      const M = Math.ceil(G().bindableBytes / (4 * N)) + 37;
      await product(1, M, 3, N, { bT: true, bias: true });
    }, 120_000);

    it('multiplies int32 exactly and float16 to half precision', async () => {
      const ai = upload(randomValues(2 * 9 * 7, 20, -50, 50), 'int32');
      const bi = upload(randomValues(2 * 7 * 5, 21, -50, 50), 'int32');
      await check('matmul int32', 'int32', (b, s) => b.matmul(s(view(ai, [2, 9, 7])), s(view(bi, [2, 7, 5]))), EXACT);
      if (G().supportsFloat16) await product(2, 33, 40, 17, { bT: true }, 'float16');
    });

    it('gives zeros for K = 0 and an empty result for M = 0', async () => {
      const e = upload([]);
      await check('K=0', 'float32', (b, s) => b.matmul(s(view(e, [2, 3, 0])), s(view(e, [2, 0, 4]))), EXACT);
      const b34 = random(12, 19);
      await check('M=0', 'float32', (b, s) => b.matmul(s(view(e, [2, 0, 3])), s(view(b34, [2, 3, 4], [0, 4, 1]))), EXACT);
    });
  });

  describe('neural-network kernels', () => {
    /** One output of crossEntropy on backend b, the other freed. */
    function crossEntropyOutput(
      b: Backend,
      which: 'loss' | 'lse',
      x: BufferHandle,
      t: BufferHandle,
      rows: number,
      cols: number,
    ): BufferHandle {
      const out = b.crossEntropy(x, t, rows, cols, -100);
      b.free(which === 'loss' ? out.lse : out.loss);
      return out[which];
    }

    /** crossEntropyGrad on backend b, from the lse that b's crossEntropy gives. */
    function crossEntropyGrad(b: Backend, x: BufferHandle, t: BufferHandle, g: BufferHandle, rows: number, cols: number): BufferHandle {
      const lse = crossEntropyOutput(b, 'lse', x, t, rows, cols);
      const dx = b.crossEntropyGrad(x, lse, t, g, rows, cols, -100);
      b.free(lse);
      return dx;
    }

    it('computes cross-entropy and its gradient, skipping ignored rows', async () => {
      for (const [rows, cols] of [
        [1, 1],
        [5, 33],
        [7, 1000],
      ] as const) {
        const x = random(rows * cols, rows * cols, 'float32', -5, 5);
        const targetValues = randomValues(rows, 22, 0, cols).map(Math.floor);
        targetValues[rows - 1] = -100;
        const t = upload(targetValues, 'int32');
        const g = random(rows, 23, 'float32', 0.5, 2);
        await check(`crossEntropy ${rows}x${cols}`, 'float32', (b, s) => crossEntropyOutput(b, 'loss', s(x), s(t), rows, cols), {
          rtol: 1e-5,
          atol: 1e-6,
        });
        await check(`crossEntropyGrad ${rows}x${cols}`, 'float32', (b, s) => crossEntropyGrad(b, s(x), s(t), s(g), rows, cols), {
          rtol: 1e-5,
          atol: 1e-7,
        });
      }
    });

    it('gives rows of no classes lse = −∞, and loss 0 where the target is ignored', async () => {
      const [x, t] = [upload([], 'float32'), upload([-100, -100, -100], 'int32')];
      await check('lse 3x0', 'float32', (b, s) => crossEntropyOutput(b, 'lse', s(x), s(t), 3, 0), { rtol: 0, atol: 0 });
      await check('loss 3x0', 'float32', (b, s) => crossEntropyOutput(b, 'loss', s(x), s(t), 3, 0), { rtol: 0, atol: 0 });
    });

    it('turns an out-of-range target into NaN (the CPU throws)', async () => {
      const x = random(2 * 4, 24);
      const t = G().upload(new Int32Array([1, 9]), 'int32');
      const loss = crossEntropyOutput(G(), 'loss', x.gpu, t, 2, 4);
      const values = await G().read(loss, 'float32', 0, 2);
      expect(Number.isFinite(values[0])).toBe(true);
      expect(values[1]).toBeNaN();
      G().free(loss);
      G().free(t);
    });

    it('reuses the forward lse: the gradient is (e^(x − logsumexp x) − onehot)·g, on wide-ranged and masked logits', async () => {
      for (const [rows, cols] of [
        [3, 1],
        [5, 257], // just past one workgroup's width
        [4, 4099],
        [2, 50257], // a GPT-2 vocabulary
      ] as const) {
        for (const range of [5, 100]) {
          const values = randomValues(rows * cols, cols + range, -range, range).map(Math.fround);
          const targetValues = randomValues(rows, 25, 0, cols).map(Math.floor);
          if (rows > 3) targetValues[rows - 1] = -100;
          for (let j = 0; j < cols; j += 3) if (j !== targetValues[0]) values[j] = -Infinity; // masked logits in row 0
          const gValues = randomValues(rows, 26, 0.5, 2).map(Math.fround);
          const [x, t, g] = [upload(values), upload(targetValues, 'int32'), upload(gValues)];
          const at = `${rows}x${cols} ±${range}`;
          // An f32 lse of size ~range is exact to a few ulps of range, and every e^(x − lse) of its row inherits that.
          const tol = { rtol: 1e-5 + 8 * range * 2 ** -24, atol: 1e-7 };
          await check(`lse ${at}`, 'float32', (b, s) => crossEntropyOutput(b, 'lse', s(x), s(t), rows, cols), tol);
          await check(`loss ${at}`, 'float32', (b, s) => crossEntropyOutput(b, 'loss', s(x), s(t), rows, cols), tol);
          const grad = await check(`grad ${at}`, 'float32', (b, s) => crossEntropyGrad(b, s(x), s(t), s(g), rows, cols), tol);
          // The formula the gradient kernel used before it was given the lse: the row's lse recomputed.
          const expected = Array.from({ length: rows }, (_, r) => {
            const row = values.slice(r * cols, (r + 1) * cols);
            const max = row.reduce((m, v) => Math.max(m, v), -Infinity);
            const lse = max + Math.log(row.reduce((sum, v) => sum + Math.exp(v - max), 0));
            const gr = gValues[r] as number;
            return row.map((v, j) => (targetValues[r] === -100 ? 0 : (Math.exp(v - lse) - (j === targetValues[r] ? 1 : 0)) * gr));
          }).flat();
          expectClose(`grad ${at} against the recomputed lse`, grad, expected, tol);
        }
      }
      if (G().supportsFloat16) {
        // float16 logits keep their lse in float32 on both backends (reading it as float32 checks that).
        const [x, t, g] = [
          random(5 * 257, 28, 'float16', -10, 10),
          upload([3, 0, 256, 100, -100], 'int32'),
          random(5, 29, 'float16', 0.5, 2),
        ];
        await check('lse f16', 'float32', (b, s) => crossEntropyOutput(b, 'lse', s(x), s(t), 5, 257), { rtol: 1e-6, atol: 1e-6 });
        await check('grad f16', 'float16', (b, s) => crossEntropyGrad(b, s(x), s(t), s(g), 5, 257), { rtol: 1e-3, atol: 1e-6 });
      }
      // An out-of-range target makes the gradient's row NaN, as it makes the loss.
      const x = random(2 * 4, 27);
      const t = G().upload(new Int32Array([1, 9]), 'int32');
      const g = G().upload(new Float32Array([1, 1]), 'float32');
      const dx = crossEntropyGrad(G(), x.gpu, t, g, 2, 4);
      const values = Array.from(await G().read(dx, 'float32', 0, 8));
      expect(values.slice(0, 4).every(Number.isFinite)).toBe(true);
      expect(values.slice(4).every(Number.isNaN)).toBe(true);
      for (const h of [dx, g, t]) G().free(h);
    }, 60_000);

    it('gathers rows by id and scatter-adds gradients back, repeated ids included', async () => {
      for (const [n, vocab, dim] of [
        [1, 1, 1],
        [7, 5, 33],
        [300, 50, 3], // more ids than one workgroup of the rank step holds
      ] as const) {
        const w = random(vocab * dim, vocab, 'float32');
        const ids = upload(randomValues(n, n + vocab, 0, vocab).map(Math.floor), 'int32');
        const grad = random(n * dim, dim);
        await check(`gatherRows ${n}/${vocab}/${dim}`, 'float32', (b, s) => b.gatherRows(s(w), s(ids), n, vocab, dim), EXACT);
        await check(`scatterAddRows ${n}/${vocab}/${dim}`, 'float32', (b, s) => b.scatterAddRows(s(grad), s(ids), n, vocab, dim), {
          rtol: 1e-6,
          atol: 1e-6,
        });
      }
    });

    it('scatter-adds deterministically: the same bits on every run', async () => {
      const [n, vocab, dim] = [500, 3, 8]; // ~170 ids per row: many additions in some order
      const ids = G().upload(Int32Array.from(randomValues(n, 25, 0, vocab), Math.floor), 'int32');
      const grad = G().upload(Float32Array.from(randomValues(n * dim, 26, -1, 1)), 'float32');
      const runs = [];
      for (let i = 0; i < 3; i++) {
        const out = G().scatterAddRows(grad, ids, n, vocab, dim);
        runs.push(Array.from(await readAll(G(), out, 'float32', vocab * dim)));
        G().free(out);
      }
      expect(runs[1]).toEqual(runs[0]);
      expect(runs[2]).toEqual(runs[0]);
      G().free(ids);
      G().free(grad);
    });

    it('copies float16 rows bit-exactly in gatherRows', async () => {
      if (!G().supportsFloat16) return;
      const w = random(4 * 5, 27, 'float16');
      const ids = upload([3, 0, 3], 'int32');
      await check('gatherRows f16', 'float16', (b, s) => b.gatherRows(s(w), s(ids), 3, 4, 5), EXACT);
    });

    it('computes the causal depthwise conv1d and its gradients', async () => {
      for (const [batch, channels, len, K] of [
        [1, 1, 1, 1],
        [2, 3, 7, 4],
        [1, 5, 33, 3],
        [2, 3, 2, 4], // shorter than the kernel
        [3, 70, 100, 4],
      ] as const) {
        const size = batch * channels * len;
        const x = random(size, size + K);
        const w = random(channels * K, channels + K);
        const bias = random(channels, channels);
        const gy = random(size, size + 1);
        const label = `${batch}x${channels}x${len} K=${K}`;
        await check(`conv1d ${label}`, 'float32', (b, s) => b.conv1d(s(x), s(w), s(bias), batch, channels, len, K), {
          rtol: 1e-5,
          atol: 1e-6,
        });
        for (const part of ['gx', 'gw'] as const) {
          await check(
            `conv1dGrad ${part} ${label}`,
            'float32',
            (b, s) => {
              const grads = b.conv1dGrad(s(gy), s(x), s(w), batch, channels, len, K);
              b.free(part === 'gx' ? grads.gw : grads.gx);
              return grads[part];
            },
            { rtol: 1e-5, atol: 1e-5 },
          );
        }
      }
    });
  });

  describe('causal attention', () => {
    // The GPU sums in f32, in another order, and its exp is not the CPU's.
    const ATTENTION: Tolerance = { rtol: 1e-5, atol: 1e-5 };
    type Views = { cpu: View; gpu: View };

    /** out and lse of causalAttention on both backends, compared (like `check`, for a kernel of two results). */
    async function attention(label: string, q: Views, k: Views, v: Views, scale: number, tol = ATTENTION): Promise<void> {
      const c = cpu.causalAttention(q.cpu, k.cpu, v.cpu, scale);
      const g = G().causalAttention(q.gpu, k.gpu, v.gpu, scale);
      for (const part of ['out', 'lse'] as const) {
        const size = ((c[part] as CpuBuffer).data as TypedArray).length;
        const [actual, expected] = [await readAll(G(), g[part], q.cpu.dtype, size), await readAll(cpu, c[part], q.cpu.dtype, size)];
        cpu.free(c[part]);
        G().free(g[part]);
        expectClose(`causalAttention ${label} ${part}`, actual, expected, tol);
      }
    }

    /** Contiguous random q (batch, heads, lq, dh), k and v (batch, heads, lk, dh), compared. */
    async function contiguous(batch: number, heads: number, lq: number, lk: number, dh: number, dtype: DType = 'float32', tol = ATTENTION) {
      const make = (len: number, seed: number) => view(random(batch * heads * len * dh, seed, dtype), [batch, heads, len, dh]);
      const label = `${batch}x${heads} Lq=${lq} Lk=${lk} dh=${dh} ${dtype}`;
      await attention(label, make(lq, lq + dh), make(lk, lk + 1), make(lk, lk + 2), 1 / Math.sqrt(dh), tol);
    }

    it('covers several query blocks and key blocks, and fewer queries than keys', async () => {
      await contiguous(1, 3, 130, 130, 64); // 3 query blocks × 3 key blocks of 64
      await contiguous(2, 1, 70, 200, 32); // the diagonal moved right by 130
      await contiguous(3, 1, 1, 150, 5); // one decoding step over 3 key blocks
      await contiguous(1, 1, 65, 129, 128); // a large head: key blocks cut to fit workgroup memory
    });

    it('reads strided views: q, k, v of a fused projection, and a narrowed key/value cache', async () => {
      // (batch, len, 3, heads, dh) as the Transformer's qkv projection lays it out; q, k and v are
      // permuted views into it, offset by heads·dh from each other.
      const [batch, len, heads, dh] = [2, 67, 3, 8];
      const qkv = random(batch * len * 3 * heads * dh, 31);
      const strides = [len * 3 * heads * dh, dh, 3 * heads * dh, 1];
      const part = (i: number) => view(qkv, [batch, heads, len, dh], strides, i * heads * dh);
      await attention('fused qkv', part(0), part(1), part(2), 0.35);
      // A cache (batch, heads, 100, dh) of which 40 positions are filled, and one new query.
      const cacheStrides = contiguousStrides([batch, heads, 100, dh]);
      const cache = (seed: number) => view(random(batch * heads * 100 * dh, seed), [batch, heads, 40, dh], cacheStrides);
      await attention('cache', view(random(batch * heads * dh, 32), [batch, heads, 1, dh]), cache(33), cache(34), 0.35);
    });

    it('stores float16', async () => {
      if (G().supportsFloat16) await contiguous(1, 2, 70, 70, 16, 'float16', { rtol: 2e-3, atol: 2e-3 });
    });

    it('folds a grid of more than 65535 workgroups into two dimensions', async () => {
      await contiguous(1, 65537, 1, 2, 2); // one query block per (batch, head): 65537 workgroups
    });
  });

  describe('norms', () => {
    // The GPU sums in f32 with a tree, the CPU in doubles.
    const NORM: Tolerance = { rtol: 1e-5, atol: 1e-5 };

    /**
     * norm, then normGrad from its μ and rstd (with g·x̂ when γ is given), on both backends: every
     * output compared (μ and rstd as float32, which both keep for float32 and float16), then freed.
     */
    async function norms(kind: NormKind, rows: number, dim: number, x: Pair, params: { w: Pair; b: Pair } | null, g: Pair, tol = NORM) {
      const label = `${kind}Norm ${rows}x${dim}${params ? ' +weight +bias' : ''} ${x.dtype}`;
      const run = (b: Backend, s: Side) => {
        const [w, bias] = params ? [s(params.w), s(params.b)] : [null, null];
        const { y, mean, rstd } = b.norm(kind, s(x), w, bias, rows, dim, 1e-5);
        const { dx, gxhat } = b.normGrad(kind, s(x), w, mean, rstd, s(g), rows, dim, params !== null);
        return { y, mean, rstd, dx, gxhat };
      };
      const [expected, actual] = [run(cpu, cpuSide), run(G(), gpuSide)];
      for (const part of ['y', 'mean', 'rstd', 'dx', 'gxhat'] as const) {
        const [e, a] = [expected[part], actual[part]];
        expect(a === null, `${label} ${part} is null on both or neither`).toBe(e === null);
        if (!e || !a) continue;
        const dtype = part === 'mean' || part === 'rstd' ? 'float32' : x.dtype;
        const size = ((e as CpuBuffer).data as TypedArray).length;
        expectClose(`${label} ${part}`, await readAll(G(), a, dtype, size), await readAll(cpu, e, dtype, size), tol);
        cpu.free(e);
        G().free(a);
      }
    }

    /** x (rows, dim) around 1, its row 0 constant and row 1 (when there are 3 rows or more) zero: σ² = 0, rstd = 1/√ε. */
    function rowsOf(rows: number, dim: number, dtype: DType = 'float32'): Pair {
      const values = randomValues(rows * dim, rows + dim, -2, 4);
      values.fill(0.75, 0, dim);
      if (rows > 2) values.fill(0, dim, 2 * dim);
      return upload(values, dtype);
    }

    it('normalises rows (LayerNorm, RMSNorm) and gives their gradients, with and without γ and β', async () => {
      for (const [rows, dim] of [
        [2, 0], // rows of no elements: μ and rstd NaN
        [1, 1],
        [3, 7],
        [5, 33],
        [4, 300], // rows longer than a workgroup
        [3, 1000],
      ] as const) {
        const [x, g] = [rowsOf(rows, dim), random(rows * dim, dim + 3)];
        const params = { w: random(dim, dim + 4, 'float32', 0.5, 2), b: random(dim, dim + 5) };
        for (const kind of ['layer', 'rms'] as const) {
          await norms(kind, rows, dim, x, params, g);
          await norms(kind, rows, dim, x, null, g);
        }
      }
    });

    it('stores float16, keeping μ and rstd in float32', async () => {
      if (!G().supportsFloat16) return;
      const [rows, dim] = [5, 300];
      const x = rowsOf(rows, dim, 'float16');
      const params = { w: random(dim, 41, 'float16', 0.5, 2), b: random(dim, 42, 'float16') };
      for (const kind of ['layer', 'rms'] as const) {
        await norms(kind, rows, dim, x, params, random(rows * dim, 43, 'float16'), { rtol: 2e-3, atol: 2e-3 });
      }
    });

    it('folds a grid of more than 65535 workgroups into two dimensions', async () => {
      const [rows, dim] = [65537, 2]; // one workgroup per row
      const params = { w: random(dim, 44), b: random(dim, 45) };
      // Among so many random pairs some are nearly equal: x − μ then keeps only the f32 bits of x below
      // μ's last one, and rstd (up to 1/√ε ≈ 316) scales that rounding up, in f32 as in any f32 LayerNorm.
      await norms('layer', rows, dim, rowsOf(rows, dim), params, random(rows * dim, 46), { rtol: 1e-4, atol: 1e-4 });
    });
  });

  describe('Adam update', () => {
    // Step 3 of AdamW at lr 1e-3 with λ = 0.1, folded into scalars as the optimizer does (optim/adam.ts).
    const scalars: AdamScalars = {
      beta1: 0.9,
      beta2: 0.999,
      stepSize: 1e-3 / (1 - 0.9 ** 3),
      rootCorrection: 1 / Math.sqrt(1 - 0.999 ** 3),
      eps: 1e-8,
      shrink: 1 - 1e-3 * 0.1,
    };

    /**
     * Updates p, g, m, v (the arrays `data`, of one length n) in place on both backends and compares p, m
     * and v from element `from` on. Elements are independent, so the CPU reference updates only those.
     */
    async function update(data: readonly Float32Array[], from = 0): Promise<void> {
      const n = (data[0] as Float32Array).length;
      const [p, g, m, v] = data.map((x) => ({ cpu: cpu.upload(x.subarray(from), 'float32'), gpu: G().upload(x, 'float32') }));
      cpu.adamStep(p.cpu, g.cpu, m.cpu, v.cpu, n - from, 'float32', scalars);
      G().adamStep(p.gpu, g.gpu, m.gpu, v.gpu, n, 'float32', scalars);
      for (const [name, x] of [
        ['p', p],
        ['m', m],
        ['v', v],
      ] as const) {
        const [actual, expected] = [await G().read(x.gpu, 'float32', from, n - from), await readAll(cpu, x.cpu, 'float32', n - from)];
        expectClose(`adamStep ${n}: ${name}`, actual, expected, F32);
      }
      for (const x of [p, g, m, v]) {
        cpu.free(x.cpu);
        G().free(x.gpu);
      }
    }

    it('updates p, m and v in place like the CPU, at every size', async () => {
      // p and g in [−1, 1), m in [−0.1, 0.1), v in [0, 0.01).
      const ranges: [number, number][] = [
        [-1, 1],
        [-1, 1],
        [-0.1, 0.1],
        [0, 0.01],
      ];
      for (const n of SIZES) await update(ranges.map(([lo, hi], k) => Float32Array.from(randomValues(n, 80 + n + k, lo, hi))));
    });

    it('folds a grid of more than 65535 workgroups into two dimensions', async () => {
      // Four shifted windows of one pattern in [0, 1) (cheap to make), compared from 1000 elements
      // before the first workgroup of the second grid row.
      const n = 65535 * ELEMENTWISE_WORKGROUP + 1000;
      const pattern = new Float32Array(n + 3);
      for (let i = 0; i < pattern.length; i++) pattern[i] = (i % 1999) / 1999;
      await update(
        [0, 1, 2, 3].map((k) => pattern.subarray(k, k + n)),
        n - 2000,
      );
    });

    it('refuses a dtype other than float32, in one sentence', () => {
      const x = upload([1, 2, 3], 'int32');
      expect(() => G().adamStep(x.gpu, x.gpu, x.gpu, x.gpu, 3, 'int32', scalars)).toThrow(
        /^adamStep: the GPU updates float32 parameters, not int32\.$/,
      );
    });
  });

  describe('profile', () => {
    const canProfile = gpu?.canProfile === true;

    it.runIf(canProfile)('times each kernel launched while on, by op, and resets at each report', async () => {
      const a = view(random(32 * 48, 71), [1, 32, 48]).gpu;
      const b = view(random(48 * 40, 72), [1, 48, 40]).gpu;
      const x = view(random(500, 73), [500]).gpu;
      const outs = [G().binary('add', x, x)]; // before: not timed
      G().profile(true);
      outs.push(G().matmul(a, b), G().matmul(a, b), G().binary('add', x, x), G().unary('exp', x));
      G().profile(false);
      outs.push(G().binary('add', x, x)); // after: not timed
      const rows = await G().profileReport();
      for (const o of outs) G().free(o);

      const calls = (op: RegExp): number => rows.filter((r) => op.test(r.op)).reduce((n, r) => n + r.calls, 0);
      expect([calls(/^add$/), calls(/^exp$/), calls(/^matmul tile \d+/)]).toEqual([1, 1, 2]);
      expect(rows.every((r) => /^(add|exp|matmul)\b/.test(r.op))).toBe(true); // and nothing else
      for (const r of rows) {
        expect(r.totalMs).toBeGreaterThanOrEqual(0);
        expect(r.meanUs).toBeCloseTo((1e3 * r.totalMs) / r.calls, 6);
      }
      expect(rows.map((r) => r.totalMs)).toEqual(rows.map((r) => r.totalMs).sort((p, q) => q - p)); // most first
      expect(await G().profileReport()).toEqual([]);
    });

    it('names a kernel by its op and the words of its key that tell variants apart', () => {
      expect(profileLabel('add', 'elementwise binary add (float32,float32)->float32 rank 1')).toBe('add');
      expect(profileLabel('full', 'fill float32')).toBe('full');
      expect(profileLabel('reduce sum', 'reduce sum float32 -> float32')).toBe('reduce sum');
      const matmul = 'matmul float32,float32->float32 tile 64 a:cols b:rows +bias';
      expect(profileLabel('matmul', matmul)).toBe('matmul tile 64 a:cols b:rows +bias');
      expect(profileLabel('selectiveScan', 'selectiveScan y+states float32 N=16 rows=32 loops')).toBe('selectiveScan y+states');
      expect(profileLabel('selectiveScanGrad', 'selectiveScanGrad sum float32')).toBe('selectiveScanGrad sum');
    });

    it('refuses to profile without the timestamp-query feature, in one sentence', async () => {
      // The same device, seen as one without the feature (lavapipe, where CI runs, has it).
      const device = await GpuDevice.open();
      const without = Object.create(device, { features: { value: { ...device.features, timestampQuery: false } } }) as GpuDevice;
      const pool = new BufferPool(device.device, { maxBytes: 2 ** 20, bindableBytes: 2 ** 20, maxIdleBytes: 0, openBatch: () => -1 });
      const exec = new Executor(without, pool, pool);
      expect(() => exec.profile(true)).toThrow(/^profile: this GPU lacks the 'timestamp-query' feature/);
      device.destroy();
    });

    it('refuses a kernel that binds more storage buffers than the GPU allows, in one sentence', async () => {
      // The same device, seen as one that allows only WebGPU's guaranteed 8 (the scan's backward binds 10).
      const device = await GpuDevice.open();
      const eight = Object.create(device, { limits: { value: { ...device.limits, maxStorageBuffersPerShaderStage: 8 } } }) as GpuDevice;
      const pool = new BufferPool(device.device, { maxBytes: 2 ** 20, bindableBytes: 2 ** 20, maxIdleBytes: 0, openBatch: () => -1 });
      const exec = new Executor(eight, pool, pool);
      const kernel = { key: 'nine reads', bindings: Array<'read'>(9).fill('read'), params: null, source: () => '' };
      expect(() => exec.dispatch('selectiveScanGrad', kernel, [], null, 1)).toThrow(
        /^selectiveScanGrad: its kernel binds 9 storage buffers, and this GPU allows 8\.$/,
      );
      device.destroy();
    });
  });
});

// The comparison itself, so that a broken helper cannot make the suite pass silently.
describe('test helpers', () => {
  it('expectClose catches a difference and accepts equal NaNs', () => {
    expect(() => expectClose('t', [1, 2], [1, 2.1], F32)).toThrow(/element 1/);
    expect(() => expectClose('t', [Number.NaN], [0], F32)).toThrow(/element 0/);
    expectClose('t', [Number.NaN, Infinity], [Number.NaN, Infinity], EXACT);
  });
});
