// Rows recorded on a hot path (denied calls, say) and written shortly after in batches, so the
// caller never waits for the database. The queue is bounded: under a flood the excess is counted
// and handed to the writer as one number instead of growing memory or the database without limit.
// Batches are written one at a time, in order, so rows keep the order they were recorded in.
import type { Logger } from './log.js';

export interface BatchedWriterOptions<Row> {
  /** Writes one batch; `dropped` rows were recorded beyond the queue's bound since the last batch. */
  readonly write: (rows: readonly Row[], dropped: number) => Promise<void>;
  readonly log: Logger;
  /** The log event of a batch that could not be written. */
  readonly failureEvent: string;
  /** Rows held in memory at most; more are counted, not kept. Default 1,000. */
  readonly maxQueued?: number;
  /** How long a row waits for others to share its write. Default 50 ms. */
  readonly flushDelayMs?: number;
}

export class BatchedWriter<Row> {
  private queue: Row[] = [];
  private dropped = 0;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  readonly maxQueued: number;

  constructor(private readonly options: BatchedWriterOptions<Row>) {
    this.maxQueued = options.maxQueued ?? 1000;
  }

  /** Queues one row; returns at once. */
  record(row: Row): void {
    if (this.queue.length >= this.maxQueued) this.dropped += 1;
    else this.queue.push(row);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.options.flushDelayMs ?? 50);
    this.timer.unref();
  }

  /** Writes everything queued so far; resolves when it is written (or logged as lost). */
  flush(): Promise<void> {
    const batch = this.queue;
    const dropped = this.dropped;
    this.queue = [];
    this.dropped = 0;
    if (batch.length === 0 && dropped === 0) return this.writing;
    this.writing = this.writing.then(async () => {
      try {
        await this.options.write(batch, dropped);
      } catch (err) {
        this.options.log.error({ event: this.options.failureEvent, rows: batch.length, dropped, err });
      }
    });
    return this.writing;
  }

  /** Flushes what is queued; call before the database closes. */
  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}
