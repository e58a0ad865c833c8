/** The autograd engine's behaviour, memory scopes, and the error messages users see. */
import { describe, expect, it } from 'vitest';
import { crossEntropy, embedding, getBackend, keep, noGrad, ones, setBackend, tensor, tidy, zeros } from '../src/index.js';

await setBackend('cpu');

describe('autograd', () => {
  it('differentiates a small expression (by hand: d/dx (x·y + x) = y + 1, d/dy = x)', async () => {
    const x = tensor(3).requireGrad();
    const y = tensor(4).requireGrad();
    x.mul(y).add(x).backward();
    expect(await x.grad?.item()).toBe(5);
    expect(await y.grad?.item()).toBe(3);
  });

  it('accumulates gradients of a reused tensor and across backward calls', async () => {
    const x = tensor([2]).requireGrad();
    x.mul(x).mul(x).sum().backward(); // 3x² = 12
    expect(await x.grad?.item()).toBe(12);
    x.mul(x).sum().backward(); // + 2x = 4
    expect(await x.grad?.item()).toBe(16);
  });

  it('sums gradients over broadcast axes back to the input shape', async () => {
    const b = tensor([1, 2, 3]).requireGrad();
    ones([4, 3]).add(b).sum().backward();
    expect(Array.from((await b.grad?.data()) ?? [])).toEqual([4, 4, 4]);
  });

  it('gives independent gradients to two leaves that receive the same gradient tensor', async () => {
    const a = tensor([1]).requireGrad();
    const b = tensor([1]).requireGrad();
    a.add(b).sum().backward();
    a.grad?.dispose();
    expect(await b.grad?.item()).toBe(1);
  });

  it('records nothing under noGrad or through detach', () => {
    const x = tensor([1, 2]).requireGrad();
    expect(noGrad(() => x.mul(2)).requiresGrad).toBe(false);
    expect(x.detach().mul(2).requiresGrad).toBe(false);
    expect(x.mul(2).requiresGrad).toBe(true);
  });

  it('takes an explicit gradient for a non-scalar output', async () => {
    const x = tensor([1, 2]).requireGrad();
    x.mul(3).backward(tensor([1, 10]));
    expect(Array.from((await x.grad?.data()) ?? [])).toEqual([3, 30]);
  });
});

describe('memory', () => {
  it('tidy frees everything but its result, and keep() and parameter grads survive', async () => {
    const backend = getBackend();
    const w = tensor([1, 2, 3]).requireGrad();
    let kept = zeros([1]);
    kept.dispose();
    const before = backend.liveBytes();
    const out = tidy(() => {
      const h = w.mul(2).exp();
      kept = keep(h.add(1));
      h.sum().backward();
      return h.sum();
    });
    expect(out.isDisposed).toBe(false);
    expect(kept.isDisposed).toBe(false);
    expect(w.grad?.isDisposed).toBe(false);
    out.dispose();
    kept.dispose();
    w.grad?.dispose();
    w.grad = null;
    expect(backend.liveBytes()).toBe(before);
  });

  it('a view keeps its storage alive until both are disposed', async () => {
    const backend = getBackend();
    const before = backend.liveBytes();
    const x = ones([4, 4]);
    const v = x.transpose();
    x.dispose();
    expect(Array.from(await v.data())).toEqual(new Array(16).fill(1));
    v.dispose();
    expect(backend.liveBytes()).toBe(before);
  });

  it('cross-entropy keeps its per-row log-sum-exp only while a backward may need it', () => {
    const backend = getBackend();
    const rows = [
      [1, 2, 3],
      [0, 0, 1],
    ];
    const [x, w] = [tensor(rows), tensor(rows).requireGrad()];
    const targets = tensor([2, 0], { dtype: 'int32' });
    const before = backend.liveBytes();
    tidy(() => {
      crossEntropy(x, targets, { reduction: 'none' });
      const afterFirst = backend.liveBytes();
      expect(afterFirst - before).toBe(2 * 4); // the two losses: nothing will read the lse
      crossEntropy(w, targets, { reduction: 'none' });
      expect(backend.liveBytes() - afterFirst).toBe(2 * (2 * 4)); // the losses and the lse, for the backward
    });
    expect(backend.liveBytes()).toBe(before);
  });

  it('a training-like loop inside tidy keeps live bytes flat', () => {
    const backend = getBackend();
    const w = tensor([0.5, -0.5, 0.25]).requireGrad();
    let baseline = -1;
    for (let step = 0; step < 50; step++) {
      tidy(() => {
        w.mul(w).sum().backward();
        w.assign(w.sub((w.grad as ReturnType<typeof tensor>).mul(0.1)));
        w.grad?.dispose();
        w.grad = null;
      });
      if (step === 1) baseline = backend.liveBytes();
      if (step > 1) expect(backend.liveBytes()).toBe(baseline);
    }
  });
});

describe('errors are one clear sentence', () => {
  it('shape mismatches name the op and both shapes', () => {
    expect(() => tensor([1, 2, 3]).add(tensor([1, 2]))).toThrow('add: shapes [3] and [2] cannot be broadcast together.');
    expect(() => ones([2, 3]).matmul(ones([2, 3]))).toThrow('matmul: shapes [2, 3] and [2, 3] do not align (3 ≠ 2).');
    expect(() => ones([6]).reshape([4, 2])).toThrow('reshape: cannot view a tensor of shape [6] as [4, 2].');
  });

  it('dtype errors say what was expected', () => {
    expect(() => tensor([1]).add(tensor([1], { dtype: 'int32' }))).toThrow(
      'add: dtypes float32 and int32 differ; convert one with .astype().',
    );
    expect(() => crossEntropy(ones([2, 3]), ones([2]))).toThrow('crossEntropy: targets must be int32 class indices, got float32.');
  });

  it('out-of-range indices name the index', () => {
    expect(() => ones([2, 3]).narrow(1, 2, 2)).toThrow('narrow: range [2, 4) is out of bounds for axis 1 of size 3.');
    expect(() => ones([2]).sum(3)).toThrow('sum: axis 3 is out of range for a tensor of rank 1.');
    expect(() => embedding(ones([3, 2]), tensor([5], { dtype: 'int32' }))).toThrow(/5 is out of range/);
  });

  it('backward on a non-scalar asks for a gradient', () => {
    const x = tensor([1, 2]).requireGrad();
    expect(() => x.mul(2).backward()).toThrow(
      'backward: the output has shape [2]; call it on a scalar or pass the gradient of the loss with respect to it.',
    );
  });

  it('backward after tidy() freed the graph says where to call it', () => {
    const w = tensor([1, 2]).requireGrad();
    const loss = tidy(() => w.mul(3).tanh().sum());
    expect(() => loss.backward()).toThrow(
      'backward: an input of sum was disposed (by dispose() or a tidy() scope) before backward; call backward inside the scope that built the graph.',
    );
  });

  it('using a disposed tensor says so', () => {
    const x = ones([2]);
    x.dispose();
    expect(() => x.add(1)).toThrow('This tensor of shape [2] was disposed and cannot be used.');
  });
});
