// One WatchMachines stream. It subscribes to the process's feed first (so nothing after the
// feed's watermark can slip past it), then sends what came before: a snapshot of the matching
// machines, or the changes since the client's resource_version read from the tables. Then it
// relays the feed's batches. Batches wait in a bounded queue; a client that falls that far
// behind gets RESOURCE_EXHAUSTED and resumes from the last version it received.
import type { Kysely } from 'kysely';
import { MachineEventType, type WatchMachinesRequest, type WatchMachinesResponse } from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { OutOfRangeError, ResourceExhaustedError } from '../../lib/errors.js';
import { machineFilterOf } from './domain/machine-filter.js';
import { WatchView } from './domain/watch-view.js';
import type { ChangeBatch, FeedSubscriber, MachineFeed } from './machine-feed.js';
import { changesInRange, lastIssuedResourceVersion, type MachineChange, prunedThrough } from './store/machine-changes.js';
import { type Cursor, listMachineRows } from './store/machine-queries.js';
import { machineMessages } from './store/machines.js';
import type { DeployerDatabase } from './store/tables.js';

export interface WatchSettings {
  /** Changes that may wait for one slow client before its watch is ended. */
  readonly queueLimit: number;
  /** A BOOKMARK is sent after this long without an event. */
  readonly bookmarkIntervalMs: number;
  /** Machines or changes read per query. */
  readonly pageSize: number;
}

export class MachineWatch implements FeedSubscriber {
  private queue: ChangeBatch[] = [];
  private queued = 0;
  private overflowed = false;
  private wakeReader: (() => void) | undefined;
  /** The resource_version of the last event handed to the client. */
  private lastSent = 0n;

  constructor(
    private readonly feed: MachineFeed,
    private readonly db: Kysely<DeployerDatabase>,
    private readonly request: WatchMachinesRequest,
    private readonly settings: WatchSettings,
  ) {}

  deliver(batch: ChangeBatch): void {
    if (this.overflowed) return;
    this.queued += batch.changes.length;
    if (this.queued > this.settings.queueLimit) {
      // Drop what waits: the client resumes and reads the compacted changes from the tables.
      this.overflowed = true;
      this.queue = [];
      this.queued = 0;
      this.feed.unsubscribe(this);
    } else {
      const tail = this.queue[this.queue.length - 1];
      if (tail && tail.changes.length === 0 && batch.changes.length === 0) this.queue[this.queue.length - 1] = { ...tail, through: batch.through };
      else this.queue.push(batch);
    }
    this.wakeReader?.();
  }

  async *events(signal: AbortSignal): AsyncGenerator<WatchMachinesResponse> {
    const filter = machineFilterOf(this.request);
    const since = this.request.sinceResourceVersion;
    if (since > 0n) await this.checkResumable(since);
    const start = await this.feed.subscribe(this);
    try {
      // Snapshot machines already newer than `start`: their feed change of that version was sent.
      const sentNewer = new Map<string, bigint>();
      const event = (view: WatchView, change: MachineChange): WatchMachinesResponse | undefined => {
        const newer = sentNewer.get(change.machine.machineId);
        if (newer !== undefined) {
          if (!change.deleted && change.resourceVersion <= newer) return undefined;
          sentNewer.delete(change.machine.machineId);
        }
        const type = view.decide(change);
        return type === undefined ? undefined : { type, machine: change.machine, resourceVersion: change.resourceVersion };
      };

      let view: WatchView;
      let position: bigint;
      if (since === 0n) {
        view = new WatchView(filter, true, 0n);
        let cursor: Cursor | undefined;
        do {
          const page = await listMachineRows(this.db, filter, this.settings.pageSize, cursor);
          for (const machine of await machineMessages(this.db, page.rows)) {
            this.checkQueue();
            if (!view.seed(machine)) continue;
            if (machine.resourceVersion > start) sentNewer.set(machine.machineId, machine.resourceVersion);
            yield this.sent({ type: MachineEventType.MACHINE_EVENT_TYPE_ADDED, machine, resourceVersion: 0n });
          }
          cursor = page.next;
        } while (cursor);
        position = start;
        yield this.sent(this.bookmark(position));
      } else {
        view = new WatchView(filter, false, since);
        position = since > start ? since : start;
        for (let after = since; after < start; ) {
          const changes = await changesInRange(this.db, after, start, this.settings.pageSize);
          for (const change of changes) {
            this.checkQueue();
            const e = event(view, change);
            if (e) yield this.sent(e);
          }
          const last = changes[changes.length - 1];
          after = changes.length === this.settings.pageSize && last ? last.resourceVersion : start;
        }
        // Deletions pruned while they were read would leave a gap.
        if (since < start) await this.checkResumable(since);
        // Caught up: the client can checkpoint here and knows the watch is live.
        yield this.sent(this.bookmark(position));
      }

      for (;;) {
        this.checkQueue();
        if (signal.aborted) return;
        const batch = this.queue.shift();
        if (!batch) {
          if (!(await this.nextBatch(signal))) yield this.sent(this.bookmark(position));
          continue;
        }
        this.queued -= batch.changes.length;
        if (batch.through <= position) continue;
        for (const change of batch.changes) {
          if (change.resourceVersion <= position) continue;
          const e = event(view, change);
          if (e) yield this.sent(e);
        }
        position = batch.through;
      }
    } finally {
      this.feed.unsubscribe(this);
    }
  }

  private bookmark(resourceVersion: bigint): WatchMachinesResponse {
    return { type: MachineEventType.MACHINE_EVENT_TYPE_BOOKMARK, machine: undefined, resourceVersion };
  }

  private sent(e: WatchMachinesResponse): WatchMachinesResponse {
    this.lastSent = e.resourceVersion;
    return e;
  }

  private checkQueue(): void {
    if (!this.overflowed) return;
    throw new ResourceExhaustedError(
      `watch fell behind: more than ${this.settings.queueLimit} changes were waiting to be sent; watch again from resource_version ${this.lastSent}`,
    );
  }

  /** Whether the changes after `since` can still be told. */
  private async checkResumable(since: bigint): Promise<void> {
    const [last, pruned] = await Promise.all([lastIssuedResourceVersion(this.db), prunedThrough(this.db)]);
    if (since > last) {
      throw new OutOfRangeError(`since_resource_version ${since} is newer than any change (${last}): list machines again and watch from ListMachinesResponse.resource_version`);
    }
    if (since < pruned) {
      throw new OutOfRangeError(`changes up to resource_version ${pruned} are no longer kept: list machines again and watch from ListMachinesResponse.resource_version`);
    }
  }

  /** Waits for a batch; false when none came within the bookmark interval. */
  private nextBatch(signal: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (value: boolean) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.wakeReader = undefined;
        resolve(value);
      };
      const onAbort = () => done(true);
      const timer = setTimeout(() => done(false), this.settings.bookmarkIntervalMs);
      signal.addEventListener('abort', onAbort, { once: true });
      this.wakeReader = () => done(true);
    });
  }
}
