// An unbounded in-order queue read as an async iterable: the outgoing side of a bidi stream
// (nice-grpc reads a request or response stream from an async iterable), filled by whoever has
// something to send. `end()` lets the reader finish what is queued, then stops it (with an
// error, the reader throws it after the queued items).
export class AsyncQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private wakeUp: (() => void) | undefined;
  private ended = false;
  private error: unknown;

  push(item: T): void {
    if (this.ended) return;
    this.items.push(item);
    this.wakeUp?.();
  }

  end(error?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    this.wakeUp?.();
  }

  get isEnded(): boolean {
    return this.ended;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for (;;) {
      const next = this.items.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.ended) {
        if (this.error !== undefined) throw this.error;
        return;
      }
      await new Promise<void>((resolve) => (this.wakeUp = resolve));
      this.wakeUp = undefined;
    }
  }
}
