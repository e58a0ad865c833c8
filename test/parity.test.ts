/**
 * The parity suite: every differentiable op, forward and backward, on the CPU and on WebGPU, from the
 * same seeded float32 inputs; results must agree to float32 accuracy. Also the memory bound: a
 * forward + backward + update loop on WebGPU keeps the pool's live bytes flat.
 *
 * Under CI=true a missing WebGPU adapter fails the suite; elsewhere it is skipped with the reason.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { type Backend, crossEntropy, getBackend, matmul, setBackend, type Tensor, tensor, tidy } from '../src/index.js';
import { makeLeaf, type OpCase, opCases } from './op-cases.js';
import { openWebGpu } from './webgpu-available.js';

const webgpu = await openWebGpu('the CPU/WebGPU parity suite');

/** The op's output and the gradient of Σ output ⊙ w for each input, read back to the host. */
async function run(backend: string, [, fn, specs]: OpCase): Promise<Float32Array[]> {
  await setBackend(backend);
  const inputs = specs.map((spec) => makeLeaf(spec, 'float32'));
  const out = tidy(() => {
    const y = fn(...inputs);
    // Fixed weights make every output element matter (a plain sum would hide cancelling errors).
    const w = tensor(
      Float32Array.from({ length: y.size }, (_, i) => Math.sin(i + 1)),
      y.shape,
    );
    y.mul(w).sum().backward();
    return y.contiguous();
  });
  const results = [Float32Array.from(await out.data())];
  for (const x of inputs) results.push(Float32Array.from(x.grad ? await x.grad.data() : new Float32Array(x.size)));
  out.dispose();
  for (const x of inputs) x.dispose();
  return results;
}

/** max |a − b| / max(1, max |b|): float32 ops agree to a few ulps of the largest value. */
function relativeError(a: Float32Array, b: Float32Array): number {
  let err = 0;
  let scale = 1;
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs((a[i] as number) - (b[i] as number)));
    scale = Math.max(scale, Math.abs(b[i] as number));
  }
  return err / scale;
}

describe.skipIf(webgpu.skip)('CPU / WebGPU parity', () => {
  beforeAll(webgpu.requireAdapter);

  it.each(opCases)('%s: forward and every input gradient agree', async (...c) => {
    const onCpu = await run('cpu', c);
    const onGpu = await run('webgpu', c);
    onCpu.forEach((want, i) => {
      expect(onGpu[i]?.length, `result ${i} length`).toBe(want.length);
      expect(relativeError(onGpu[i] as Float32Array, want), `result ${i} (0 = forward)`).toBeLessThan(1e-4);
    });
  });

  it('large shapes past one workgroup: matmul + cross-entropy, forward and backward', async () => {
    const large: OpCase = [
      'large',
      (x, w) =>
        crossEntropy(
          matmul(x, w).reshape([-1, 257]),
          tensor(
            Int32Array.from({ length: 3 * 67 }, (_, i) => (i * 37) % 257),
            [201],
          ),
        ),
      [
        { shape: [3, 67, 129], seed: 1 },
        { shape: [129, 257], seed: 2 },
      ],
    ];
    const onCpu = await run('cpu', large);
    const onGpu = await run('webgpu', large);
    onCpu.forEach((want, i) => {
      expect(relativeError(onGpu[i] as Float32Array, want)).toBeLessThan(1e-4);
    });
  });

  it('a forward + backward + Adam-like update loop keeps live GPU bytes flat over 200 iterations', async () => {
    await setBackend('webgpu');
    const backend: Backend = getBackend();
    const w = makeLeaf({ shape: [64, 32], seed: 3 }, 'float32');
    const x = makeLeaf({ shape: [16, 64], seed: 4 }, 'float32');
    const m = makeLeaf({ shape: [64, 32], seed: 5 }, 'float32');
    const targets = tensor(
      Int32Array.from({ length: 16 }, (_, i) => i % 32),
      [16],
    );
    let afterFirst = 0;
    for (let step = 0; step < 200; step++) {
      tidy(() => {
        crossEntropy(x.matmul(w), targets).backward();
        const g = w.grad as Tensor;
        m.assign(m.mul(0.9).add(g.mul(0.1)));
        w.assign(w.sub(m.mul(0.01)));
        w.grad?.dispose();
        w.grad = null;
        x.grad?.dispose();
        x.grad = null;
      });
      if (step === 0) afterFirst = backend.liveBytes();
    }
    await backend.sync();
    expect(backend.liveBytes()).toBe(afterFirst);
  });
});
