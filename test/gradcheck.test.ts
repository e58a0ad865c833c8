/**
 * Every differentiable op against central finite differences in float64 on the CPU, on random shapes
 * with broadcasting and non-contiguous (transposed, narrowed, expanded) inputs (the table is shared
 * with the CPU/WebGPU parity suite).
 */
import { describe, expect, it } from 'vitest';
import { gradcheck, setBackend, type Tensor } from '../src/index.js';
import { makeLeaf, opCases } from './op-cases.js';

await setBackend('cpu');

describe('gradcheck: analytic gradients equal finite differences (float64, CPU)', () => {
  it.each(opCases)('%s', async (_name, fn, inputs) => {
    const result = await gradcheck(
      fn,
      inputs.map((spec) => makeLeaf(spec, 'float64')),
    );
    expect(result.maxAbsError).toBeLessThan(1e-6);
  });

  it('catches a wrong gradient', async () => {
    const wrong = (x: Tensor): Tensor => x.mul(x).detach().add(x.mul(0.5).mul(x)); // loses half the slope
    await expect(gradcheck(wrong, [makeLeaf({ shape: [3], seed: 69 }, 'float64')])).rejects.toThrow(/analytic .* vs numeric/);
  });
});
