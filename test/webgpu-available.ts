/**
 * The one rule for WebGPU test suites: when no adapter can be opened, a suite is skipped with the
 * reason printed, except under CI=true, where it fails (CI must exercise the GPU path, on lavapipe).
 *
 *     const gpu = await openWebGpu('the parity suite');
 *     describe.skipIf(gpu.skip)('…', () => {
 *       beforeAll(gpu.requireAdapter);
 *       …
 *     });
 */
import '../src/index.js';
import { getBackend, setBackend } from '../src/backends/registry.js';
import type { WebGpuBackend } from '../src/backends/webgpu/index.js';

export interface WebGpuForTests {
  /** The opened backend, or null when there is no adapter. */
  readonly backend: WebGpuBackend | null;
  /** True when the suite should be skipped (no adapter, and not in CI). */
  readonly skip: boolean;
  /** For beforeAll: throws when there is no adapter (reached only under CI=true). */
  readonly requireAdapter: () => void;
}

export async function openWebGpu(suite: string): Promise<WebGpuForTests> {
  let backend: WebGpuBackend | null = null;
  let reason = '';
  // Through the registry, so that suites which switch with setBackend('webgpu') share this device.
  const previous = getBackend().name;
  try {
    backend = (await setBackend('webgpu')) as WebGpuBackend;
  } catch (e) {
    reason = (e as Error).message;
  } finally {
    await setBackend(previous);
  }
  const inCI = process.env.CI === 'true';
  if (!backend && !inCI) console.warn(`Skipping ${suite}: ${reason}`);
  return {
    backend,
    skip: !backend && !inCI,
    requireAdapter: () => {
      if (!backend) throw new Error(`No WebGPU adapter under CI=true (${suite}): ${reason}`);
    },
  };
}
