/**
 * The run's log, `log.jsonl` in the run directory: one JSON object per line, one line per logged
 * training step or evaluation, appended as the run goes (so a crash loses at most the unlogged steps,
 * and `tail -f` works). The loss-curve plot is drawn from these entries.
 *
 *     {"kind":"train","step":10,"epoch":0,"loss":9.81,"lr":3e-5,"gradNorm":1.9,"tokensPerSec":5230,"elapsedSec":7.8}
 *     {"kind":"eval","split":"valid","step":597,"epoch":1,"loss":5.62,"perplexity":276.3,"tokens":217600,"elapsedSec":480}
 */
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';

/** A training line: `loss` and `gradNorm` are means over the steps since the previous line. */
export interface TrainEntry {
  kind: 'train';
  /** Optimizer steps taken. */
  step: number;
  epoch: number;
  /** Mean training loss (nats per token) over the steps since the last line. */
  loss: number;
  /** Learning rate of the last of those steps. */
  lr: number;
  /** Global gradient norm before clipping, at the last of those steps (null when clipping is off). */
  gradNorm: number | null;
  /** Training tokens per second over those steps. */
  tokensPerSec: number;
  /** Seconds of training so far, over all sessions of the run. */
  elapsedSec: number;
}

/** An evaluation line: mean loss and perplexity = e^loss over `tokens` predicted tokens. */
export interface EvalEntry {
  kind: 'eval';
  split: 'valid' | 'test';
  step: number;
  epoch: number;
  loss: number;
  perplexity: number;
  tokens: number;
  elapsedSec: number;
}

export type LogEntry = TrainEntry | EvalEntry;

export class RunLog {
  private constructor(
    readonly path: string,
    /** Every entry of the run so far, including those of earlier sessions. */
    readonly entries: LogEntry[],
  ) {}

  /**
   * Opens `path` for a new run (any old file is replaced) or, with `resumeStep`, for a resumed one: the
   * entries after that step — logged after the checkpoint by the session that is being replayed — are
   * dropped, so the log reads as one uninterrupted run.
   */
  static open(path: string, resumeStep?: number): RunLog {
    let entries: LogEntry[] = [];
    if (resumeStep !== undefined && existsSync(path)) {
      entries = readFileSync(path, 'utf8')
        .split('\n')
        .filter((line) => line.trim() !== '')
        .flatMap((line) => {
          try {
            return [JSON.parse(line) as LogEntry];
          } catch {
            return []; // a line cut short by a crash
          }
        })
        .filter((e) => e.step <= resumeStep);
    }
    writeFileSync(path, entries.map((e) => `${JSON.stringify(e)}\n`).join(''));
    return new RunLog(path, entries);
  }

  append(entry: LogEntry): void {
    this.entries.push(entry);
    appendFileSync(this.path, `${JSON.stringify(entry)}\n`);
  }
}
