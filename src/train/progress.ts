/**
 * The progress display. On a terminal it is one line, redrawn in place with "\r":
 *
 *     step 120/1791 [██░░░░░░░░░░░░░░░░░░]  6.7% │ epoch 1 │ loss 5.432 │ 1,234 tok/s │ ETA 12m34s
 *
 * When stdout is a file or a pipe (CI logs, `| tee`), carriage returns would pile up into one huge
 * line, so the same information is printed as a plain line each time a fresh loss is read back.
 */

/** What the bar shows; the caller computes it. */
export interface ProgressInfo {
  step: number;
  total: number;
  /** Epochs done, fractional. */
  epoch: number;
  /** Latest mean training loss, if one has been read back yet. */
  loss?: number;
  tokensPerSec?: number;
  /** Estimated seconds left. */
  etaSeconds?: number;
  /** What is happening besides training, e.g. "valid 3/16" during an evaluation. */
  phase?: string;
}

/** The subset of a stream the bar writes to (process.stdout, or a fake in tests). */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** "1h02m", "12m34s", "45s". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

export class ProgressBar {
  /** Whether the bar line is on screen (and must be cleared before other output). */
  private drawn = false;
  /** When the last line was drawn (ms); starts now so that the first 30 s of a plain log stay quiet. */
  private lastDraw = Date.now();

  constructor(private readonly stream: ProgressStream) {}

  private get tty(): boolean {
    return this.stream.isTTY === true;
  }

  /** The status as one line of text, without the bar (used for plain lines). */
  static describe(info: ProgressInfo): string {
    const parts = [`step ${info.step}/${info.total}`, `epoch ${info.epoch.toFixed(2)}`];
    if (info.loss !== undefined) parts.push(`loss ${info.loss.toFixed(4)}`);
    if (info.tokensPerSec !== undefined) parts.push(`${Math.round(info.tokensPerSec).toLocaleString('en-US')} tok/s`);
    if (info.etaSeconds !== undefined) parts.push(`ETA ${formatDuration(info.etaSeconds)}`);
    if (info.phase !== undefined) parts.push(info.phase);
    return parts.join(' | ');
  }

  /**
   * Shows `info`. `fresh` marks an update that carries a newly read loss. When the output is not a
   * terminal, those are printed, and others only if nothing was printed for 30 s (slow steps); on a
   * terminal, redraws are limited to 10 per second.
   */
  update(info: ProgressInfo, fresh: boolean): void {
    const now = Date.now();
    if (!this.tty) {
      if (fresh || now - this.lastDraw >= 30_000) {
        this.stream.write(`${ProgressBar.describe(info)}\n`);
        this.lastDraw = now;
      }
      return;
    }
    if (!fresh && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const [head, ...rest] = ProgressBar.describe(info).split(' | ');
    const tail = `${((100 * info.step) / Math.max(1, info.total)).toFixed(1).padStart(5)}% │ ${rest.join(' │ ')}`;
    const columns = this.stream.columns ?? 120;
    // The bar takes what room the text leaves on the line, between 10 and 30 cells.
    const width = Math.max(10, Math.min(30, columns - 1 - (head as string).length - tail.length - 4));
    const done = Math.min(width, Math.round((width * info.step) / Math.max(1, info.total)));
    let line = `${head} [${'█'.repeat(done)}${'░'.repeat(width - done)}] ${tail}`;
    if (line.length > columns - 1) line = line.slice(0, columns - 1);
    this.stream.write(`\r\x1b[2K${line}`);
    this.drawn = true;
  }

  /** Prints a line of text (an evaluation result, a message) above the bar. */
  println(text: string): void {
    this.clear();
    this.stream.write(`${text}\n`);
  }

  /** Removes the bar line so that the next output starts on a clean line. */
  clear(): void {
    if (this.drawn) this.stream.write('\r\x1b[2K');
    this.drawn = false;
  }
}
