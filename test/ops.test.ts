/**
 * Forward values of every op on the CPU backend, against hand-computed values or a naive float64
 * implementation written here, independently of the kernels.
 */
import { describe, expect, it, vi } from 'vitest';
import {
  arange,
  causalAttention,
  causalMask,
  concat,
  conv1dCausal,
  crossEntropy,
  cumsum,
  dropout,
  embedding,
  full,
  layerNorm,
  manualSeed,
  maskedFill,
  ones,
  rand,
  randn,
  rmsNorm,
  setBackend,
  split,
  stack,
  type Tensor,
  tensor,
  where,
  zeros,
} from '../src/index.js';
import { normalAt, pcgHash } from '../src/tensor/random.js';

await setBackend('cpu');

const close = (actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-5): void => {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i] as number;
    const a = actual[i] as number;
    if (!(Math.abs(a - e) <= tol * (1 + Math.abs(e)))) throw new Error(`element ${i}: got ${a}, expected ${e}`);
  }
};

/** Seeded normal values for a naive reference to recompute from. */
const values = (n: number, seed: number): Float64Array => Float64Array.from({ length: n }, (_, i) => normalAt(pcgHash(seed), i));
const t64 = (shape: number[], seed: number): [Tensor, Float64Array] => {
  const v = values(
    shape.reduce((a, b) => a * b, 1),
    seed,
  );
  return [tensor(v, shape, { dtype: 'float64' }), v];
};

describe('creation', () => {
  it('builds tensors from nested arrays, typed arrays and constants', async () => {
    const t = tensor([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(t.shape).toEqual([2, 3]);
    expect(t.dtype).toBe('float32');
    expect(await t.toArray()).toEqual([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(tensor(new Int32Array([1, 2])).dtype).toBe('int32');
    expect(Array.from(await full([2, 2], 7).data())).toEqual([7, 7, 7, 7]);
    expect(Array.from(await arange(5).data())).toEqual([0, 1, 2, 3, 4]);
    expect(Array.from(await arange(1, 2, 0.25).data())).toEqual([1, 1.25, 1.5, 1.75]);
    expect(await tensor(3).item()).toBe(3);
  });

  it('stores float16 with f16 rounding and int32 with truncation', async () => {
    expect(Array.from(await tensor([1 / 3, 65504, 1e-8], { dtype: 'float16' }).data())).toEqual([0.333251953125, 65504, 0]);
    expect(Array.from(await tensor([1.9, -1.9]).astype('int32').data())).toEqual([1, -1]);
  });

  it('draws reproducible random tensors from the seed', async () => {
    manualSeed(42);
    const a = await randn([1000]).data();
    manualSeed(42);
    const b = await randn([1000]).data();
    expect(Array.from(a)).toEqual(Array.from(b));
    const u = Array.from(await rand([20000], 2, 4).data());
    const mean = u.reduce((s, v) => s + v, 0) / u.length;
    expect(Math.min(...u)).toBeGreaterThanOrEqual(2);
    expect(Math.max(...u)).toBeLessThan(4);
    expect(mean).toBeCloseTo(3, 1);
  });
});

describe('views', () => {
  it('transpose, narrow, expand and reshape are views of the same storage', async () => {
    const x = arange(6).reshape([2, 3]);
    const t = x.transpose();
    expect(t.storage).toBe(x.storage);
    expect(t.strides).toEqual([1, 3]);
    expect(await t.toArray()).toEqual([
      [0, 3],
      [1, 4],
      [2, 5],
    ]);
    expect(await x.narrow(1, 1, 2).toArray()).toEqual([
      [1, 2],
      [4, 5],
    ]);
    const e = tensor([1, 2, 3]).expand([2, 3]);
    expect(e.strides).toEqual([0, 1]);
    expect(await e.toArray()).toEqual([
      [1, 2, 3],
      [1, 2, 3],
    ]);
    expect(await x.select(0, 1).toArray()).toEqual([3, 4, 5]);
    expect(x.unsqueeze(1).shape).toEqual([2, 1, 3]);
    expect(x.unsqueeze(1).squeeze().shape).toEqual([2, 3]);
    expect(x.reshape([3, -1]).shape).toEqual([3, 2]);
    // reshaping a transposed (non-contiguous) view must copy, giving the transposed order
    expect(Array.from(await t.reshape([6]).data())).toEqual([0, 3, 1, 4, 2, 5]);
    expect(t.contiguous().isContiguous).toBe(true);
    expect(x.permute([1, 0]).shape).toEqual([3, 2]);
    expect(x.flatten().shape).toEqual([6]);
  });
});

describe('element-wise', () => {
  const x = [-2, -0.5, 0, 0.7, 3];
  const cases: [string, (t: Tensor) => Tensor, (v: number) => number][] = [
    ['neg', (t) => t.neg(), (v) => -v],
    ['exp', (t) => t.exp(), Math.exp],
    ['tanh', (t) => t.tanh(), Math.tanh],
    ['sigmoid', (t) => t.sigmoid(), (v) => 1 / (1 + Math.exp(-v))],
    ['silu', (t) => t.silu(), (v) => v / (1 + Math.exp(-v))],
    ['gelu', (t) => t.gelu(), (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)))],
    ['softplus', (t) => t.softplus(), (v) => Math.log1p(Math.exp(v))],
    ['relu', (t) => t.relu(), (v) => Math.max(0, v)],
    ['abs', (t) => t.abs(), Math.abs],
  ];
  it.each(cases)('%s', async (_name, op, ref) => {
    close(await op(tensor(x, { dtype: 'float64' })).data(), x.map(ref), 1e-12);
  });

  it('log, sqrt and rsqrt on positive values', async () => {
    const p = [0.25, 1, 9];
    close(await tensor(p).log().data(), p.map(Math.log));
    close(await tensor(p).sqrt().data(), [0.5, 1, 3]);
    close(await tensor(p).rsqrt().data(), [2, 1, 1 / 3]);
  });

  it('binary ops broadcast NumPy-style', async () => {
    const a = tensor([[1], [2], [3]]); // (3, 1)
    const b = tensor([10, 20]); // (2)
    expect(await a.add(b).toArray()).toEqual([
      [11, 21],
      [12, 22],
      [13, 23],
    ]);
    expect(await a.sub(b).toArray()).toEqual([
      [-9, -19],
      [-8, -18],
      [-7, -17],
    ]);
    expect(Array.from(await a.mul(b).data())).toEqual([10, 20, 20, 40, 30, 60]);
    expect(Array.from(await b.div(4).data())).toEqual([2.5, 5]);
    expect(Array.from(await a.pow(2).data())).toEqual([1, 4, 9]);
    expect(Array.from(await a.maximum(2).data())).toEqual([2, 2, 3]);
    expect(Array.from(await a.minimum(2).data())).toEqual([1, 2, 2]);
  });

  it('comparisons give 1 and 0', async () => {
    const a = tensor([1, 2, 3]);
    expect(Array.from(await a.eq(2).data())).toEqual([0, 1, 0]);
    expect(Array.from(await a.ne(2).data())).toEqual([1, 0, 1]);
    expect(Array.from(await a.lt(2).data())).toEqual([1, 0, 0]);
    expect(Array.from(await a.le(2).data())).toEqual([1, 1, 0]);
    expect(Array.from(await a.gt(2).data())).toEqual([0, 0, 1]);
    expect(Array.from(await a.ge(2).data())).toEqual([0, 1, 1]);
  });

  it('where and the causal mask', async () => {
    expect(await causalMask(3).toArray()).toEqual([
      [0, 1, 1],
      [0, 0, 1],
      [0, 0, 0],
    ]);
    // The last 2 queries of 3 positions: their rows of the full mask.
    expect(await causalMask(3, 'float32', 2).toArray()).toEqual([
      [0, 0, 1],
      [0, 0, 0],
    ]);
    expect(Array.from(await where(tensor([1, 0, 1]), tensor([1, 2, 3]), -1).data())).toEqual([1, -1, 3]);
  });
});

describe('reductions', () => {
  it('sum, mean, max, min, argmax over axes with keepdim', async () => {
    const x = tensor([
      [1, 5, 3],
      [4, 2, 6],
    ]);
    expect(await x.sum().item()).toBe(21);
    expect(Array.from(await x.sum(0).data())).toEqual([5, 7, 9]);
    expect(x.sum(1, true).shape).toEqual([2, 1]);
    expect(Array.from(await x.mean(1).data())).toEqual([3, 4]);
    expect(Array.from(await x.max(1).data())).toEqual([5, 6]);
    expect(Array.from(await x.min(0).data())).toEqual([1, 2, 3]);
    const am = x.argmax(1);
    expect(am.dtype).toBe('int32');
    expect(Array.from(await am.data())).toEqual([1, 2]);
    expect(Array.from(await tensor([3, 7, 7]).argmax().data())).toEqual([1]); // first of ties
  });

  it('reduces over non-adjacent axes of a permuted view', async () => {
    const [x, v] = t64([2, 3, 4], 1);
    const got = await x.permute([1, 2, 0]).sum([0, 2]).data(); // sums axes 1 and 0 of x: shape (4)
    const want = Array.from({ length: 4 }, (_, k) => {
      let s = 0;
      for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) s += v[i * 12 + j * 4 + k] as number;
      return s;
    });
    close(got, want, 1e-12);
  });

  it('reduces consecutive axes of a contiguous tensor where it lies, with no copy, as the permuted path does', async () => {
    const backend = await setBackend('cpu');
    const copies = vi.spyOn(backend, 'copy');
    try {
      const [x, v] = t64([3, 4, 5], 2);
      // Σ over `axes` the slow way: each element added into the slot of its kept coordinates.
      const naiveSum = (axes: number[]): number[] => {
        const out = new Array<number>(60 / axes.reduce((n, a) => n * (x.shape[a] as number), 1)).fill(0);
        v.forEach((value, flat) => {
          const coords = [Math.floor(flat / 20), Math.floor(flat / 5) % 4, flat % 5];
          const slot = coords.reduce((s, c, a) => (axes.includes(a) ? s : s * (x.shape[a] as number) + c), 0);
          out[slot] = (out[slot] as number) + value;
        });
        return out;
      };
      for (const axes of [[0], [1], [2], [0, 1], [1, 2], [0, 1, 2]]) close(await x.sum(axes).data(), naiveSum(axes), 1e-12);
      const inPlace = [await x.sum(0).data(), await x.max(1).data(), await x.argmax(0).data()];
      // The gradient of a broadcast bias: unbroadcast sums the contiguous (3, 4, 5) gradient over [0, 1].
      const bias = tensor([1, 2, 3, 4, 5], [5], { dtype: 'float64', requiresGrad: true });
      x.add(bias).mul(x).sum().backward();
      close(await bias.grad!.data(), naiveSum([0, 1]), 1e-12); // d/db_k Σ (x + b)·x = Σ_ij x[i, j, k]
      expect(copies).not.toHaveBeenCalled();

      // A strided view takes the permuted path: one copy each, and the same values, bit for bit.
      const t = x.permute([1, 0, 2]); // (4, 3, 5): its axis 1 is x's axis 0
      const viaCopy = [await t.sum(1).data(), await t.max(0).data(), await t.argmax(1).data()];
      expect(copies).toHaveBeenCalledTimes(3);
      expect(viaCopy).toEqual(inPlace);
    } finally {
      copies.mockRestore();
    }
  });

  it('logsumexp does not overflow', async () => {
    close(await tensor([1000, 1000]).logsumexp().data(), [1000 + Math.log(2)]);
  });
});

describe('matmul', () => {
  const naive = (a: Float64Array, b: Float64Array, M: number, K: number, N: number): Float64Array => {
    const c = new Float64Array(M * N);
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += (a[i * K + k] as number) * (b[k * N + j] as number);
        c[i * N + j] = s;
      }
    return c;
  };

  it('matches the triple loop on odd sizes', async () => {
    const [a, av] = t64([37, 19], 2);
    const [b, bv] = t64([19, 23], 3);
    close(await a.matmul(b).data(), naive(av, bv, 37, 19, 23), 1e-12);
  });

  it('broadcasts batch dims and accepts transposed views and vectors', async () => {
    const [a, av] = t64([2, 3, 4], 4);
    const [b, bv] = t64([4, 5], 5);
    const c = a.matmul(b);
    expect(c.shape).toEqual([2, 3, 5]);
    close(await c.data(), [...naive(av.slice(0, 12), bv, 3, 4, 5), ...naive(av.slice(12), bv, 3, 4, 5)], 1e-12);
    const [bt, btv] = t64([5, 4], 6); // bᵀ stored transposed
    const ref = naive(
      av.slice(0, 12),
      Float64Array.from({ length: 20 }, (_, i) => btv[(i % 5) * 4 + Math.floor(i / 5)] as number),
      3,
      4,
      5,
    );
    close(await a.select(0, 0).matmul(bt.transpose()).data(), ref, 1e-12);
    expect(tensor([1, 2]).matmul(tensor([3, 4])).shape).toEqual([]);
    expect(
      await tensor([1, 2])
        .matmul(tensor([3, 4]))
        .item(),
    ).toBe(11);
  });
});

describe('neural-network ops', () => {
  it('softmax and log-softmax', async () => {
    const s = await tensor([1, 2, 3]).softmax().data();
    const z = Math.exp(1) + Math.exp(2) + Math.exp(3);
    close(s, [Math.exp(1) / z, Math.exp(2) / z, Math.exp(3) / z]);
    close(await tensor([1, 2, 3]).logSoftmax().data(), [1 - Math.log(z), 2 - Math.log(z), 3 - Math.log(z)]);
    close(
      await tensor([[1000, 0]])
        .softmax(-1)
        .data(),
      [1, 0],
    );
  });

  it('cross-entropy matches −log softmax at the target and skips ignored rows', async () => {
    const logits = tensor([
      [1, 2, 3],
      [1, 1, 1],
      [5, 0, 0],
    ]);
    const targets = tensor([2, 0, -100], { dtype: 'int32' });
    const z = Math.exp(1) + Math.exp(2) + Math.exp(3);
    const row0 = -(3 - Math.log(z));
    const row1 = Math.log(3);
    close(await crossEntropy(logits, targets).data(), [(row0 + row1) / 2]);
    close(await crossEntropy(logits, targets, { reduction: 'none' }).data(), [row0, row1, 0]);
    close(await crossEntropy(logits, targets, { reduction: 'sum' }).data(), [row0 + row1]);
  });

  it('embedding gathers rows', async () => {
    const w = tensor([
      [0, 1],
      [2, 3],
      [4, 5],
    ]);
    expect(await embedding(w, tensor([[2, 0]], { dtype: 'int32' })).toArray()).toEqual([
      [
        [4, 5],
        [0, 1],
      ],
    ]);
  });

  it('concat, stack and split', async () => {
    const a = tensor([[1, 2]]);
    const b = tensor([[3, 4]]);
    expect(await concat([a, b], 0).toArray()).toEqual([
      [1, 2],
      [3, 4],
    ]);
    expect(await concat([a, b], 1).toArray()).toEqual([[1, 2, 3, 4]]);
    expect(stack([a, b], 0).shape).toEqual([2, 1, 2]);
    const [p, q] = split(arange(5), [2, 3]) as [Tensor, Tensor];
    expect(Array.from(await p.data())).toEqual([0, 1]);
    expect(Array.from(await q.data())).toEqual([2, 3, 4]);
  });

  it('layer norm and RMS norm', async () => {
    const x = [1, 2, 3, 6];
    const mu = 3;
    const variance = (4 + 1 + 0 + 9) / 4;
    close(
      await layerNorm(tensor(x), null, null, 0).data(),
      x.map((v) => (v - mu) / Math.sqrt(variance)),
    );
    const ms = (1 + 4 + 9 + 36) / 4;
    close(
      await rmsNorm(tensor(x), tensor([1, 2, 1, 1]), 0).data(),
      x.map((v, i) => (v / Math.sqrt(ms)) * (i === 1 ? 2 : 1)),
    );
  });

  it('causal attention is softmax(q kᵀ·scale, future masked) v, for the last Lq of Lk positions', async () => {
    for (const [Lq, Lk] of [
      [6, 6],
      [2, 7],
      [1, 5],
    ] as const) {
      const [q] = t64([2, 3, Lq, 4], 1);
      const [k] = t64([2, 3, Lk, 4], 2);
      const [v] = t64([2, 3, Lk, 4], 3);
      const weights = maskedFill(q.matmul(k.transpose()).mul(0.8), causalMask(Lk, 'float64', Lq), -Infinity).softmax(-1);
      const expected = weights.matmul(v);
      close(await causalAttention(q, k, v, 0.8).data(), await expected.data(), 1e-12);
    }
    const [q] = t64([2, 3, 6, 4], 4);
    expect(() => causalAttention(q, q.narrow(2, 0, 5), q.narrow(2, 0, 5), 1)).toThrow(
      'causalAttention: expected q (batch, heads, Lq, dh) and k, v (batch, heads, Lk, dh) with Lq ≤ Lk and dh ≥ 1; got q [2, 3, 6, 4], k [2, 3, 5, 4], v [2, 3, 5, 4].',
    );
  });

  it('depthwise causal conv1d sees only the past', async () => {
    // one channel, K = 3, x = 1, 2, 3, 4: y_t = w0·x_{t−2} + w1·x_{t−1} + w2·x_t + bias
    const x = tensor([1, 2, 3, 4], [1, 1, 4]);
    const w = tensor([[1, 10, 100]]);
    const y = await conv1dCausal(x, w, tensor([0.5])).data();
    close(y, [100.5, 210.5, 321.5, 432.5]);
  });

  it('cumsum along any axis', async () => {
    expect(
      await cumsum(
        tensor([
          [1, 2],
          [3, 4],
        ]),
        0,
      ).toArray(),
    ).toEqual([
      [1, 2],
      [4, 6],
    ]);
    expect(Array.from(await cumsum(tensor([1, 2, 3])).data())).toEqual([1, 3, 6]);
  });

  it('dropout keeps the expectation and is reproducible', async () => {
    manualSeed(3);
    const y = await dropout(ones([10000]), 0.25).data();
    const kept = y.filter((v) => v !== 0);
    expect(kept.every((v) => Math.abs(v - 4 / 3) < 1e-6)).toBe(true);
    expect(kept.length / y.length).toBeCloseTo(0.75, 1);
    manualSeed(3);
    expect(Array.from(await dropout(ones([10000]), 0.25).data())).toEqual(Array.from(y));
    const x = zeros([3]);
    expect(dropout(x, 0.5, false)).toBe(x);
  });
});

describe('views that start mid-buffer', () => {
  // A narrowed view is contiguous but offset; kernels that take whole buffers must not read from 0.
  const x = () => tensor([0, 0, 0, 5, 1, 7], [3, 2]).narrow(0, 1, 2); // [[0, 5], [1, 7]]

  it('reduce, scan and softmax read the right rows', async () => {
    expect(Array.from(await x().sum(1).data())).toEqual([5, 8]);
    expect(Array.from(await x().max(1).data())).toEqual([5, 7]);
    expect(await cumsum(x(), -1).toArray()).toEqual([
      [0, 5],
      [1, 8],
    ]);
    const z = 1 + Math.exp(5);
    close(await x().softmax(-1).data(), [1 / z, Math.exp(5) / z, 1 / (1 + Math.exp(6)), Math.exp(6) / (1 + Math.exp(6))]);
  });

  it('losses, gathers and convolutions read the right rows', async () => {
    const ce = await crossEntropy(x(), tensor([0, 1], { dtype: 'int32' }), { reduction: 'none' }).data();
    close(ce, [Math.log(1 + Math.exp(5)), Math.log(1 + Math.exp(-6))]);
    const w = tensor([0, 0, 1, 2, 3, 4], [3, 2]).narrow(0, 1, 2);
    expect(await embedding(w, tensor([1, 0], { dtype: 'int32' })).toArray()).toEqual([
      [3, 4],
      [1, 2],
    ]);
    const ids = tensor([0, 1], { dtype: 'int32' }).narrow(0, 1, 1);
    expect(await embedding(w, ids).toArray()).toEqual([[3, 4]]);
    const conv = conv1dCausal(tensor([9, 9, 1, 2], [1, 2, 2]).narrow(1, 1, 1), tensor([[1]]));
    expect(Array.from(await conv.data())).toEqual([1, 2]);
  });
});
