/**
 * The run's loss curve, `loss.png`: training loss (the logged means) and held-out loss against the
 * optimizer step, drawn from the run log's entries.
 */
import { type Series, writeLineChart } from './plot/plot.js';
import type { LogEntry } from './run-log.js';

/** Writes the chart of `entries` to `path` (atomically); `title` names the run. */
export async function writeLossChart(path: string, entries: readonly LogEntry[], title: string): Promise<void> {
  const series: Series[] = [];
  const train = entries.filter((e) => e.kind === 'train');
  series.push({ label: 'train', x: train.map((e) => e.step), y: train.map((e) => e.loss) });
  for (const split of ['valid', 'test'] as const) {
    const evals = entries.filter((e) => e.kind === 'eval' && e.split === split);
    if (evals.length > 0) series.push({ label: split, x: evals.map((e) => e.step), y: evals.map((e) => e.loss), markers: true });
  }
  await writeLineChart(path, series, { title, xLabel: 'optimizer step', yLabel: 'loss (nats/token)' });
}
