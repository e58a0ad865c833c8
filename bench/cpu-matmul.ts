/**
 * Quick single-threaded throughput check of the CPU backend's matmul (not a test):
 *     npx tsx bench/cpu-matmul.ts
 * Prints GFLOP/s (2·M·N·K flops per product, best of 5 runs after a warm-up) for square float32
 * products, with B contiguous and transposed, and for a batched x @ W whose W is broadcast.
 */

import type { View } from '../src/backends/backend.js';
import { CpuBackend } from '../src/backends/cpu/index.js';
import { uniformAt } from '../src/tensor/random.js';

const cpu = new CpuBackend();

function randomView(shape: [number, number, number], strides: number[], size: number, seed: number): View {
  const data = new Float32Array(size);
  for (let i = 0; i < size; i++) data[i] = uniformAt(seed, i) - 0.5;
  return { buffer: cpu.upload(data, 'float32'), dtype: 'float32', shape, strides, offset: 0 };
}

function gflops(label: string, a: View, b: View): void {
  const [batch, M, K] = a.shape;
  const N = b.shape[2];
  let best = Infinity;
  for (let run = 0; run < 6; run++) {
    const start = performance.now();
    cpu.free(cpu.matmul(a, b));
    if (run > 0) best = Math.min(best, performance.now() - start); // run 0 warms up the JIT
  }
  console.log(`${label.padEnd(40)} ${((2 * batch * M * N * K) / best / 1e6).toFixed(2)} GFLOP/s (${best.toFixed(1)} ms)`);
}

for (const n of [256, 512, 1024]) {
  const a = randomView([1, n, n], [n * n, n, 1], n * n, 1);
  gflops(`${n}³`, a, randomView([1, n, n], [n * n, n, 1], n * n, 2));
  gflops(`${n}³, B transposed`, a, randomView([1, n, n], [n * n, 1, n], n * n, 3));
}
const [batch, T, C] = [16, 256, 512];
gflops(
  `(${batch}, ${T}, ${C}) @ broadcast (${C}, ${C})`,
  randomView([batch, T, C], [T * C, C, 1], batch * T * C, 4),
  randomView([batch, C, C], [0, C, 1], C * C, 5),
);
