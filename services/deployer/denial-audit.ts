// Denied calls go to the audit log without holding up any call. The auth middleware hands each
// denial over synchronously; rows are written in batches (one INSERT per batch) shortly after.
// The queue is bounded: under a flood of denials (a scanner, a misconfigured agent fleet) the
// excess is counted and recorded as one summary row instead of growing memory or the database
// without limit.
import { ActorKind, AuditOutcome } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import type { Logger } from '../../lib/log.js';
import { type AuditEntry, auditValues } from './store/audit.js';
import type { DeployerDb } from './store/machines.js';

export interface DenialAuditOptions {
  /** Denials held in memory at most; more are counted, not kept. */
  readonly maxQueued?: number;
  /** How long a denial waits for others to share its INSERT. */
  readonly flushDelayMs?: number;
}

export class DenialAudit {
  private queue: AuditEntry[] = [];
  private dropped = 0;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private readonly maxQueued: number;
  private readonly flushDelayMs: number;

  constructor(
    private readonly db: DeployerDb,
    private readonly log: Logger,
    options: DenialAuditOptions = {},
  ) {
    this.maxQueued = options.maxQueued ?? 1000;
    this.flushDelayMs = options.flushDelayMs ?? 50;
  }

  /** Queues one denial; returns at once. */
  record(entry: AuditEntry): void {
    if (this.queue.length >= this.maxQueued) this.dropped += 1;
    else this.queue.push(entry);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.flushDelayMs);
    this.timer.unref();
  }

  /** Writes everything queued so far; resolves when it is in the database (or logged as lost). */
  flush(): Promise<void> {
    const batch = this.queue;
    const dropped = this.dropped;
    this.queue = [];
    this.dropped = 0;
    if (dropped > 0) {
      batch.push({
        at: new Date(),
        actor: 'system',
        actorKind: ActorKind.ACTOR_KIND_SYSTEM,
        rpc: '',
        reason: `${dropped} further denied calls were not recorded individually (more than ${this.maxQueued} waiting)`,
        outcome: AuditOutcome.AUDIT_OUTCOME_DENIED,
      });
    }
    if (batch.length === 0) return this.writing;
    // One write at a time, in order, so rows keep the order the denials happened in.
    this.writing = this.writing.then(async () => {
      try {
        await this.db.insertInto('audit_events').values(batch.map(auditValues)).execute();
      } catch (err) {
        this.log.error({ event: 'access.denial_audit_failed', denials: batch.length, err });
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
