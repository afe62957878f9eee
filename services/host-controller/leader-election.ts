// One leader among the host-controller replicas sharing a database. On PostgreSQL the leader
// holds a session advisory lock on a connection of its own; when that connection dies (the
// process was killed, the network broke) the server releases the lock and another replica,
// retrying every second or so, takes it. Each new leader increments the fencing epoch in
// controller_leader, and the leader's every transaction first checks that the epoch is still its
// own, so a replica that lost its lock cannot write after its successor started. On embedded
// PGlite only one process can open the database: it is always the leader.
import pg from 'pg';
import { backoffDelayMs, type BackoffPolicy } from '../../lib/backoff.js';
import type { Logger } from '../../lib/log.js';
import { HOSTS_SCHEMA } from './migrations/index.js';
import type { HostsDb } from './store/tables.js';

/** "hosts" in ASCII: the advisory lock key of the host-controller leader, per database. */
export const LEADER_LOCK_KEY = 0x686f737473n;

export interface Leadership {
  /** The fencing epoch while this replica leads; undefined otherwise. */
  readonly epoch: bigint | undefined;
  start(): void;
  stop(): Promise<void>;
}

export interface LeadershipEvents {
  /** This replica became the leader with `epoch`. */
  elected(epoch: bigint): void;
  /** This replica is no longer the leader. */
  deposed(reason: string): void;
}

/** Thrown inside a leader transaction when the epoch moved on: the transaction rolls back. */
export class LeadershipLost extends Error {
  constructor(epoch: bigint) {
    super(`leadership epoch ${epoch} was superseded`);
    this.name = 'LeadershipLost';
  }
}

/** The first statement of every leader transaction: locks the leader row and checks the epoch. */
export async function fence(db: HostsDb, epoch: bigint, now: Date): Promise<void> {
  const r = await db.updateTable('controller_leader').set({ renewed_at: now }).where('id', '=', 1).where('epoch', '=', epoch).executeTakeFirst();
  if (Number(r.numUpdatedRows) !== 1) throw new LeadershipLost(epoch);
}

/** PGlite: this process is the only one; it leads from the start. */
export class SoleLeadership implements Leadership {
  epoch: bigint | undefined;

  constructor(
    private readonly db: HostsDb,
    private readonly replica: string,
    private readonly events: LeadershipEvents,
    private readonly log: Logger,
  ) {}

  start(): void {
    (async () => {
      const r = await this.db
        .updateTable('controller_leader')
        .set((eb) => ({ epoch: eb('epoch', '+', 1n), replica: this.replica, acquired_at: new Date(), renewed_at: new Date() }))
        .where('id', '=', 1)
        .returning('epoch')
        .executeTakeFirstOrThrow();
      this.epoch = r.epoch;
      this.log.info({ event: 'leader.elected', replica: this.replica, epoch: String(r.epoch) });
      this.events.elected(r.epoch);
    })().catch((err: unknown) => this.log.error({ event: 'leader.claim_failed', err }));
  }

  async stop(): Promise<void> {
    this.epoch = undefined;
  }
}

export interface AdvisoryLeadershipOptions {
  readonly url: string;
  readonly replica: string;
  readonly log: Logger;
  readonly events: LeadershipEvents;
  /** How often a follower tries the lock, and a leader checks its connection. */
  readonly retryMs: number;
  readonly backoff?: BackoffPolicy;
}

const RECONNECT: BackoffPolicy = { initialMs: 250, maxMs: 5_000, factor: 2 };

/** PostgreSQL: a session advisory lock on a dedicated connection. */
export class AdvisoryLockLeadership implements Leadership {
  epoch: bigint | undefined;
  private client: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = false;
  private busy = false;

  constructor(private readonly options: AdvisoryLeadershipOptions) {}

  start(): void {
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const client = this.client;
    this.client = undefined;
    if (this.epoch !== undefined) {
      this.epoch = undefined;
      await client?.query('SELECT pg_advisory_unlock($1)', [String(LEADER_LOCK_KEY)]).catch(() => undefined);
    }
    await client?.end().catch(() => undefined);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.step(), ms);
    this.timer.unref();
  }

  private async step(): Promise<void> {
    if (this.busy || this.stopped) return;
    this.busy = true;
    try {
      const client = this.client ?? (await this.connect());
      if (this.epoch === undefined) {
        const got = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [String(LEADER_LOCK_KEY)]);
        if (got.rows[0]?.locked) {
          const bumped = await client.query<{ epoch: string }>(
            `UPDATE ${pg.escapeIdentifier(HOSTS_SCHEMA)}.controller_leader SET epoch = epoch + 1, replica = $1, acquired_at = now(), renewed_at = now() WHERE id = 1 RETURNING epoch::text AS epoch`,
            [this.options.replica],
          );
          const epoch = BigInt(bumped.rows[0]?.epoch ?? '0');
          this.epoch = epoch;
          this.options.log.info({ event: 'leader.elected', replica: this.options.replica, epoch: String(epoch) });
          this.options.events.elected(epoch);
        }
      } else {
        await client.query('SELECT 1');
      }
      this.failures = 0;
      this.schedule(this.options.retryMs);
    } catch (err) {
      this.lost(err);
    } finally {
      this.busy = false;
    }
  }

  private async connect(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: this.options.url, application_name: 'ultracloud-host-controller-leader', keepAlive: true });
    client.on('error', (err) => this.lost(err, client));
    client.on('end', () => this.lost(new Error('connection ended'), client));
    try {
      await client.connect();
    } catch (err) {
      client.removeAllListeners('end');
      await client.end().catch(() => undefined);
      throw err;
    }
    this.client = client;
    return client;
  }

  private lost(err: unknown, client?: pg.Client): void {
    if (client && client !== this.client) return;
    const reason = err instanceof Error ? err.message : String(err);
    const dead = this.client;
    this.client = undefined;
    dead?.removeAllListeners('end');
    dead?.end().catch(() => undefined);
    if (this.epoch !== undefined) {
      this.epoch = undefined;
      this.options.log.warn({ event: 'leader.lost', replica: this.options.replica, reason });
      this.options.events.deposed(reason);
    }
    if (this.stopped) return;
    const delay = backoffDelayMs(this.failures++, this.options.backoff ?? RECONNECT);
    this.options.log.debug({ event: 'leader.connection_failed', reason, retry_ms: delay });
    this.schedule(Math.max(delay, 100));
  }
}

/** Leadership for this process's database: an advisory lock on PostgreSQL, sole on PGlite. */
export function leadershipFor(db: HostsDb, url: string | undefined, options: Omit<AdvisoryLeadershipOptions, 'url'>): Leadership {
  if (url) return new AdvisoryLockLeadership({ ...options, url });
  return new SoleLeadership(db, options.replica, options.events, options.log);
}
