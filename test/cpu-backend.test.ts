/**
 * The CPU reference backend, kernel by kernel, against independent naive float64 implementations
 * written here (or hand-computed values): strided, transposed and broadcast views, odd sizes, dtype
 * conversions, numerical edge cases, and the errors users see.
 */
import { Float16Array, getFloat16 } from '@petamoriken/float16';
import { describe, expect, it } from 'vitest';
import type { BinaryOp, BufferHandle, UnaryOp, View } from '../src/backends/backend.js';
import { CpuBackend } from '../src/backends/cpu/index.js';
import { elementOffsets, isContiguous } from '../src/backends/cpu/strided.js';
import { backendNames, setBackend } from '../src/backends/registry.js';
import type { DType, TypedArray } from '../src/tensor/dtype.js';
import { normalAt, pcgHash, uniformAt } from '../src/tensor/random.js';
import { contiguousStrides, sizeOf } from '../src/tensor/shape.js';

const cpu = new CpuBackend();

// ---- helpers ----

/** n seeded values uniform in [lo, hi), made with the engine's own counter-based generator. */
function randomValues(n: number, seed: number, lo = -1, hi = 1): number[] {
  return Array.from({ length: n }, (_, i) => lo + (hi - lo) * uniformAt(pcgHash(seed), i));
}

/** `values` rounded to what a `dtype` array stores (the values the kernels will actually see). */
function roundTo(values: readonly number[], dtype: DType): number[] {
  if (dtype === 'float32') return values.map(Math.fround);
  if (dtype === 'int32') return values.map((v) => Math.trunc(v));
  if (dtype === 'float16') return Array.from(new Float16Array(values));
  return [...values];
}

function arrayOf(values: readonly number[], dtype: DType): TypedArray {
  if (dtype === 'float32') return new Float32Array(values);
  if (dtype === 'int32') return new Int32Array(values);
  if (dtype === 'float16') return new Float16Array(values);
  return new Float64Array(values);
}

const upload = (values: readonly number[], dtype: DType = 'float32'): BufferHandle => cpu.upload(arrayOf(values, dtype), dtype);

/** A view onto `buffer`; contiguous unless strides are given. */
function view(buffer: BufferHandle, shape: number[], strides = contiguousStrides(shape), offset = 0, dtype: DType = 'float32'): View {
  return { buffer, dtype, shape, strides, offset };
}

/** The view's elements in row-major order, read from `data` by the definition offset + Σ i_k·s_k. */
function naiveElements(data: readonly number[], v: View): number[] {
  const out: number[] = [];
  const walk = (axis: number, at: number): void => {
    if (axis === v.shape.length) {
      out.push(data[at] as number);
      return;
    }
    for (let i = 0; i < (v.shape[axis] as number); i++) walk(axis + 1, at + i * (v.strides[axis] as number));
  };
  walk(0, v.offset);
  return out;
}

async function readAll(buffer: BufferHandle, dtype: DType, size: number): Promise<number[]> {
  return Array.from(await cpu.read(buffer, dtype, 0, size));
}

/** Element-wise |actual − expected| ≤ tol·(1 + |expected|), NaN matching NaN; names the first miss. */
function expectClose(actual: readonly number[], expected: readonly number[], tol = 1e-6): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i] as number;
    const e = expected[i] as number;
    if (Number.isNaN(e) && Number.isNaN(a)) continue;
    if (a === e) continue; // also covers matching infinities
    if (!(Math.abs(a - e) <= tol * (1 + Math.abs(e)))) expect.fail(`element ${i}: got ${a}, expected ${e} (tol ${tol})`);
  }
}

/** Central finite difference of f at x, for checking hand-written derivatives. */
const derivative = (f: (x: number) => number, x: number, h = 1e-6): number => (f(x + h) - f(x - h)) / (2 * h);

// ---- memory ----

describe('memory', () => {
  it('full fills and converts the value: int32 truncates, float16 rounds to nearest', async () => {
    expect(await readAll(cpu.full(3, 2.5, 'float32'), 'float32', 3)).toEqual([2.5, 2.5, 2.5]);
    expect(await readAll(cpu.full(2, -2.7, 'int32'), 'int32', 2)).toEqual([-2, -2]);
    expect(await readAll(cpu.full(1, 1 / 3, 'float16'), 'float16', 1)).toEqual([0.333251953125]);
    expect(await readAll(cpu.full(1, 0.1, 'float64'), 'float64', 1)).toEqual([0.1]);
  });

  it('upload copies its input, converting dtype; read copies a slice out', async () => {
    const source = new Float32Array([1, 2, 3, 4]);
    const buffer = cpu.upload(source, 'float32');
    source[0] = 99; // the backend's copy must not change
    const slice = await cpu.read(buffer, 'float32', 1, 2);
    expect(Array.from(slice)).toEqual([2, 3]);
    slice[0] = 77; // nor through what read returned
    expect(await readAll(buffer, 'float32', 4)).toEqual([1, 2, 3, 4]);
    expect(await readAll(cpu.upload(new Float32Array([2.9, -2.9]), 'int32'), 'int32', 2)).toEqual([2, -2]);
    const half = await cpu.read(cpu.upload(new Float64Array([2049, 2051]), 'float16'), 'float16', 0, 2);
    expect(half).toBeInstanceOf(Float16Array);
    expect(Array.from(half)).toEqual([2048, 2052]); // ties to even at a spacing of 2
  });

  it('counts live bytes per dtype and stops counting freed buffers', async () => {
    const backend = new CpuBackend();
    const f32 = backend.full(10, 0, 'float32');
    const f16 = backend.full(10, 0, 'float16');
    const f64 = backend.full(3, 0, 'float64');
    expect(backend.liveBytes()).toBe(40 + 20 + 24);
    backend.free(f16);
    expect(backend.liveBytes()).toBe(64);
    const sum = backend.reduce('sum', f32, 'float32', 2, 5, 1);
    expect(backend.liveBytes()).toBe(64 + 8);
    for (const b of [f32, f64, sum]) backend.free(b);
    expect(backend.liveBytes()).toBe(0);
    await expect(backend.sync()).resolves.toBeUndefined();
  });

  it('rejects a freed buffer, a wrong dtype, and reads past the end', async () => {
    const buffer = cpu.full(4, 1, 'float32');
    cpu.free(buffer);
    expect(() => cpu.unary('exp', view(buffer, [4]))).toThrow('exp: the buffer was used after it was freed.');
    expect(() => cpu.free(buffer)).toThrow('free: the buffer was used after it was freed.');
    await expect(cpu.read(buffer, 'float32', 0, 1)).rejects.toThrow('freed');
    const ints = cpu.full(4, 1, 'int32');
    expect(() => cpu.reduce('sum', ints, 'float32', 1, 4, 1)).toThrow('reduce: the buffer holds int32 elements, not float32.');
    await expect(cpu.read(ints, 'int32', 2, 3)).rejects.toThrow('4 elements but 5 are needed');
    expect(() => cpu.copy(view(ints, [3], [2], 0, 'int32'), 'int32')).toThrow('4 elements but 5 are needed');
  });

  it('registers itself as "cpu"', async () => {
    expect(backendNames()).toContain('cpu');
    expect(await setBackend('cpu')).toBeInstanceOf(CpuBackend);
  });
});

// ---- strided views and copies ----

describe('copy', () => {
  const data = randomValues(7 * 33 + 5, 1);
  const buffer = upload(data, 'float64');
  const f64 = (shape: number[], strides: number[], offset = 0): View => view(buffer, shape, strides, offset, 'float64');
  const cases: [string, View][] = [
    ['contiguous with an offset', f64([7, 33], [33, 1], 5)],
    ['transposed', f64([33, 7], [1, 33])],
    ['every other column', f64([7, 16], [33, 2], 1)],
    ['a broadcast row (stride 0)', f64([7, 33], [0, 1], 3)],
    ['broadcast in the middle, size-1 axes', f64([1, 7, 4, 1, 3], [9, 33, 0, 5, 1])],
    ['a single element', f64([1, 1], [0, 0], 17)],
    ['a permuted 3-D view', f64([3, 7, 11], [11, 33, 1])],
    ['overlapping sliding windows (as_strided)', f64([31, 3], [1, 1])],
  ];
  for (const [name, v] of cases) {
    it(`gathers ${name}`, async () => {
      const out = cpu.copy(v, 'float64');
      expect(await readAll(out, 'float64', sizeOf(v.shape))).toEqual(naiveElements(data, v));
    });
  }

  it('uses contiguous views in place and walks the others in row-major order', () => {
    expect(isContiguous(f64([7, 1, 33], [33, 99, 1], 5))).toBe(true); // a size-1 axis's stride is irrelevant
    expect(isContiguous(f64([33, 7], [1, 33]))).toBe(false);
    expect(isContiguous(f64([7, 33], [0, 1]))).toBe(false);
    expect(Array.from(elementOffsets(f64([2, 2, 3], [1, 12, 3], 2)))).toEqual([2, 5, 8, 14, 17, 20, 3, 6, 9, 15, 18, 21]);
  });

  it('converts dtypes: f64→f32 rounds, float→int32 truncates toward zero, f16 rounds to nearest-even', async () => {
    const values = [0.1, -2.7, 2.7, 1 / 3, 65519, 65520, 1e-8, 2 ** -24 * 1.5, -0.5];
    const src = view(upload(values, 'float64'), [values.length], [1], 0, 'float64');
    expect(await readAll(cpu.copy(src, 'float32'), 'float32', 9)).toEqual(values.map(Math.fround));
    expect(await readAll(cpu.copy(src, 'int32'), 'int32', 9)).toEqual([0, -2, 2, 0, 65519, 65520, 0, 0, 0]);
    // By hand: 1/3 → 0x3555; 65519 < 65520 (the midpoint to 2^16) stays finite, 65520 overflows;
    // 1e-8 is below half the smallest subnormal 2^-24; 1.5·2^-24 is a tie between 2^-24 and 2^-23: even is 2^-23.
    expect(await readAll(cpu.copy(src, 'float16'), 'float16', 9)).toEqual([
      0.0999755859375,
      -2.69921875,
      2.69921875,
      0.333251953125,
      65504,
      Infinity,
      0,
      2 ** -23,
      -0.5,
    ]);
  });

  it('decodes every float16 bit pattern exactly', async () => {
    const bits = new Uint16Array(65536).map((_, i) => i);
    const halves = new Float16Array(bits.buffer);
    const out = await readAll(cpu.copy(view(cpu.upload(halves, 'float16'), [65536], [1], 0, 'float16'), 'float32'), 'float32', 65536);
    const dv = new DataView(bits.buffer);
    for (let i = 0; i < 65536; i++) {
      const expected = getFloat16(dv, 2 * i, true);
      if (!Object.is(out[i], expected) && !(Number.isNaN(expected) && Number.isNaN(out[i]))) {
        expect.fail(`bits 0x${i.toString(16)}: got ${out[i]}, expected ${expected}`);
      }
    }
  });

  it('reads a strided float16 view', async () => {
    const values = roundTo(randomValues(7 * 3, 2), 'float16');
    const v = view(upload(values, 'float16'), [3, 7], [1, 3], 0, 'float16');
    expect(await readAll(cpu.copy(v, 'float64'), 'float64', 21)).toEqual(naiveElements(values, v));
  });
});

describe('assign', () => {
  it('writes a broadcast source into a transposed destination and leaves other elements alone', async () => {
    const dstValues = randomValues(40, 3);
    const dst = upload(dstValues, 'float64');
    const row = [10, 20, 30, 40, 50, 60, 70];
    // dst viewed as the transpose of its (5, 8) layout, columns 1..7 of rows 1..3 → a (7, 3) view
    const target = view(dst, [7, 3], [1, 8], 9, 'float64');
    cpu.assign(target, view(upload(row), [7, 3], [1, 0]));
    const expected = [...dstValues];
    for (let i = 0; i < 7; i++) for (let j = 0; j < 3; j++) expected[9 + i + 8 * j] = row[i] as number;
    expect(await readAll(dst, 'float64', 40)).toEqual(expected);
  });

  it('converts to the destination dtype (float16 rounding, int32 truncation)', async () => {
    const half = cpu.full(4, 0, 'float16');
    cpu.assign(view(half, [2], [2], 1, 'float16'), view(upload([1 / 3, 2051], 'float64'), [2], [1], 0, 'float64'));
    expect(await readAll(half, 'float16', 4)).toEqual([0, 0.333251953125, 0, 2052]);
    const ints = cpu.full(3, 5, 'int32');
    cpu.assign(view(ints, [2], [1], 1, 'int32'), view(upload([-3.9, 3.9]), [2]));
    expect(await readAll(ints, 'int32', 3)).toEqual([5, -3, 3]);
  });

  it('handles a source that overlaps its destination as if it had been copied first', async () => {
    const buffer = upload([1, 2, 3, 4, 5]);
    cpu.assign(view(buffer, [4], [1], 1), view(buffer, [4], [1], 0)); // x[1:] = x[:-1]
    expect(await readAll(buffer, 'float32', 5)).toEqual([1, 1, 2, 3, 4]);
  });

  it('rejects different shapes', () => {
    const b = cpu.full(6, 0, 'float32');
    expect(() => cpu.assign(view(b, [2, 3]), view(b, [3, 2]))).toThrow(
      'assign: destination shape [2, 3] differs from source shape [3, 2].',
    );
  });
});

// ---- element-wise maps ----

describe('unary', () => {
  const sigmoid = (x: number): number => Math.exp(x) / (1 + Math.exp(x));
  const gelu = (x: number): number => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  const silu = (x: number): number => x * sigmoid(x);
  const reference: Record<UnaryOp, (x: number) => number> = {
    neg: (x) => -x,
    exp: Math.exp,
    log: Math.log,
    sqrt: Math.sqrt,
    rsqrt: (x) => Math.sqrt(1 / x),
    tanh: Math.tanh,
    sigmoid,
    silu,
    gelu,
    softplus: (x) => Math.log(1 + Math.exp(x)),
    relu: (x) => Math.max(x, 0),
    abs: Math.abs,
    sign: (x) => (x > 0 ? 1 : x < 0 ? -1 : 0),
    siluGrad: (x) => derivative(silu, x), // the derivatives are checked against finite differences
    geluGrad: (x) => derivative(gelu, x),
  };
  const values = randomValues(7 * 33, 4, -6, 6);
  const positive = values.map(Math.abs);
  for (const op of Object.keys(reference) as UnaryOp[]) {
    it(`${op} on a transposed (33, 7) view matches its definition`, async () => {
      const input = op === 'log' || op === 'sqrt' || op === 'rsqrt' ? positive : values;
      const v = view(upload(input, 'float64'), [33, 7], [1, 33], 0, 'float64');
      const expected = naiveElements(input, v).map(reference[op]);
      expectClose(await readAll(cpu.unary(op, v), 'float64', 7 * 33), expected, op.endsWith('Grad') ? 1e-8 : 1e-12);
    });
  }

  it('has the documented edge values', async () => {
    const run = async (op: UnaryOp, xs: number[]) =>
      readAll(cpu.unary(op, view(upload(xs, 'float64'), [xs.length], [1], 0, 'float64')), 'float64', xs.length);
    expect(await run('sign', [0, -0, -3, 2])).toEqual([0, -0, -1, 1]);
    expect(await run('softplus', [21, 800])).toEqual([21, 800]); // threshold 20, and no overflow
    expectClose(await run('softplus', [20, -40]), [20 + Math.log1p(Math.exp(-20)), Math.exp(-40)], 1e-15);
    expect(await run('sigmoid', [-1000, 1000])).toEqual([0, 1]);
    expect(await run('relu', [-1, 0, 2, NaN])).toEqual([0, 0, 2, NaN]);
    expect(await run('rsqrt', [4, 0])).toEqual([0.5, Infinity]);
  });

  it('keeps the input dtype: float32 and float16 results are rounded once', async () => {
    const xs = [0.1, 1, 2.5];
    const f32 = await readAll(cpu.unary('exp', view(upload(xs), [3])), 'float32', 3);
    expect(f32).toEqual(roundTo(xs, 'float32').map((x) => Math.fround(Math.exp(x))));
    const half = roundTo(xs, 'float16');
    const f16 = await readAll(cpu.unary('exp', view(upload(half, 'float16'), [3], [1], 0, 'float16')), 'float16', 3);
    expect(f16).toEqual(roundTo(half.map(Math.exp), 'float16'));
  });
});

describe('binary', () => {
  const reference: Record<BinaryOp, (a: number, b: number) => number> = {
    add: (a, b) => a + b,
    sub: (a, b) => a - b,
    mul: (a, b) => a * b,
    div: (a, b) => a / b,
    pow: (a, b) => a ** b,
    maximum: Math.max,
    minimum: Math.min,
    eq: (a, b) => Number(a === b),
    ne: (a, b) => Number(a !== b),
    lt: (a, b) => Number(a < b),
    le: (a, b) => Number(a <= b),
    gt: (a, b) => Number(a > b),
    ge: (a, b) => Number(a >= b),
  };
  // Small integers so that comparisons see plenty of equal pairs.
  const aValues = randomValues(7 * 33, 5, 0, 4).map(Math.floor);
  const bValues = randomValues(33, 6, 0, 4).map(Math.floor);
  for (const op of Object.keys(reference) as BinaryOp[]) {
    it(`${op} of a (7, 33) view and a row broadcast along axis 0 (stride 0)`, async () => {
      const a = view(upload(aValues, 'float64'), [7, 33], [33, 1], 0, 'float64');
      const b = view(upload(bValues, 'float64'), [7, 33], [0, 1], 0, 'float64');
      const bs = naiveElements(bValues, b);
      const expected = aValues.map((x, i) => reference[op](x, bs[i] as number));
      expect(await readAll(cpu.binary(op, a, b), 'float64', 7 * 33)).toEqual(expected);
    });
  }

  it('rounds a float16 result once, straight from the double (not via float32)', async () => {
    // 1 + 2^-11 + 2^-30 lies just above the float16 midpoint 1 + 2^-11, so it rounds up to 1 + 2^-10;
    // rounding to float32 first would land exactly on the midpoint and then tie to even: 1.
    const a = view(upload([1], 'float16'), [1], [1], 0, 'float16');
    const b = view(upload([2 ** -11 + 2 ** -30], 'float64'), [1], [1], 0, 'float64');
    expect(await readAll(cpu.binary('add', a, b), 'float16', 1)).toEqual([1 + 2 ** -10]);
  });

  it('takes the dtype of a: int32 results truncate', async () => {
    const a = view(upload([7, -7, 1], 'int32'), [3], [1], 0, 'int32');
    const b = view(upload([2, 2, 0.5]), [3]);
    expect(await readAll(cpu.binary('div', a, b), 'int32', 3)).toEqual([3, -3, 2]);
  });

  it('propagates NaN through maximum and minimum', async () => {
    const a = view(upload([NaN, 1]), [2]);
    const b = view(upload([1, NaN]), [2]);
    expect(await readAll(cpu.binary('maximum', a, b), 'float32', 2)).toEqual([NaN, NaN]);
  });

  it('rejects operands that were not broadcast to one shape', () => {
    const b = cpu.full(6, 0, 'float32');
    expect(() => cpu.binary('add', view(b, [2, 3]), view(b, [3]))).toThrow(
      'binary add: shapes [2, 3] and [3] differ; broadcast them first.',
    );
  });
});

describe('where', () => {
  it('selects from a and a broadcast b by a transposed condition (any nonzero is true)', async () => {
    const cond = [0, -1, 2, 0, 0.5, -3, 0, 1, 0, 0, -0.25, 7];
    const aValues = randomValues(12, 8);
    const c = view(upload(cond), [4, 3], [1, 4]);
    const a = view(upload(aValues), [4, 3]);
    const b = view(upload([-5]), [4, 3], [0, 0]);
    const cs = naiveElements(cond, c);
    const expected = roundTo(aValues, 'float32').map((x, i) => (cs[i] ? x : -5));
    expect(await readAll(cpu.where(c, a, b), 'float32', 12)).toEqual(expected);
  });
});

describe('random', () => {
  const n = 100_000;

  it('uniform follows uniformAt with k = pcgHash(seed): deterministic, in [0, 1), mean ≈ 1/2', async () => {
    const seed = 1234;
    const xs = await readAll(cpu.random('uniform', n, seed, 'float64'), 'float64', n);
    const k = pcgHash(seed);
    expect(xs.slice(0, 100)).toEqual(Array.from({ length: 100 }, (_, i) => uniformAt(k, i)));
    expect(await readAll(cpu.random('uniform', n, seed, 'float64'), 'float64', n)).toEqual(xs);
    expect(await readAll(cpu.random('uniform', 100, seed + 1, 'float64'), 'float64', 100)).not.toEqual(xs.slice(0, 100));
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    const mean = xs.reduce((s, x) => s + x, 0) / n;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.005); // σ of the mean is 0.29/√n ≈ 0.0009
  });

  it('normal follows normalAt: mean ≈ 0 and variance ≈ 1 over 1e5 samples', async () => {
    const seed = 99;
    const xs = await readAll(cpu.random('normal', n, seed, 'float32'), 'float32', n);
    const k = pcgHash(seed);
    expect(xs.slice(0, 100)).toEqual(Array.from({ length: 100 }, (_, i) => Math.fround(normalAt(k, i))));
    const mean = xs.reduce((s, x) => s + x, 0) / n;
    const variance = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / n;
    expect(Math.abs(mean)).toBeLessThan(0.015); // σ of the mean ≈ 0.003
    expect(Math.abs(variance - 1)).toBeLessThan(0.03); // σ of the variance ≈ √(2/n) ≈ 0.0045
  });

  it('rejects int32', () => {
    expect(() => cpu.random('uniform', 4, 0, 'int32')).toThrow('random: dtype must be a float type, not int32.');
  });
});

// ---- rows: reductions, scans, softmax ----

/** The rows of a (rows, cols) list. */
const rowsOf = (values: readonly number[], cols: number): number[][] =>
  Array.from({ length: values.length / cols }, (_, r) => values.slice(r * cols, (r + 1) * cols));

describe('reduce', () => {
  for (const [outer, len, inner] of [
    [7, 33, 1],
    [33, 1, 1],
    [1, 7, 1],
    [1, 7, 5], // a sum over axis 0 of a (7, 5) matrix
    [3, 4, 5], // axis 1 of (3, 4, 5)
    [4, 1, 3],
  ] as const) {
    it(`sum, max, min and argmax over the middle of (${outer}, ${len}, ${inner})`, async () => {
      const values = roundTo(randomValues(outer * len * inner, outer + len + inner), 'float32');
      const x = upload(values);
      // The line that output (o, i) reduces, x[o, ·, i], picked out by its index.
      const lines = Array.from({ length: outer * inner }, (_, c) => {
        const [o, i] = [Math.floor(c / inner), c % inner];
        return Array.from({ length: len }, (_, j) => values[(o * len + j) * inner + i] as number);
      });
      const n = outer * inner;
      const reduce = (op: 'sum' | 'max' | 'min' | 'argmax') => cpu.reduce(op, x, 'float32', outer, len, inner);
      expectClose(
        await readAll(reduce('sum'), 'float32', n),
        lines.map((r) => r.reduce((s, v) => s + v, 0)),
      );
      expect(await readAll(reduce('max'), 'float32', n)).toEqual(lines.map((r) => Math.max(...r)));
      expect(await readAll(reduce('min'), 'float32', n)).toEqual(lines.map((r) => Math.min(...r)));
      const argmax = reduce('argmax');
      expect(await cpu.read(argmax, 'int32', 0, n)).toBeInstanceOf(Int32Array);
      expect(await readAll(argmax, 'int32', n)).toEqual(lines.map((r) => r.indexOf(Math.max(...r))));
    });
  }

  it('argmax takes the first of tied maxima and the first NaN; max and min propagate NaN', async () => {
    const x = upload([1, 3, 3, 0, -Infinity, -Infinity, -Infinity, -Infinity, 2, NaN, 5, NaN]);
    expect(await readAll(cpu.reduce('argmax', x, 'float32', 3, 4, 1), 'int32', 3)).toEqual([1, 0, 1]);
    expect(await readAll(cpu.reduce('max', x, 'float32', 3, 4, 1), 'float32', 3)).toEqual([3, -Infinity, NaN]);
    expect(await readAll(cpu.reduce('min', x, 'float32', 3, 4, 1), 'float32', 3)).toEqual([0, -Infinity, NaN]);
    // The same values down the columns of a (4, 3) matrix: [1, 0, −∞, NaN], [3, −∞, −∞, 5], [3, −∞, 2, NaN].
    expect(await readAll(cpu.reduce('argmax', x, 'float32', 1, 4, 3), 'int32', 3)).toEqual([3, 3, 3]);
    expect(await readAll(cpu.reduce('max', x, 'float32', 1, 4, 3), 'float32', 3)).toEqual([NaN, 5, NaN]);
    expect(await readAll(cpu.reduce('min', x, 'float32', 1, 4, 3), 'float32', 3)).toEqual([NaN, -Infinity, NaN]);
    // Columns [5, 5] and [1, 5] of a (2, 2) matrix: a tie goes to the first row.
    expect(await readAll(cpu.reduce('argmax', upload([5, 1, 5, 5]), 'float32', 1, 2, 2), 'int32', 2)).toEqual([0, 1]);
  });

  it('keeps the dtype: int32 sums, float16 sums rounded once from a double accumulator', async () => {
    expect(await readAll(cpu.reduce('sum', upload([1, 2, 3, 4], 'int32'), 'int32', 2, 2, 1), 'int32', 2)).toEqual([3, 7]);
    expect(await readAll(cpu.reduce('sum', upload([1, 2, 3, 4], 'int32'), 'int32', 1, 2, 2), 'int32', 2)).toEqual([4, 6]);
    // 2048 + 1 + 1 rounds to 2048 at every step in float16 arithmetic, but the exact 2050 is representable.
    expect(await readAll(cpu.reduce('sum', upload([2048, 1, 1], 'float16'), 'float16', 1, 3, 1), 'float16', 1)).toEqual([2050]);
  });

  it('gives the identity over an empty axis, and rejects argmax there', async () => {
    const empty = cpu.full(0, 0, 'float32');
    expect(await readAll(cpu.reduce('sum', empty, 'float32', 2, 0, 3), 'float32', 6)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(await readAll(cpu.reduce('max', empty, 'float32', 1, 0, 2), 'float32', 2)).toEqual([-Infinity, -Infinity]);
    expect(await readAll(cpu.reduce('min', empty, 'float32', 2, 0, 1), 'float32', 2)).toEqual([Infinity, Infinity]);
    expect(() => cpu.reduce('argmax', empty, 'float32', 2, 0, 1)).toThrow('argmax over an empty axis');
    expect(() => cpu.reduce('argmax', empty, 'float32', 1, 0, 3)).toThrow('argmax over an empty axis');
  });
});

describe('cumsum', () => {
  it('gives inclusive prefix sums, and suffix sums with reverse, over (7, 33)', async () => {
    const values = roundTo(randomValues(7 * 33, 9), 'float32');
    const x = upload(values);
    const prefix = rowsOf(values, 33).flatMap((r) => r.map((_, j) => r.slice(0, j + 1).reduce((s, v) => s + v, 0)));
    const suffix = rowsOf(values, 33).flatMap((r) => r.map((_, j) => r.slice(j).reduce((s, v) => s + v, 0)));
    expectClose(await readAll(cpu.cumsum(x, 'float32', 7, 33, false), 'float32', 7 * 33), prefix);
    expectClose(await readAll(cpu.cumsum(x, 'float32', 7, 33, true), 'float32', 7 * 33), suffix);
    expect(await readAll(cpu.cumsum(upload([1, 2, 3]), 'float32', 1, 3, true), 'float32', 3)).toEqual([6, 5, 3]);
  });
});

describe('softmax', () => {
  const naiveSoftmax = (row: number[]): number[] => {
    const e = row.map(Math.exp);
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / s);
  };

  it('matches exp(x)/Σexp(x) over (7, 33) and (33, 1), and log-softmax matches its log', async () => {
    for (const [rows, cols] of [
      [7, 33],
      [33, 1],
    ]) {
      const values = roundTo(randomValues(rows * cols, 10, -5, 5), 'float64');
      const x = upload(values, 'float64');
      const expected = rowsOf(values, cols).flatMap(naiveSoftmax);
      expectClose(await readAll(cpu.softmax(x, 'float64', rows, cols, false), 'float64', rows * cols), expected, 1e-14);
      expectClose(await readAll(cpu.softmax(x, 'float64', rows, cols, true), 'float64', rows * cols), expected.map(Math.log), 1e-14);
    }
  });

  it('does not overflow on large logits (softmax(x + c) = softmax(x))', async () => {
    const x = upload([1000, 1001, 1002, -1000, -1001, -1002]);
    const expected = [...naiveSoftmax([0, 1, 2]), ...naiveSoftmax([0, -1, -2])];
    expectClose(await readAll(cpu.softmax(x, 'float32', 2, 3, false), 'float32', 6), expected);
    expectClose(await readAll(cpu.softmax(x, 'float32', 2, 3, true), 'float32', 6), expected.map(Math.log));
  });

  it('gives exactly 0 to −∞ (a masked position)', async () => {
    expect(await readAll(cpu.softmax(upload([0, -Infinity]), 'float32', 1, 2, false), 'float32', 2)).toEqual([1, 0]);
  });
});

// ---- matmul ----

/** Naive (batch, M, N) product of two views, reading every element by its definition. */
function naiveMatmul(aData: number[], a: View, bData: number[], b: View): number[] {
  const [batch, M, K] = a.shape as [number, number, number];
  const N = b.shape[2] as number;
  const A = naiveElements(aData, a);
  const B = naiveElements(bData, b);
  const out: number[] = [];
  for (let p = 0; p < batch; p++) {
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += (A[(p * M + i) * K + k] as number) * (B[(p * K + k) * N + j] as number);
        out.push(s);
      }
    }
  }
  return out;
}

describe('matmul', () => {
  /** A (batch, rows, cols) view of fresh random data, laid out as given. */
  function operand(batch: number, rows: number, cols: number, layout: 'rowMajor' | 'transposed' | 'broadcast', seed: number) {
    const n = (layout === 'broadcast' ? 1 : batch) * rows * cols + 3;
    const data = roundTo(randomValues(n, seed), 'float64');
    const strides = {
      rowMajor: [rows * cols, cols, 1],
      transposed: [rows * cols, 1, rows], // stored as (cols, rows), read transposed
      broadcast: [0, cols, 1],
    }[layout];
    return { data, v: view(upload(data, 'float64'), [batch, rows, cols], strides, 3, 'float64') };
  }

  const cases = [
    [1, 1, 1, 1, 'rowMajor', 'rowMajor'],
    [1, 7, 33, 1, 'rowMajor', 'rowMajor'],
    [2, 33, 7, 33, 'transposed', 'rowMajor'],
    [3, 7, 1, 33, 'rowMajor', 'transposed'],
    [2, 65, 300, 67, 'transposed', 'transposed'], // K spans three packed blocks of 128
    [1, 5, 130, 600, 'rowMajor', 'rowMajor'], // N spans two packed column blocks of 512
    [3, 9, 17, 5, 'rowMajor', 'broadcast'], // one (27, 17) @ (17, 5) product
    [3, 9, 17, 5, 'transposed', 'broadcast'], // batches of A not stacked: per-batch products
    [4, 6, 7, 5, 'broadcast', 'rowMajor'],
  ] as const;
  for (const [batch, M, K, N, la, lb] of cases) {
    it(`(${batch}, ${M}, ${K}) ${la} @ (${batch}, ${K}, ${N}) ${lb}`, async () => {
      const a = operand(batch, M, K, la, batch + M);
      const b = operand(batch, K, N, lb, K + N);
      const out = await readAll(cpu.matmul(a.v, b.v), 'float64', batch * M * N);
      expectClose(out, naiveMatmul(a.data, a.v, b.data, b.v), 1e-13);
    });
  }

  it('rounds float32 and float16 results once from double accumulators', async () => {
    // [1, 2^-24] · [1, 1]ᵀ = 1 + 2^-24: float32 rounds it to 1 (a tie, to even), float64 keeps it.
    const a = (dtype: DType) => view(upload([1, 2 ** -24], dtype), [1, 1, 2], [2, 2, 1], 0, dtype);
    const b = (dtype: DType) => view(upload([1, 1], dtype), [1, 2, 1], [2, 1, 1], 0, dtype);
    expect(await readAll(cpu.matmul(a('float64'), b('float64')), 'float64', 1)).toEqual([1 + 2 ** -24]);
    expect(await readAll(cpu.matmul(a('float32'), b('float32')), 'float32', 1)).toEqual([1]);
    const half = await cpu.read(
      cpu.matmul(view(upload([3, 4], 'float16'), [1, 1, 2], [2, 2, 1], 0, 'float16'), b('float16')),
      'float16',
      0,
      1,
    );
    expect(half).toBeInstanceOf(Float16Array);
    expect(Array.from(half)).toEqual([7]);
  });

  it('rejects mismatched inner sizes', () => {
    const x = cpu.full(6, 0, 'float32');
    expect(() => cpu.matmul(view(x, [1, 2, 3]), view(x, [1, 2, 3]))).toThrow(
      'matmul: shapes [1, 2, 3] and [1, 2, 3] are not (batch, M, K) and (batch, K, N).',
    );
  });
});

// ---- neural-network kernels ----

describe('crossEntropy', () => {
  const rows = 7;
  const cols = 33;
  const logits = roundTo(randomValues(rows * cols, 11, -4, 4), 'float64');
  const targets = [3, 0, 32, -100, 3, 17, -100];
  /** −log softmax(x_r)[t], computed naively. */
  const naiveLoss = (row: number[], t: number): number => -Math.log(Math.exp(row[t] as number) / row.reduce((s, v) => s + Math.exp(v), 0));

  it('gives −log softmax(x)[target] per row, and 0 for ignored rows', async () => {
    const out = cpu.crossEntropy(upload(logits, 'float64'), upload(targets, 'int32'), rows, cols, -100).loss;
    const expected = rowsOf(logits, cols).map((r, i) => (targets[i] === -100 ? 0 : naiveLoss(r, targets[i] as number)));
    expectClose(await readAll(out, 'float64', rows), expected, 1e-13);
  });

  it('also gives every row its log-sum-exp, ignored rows too, in float32 for float16 logits', async () => {
    const naiveLse = (row: number[]): number => Math.log(row.reduce((s, v) => s + Math.exp(v), 0));
    const { lse } = cpu.crossEntropy(upload(logits, 'float64'), upload(targets, 'int32'), rows, cols, -100);
    expectClose(await readAll(lse, 'float64', rows), rowsOf(logits, cols).map(naiveLse), 1e-14);
    const halves = roundTo(logits, 'float16');
    const half = cpu.crossEntropy(upload(halves, 'float16'), upload(targets, 'int32'), rows, cols, -100);
    expectClose(await readAll(half.lse, 'float32', rows), rowsOf(halves, cols).map(naiveLse), 1e-7);
  });

  it('ignores a valid class index when it is the ignoreIndex', async () => {
    const out = await readAll(
      cpu.crossEntropy(upload(logits.slice(0, 2 * cols), 'float64'), upload([3, 0], 'int32'), 2, cols, 3).loss,
      'float64',
      2,
    );
    expect(out[0]).toBe(0);
    expect(out[1]).toBeGreaterThan(0);
  });

  it('does not overflow on large logits', async () => {
    const out = await readAll(cpu.crossEntropy(upload([1000, 1001, 1002]), upload([2], 'int32'), 1, 3, -100).loss, 'float32', 1);
    expectClose(out, [naiveLoss([0, 1, 2], 2)]);
  });

  it('has gradient (softmax − onehot)·g from the forward lse, checked by finite differences of the loss; 0 for ignored rows', async () => {
    const g = randomValues(rows, 12, 0.5, 2);
    const [x, t] = [upload(logits, 'float64'), upload(targets, 'int32')];
    const { lse } = cpu.crossEntropy(x, t, rows, cols, -100);
    const grad = await readAll(cpu.crossEntropyGrad(x, lse, t, upload(g, 'float64'), rows, cols, -100), 'float64', rows * cols);
    const expected = rowsOf(logits, cols).flatMap((row, r) =>
      row.map((_, j) => {
        if (targets[r] === -100) return 0;
        const f = (x: number) =>
          (g[r] as number) *
          naiveLoss(
            row.map((v, k) => (k === j ? x : v)),
            targets[r] as number,
          );
        return derivative(f, row[j] as number);
      }),
    );
    expectClose(grad, expected, 1e-7);
  });

  it('rejects targets out of range', () => {
    expect(() => cpu.crossEntropy(upload([0, 0, 0]), upload([3], 'int32'), 1, 3, -100)).toThrow(
      'crossEntropy: target 3 is out of range for 3 classes.',
    );
    expect(() => cpu.crossEntropyGrad(upload([0, 0]), upload([0]), upload([-1], 'int32'), upload([1]), 1, 2, -100)).toThrow(
      'crossEntropyGrad: target -1 is out of range for 2 classes.',
    );
  });

  it('rejects an lse of the wrong dtype (float16 logits keep theirs in float32)', () => {
    expect(() =>
      cpu.crossEntropyGrad(upload([0, 0], 'float16'), upload([0], 'float16'), upload([1], 'int32'), upload([1], 'float16'), 1, 2, -100),
    ).toThrow('crossEntropyGrad: the buffer holds float16 elements, not float32.');
  });
});

describe('norm', () => {
  const [rows, dim, eps] = [4, 9, 1e-5];
  const w = randomValues(dim, 20, 0.5, 2);
  const b = randomValues(dim, 21);
  const g = randomValues(rows * dim, 22);
  /** Rows around 1, row 0 constant (σ² = 0, so rstd = 1/√ε). */
  const x = randomValues(rows * dim, 19, -2, 3).fill(0.75, 0, dim);

  /** y of every row, and its μ and rstd, straight from the definition. */
  function naiveNorm(kind: 'layer' | 'rms', values: number[]): { y: number[]; mean: number[]; rstd: number[] } {
    const mean: number[] = [];
    const rstd: number[] = [];
    const y = rowsOf(values, dim).flatMap((row) => {
      const mu = kind === 'layer' ? row.reduce((s, v) => s + v, 0) / dim : 0;
      const r = 1 / Math.sqrt(row.reduce((s, v) => s + (v - mu) ** 2, 0) / dim + eps);
      mean.push(mu);
      rstd.push(r);
      return row.map((v, j) => (v - mu) * r * (w[j] as number) + (b[j] as number));
    });
    return { y, mean, rstd };
  }

  for (const kind of ['layer', 'rms'] as const) {
    it(`${kind}: y, μ and rstd by the definition, rstd = 1/√ε on a constant row`, async () => {
      const out = cpu.norm(kind, upload(x, 'float64'), upload(w, 'float64'), upload(b, 'float64'), rows, dim, eps);
      const expected = naiveNorm(kind, x);
      expectClose(await readAll(out.y, 'float64', rows * dim), expected.y, 1e-13);
      expectClose(await readAll(out.rstd, 'float64', rows), expected.rstd, 1e-14);
      if (kind === 'layer') {
        expectClose(await readAll(out.mean as BufferHandle, 'float64', rows), expected.mean, 1e-14);
        expect((await readAll(out.rstd, 'float64', 1))[0]).toBe(1 / Math.sqrt(eps));
      } else {
        expect(out.mean).toBeNull();
      }
    });

    it(`${kind}: dx and g·x̂ are the derivatives of Σ g·y by x and by γ, by finite differences`, async () => {
      const [xs, ws] = [upload(x, 'float64'), upload(w, 'float64')];
      const { mean, rstd } = cpu.norm(kind, xs, ws, upload(b, 'float64'), rows, dim, eps);
      const { dx, gxhat } = cpu.normGrad(kind, xs, ws, mean, rstd, upload(g, 'float64'), rows, dim, true);
      const loss = (values: number[]) => naiveNorm(kind, values).y.reduce((s, v, i) => s + v * (g[i] as number), 0);
      const dxExpected = x.map((v, i) => derivative((t) => loss(x.map((u, k) => (k === i ? t : u))), v));
      expectClose(await readAll(dx, 'float64', rows * dim), dxExpected, 1e-6);
      // Σ g·y is linear in γ with coefficient Σ_rows g·x̂, and x̂ = (y − β)/γ.
      const gxhatExpected = naiveNorm(kind, x).y.map((v, i) => ((g[i] as number) * (v - (b[i % dim] as number))) / (w[i % dim] as number));
      expectClose(await readAll(gxhat as BufferHandle, 'float64', rows * dim), gxhatExpected, 1e-13);
    });
  }

  it('centres before it squares: |μ| ≫ σ loses nothing (mean x² − μ² would lose every digit)', async () => {
    const far = x.map((v) => v + 1e8);
    const out = cpu.norm('layer', upload(far, 'float64'), null, null, rows, dim, eps);
    const expected = naiveNorm('layer', x).rstd; // the same rows without the offset
    expectClose(await readAll(out.rstd, 'float64', rows), expected, 1e-6);
  });

  it('keeps μ and rstd of float16 rows in float32, and leaves out g·x̂ unless asked', async () => {
    const half = roundTo(x, 'float16');
    const xs = upload(half, 'float16');
    const { y, mean, rstd } = cpu.norm('layer', xs, null, null, rows, dim, eps);
    expect(await cpu.read(y, 'float16', 0, 1)).toBeInstanceOf(Float16Array);
    expect(await cpu.read(rstd, 'float32', 0, rows)).toBeInstanceOf(Float32Array);
    expectClose(await readAll(mean as BufferHandle, 'float32', rows), naiveNorm('layer', half).mean, 1e-7);
    expect(cpu.normGrad('layer', xs, null, mean, rstd, upload(g, 'float16'), rows, dim, false).gxhat).toBeNull();
  });

  it("refuses a mean for 'rms', or none for 'layer'", () => {
    const [xs, stats] = [upload(x), upload(new Array(rows).fill(1))];
    expect(() => cpu.normGrad('rms', xs, null, stats, stats, xs, rows, dim, false)).toThrow(
      "rmsNormGrad: 'layer' needs the forward's mean, and 'rms' has none.",
    );
    expect(() => cpu.normGrad('layer', xs, null, null, stats, xs, rows, dim, false)).toThrow(/^layerNormGrad: 'layer' needs/);
  });
});

describe('gatherRows and scatterAddRows', () => {
  const vocab = 5;
  const dim = 7;
  const weight = roundTo(randomValues(vocab * dim, 13), 'float32');

  it('gathers rows by id (repeats allowed)', async () => {
    const ids = [4, 0, 4, 2];
    const out = cpu.gatherRows(upload(weight), upload(ids, 'int32'), ids.length, vocab, dim);
    expect(await readAll(out, 'float32', ids.length * dim)).toEqual(ids.flatMap((id) => weight.slice(id * dim, (id + 1) * dim)));
  });

  it('copies float16 rows bit-exactly', async () => {
    const half = roundTo(weight, 'float16');
    const out = await cpu.read(cpu.gatherRows(upload(half, 'float16'), upload([1], 'int32'), 1, vocab, dim), 'float16', 0, dim);
    expect(out).toBeInstanceOf(Float16Array);
    expect(Array.from(out)).toEqual(half.slice(dim, 2 * dim));
  });

  it('scatter-adds gradient rows, summing repeated ids, zero elsewhere', async () => {
    const ids = [3, 1, 3, 3, 0];
    const grad = roundTo(randomValues(ids.length * dim, 14), 'float64');
    const out = await readAll(
      cpu.scatterAddRows(upload(grad, 'float64'), upload(ids, 'int32'), ids.length, vocab, dim),
      'float64',
      vocab * dim,
    );
    const expected = new Array<number>(vocab * dim).fill(0);
    ids.forEach((id, i) => {
      for (let j = 0; j < dim; j++) expected[id * dim + j] += grad[i * dim + j] as number;
    });
    expectClose(out, expected, 1e-15);
    expect(out.slice(2 * dim, 3 * dim)).toEqual(new Array(dim).fill(0));
  });

  it('rejects ids out of range, naming the op and the bad id', () => {
    const w = upload(weight);
    expect(() => cpu.gatherRows(w, upload([0, 7], 'int32'), 2, vocab, dim)).toThrow('gatherRows: index 7 is out of range for 5 rows.');
    expect(() => cpu.gatherRows(w, upload([-1], 'int32'), 1, vocab, dim)).toThrow('gatherRows: index -1 is out of range for 5 rows.');
    expect(() => cpu.scatterAddRows(upload(weight.slice(0, dim)), upload([5], 'int32'), 1, vocab, dim)).toThrow(
      'scatterAddRows: index 5 is out of range for 5 rows.',
    );
    expect(() => cpu.gatherRows(w, upload([0]), 1, vocab, dim)).toThrow('gatherRows: the buffer holds float32 elements, not int32.');
  });
});

describe('conv1d', () => {
  /** y[b,c,t] = bias[c] + Σ_k w[c,k]·x[b,c,t−K+1+k], reading 0 before t = 0. */
  function naiveConv(x: number[], w: number[], bias: number[], batch: number, channels: number, len: number, K: number): number[] {
    const y: number[] = [];
    for (let b = 0; b < batch; b++) {
      for (let c = 0; c < channels; c++) {
        for (let t = 0; t < len; t++) {
          let s = bias[c] as number;
          for (let k = 0; k < K; k++) {
            const src = t - K + 1 + k;
            if (src >= 0) s += (w[c * K + k] as number) * (x[(b * channels + c) * len + src] as number);
          }
          y.push(s);
        }
      }
    }
    return y;
  }

  for (const [batch, channels, len, K] of [
    [2, 3, 2, 4], // every t < K: the zero padding matters everywhere
    [2, 7, 33, 4],
    [1, 1, 1, 1],
  ] as const) {
    it(`forward and gradients for (batch ${batch}, channels ${channels}, len ${len}, K ${K})`, async () => {
      const n = batch * channels * len;
      const x = randomValues(n, 15);
      const w = randomValues(channels * K, 16);
      const bias = randomValues(channels, 17);
      const gy = randomValues(n, 18);
      const y = cpu.conv1d(upload(x, 'float64'), upload(w, 'float64'), upload(bias, 'float64'), batch, channels, len, K);
      expectClose(await readAll(y, 'float64', n), naiveConv(x, w, bias, batch, channels, len, K), 1e-14);

      // The gradients of L = Σ gy·y, by central differences of the naive forward (L is linear in x and in w).
      const loss = (xs: number[], ws: number[]) =>
        naiveConv(xs, ws, bias, batch, channels, len, K).reduce((s, v, i) => s + v * (gy[i] as number), 0);
      const bump = (arr: number[], i: number, h: number) => arr.map((v, j) => (j === i ? v + h : v));
      const gxExpected = x.map((_, i) => (loss(bump(x, i, 1e-3), w) - loss(bump(x, i, -1e-3), w)) / 2e-3);
      const gwExpected = w.map((_, i) => (loss(x, bump(w, i, 1e-3)) - loss(x, bump(w, i, -1e-3))) / 2e-3);
      const { gx, gw } = cpu.conv1dGrad(upload(gy, 'float64'), upload(x, 'float64'), upload(w, 'float64'), batch, channels, len, K);
      expectClose(await readAll(gx, 'float64', n), gxExpected, 1e-9);
      expectClose(await readAll(gw, 'float64', channels * K), gwExpected, 1e-9);
    });
  }

  it('is causal: changing x at step s leaves y before s unchanged', async () => {
    const [channels, len, K] = [1, 6, 3];
    const w = upload([1, 2, 3]);
    const bias = upload([0]);
    const y1 = await readAll(cpu.conv1d(upload([1, 1, 1, 1, 1, 1]), w, bias, 1, channels, len, K), 'float32', len);
    const y2 = await readAll(cpu.conv1d(upload([1, 1, 1, 9, 1, 1]), w, bias, 1, channels, len, K), 'float32', len);
    expect(y1).toEqual([3, 5, 6, 6, 6, 6]); // by hand: tap K−1 = 3 sees step t, tap 1 = 2 sees t−1, tap 0 = 1 sees t−2
    expect(y2.slice(0, 3)).toEqual(y1.slice(0, 3));
    expect(y2.slice(3)).toEqual([30, 22, 14]);
  });
});
