import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // One GPU device per process: WebGPU test files share the Dawn instance, so run files serially.
    fileParallelism: false,
  },
});
