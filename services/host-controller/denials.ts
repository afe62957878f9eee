// Denied calls to the host-controller's own RPCs go to its audit log (outcome DENIED) without
// holding up any call: queued when the server reports them, written in batches, and under a
// flood counted into one summary row rather than queued without bound.
import type { AccessDenial } from '../../lib/grpc/auth.js';
import { describePrincipal } from '../../lib/grpc/auth.js';
import type { Logger } from '../../lib/log.js';
import type { HostsDb } from './store/tables.js';

const HOST_RPCS = '/ultracloud.host.v1.';
const MAX_QUEUED = 1000;
const FLUSH_DELAY_MS = 50;

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

export class DenialLog {
  private queue: DenialRow[] = [];
  private dropped = 0;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: HostsDb,
    private readonly log: Logger,
  ) {}

  record(denial: AccessDenial): void {
    if (!denial.method.startsWith(HOST_RPCS)) return;
    if (this.queue.length >= MAX_QUEUED) this.dropped += 1;
    else {
      const who = denial.principal;
      this.queue.push({
        at: new Date(),
        actor: who ? describePrincipal(who) : 'anonymous',
        actor_kind: who?.kind === 'operator' ? 'ACTOR_KIND_OPERATOR' : who?.kind === 'agent' ? 'ACTOR_KIND_AGENT' : who?.kind === 'installer' ? 'ACTOR_KIND_INSTALLER' : 'ACTOR_KIND_ANONYMOUS',
        rpc: denial.method,
        deployment: '',
        action: 'denied',
        reason: `${denial.code}: ${denial.reason}`,
        outcome: 'DENIED',
        peer: denial.peer,
      });
    }
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, FLUSH_DELAY_MS);
    this.timer.unref();
  }

  flush(): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    if (this.dropped > 0) {
      batch.push({ at: new Date(), actor: 'system', actor_kind: 'ACTOR_KIND_SYSTEM', rpc: '', deployment: '', action: 'denied', reason: `${this.dropped} further denied calls were not recorded individually`, outcome: 'DENIED', peer: '' });
      this.dropped = 0;
    }
    if (batch.length === 0) return this.writing;
    this.writing = this.writing.then(async () => {
      try {
        await this.db.insertInto('audit_events').values(batch).execute();
      } catch (err) {
        this.log.error({ event: 'access.denial_audit_failed', denials: batch.length, err });
      }
    });
    return this.writing;
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}
