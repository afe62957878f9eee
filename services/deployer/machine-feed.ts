// The machine change feed of one deployer process. It follows the machines table by
// resource_version and hands each change, once and in order, to every open watch of this process.
//
// Versions come from one sequence but transactions commit in any order: a version can become
// visible after a larger one. The feed therefore delivers only up to a watermark below which
// nothing can still appear: it reads the last version handed out, then the transactions still
// writing machines (store/machine-changes.ts), and moves the watermark to that version once
// those have finished. Everything up to the watermark is then read in one snapshot and fanned out.
//
// Wake-ups: a handler of this process that changed machines calls `changed()` after its
// transaction committed; the feed re-reads at once and sends one NOTIFY (at most one per
// `notifyCoalesceMs`) so the feeds of other replicas re-read too. A poll every `pollIntervalMs`
// catches anything a lost notification missed. With no watch open the feed does nothing.
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { WatchMachinesRequest, WatchMachinesResponse } from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import type { DatabaseNotifications } from '../../lib/db/notifications.js';
import { UnavailableError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { MachineWatch, type WatchSettings } from './machine-watch.js';
import { changesInRange, lastIssuedResourceVersion, type MachineChange, machineWriters, pruneDeletions } from './store/machine-changes.js';
import type { DeployerDatabase } from './store/tables.js';

/** What the handlers that change machines tell the feed. */
export interface MachineChangeSignal {
  /** Machines changed and the change committed. Cheap; call it after every successful write. */
  changed(): void;
}

/** Changes with resource_version in (after, through], oldest first. */
export interface ChangeBatch {
  readonly after: bigint;
  readonly through: bigint;
  readonly changes: readonly MachineChange[];
}

export interface FeedSubscriber {
  /** Called synchronously, in order; must not block. */
  deliver(batch: ChangeBatch): void;
}

export interface MachineFeedOptions extends Partial<WatchSettings> {
  readonly log: Logger;
  /** Wake-ups from the other replicas; absent: only this process's changes wake the feed early. */
  readonly notifications?: DatabaseNotifications;
  /** Safety net against lost notifications. Default 3 s. */
  readonly pollIntervalMs?: number;
  /** At most one NOTIFY per this many ms from this process. Default 50. */
  readonly notifyCoalesceMs?: number;
  /** Changes read per query. Default 500. */
  readonly pageSize?: number;
  /** How long deletions are kept for watches resuming from before them. Default 7 days. */
  readonly deletionRetentionMs?: number;
}

/** The NOTIFY channel of machine changes (one database per cluster, so one name). */
export const MACHINE_CHANGES_CHANNEL = 'ultracloud_deployer_machines';

const DEFAULT_WATCH: WatchSettings = { queueLimit: 1024, bookmarkIntervalMs: 30_000, pageSize: 500 };
/** Changes arriving closer together than this are read together. */
const MIN_CYCLE_GAP_MS = 10;
const RECHECK_MIN_MS = 5;
const RECHECK_MAX_MS = 250;
const PRUNE_INTERVAL_MS = 60 * 60_000;

export class MachineFeed implements MachineChangeSignal {
  /** Every resource_version up to it is visible and was fanned out; undefined while idle. */
  private watermark: bigint | undefined;
  /** The next watermark, once the writers that may still hold versions below it have finished. */
  private candidate: { through: bigint; writers: Set<string> } | undefined;
  private readonly subscribers = new Set<FeedSubscriber>();
  /** Callers waiting for the watermark (new watches, ListMachines). */
  private waiters: { resolve(watermark: bigint): void; reject(err: unknown): void }[] = [];
  private cycling: Promise<void> | undefined;
  private again = false;
  private wakeTimer: NodeJS.Timeout | undefined;
  private wakeAt = 0;
  private lastCycleEndedAt = 0;
  private recheckMs = RECHECK_MIN_MS;
  private pollTimer: NodeJS.Timeout | undefined;
  private pruneTimer: NodeJS.Timeout | undefined;
  private notifyTimer: NodeJS.Timeout | undefined;
  private lastNotifyAt = 0;
  private unlisten: (() => void) | undefined;
  private stopped = false;
  /** Tells this process's own NOTIFYs from other replicas'. */
  private readonly instance = randomUUID();
  private readonly log: Logger;
  private readonly watchSettings: WatchSettings;

  constructor(
    private readonly db: Kysely<DeployerDatabase>,
    private readonly options: MachineFeedOptions,
  ) {
    this.log = options.log.child({ component: 'machine-feed' });
    this.watchSettings = {
      queueLimit: options.queueLimit ?? DEFAULT_WATCH.queueLimit,
      bookmarkIntervalMs: options.bookmarkIntervalMs ?? DEFAULT_WATCH.bookmarkIntervalMs,
      pageSize: options.pageSize ?? DEFAULT_WATCH.pageSize,
    };
  }

  /** Listens for other replicas' changes and starts the poll and the pruning of old deletions. */
  start(): void {
    this.unlisten = this.options.notifications?.listen(MACHINE_CHANGES_CHANNEL, {
      onNotification: (payload) => {
        if (payload !== this.instance) this.wake();
      },
      onResync: () => this.wake(),
    });
    this.pollTimer = setInterval(() => {
      if (this.subscribers.size > 0) this.wake();
    }, this.options.pollIntervalMs ?? 3_000);
    this.pollTimer.unref();
    const prune = () => {
      const before = new Date(Date.now() - (this.options.deletionRetentionMs ?? 7 * 24 * 60 * 60_000));
      pruneDeletions(this.db, before)
        .then((n) => n > 0 && this.log.info({ event: 'machine_deletions.pruned', count: n }))
        .catch((err: unknown) => this.log.warn({ event: 'machine_deletions.prune_failed', err }));
    };
    prune();
    this.pruneTimer = setInterval(prune, PRUNE_INTERVAL_MS);
    this.pruneTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unlisten?.();
    for (const timer of [this.pollTimer, this.pruneTimer, this.wakeTimer, this.notifyTimer]) clearTimeout(timer);
    this.subscribers.clear();
    this.settleWaiters(new UnavailableError('the deployer is stopping'));
    await this.cycling?.catch(() => undefined);
  }

  changed(): void {
    this.wake();
    this.scheduleNotify();
  }

  /** A watch stream for `request`; ends when `signal` aborts. */
  watch(request: WatchMachinesRequest, signal: AbortSignal): AsyncGenerator<WatchMachinesResponse> {
    return new MachineWatch(this, this.db, request, this.watchSettings).events(signal);
  }

  /**
   * A resource_version every change up to which is visible now: what ListMachines returns, so a
   * watch from it misses nothing the listing did not show.
   */
  async safeResourceVersion(): Promise<bigint> {
    if (this.watermark !== undefined) return this.watermark;
    return this.nextWatermark();
  }

  /**
   * Starts delivering batches to `subscriber`; resolves with the watermark it starts after
   * (the first batch it gets has `after` equal to it).
   */
  async subscribe(subscriber: FeedSubscriber): Promise<bigint> {
    if (this.stopped) throw new UnavailableError('the deployer is stopping');
    this.subscribers.add(subscriber);
    if (this.watermark !== undefined) return this.watermark;
    return this.nextWatermark();
  }

  unsubscribe(subscriber: FeedSubscriber): void {
    this.subscribers.delete(subscriber);
  }

  private nextWatermark(): Promise<bigint> {
    if (this.stopped) return Promise.reject(new UnavailableError('the deployer is stopping'));
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.wake();
    });
  }

  /** Answers every caller waiting for the watermark: with it, or with `failure`. */
  private settleWaiters(failure?: unknown): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) {
      if (failure !== undefined) waiter.reject(failure);
      else waiter.resolve(this.watermark as bigint);
    }
  }

  /** Runs a cycle after `delayMs` (and not sooner than MIN_CYCLE_GAP_MS after the last one). */
  private wake(delayMs = 0): void {
    if (this.stopped) return;
    if (this.cycling) {
      this.again = true;
      return;
    }
    const at = Math.max(Date.now() + delayMs, this.lastCycleEndedAt + MIN_CYCLE_GAP_MS);
    if (this.wakeTimer && this.wakeAt <= at) return;
    clearTimeout(this.wakeTimer);
    this.wakeAt = at;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined;
      this.cycling = this.cycle()
        .catch((err: unknown) => {
          // Open watches wait for the poll to try again; callers waiting now get the error.
          this.log.warn({ event: 'machine_feed.read_failed', err });
          this.candidate = undefined;
          this.settleWaiters(new UnavailableError('machine changes cannot be read right now'));
        })
        .finally(() => {
          this.cycling = undefined;
          this.lastCycleEndedAt = Date.now();
          if (this.again) {
            this.again = false;
            this.wake();
          } else if (this.candidate) {
            // Writers below the next watermark are still running: look again shortly.
            this.wake(this.recheckMs);
            this.recheckMs = Math.min(this.recheckMs * 2, RECHECK_MAX_MS);
          }
        });
    }, at - Date.now());
  }

  private async cycle(): Promise<void> {
    if (this.subscribers.size === 0 && this.waiters.length === 0) {
      // Idle: forget the watermark rather than keep one that falls further behind.
      this.watermark = undefined;
      this.candidate = undefined;
      return;
    }
    if (this.candidate && this.candidate.writers.size > 0) {
      const active = new Set(await machineWriters(this.db));
      for (const writer of this.candidate.writers) if (!active.has(writer)) this.candidate.writers.delete(writer);
    }
    if (this.candidate?.writers.size === 0) {
      const through = this.candidate.through;
      this.candidate = undefined;
      await this.advance(through);
    }
    if (!this.candidate) {
      // The version first, then the writers: whoever took a version up to `last` is finished or listed.
      const last = await lastIssuedResourceVersion(this.db);
      if (this.watermark === undefined || last > this.watermark) {
        const writers = await machineWriters(this.db);
        if (writers.length === 0) await this.advance(last);
        else this.candidate = { through: last, writers: new Set(writers) };
      }
    }
    if (!this.candidate) this.recheckMs = RECHECK_MIN_MS;
    if (this.watermark !== undefined) this.settleWaiters();
  }

  /** Reads and fans out every change up to `through`, a page at a time, and moves the watermark. */
  private async advance(through: bigint): Promise<void> {
    if (this.watermark === undefined) {
      // Nothing to deliver yet: watches read what came before their start themselves.
      this.watermark = through;
      return;
    }
    let after = this.watermark;
    while (after < through) {
      if (this.subscribers.size === 0) {
        this.watermark = through;
        return;
      }
      const pageSize = this.watchSettings.pageSize;
      const changes = await changesInRange(this.db, after, through, pageSize);
      const last = changes[changes.length - 1];
      const pageThrough = changes.length === pageSize && last ? last.resourceVersion : through;
      const batch: ChangeBatch = { after, through: pageThrough, changes };
      // Watermark and fan-out together, so a watch subscribing now starts exactly after this batch.
      this.watermark = pageThrough;
      for (const subscriber of [...this.subscribers]) subscriber.deliver(batch);
      after = pageThrough;
    }
  }

  private scheduleNotify(): void {
    const notifications = this.options.notifications;
    if (!notifications || this.notifyTimer || this.stopped) return;
    const wait = Math.max(0, this.lastNotifyAt + (this.options.notifyCoalesceMs ?? 50) - Date.now());
    this.notifyTimer = setTimeout(() => {
      this.notifyTimer = undefined;
      this.lastNotifyAt = Date.now();
      void notifications.notify(MACHINE_CHANGES_CHANNEL, this.instance);
    }, wait);
  }
}
