/**
 * `npm run bench -- --quick`, end to end, as CI runs it: the CLI in a child process (the default
 * backend: WebGPU on a hardware GPU, else the CPU), into a temporary results directory. Checks what a
 * reader of the results relies on — the table printed, results.json with finite times, the plot a
 * real PNG — not the numbers themselves, which depend on the machine. And that `--profile` where
 * kernels cannot be timed ends in one sentence.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The first eight bytes of every PNG file. */
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
/** Generous: --quick takes under a minute, but CI machines are shared. */
const TIMEOUT_MS = 300_000;

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tensorscan-bench-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs the bench CLI with `args`; rejects (with its output) if it exits with an error. */
async function bench(...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)('npx', ['tsx', 'bench/cli.ts', ...args], {
    cwd: ROOT,
    timeout: TIMEOUT_MS,
    maxBuffer: 16 << 20,
  });
  return stdout;
}

const readResults = async (out: string) => JSON.parse(await readFile(join(out, 'results.json'), 'utf8'));

describe('npm run bench -- --quick', () => {
  it(
    'scaling: prints the table and the fits, writes results.json and PNG plots',
    async () => {
      const out = join(dir, 'scaling');
      const stdout = await bench('--quick', '--suite', 'scaling', '--out', out);
      expect(stdout).toMatch(/^tensorscan bench: suite scaling \(quick\), backend (cpu|webgpu) /);
      expect(stdout).toMatch(/length\s+seed-mamba ms\s+seed-transformer ms\s+speedup/);
      expect(stdout).toMatch(/growth exponent of seed-mamba: time ~ L\^-?\d/);

      const { result } = await readResults(out);
      expect(result.suite).toBe('scaling');
      expect(result.points.length).toBe(result.lengths.length * result.batches.length * 2);
      for (const p of result.points) {
        expect(p.status).toBe('ok');
        expect(Number.isFinite(p.medianMs) && p.medianMs > 0).toBe(true);
        expect(p.forwardBytes).toBeGreaterThan(0);
      }
      expect(result.fits.every((f: { k: number }) => Number.isFinite(f.k))).toBe(true);
      for (const plot of ['scaling.png', 'memory.png']) {
        const png = await readFile(join(out, plot));
        expect([...png.subarray(0, 8)]).toEqual(PNG_SIGNATURE);
      }
    },
    TIMEOUT_MS,
  );

  it(
    'kernels: prints every kernel against its baseline and writes finite throughputs',
    async () => {
      const out = join(dir, 'kernels');
      const stdout = await bench('--quick', '--suite', 'kernels', '--out', out);
      for (const kernel of ['copy (the ceiling)', 'unary exp', 'binary add', 'sum rows', 'sum columns', 'matmul', 'dispatch'])
        expect(stdout).toContain(kernel);

      const { result } = await readResults(out);
      expect(result.suite).toBe('kernels');
      for (const m of result.measurements) expect(Number.isFinite(m.value) && m.value > 0).toBe(true);
    },
    TIMEOUT_MS,
  );
});

describe('npm run bench -- --profile', () => {
  it(
    'ends in one sentence with exit code 2 when the backend cannot time kernels',
    async () => {
      const failure = await bench('--quick', '--suite', 'train', '--backend', 'cpu', '--profile').then(
        () => null,
        (e: { code: number; stderr: string }) => e,
      );
      expect(failure?.code).toBe(2);
      expect(failure?.stderr).toContain('--profile times kernels on the GPU: it needs the WebGPU backend (--backend webgpu).\n');
      expect(failure?.stderr).not.toMatch(/^\s+at /m); // no stack trace
    },
    TIMEOUT_MS,
  );
});
