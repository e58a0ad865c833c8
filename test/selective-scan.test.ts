/**
 * The selective scan: the sequential CPU definition against a naive float64 implementation written
 * here, the Blelloch scan against the sequential one (values and amount of work), gradients of the op
 * against finite differences, the last state, and the shape errors.
 */
import { describe, expect, it } from 'vitest';
import { blellochScan } from '../src/backends/cpu/blelloch-scan.js';
import { selectiveScanForward } from '../src/backends/cpu/selective-scan.js';
import { getBackend, gradcheck, selectiveScan, setBackend, type Tensor, tensor } from '../src/index.js';
import { normalAt, pcgHash } from '../src/tensor/random.js';

await setBackend('cpu');

/** Seeded standard-normal values, optionally mapped. */
const values = (n: number, seed: number, map: (v: number) => number = (v) => v): Float64Array =>
  Float64Array.from({ length: n }, (_, i) => map(normalAt(pcgHash(seed), i)));

/** A = −exp(A_log), as Mamba parameterises it: negative, so every state decays. */
const negativeA = (v: number): number => -Math.exp(0.5 * v);
/** A step size Δ > 0 for calls without the softplus. */
const positiveDelta = (v: number): number => 0.1 + 0.5 * Math.abs(v);
const softplus = (x: number): number => Math.log1p(Math.exp(x));
const silu = (x: number): number => x / (1 + Math.exp(-x));

const close = (actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number): void => {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i] as number;
    const a = actual[i] as number;
    if (!(Math.abs(a - e) <= tol * (1 + Math.abs(e)))) throw new Error(`element ${i}: got ${a}, expected ${e}`);
  }
};

interface Sizes {
  batch: number;
  dim: number;
  len: number;
  N: number;
}

interface Raw {
  u: Float64Array;
  delta: Float64Array;
  A: Float64Array;
  B: Float64Array;
  C: Float64Array;
  D: Float64Array;
  z: Float64Array;
  deltaBias: Float64Array;
}

function rawInputs({ batch, dim, len, N }: Sizes, seed: number, delta: (v: number) => number = positiveDelta): Raw {
  return {
    u: values(batch * dim * len, seed),
    delta: values(batch * dim * len, seed + 1, delta),
    A: values(dim * N, seed + 2, negativeA),
    B: values(batch * N * len, seed + 3),
    C: values(batch * N * len, seed + 4),
    D: values(dim, seed + 5),
    z: values(batch * dim * len, seed + 6),
    deltaBias: values(dim, seed + 7, (v) => 0.3 * v),
  };
}

interface NaiveOptions {
  D?: boolean;
  z?: boolean;
  deltaBias?: boolean;
  deltaSoftplus?: boolean;
}

/**
 * `selective_scan_ref` of state-spaces/mamba, transcribed loop by loop: index arithmetic written out,
 * the state as nested arrays, everything in doubles.
 */
function naive(x: Raw, { batch, dim, len, N }: Sizes, o: NaiveOptions = {}): { y: number[]; lastState: number[] } {
  const y: number[] = new Array(batch * dim * len).fill(0);
  const lastState: number[] = new Array(batch * dim * N).fill(0);
  for (let b = 0; b < batch; b++) {
    for (let d = 0; d < dim; d++) {
      const h: number[] = new Array(N).fill(0);
      for (let t = 0; t < len; t++) {
        const i = b * dim * len + d * len + t;
        let dt = x.delta[i] as number;
        if (o.deltaBias) dt += x.deltaBias[d] as number;
        if (o.deltaSoftplus) dt = softplus(dt);
        let out = 0;
        for (let n = 0; n < N; n++) {
          const deltaA = Math.exp(dt * (x.A[d * N + n] as number));
          const deltaBu = dt * (x.B[b * N * len + n * len + t] as number) * (x.u[i] as number);
          h[n] = deltaA * (h[n] as number) + deltaBu;
          out += (h[n] as number) * (x.C[b * N * len + n * len + t] as number);
        }
        if (o.D) out += (x.u[i] as number) * (x.D[d] as number);
        if (o.z) out *= silu(x.z[i] as number);
        y[i] = out;
      }
      for (let n = 0; n < N; n++) lastState[(b * dim + d) * N + n] = h[n] as number;
    }
  }
  return { y, lastState };
}

const sizes: Sizes = { batch: 2, dim: 3, len: 5, N: 4 };

describe('the sequential CPU definition', () => {
  it('equals a naive implementation (y and the last state)', () => {
    for (const s of [sizes, { batch: 1, dim: 1, len: 1, N: 1 }, { batch: 3, dim: 2, len: 17, N: 16 }]) {
      const x = rawInputs(s, 10);
      const { y, lastState } = selectiveScanForward(x, s);
      const expected = naive(x, s);
      close(y, expected.y, 1e-13);
      close(lastState, expected.lastState, 1e-13);
    }
  });

  it('rounds once into the dtype of float32 inputs, after accumulating in doubles', () => {
    const x = rawInputs(sizes, 20);
    const f32 = {
      u: Float32Array.from(x.u),
      delta: Float32Array.from(x.delta),
      A: Float32Array.from(x.A),
      B: Float32Array.from(x.B),
      C: Float32Array.from(x.C),
    };
    const { y } = selectiveScanForward(f32, sizes);
    expect(y).toBeInstanceOf(Float32Array);
    const exact = naive({ ...x, ...Object.fromEntries(Object.entries(f32).map(([k, v]) => [k, Float64Array.from(v)])) }, sizes).y;
    close(y, Float32Array.from(exact), 0);
  });
});

describe('the op: selectiveScan', () => {
  const toTensors = (x: Raw, s: Sizes) => ({
    u: tensor(x.u, [s.batch, s.dim, s.len], { dtype: 'float64' }),
    delta: tensor(x.delta, [s.batch, s.dim, s.len], { dtype: 'float64' }),
    A: tensor(x.A, [s.dim, s.N], { dtype: 'float64' }),
    B: tensor(x.B, [s.batch, s.N, s.len], { dtype: 'float64' }),
    C: tensor(x.C, [s.batch, s.N, s.len], { dtype: 'float64' }),
    D: tensor(x.D, [s.dim], { dtype: 'float64' }),
    z: tensor(x.z, [s.batch, s.dim, s.len], { dtype: 'float64' }),
    deltaBias: tensor(x.deltaBias, [s.dim], { dtype: 'float64' }),
  });

  it('equals the naive reference with D, z, deltaBias and the softplus', async () => {
    const x = rawInputs(sizes, 30, (v) => v);
    const t = toTensors(x, sizes);
    const y = selectiveScan(t.u, t.delta, t.A, t.B, t.C, { D: t.D, z: t.z, deltaBias: t.deltaBias, deltaSoftplus: true });
    close(await y.data(), naive(x, sizes, { D: true, z: true, deltaBias: true, deltaSoftplus: true }).y, 1e-12);
  });

  it('returns the last state h_len when asked, detached from the graph', async () => {
    const x = rawInputs(sizes, 40);
    const t = toTensors(x, sizes);
    t.u.requireGrad();
    const { y, lastState } = selectiveScan(t.u, t.delta, t.A, t.B, t.C, { D: t.D, returnLastState: true });
    expect(lastState.shape).toEqual([sizes.batch, sizes.dim, sizes.N]);
    expect(lastState.requiresGrad).toBe(false);
    expect(y.requiresGrad).toBe(true);
    const expected = naive(x, sizes, { D: true });
    close(await lastState.data(), expected.lastState, 1e-13);
    close(await y.data(), expected.y, 1e-13);
  });

  it('accepts strided inputs and leaves no copies behind without autograd', async () => {
    const x = rawInputs(sizes, 50);
    const t = toTensors(x, sizes);
    const backend = getBackend();
    const expected = naive(x, sizes).y;
    // u laid out (batch, len, dim) and B, C inside a longer sequence: transposed and narrowed views.
    const uT = tensor(x.u, [sizes.batch, sizes.dim, sizes.len], { dtype: 'float64' }).transpose(1, 2).contiguous().transpose(1, 2);
    const wide = (v: Float64Array) => {
      const padded = new Float64Array(sizes.batch * sizes.N * (sizes.len + 2));
      for (let r = 0; r < sizes.batch * sizes.N; r++) padded.set(v.subarray(r * sizes.len, (r + 1) * sizes.len), r * (sizes.len + 2) + 2);
      return tensor(padded, [sizes.batch, sizes.N, sizes.len + 2], { dtype: 'float64' }).narrow(2, 2, sizes.len);
    };
    const [Bv, Cv] = [wide(x.B), wide(x.C)];
    // delta contiguous but not at the start of its buffer, behind other values (2Δ).
    const rows = sizes.batch * sizes.dim * sizes.len;
    const twoBlocks = Float64Array.from([...x.delta.map((v) => 2 * v), ...x.delta]);
    const deltaAt = tensor(twoBlocks, [2 * sizes.batch, sizes.dim, sizes.len], { dtype: 'float64' }).narrow(0, sizes.batch, sizes.batch);
    expect([uT.isContiguous, Bv.isContiguous, deltaAt.isContiguous, deltaAt.offset]).toEqual([false, false, true, rows]);
    const before = backend.liveBytes();
    const y = selectiveScan(uT, deltaAt, t.A, Bv, Cv);
    expect(backend.liveBytes() - before).toBe(y.size * 8); // only y: the copies and the last state are freed
    close(await y.data(), expected, 1e-13);
  });

  it('names the op and every shape when shapes disagree', () => {
    const t = toTensors(rawInputs(sizes, 60), sizes);
    expect(() => selectiveScan(t.u, t.delta, t.A, t.B.narrow(1, 0, 3), t.C)).toThrow(
      'selectiveScan: expected u, delta, z (batch, dim, len), A (dim, N), B, C (batch, N, len), D, deltaBias (dim); got u [2, 3, 5], delta [2, 3, 5], A [3, 4], B [2, 3, 5], C [2, 4, 5].',
    );
    expect(() => selectiveScan(t.u, t.delta, t.A, t.B, t.C, { D: t.deltaBias.narrow(0, 0, 2) })).toThrow(/got .* D \[2\]\.$/);
    expect(() => selectiveScan(t.u.select(0, 0), t.delta, t.A, t.B, t.C)).toThrow(/^selectiveScan: expected .* got u \[3, 5\]/);
    expect(() => selectiveScan(t.u, t.delta, t.A.transpose(), t.B, t.C)).toThrow(/A \[4, 3\]/);
    expect(() => selectiveScan(t.u.astype('float32'), t.delta, t.A, t.B, t.C)).toThrow('selectiveScan: dtypes float32 and float64 differ');
  });
});

describe('the Blelloch scan', () => {
  /** One chain h_t = a_t·h_{t−1} + b_t, with a_t = exp(Δ_t·A) ∈ (0, 1) as in the selective scan. */
  const chain = (len: number, seed: number) => ({
    a: values(len, seed, (v) => Math.exp(positiveDelta(v) * negativeA(normalAt(pcgHash(seed + 1), 0)))),
    b: values(len, seed + 2),
  });
  const paddedLength = (len: number): number => 2 ** Math.ceil(Math.log2(Math.max(len, 1)));

  it.each([1, 2, 3, 7, 8, 128, 1000, 4097])('equals the sequential scan for len %i, in 2·(padded − 1) + len combines', (len) => {
    const { a, b } = chain(len, len);
    const { h, combines } = blellochScan(a, b);
    const sequential = new Float64Array(len);
    let state = 0;
    for (let t = 0; t < len; t++) sequential[t] = state = (a[t] as number) * state + (b[t] as number);
    close(h, sequential, 1e-12);
    const padded = paddedLength(len);
    expect(combines).toBe(2 * (padded - 1) + len); // up-sweep, down-sweep, exclusive → inclusive
    expect(combines).toBeLessThanOrEqual(3 * padded);
  });

  it('reproduces the whole selective scan from its chains', () => {
    for (const len of [1, 7, 128, 4097]) {
      const s = { batch: 2, dim: 2, len, N: 3 };
      const x = rawInputs(s, 70 + len);
      const { y } = selectiveScanForward(x, s);
      const fromChains = new Float64Array(y.length);
      for (let b = 0; b < s.batch; b++) {
        for (let d = 0; d < s.dim; d++) {
          const row = (b * s.dim + d) * len;
          for (let n = 0; n < s.N; n++) {
            const at = (t: number) => b * s.N * len + n * len + t;
            const dt = (t: number) => x.delta[row + t] as number;
            const abar = Float64Array.from({ length: len }, (_, t) => Math.exp(dt(t) * (x.A[d * s.N + n] as number)));
            const bbar = Float64Array.from({ length: len }, (_, t) => dt(t) * (x.B[at(t)] as number) * (x.u[row + t] as number));
            const { h } = blellochScan(abar, bbar);
            for (let t = 0; t < len; t++) fromChains[row + t] += (x.C[at(t)] as number) * (h[t] as number);
          }
        }
      }
      close(fromChains, y, 1e-12);
    }
  });

  it('does O(len) work: doubling the length doubles the combines', () => {
    const count = (len: number) => blellochScan(new Float64Array(len).fill(0.5), new Float64Array(len)).combines;
    for (const len of [64, 1024, 16384]) {
      const ratio = count(2 * len) / count(len);
      expect(ratio).toBeGreaterThan(1.99);
      // exactly (6·len − 2)/(3·len − 2) for powers of two; len·log2 len would give 2·(1 + 1/log2 len) ≥ 2.13
      expect(ratio).toBeLessThan(2.02);
    }
  });
});

describe('gradients of the op (float64, finite differences)', () => {
  /** Float64 leaves requiring grad, from the raw inputs. */
  const leaves = (x: Raw, s: Sizes) => {
    const leaf = (v: Float64Array, shape: number[]) => tensor(v, shape, { dtype: 'float64', requiresGrad: true });
    return {
      u: leaf(x.u, [s.batch, s.dim, s.len]),
      delta: leaf(x.delta, [s.batch, s.dim, s.len]),
      A: leaf(x.A, [s.dim, s.N]),
      B: leaf(x.B, [s.batch, s.N, s.len]),
      C: leaf(x.C, [s.batch, s.N, s.len]),
      D: leaf(x.D, [s.dim]),
      z: leaf(x.z, [s.batch, s.dim, s.len]),
      deltaBias: leaf(x.deltaBias, [s.dim]),
    };
  };
  type Case = [name: string, softplusDelta: boolean, options: NaiveOptions];
  const cases: Case[] = [
    ['u, Δ, A, B, C, D, z, deltaBias with the softplus', true, { D: true, z: true, deltaBias: true }],
    ['u, Δ, A, B, C, D, z, deltaBias without the softplus', false, { D: true, z: true, deltaBias: true }],
    ['u, Δ, A, B, C alone, with the softplus', true, {}],
    ['u, Δ, A, B, C alone, without the softplus', false, {}],
    ['with D only', false, { D: true }],
    ['with z and deltaBias', true, { z: true, deltaBias: true }],
  ];

  it.each(cases)('%s', async (_name, deltaSoftplus, o) => {
    const x = rawInputs(sizes, 80, deltaSoftplus ? (v) => v : positiveDelta);
    const t = leaves(x, sizes);
    const inputs: Tensor[] = [t.u, t.delta, t.A, t.B, t.C];
    if (o.D) inputs.push(t.D);
    if (o.z) inputs.push(t.z);
    if (o.deltaBias) inputs.push(t.deltaBias);
    const fn = (u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, ...rest: Tensor[]): Tensor => {
      const extra = [...rest];
      return selectiveScan(u, delta, A, B, C, {
        D: o.D ? extra.shift() : null,
        z: o.z ? extra.shift() : null,
        deltaBias: o.deltaBias ? extra.shift() : null,
        deltaSoftplus,
      });
    };
    const result = await gradcheck(fn, inputs);
    expect(result.maxAbsError).toBeLessThan(1e-6);
  });

  it('through strided inputs and a strided output gradient', async () => {
    const x = rawInputs(sizes, 90, (v) => v);
    const { batch, dim, len, N } = sizes;
    const leaf = (v: Float64Array, shape: number[]) => tensor(v, shape, { dtype: 'float64', requiresGrad: true });
    // u, z and C stored time-major, (batch, len, ·), and handed over transposed; A through an op.
    const inputs = [
      leaf(x.u, [batch, len, dim]),
      leaf(x.delta, [batch, dim, len]),
      leaf(x.A, [dim, N]),
      leaf(x.B, [batch, N, len]),
      leaf(x.C, [batch, len, N]),
      leaf(x.z, [batch, len, dim]),
    ];
    const fn = (u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, z: Tensor): Tensor => {
      const y = selectiveScan(u.transpose(1, 2), delta, A.mul(1), B, C.transpose(1, 2), { z: z.transpose(1, 2), deltaSoftplus: true });
      return y.transpose(1, 2); // so the gradient arriving at y is strided too
    };
    const result = await gradcheck(fn, inputs);
    expect(result.maxAbsError).toBeLessThan(1e-6);
  });

  it('returns (and keeps) only the gradients that inputs ask for', () => {
    const { u, delta, A, B, C } = leaves(rawInputs(sizes, 100), sizes);
    for (const t of [delta, A, B, C]) t.requireGrad(false);
    const y = selectiveScan(u, delta, A, B, C);
    const g = tensor(values(y.size, 101), y.shape, { dtype: 'float64' });
    const backend = getBackend();
    const before = backend.liveBytes();
    const grads = y.gradFn?.backward(g) ?? [];
    expect(grads.map((t) => t?.shape ?? null)).toEqual([u.shape, null, null, null, null]);
    expect(backend.liveBytes() - before).toBe(u.size * 8); // dΔ, dA, dB, dC were freed at once
  });
});
