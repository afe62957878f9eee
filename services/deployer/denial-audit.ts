// Denied calls go to the audit log without holding up any call. The auth middleware hands each
// denial over synchronously; rows are written in batches (one INSERT per batch) shortly after.
// Under a flood of denials (a scanner, a misconfigured agent fleet) the excess beyond the queue's
// bound is recorded as one summary row (lib/batched-writer.ts).
import { ActorKind, AuditOutcome } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { BatchedWriter } from '../../lib/batched-writer.js';
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
  private readonly writer: BatchedWriter<AuditEntry>;

  constructor(db: DeployerDb, log: Logger, options: DenialAuditOptions = {}) {
    this.writer = new BatchedWriter<AuditEntry>({
      ...options,
      log,
      failureEvent: 'access.denial_audit_failed',
      write: async (rows, dropped) => {
        const batch = [...rows];
        if (dropped > 0) {
          batch.push({
            at: new Date(),
            actor: 'system',
            actorKind: ActorKind.ACTOR_KIND_SYSTEM,
            rpc: '',
            reason: `${dropped} further denied calls were not recorded individually (more than ${this.writer.maxQueued} waiting)`,
            outcome: AuditOutcome.AUDIT_OUTCOME_DENIED,
          });
        }
        await db.insertInto('audit_events').values(batch.map(auditValues)).execute();
      },
    });
  }

  /** Queues one denial; returns at once. */
  record(entry: AuditEntry): void {
    this.writer.record(entry);
  }

  /** Writes everything queued so far; resolves when it is in the database (or logged as lost). */
  flush(): Promise<void> {
    return this.writer.flush();
  }

  /** Flushes what is queued; call before the database closes. */
  stop(): Promise<void> {
    return this.writer.stop();
  }
}
