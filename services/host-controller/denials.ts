// Denied calls to the host-controller's own RPCs go to its audit log (outcome DENIED) without
// holding up any call: queued when the server reports them, written in batches, and under a
// flood counted into one summary row rather than queued without bound (lib/batched-writer.ts).
import { BatchedWriter } from '../../lib/batched-writer.js';
import { type AccessDenial, describePrincipal } from '../../lib/grpc/auth.js';
import type { Logger } from '../../lib/log.js';
import type { HostsDb } from './store/tables.js';

const HOST_RPCS = '/ultracloud.host.v1.';

interface DenialRow {
  at: Date;
  actor: string;
  actor_kind: string;
  rpc: string;
  deployment: string;
  action: string;
  reason: string;
  outcome: string;
  peer: string;
}

const ACTOR_KINDS = { operator: 'ACTOR_KIND_OPERATOR', agent: 'ACTOR_KIND_AGENT', installer: 'ACTOR_KIND_INSTALLER', anonymous: 'ACTOR_KIND_ANONYMOUS' } as const;

export class DenialLog {
  private readonly writer: BatchedWriter<DenialRow>;

  constructor(db: HostsDb, log: Logger) {
    this.writer = new BatchedWriter<DenialRow>({
      log,
      failureEvent: 'access.denial_audit_failed',
      write: async (rows, dropped) => {
        const batch = [...rows];
        if (dropped > 0) {
          batch.push({ at: new Date(), actor: 'system', actor_kind: 'ACTOR_KIND_SYSTEM', rpc: '', deployment: '', action: 'denied', reason: `${dropped} further denied calls were not recorded individually`, outcome: 'DENIED', peer: '' });
        }
        await db.insertInto('audit_events').values(batch).execute();
      },
    });
  }

  record(denial: AccessDenial): void {
    if (!denial.method.startsWith(HOST_RPCS)) return;
    const who = denial.principal;
    this.writer.record({
      at: new Date(),
      actor: who ? describePrincipal(who) : 'anonymous',
      actor_kind: ACTOR_KINDS[who?.kind ?? 'anonymous'],
      rpc: denial.method,
      deployment: '',
      action: 'denied',
      reason: `${denial.code}: ${denial.reason}`,
      outcome: 'DENIED',
      peer: denial.peer,
    });
  }

  flush(): Promise<void> {
    return this.writer.flush();
  }

  stop(): Promise<void> {
    return this.writer.stop();
  }
}
