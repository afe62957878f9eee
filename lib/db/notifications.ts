// Wake-ups between the processes that share a database. On a PostgreSQL server: LISTEN/NOTIFY on
// one dedicated connection per process, re-established with backoff when it drops. On embedded
// PGlite only one process can open the database, so a notification is delivered in-process.
// Notifications are hints, never data: a listener must re-read what changed, and after
// `onResync` (the connection was re-established, so notifications may have been lost) re-read
// everything it follows.

import pg from 'pg';
import { backoffDelayMs, type BackoffPolicy } from '../backoff.js';
import type { Logger } from '../log.js';

export interface NotificationListener {
  /** A notification arrived on the channel. */
  onNotification(payload: string): void;
  /** Notifications may have been missed (the listening connection was re-established). */
  onResync?(): void;
}

export interface DatabaseNotifications {
  /** Who a notification reaches: every process of the database's server, or this process only. */
  readonly reach: 'database' | 'process';
  /** Starts delivering `channel`'s notifications to `listener`; returns the function that stops it. */
  listen(channel: string, listener: NotificationListener): () => void;
  /**
   * Sends a notification. Call it after the change committed, never inside a writing
   * transaction (a NOTIFY there serialises commits). Best effort: false when it could not be sent.
   */
  notify(channel: string, payload?: string): Promise<boolean>;
  close(): Promise<void>;
}

export interface NotificationOptions {
  /** `postgres://…`; unset or empty: in-process delivery (embedded PGlite). */
  readonly url: string | undefined;
  readonly logger: Logger;
  readonly backoff?: BackoffPolicy;
  /** Shown in `pg_stat_activity`. */
  readonly applicationName?: string;
}

const RECONNECT_BACKOFF: BackoffPolicy = { initialMs: 250, maxMs: 10_000, factor: 2 };

export function openDatabaseNotifications(options: NotificationOptions): DatabaseNotifications {
  return options.url ? new PostgresNotifications(options.url, options) : new ProcessNotifications();
}

type Listeners = Map<string, Set<NotificationListener>>;

function addListener(listeners: Listeners, channel: string, listener: NotificationListener): boolean {
  let set = listeners.get(channel);
  const added = !set;
  if (!set) listeners.set(channel, (set = new Set()));
  set.add(listener);
  return added;
}

function deliver(listeners: Listeners, channel: string, payload: string): void {
  for (const listener of [...(listeners.get(channel) ?? [])]) listener.onNotification(payload);
}

/** Embedded PGlite: the only process that can write the database is this one. */
class ProcessNotifications implements DatabaseNotifications {
  readonly reach = 'process' as const;
  private readonly listeners: Listeners = new Map();

  listen(channel: string, listener: NotificationListener): () => void {
    addListener(this.listeners, channel, listener);
    return () => void this.listeners.get(channel)?.delete(listener);
  }

  async notify(channel: string, payload = ''): Promise<boolean> {
    queueMicrotask(() => deliver(this.listeners, channel, payload));
    return true;
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }
}

/**
 * One connection that LISTENs on every channel somebody in this process follows and also sends
 * this process's NOTIFYs. It is opened on first use and re-opened with backoff when it fails.
 */
class PostgresNotifications implements DatabaseNotifications {
  readonly reach = 'database' as const;
  private readonly listeners: Listeners = new Map();
  private readonly log: Logger;
  private client: pg.Client | undefined;
  private connecting: Promise<void> | undefined;
  private retry: NodeJS.Timeout | undefined;
  private failures = 0;
  private closed = false;
  /** The connection's statements run one after another (pg does not take overlapping queries). */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly url: string,
    private readonly options: NotificationOptions,
  ) {
    this.log = options.logger.child({ component: 'db-notifications' });
  }

  listen(channel: string, listener: NotificationListener): () => void {
    const added = addListener(this.listeners, channel, listener);
    const client = this.client;
    if (added && client) this.serially(() => client.query(`LISTEN ${pg.escapeIdentifier(channel)}`)).catch((err: unknown) => this.lost(client, err));
    this.ensureConnected();
    return () => {
      const set = this.listeners.get(channel);
      set?.delete(listener);
      if (set?.size === 0) {
        this.listeners.delete(channel);
        const current = this.client;
        if (current) this.serially(() => current.query(`UNLISTEN ${pg.escapeIdentifier(channel)}`)).catch(() => undefined);
      }
    };
  }

  async notify(channel: string, payload = ''): Promise<boolean> {
    const client = this.client;
    if (!client) {
      this.ensureConnected();
      return false;
    }
    try {
      await this.serially(() => client.query('SELECT pg_notify($1, $2)', [channel, payload]));
      return true;
    } catch (err) {
      this.lost(client, err);
      return false;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    this.listeners.clear();
    await this.connecting?.catch(() => undefined);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private serially<T>(run: () => Promise<T>): Promise<T> {
    const next = this.tail.then(run, run);
    this.tail = next.catch(() => undefined);
    return next;
  }

  private ensureConnected(): void {
    if (this.closed || this.client || this.connecting || this.retry) return;
    this.connecting = this.connect().finally(() => {
      this.connecting = undefined;
    });
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url, application_name: this.options.applicationName ?? 'ultracloud-notifications', keepAlive: true });
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, new Error('connection ended')));
    client.on('notification', (n) => {
      if (n.channel) deliver(this.listeners, n.channel, n.payload ?? '');
    });
    try {
      await client.connect();
      for (const channel of this.listeners.keys()) await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    } catch (err) {
      client.removeAllListeners('end');
      await client.end().catch(() => undefined);
      this.scheduleReconnect(err);
      return;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    if (this.failures > 0) this.log.info({ event: 'notifications.reconnected', after_failures: this.failures });
    this.failures = 0;
    this.client = client;
    // Whatever was notified while no connection listened is lost: listeners re-read.
    for (const set of [...this.listeners.values()]) for (const listener of [...set]) listener.onResync?.();
  }

  private lost(client: pg.Client | undefined, err: unknown): void {
    if (!client || this.client !== client) return;
    this.client = undefined;
    client.removeAllListeners('end');
    client.end().catch(() => undefined);
    if (!this.closed) this.scheduleReconnect(err);
  }

  private scheduleReconnect(err: unknown): void {
    if (this.closed || this.retry) return;
    const delay = backoffDelayMs(this.failures++, this.options.backoff ?? RECONNECT_BACKOFF);
    this.log.warn({ event: 'notifications.disconnected', reason: err instanceof Error ? err.message : String(err), retry_ms: delay });
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.ensureConnected();
    }, delay);
    this.retry.unref();
  }
}
