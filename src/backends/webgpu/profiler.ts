/**
 * Where the GPU time goes: an opt-in profile of every kernel launch, timed by the GPU itself.
 *
 * A CPU clock around a kernel call measures only how fast it is *queued* (bench/timing.ts). With the
 * `timestamp-query` feature the GPU can write a timestamp, in nanoseconds, when a compute pass begins
 * and when it ends. The executor normally puts a whole batch of dispatches into one pass, which would
 * give one time for all of them; while profiling it gives each dispatch a pass of its own, so that each
 * pair of timestamps times one kernel. That costs CPU time (a pass each: ~11 µs per dispatch instead of
 * ~3.7 µs) and stops the GPU from overlapping neighbouring kernels, so a profile shows the *split* of
 * the GPU time; the wall-clock time of the same work is measured with profiling off.
 *
 * The bookkeeping follows the executor's batches. Each timed dispatch takes the next two slots of a
 * query set (at most 2 × MAX_DISPATCHES per batch) and its label. At submit the batch's slots are
 * resolved into a buffer and copied into a mappable one, at the end of the batch's commands; once the
 * GPU has finished the batch, the copy is mapped and each pair added to its label's row. The next batch
 * reuses the slots at once: queue order puts its timestamp writes after this batch's resolve.
 *
 * Timestamps: Dawn rounds them to multiples of 65 536 ns unless told not to (a browser's defence
 * against timing attacks; most kernels would read as 0 or 65.5 µs), so device.ts turns its
 * `timestamp_quantization` toggle off. The spec leaves their values to the implementation: a pass whose
 * end reads earlier than its beginning counts as 0.
 */
import { BufferUsage, MAP_READ_MODE } from './device.js';

/** One kernel's share: its launches, their summed GPU time, and the mean per launch. */
export interface ProfileRow {
  /** The op that launched it, and its variant (see `profileLabel`). */
  readonly op: string;
  readonly calls: number;
  readonly totalMs: number;
  readonly meanUs: number;
}

/** The sentence for a GPU without timestamps. */
export const NO_TIMESTAMP_QUERY = "profile: this GPU lacks the 'timestamp-query' feature, so kernels cannot be timed on it.";

/**
 * A short name for a kernel launch: the op, then the words of the kernel's key that tell its variants
 * apart, when the kernel is the op's own (its key starts with the op's name, unlike shared kernels
 * such as element-wise or fill). Left out: dtypes, words the op already says, and the tiling
 * parameters (`name=value`) from the first one on. E.g. "matmul tile 64 a:cols b:rows +bias",
 * "selectiveScan y+states", "selectiveScanGrad sum", "add".
 */
export function profileLabel(op: string, key: string): string {
  const [family, ...words] = key.split(' ').filter(Boolean);
  const label = op.split(' ');
  if (family !== label[0]) return op;
  for (const word of words) {
    if (word.includes('=')) break;
    if (!/float|int32|->/.test(word) && !label.includes(word)) label.push(word);
  }
  return label.join(' ');
}

export class Profiler {
  private readonly querySet: GPUQuerySet;
  /** Bytes of timestamps in a full batch: two 64-bit values per dispatch. */
  private readonly bytes: number;
  /** Where the query set is resolved; mappable buffers cannot be resolved into, so it is copied on. */
  private readonly resolved: GPUBuffer;
  /** Mappable copies not in use; one is in flight per submitted batch until it has been read. */
  private readonly idle: GPUBuffer[] = [];
  /** The labels of the open batch's timed dispatches: dispatch i has slots 2i and 2i + 1. */
  private labels: string[] = [];
  /** The submitted batch whose copy is encoded but not yet being read (between the two submit hooks). */
  private submitted: { copy: GPUBuffer; labels: string[] } | null = null;
  private readonly reading = new Set<Promise<void>>();
  private readonly rows = new Map<string, { calls: number; ns: number }>();
  private failure: string | null = null;

  /** `capacity`: the most dispatches in one batch. */
  constructor(
    private readonly device: GPUDevice,
    capacity: number,
  ) {
    this.bytes = 16 * capacity;
    this.querySet = device.createQuerySet({ type: 'timestamp', count: 2 * capacity, label: 'profile' });
    this.resolved = device.createBuffer({ size: this.bytes, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC, label: 'profile' });
  }

  /** The timestamp writes for the pass of the next dispatch, which `op` launches with kernel `key`. */
  timestampWrites(op: string, key: string): GPUComputePassTimestampWrites {
    const i = this.labels.length;
    this.labels.push(profileLabel(op, key));
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Encodes copying the batch's timestamps out, as its last commands. */
  beforeSubmit(encoder: GPUCommandEncoder): void {
    const count = this.labels.length;
    if (count === 0) return;
    const copy = this.idle.pop() ?? this.device.createBuffer({ size: this.bytes, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    encoder.resolveQuerySet(this.querySet, 0, 2 * count, this.resolved, 0);
    encoder.copyBufferToBuffer(this.resolved, 0, copy, 0, 16 * count);
    this.submitted = { copy, labels: this.labels };
    this.labels = [];
  }

  /** Reads the submitted batch's timestamps once the GPU has finished it, in the background. */
  afterSubmit(): void {
    if (!this.submitted) return;
    const { copy, labels } = this.submitted;
    this.submitted = null;
    const bytes = 16 * labels.length;
    const done = copy
      .mapAsync(MAP_READ_MODE, 0, bytes)
      .then(() => {
        const t = new BigUint64Array(copy.getMappedRange(0, bytes));
        labels.forEach((label, i) => {
          this.add(label, t[2 * i + 1] - t[2 * i]);
        });
        copy.unmap();
        this.idle.push(copy);
      })
      .catch((e: unknown) => {
        this.failure ??= String(e); // reported by `report`; never an unhandled rejection
      })
      .finally(() => this.reading.delete(done));
    this.reading.add(done);
  }

  /** The rows since the last report, most GPU time first; waits for the submitted batches, then resets. */
  async report(): Promise<ProfileRow[]> {
    await Promise.all(this.reading);
    const failure = this.failure;
    this.failure = null;
    if (failure !== null) throw new Error(`profile: reading the GPU timestamps failed: ${failure}`);
    const rows = [...this.rows].map(([op, { calls, ns }]) => ({ op, calls, totalMs: ns / 1e6, meanUs: ns / 1e3 / calls }));
    this.rows.clear();
    return rows.sort((a, b) => b.totalMs - a.totalMs);
  }

  private add(label: string, elapsed: bigint): void {
    const row = this.rows.get(label) ?? { calls: 0, ns: 0 };
    row.calls++;
    row.ns += elapsed > 0n ? Number(elapsed) : 0;
    this.rows.set(label, row);
  }
}
