/**
 * Running the trainer in a worker thread, so that Ctrl-C is answered at once.
 *
 * Why: JavaScript runs a signal handler only between tasks, and a training step is one long
 * synchronous computation (seconds on the CPU backend). Under `tsx` — which `npm run train` uses —
 * that is fatal: tsx passes Ctrl-C on to the program and, unless the program acknowledges it within
 * about 60 ms, kills it with SIGKILL, leaving no checkpoint. So the main thread does nothing but wait:
 * it answers the signal immediately and forwards the request to the worker, whose training loop sees
 * it at the end of the current step (see `signal` in loop.ts). A second Ctrl-C quits at once; the
 * previous checkpoint is intact because checkpoints are written atomically.
 *
 *     main thread:  runInWorker(commandModule)  ── argv, terminal size ──▶  worker: the command
 *                   SIGINT ──────────────────────── "interrupt" ─────────▶  interruptSignal() aborts
 *                   process.exit(code)  ◀─────────── exit code ───────────  process.exit(code)
 */
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { ProgressStream } from './progress.js';

/** What the worker needs to know about the terminal (process.stdout.isTTY is not set inside workers). */
interface Terminal {
  isTTY: boolean;
  columns?: number;
}

/**
 * Starts `module` (a sibling module name without extension, e.g. './train-command') in a worker with
 * this process's arguments, forwards Ctrl-C to it, and exits with its exit code.
 */
export function runInWorker(module: string, base: string): void {
  // Under tsx the sources are .ts files, which a worker can only load after registering tsx's loader
  // itself (Node 20 does not pass loader hooks on to workers).
  const isTypeScript = extname(fileURLToPath(base)) === '.ts';
  const url = new URL(`${module}${isTypeScript ? '.ts' : '.js'}`, base).href;
  const bootstrap = isTypeScript
    ? `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(url)}); })`
    : `import(${JSON.stringify(url)})`;
  const terminal: Terminal = { isTTY: process.stdout.isTTY === true, columns: process.stdout.columns };
  const worker = new Worker(bootstrap, { eval: true, argv: process.argv.slice(2), workerData: terminal });
  // One key press can arrive twice: tsx forwards it again when the acknowledgement is slow. So a
  // repeat within a second counts as the same press.
  let firstAt: number | null = null;
  process.on('SIGINT', () => {
    if (firstAt !== null) {
      if (Date.now() - firstAt < 1000) return;
      process.stderr.write('\nSecond Ctrl-C: quitting now; the last checkpoint is intact.\n');
      process.exit(130);
    }
    firstAt = Date.now();
    process.stderr.write('\nCtrl-C: stopping after this step and saving a checkpoint (Ctrl-C again quits at once).\n');
    worker.postMessage('interrupt');
  });
  worker.on('error', (error) => {
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  });
  worker.on('exit', (code) => process.exit(code));
}

/** Inside the worker: a signal that is aborted when the user presses Ctrl-C. */
export function interruptSignal(): AbortSignal {
  const controller = new AbortController();
  if (!isMainThread) {
    parentPort?.on('message', (message) => {
      if (message === 'interrupt') controller.abort();
    });
    parentPort?.unref(); // listening must not keep the worker alive
  }
  return controller.signal;
}

/** Inside the worker: stdout with the main thread's terminal facts, for the progress bar. */
export function terminalStdout(): ProgressStream {
  const terminal = (isMainThread ? { isTTY: process.stdout.isTTY === true, columns: process.stdout.columns } : workerData) as Terminal;
  return { write: (text: string) => process.stdout.write(text), isTTY: terminal.isTTY, columns: terminal.columns };
}
