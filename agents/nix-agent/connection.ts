// The nix-agent's side of HostAgentService.Connect: one long-lived bidi stream to the
// host-controller over mTLS (the node's certificate), kept up with backoff.
//
// - Every stream starts with a fresh hello (the host may have changed generation since the last).
// - Reports (activation progress, reboot requests, machine command progress) go through an
//   outbox: each stays there until the controller acknowledges its sequence number, and is sent
//   again on every new stream until then.
// - Heartbeats follow the interval of the hello's acknowledgement.
// - `reestablish` is the "magic rollback" probe: it drops the stream and its TCP connection and
//   resolves only when a stream opened afterwards has its hello (carrying the new generation)
//   acknowledged. A new connection, not the old one: a system that broke the network may leave
//   established connections alive while refusing new ones.
import { ChannelCredentials, type Channel, ClientError, createChannel, createClient, Status } from 'nice-grpc';
import { readFileSync } from 'node:fs';
import {
  type ActivationReport,
  type ConnectRequest,
  type ConnectResponse,
  type HostAgentHeartbeat,
  type HostAgentHello,
  HostAgentServiceDefinition,
  type MachineCommand,
  type MachineCommandReport,
  type RebootGrant,
  type RebootRequest,
} from '../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import type { DesiredSystem } from '../../gen/ts/ultracloud/system/v1/system.js';
import { AsyncQueue } from '../../lib/async-queue.js';
import { backoffDelayMs, type BackoffPolicy, DEFAULT_BACKOFF, sleep } from '../../lib/backoff.js';
import type { ClientTls } from '../../lib/grpc/client.js';
import { CLIENT_KEEPALIVE_OPTIONS } from '../../lib/grpc/keepalive.js';
import type { Logger } from '../../lib/log.js';

/** A message the controller must acknowledge. */
export type AgentReport =
  | { readonly $case: 'activationReport'; readonly value: ActivationReport }
  | { readonly $case: 'rebootRequest'; readonly value: RebootRequest }
  | { readonly $case: 'machineCommandReport'; readonly value: MachineCommandReport };

/** What the controller sends, delivered in stream order. */
export interface ControllerEvents {
  desiredSystem(desired: DesiredSystem): void;
  /** `clockOffsetMs`: controller clock minus agent clock, from the last hello acknowledgement. */
  rebootGrant(grant: RebootGrant, clockOffsetMs: number): void;
  machineCommand(command: MachineCommand): void;
  /** A stream's hello was acknowledged. */
  established(): void;
}

export interface ControllerLinkSettings {
  /** host:port of the host-controller. */
  readonly address: string;
  /** Undefined: plaintext (loopback only, for development). */
  readonly tls: ClientTls | undefined;
  readonly logger: Logger;
  /** Built for every stream. */
  readonly hello: () => HostAgentHello;
  readonly heartbeat: () => HostAgentHeartbeat;
  readonly backoff?: BackoffPolicy;
  /** Heartbeat interval until the controller names one. Default 10 s. */
  readonly defaultHeartbeatMs?: number;
  /** Reports kept for the controller at most; the oldest are dropped beyond. Default 500. */
  readonly outboxLimit?: number;
}

/** While a confirmation waits for a new stream, retry fast: the confirm timeout is short. */
const CONFIRM_BACKOFF: BackoffPolicy = { initialMs: 100, maxMs: 1_000, factor: 2 };

interface OutboxItem {
  readonly payload: AgentReport;
  readonly acknowledged: () => void;
  readonly dropped: (err: Error) => void;
}

interface ReestablishWaiter {
  /** Only a stream with this number or later counts. */
  readonly fromStream: number;
  readonly resolve: () => void;
}

/** One stream: its outgoing queue and what its sequence numbers carried. */
class StreamSession {
  readonly outgoing = new AsyncQueue<ConnectRequest>();
  private sequence = 0n;
  readonly carried = new Map<bigint, OutboxItem>();
  established = false;
  heartbeat: NodeJS.Timeout | undefined;

  constructor(readonly number: number) {}

  push(payload: ConnectRequest['payload'], item?: OutboxItem): void {
    if (this.outgoing.isEnded) return;
    this.sequence += 1n;
    this.outgoing.push({ sequence: this.sequence, payload });
    if (item) this.carried.set(this.sequence, item);
  }

  close(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.outgoing.end();
  }
}

function durationToMs(d: { seconds: bigint; nanos: number } | undefined): number | undefined {
  if (!d) return undefined;
  const ms = Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
  return ms > 0 ? ms : undefined;
}

export class ControllerLink {
  private readonly log: Logger;
  private readonly outbox: OutboxItem[] = [];
  private readonly waiters = new Set<ReestablishWaiter>();
  private readonly stopController = new AbortController();
  private session: StreamSession | undefined;
  private sessionAbort: AbortController | undefined;
  private backoffWake: AbortController | undefined;
  private streams = 0;
  private reconnectNow = false;
  private clockOffsetMs = 0;
  private running: Promise<void> | undefined;

  constructor(
    private readonly settings: ControllerLinkSettings,
    private readonly events: ControllerEvents,
  ) {
    this.log = settings.logger.child({ component: 'nix-agent.link', controller: settings.address });
  }

  start(): void {
    this.running ??= this.loop();
  }

  /** True while a stream's hello is acknowledged and the stream is open. */
  isEstablished(): boolean {
    return this.session?.established ?? false;
  }

  /** Queues `report`; resolves when the controller acknowledges it (on whichever stream). */
  send(report: AgentReport): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const item: OutboxItem = {
        payload: report,
        acknowledged: () => {
          const i = this.outbox.indexOf(item);
          if (i >= 0) this.outbox.splice(i, 1);
          resolve();
        },
        dropped: reject,
      };
      this.outbox.push(item);
      const limit = this.settings.outboxLimit ?? 500;
      while (this.outbox.length > limit) {
        const oldest = this.outbox.shift();
        this.log.warn({ event: 'link.outbox_overflow', dropped: oldest?.payload.$case });
        oldest?.dropped(new Error('dropped from a full outbox'));
      }
      if (this.session?.established) this.session.push(report as ConnectRequest['payload'], item);
    });
  }

  /** Resolves when every queued report is acknowledged, or after `timeoutMs`. */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.outbox.length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    return this.outbox.length === 0;
  }

  /**
   * Drops the current stream and connection; resolves once a stream opened after this call has
   * its hello acknowledged. Rejects when `signal` aborts first.
   */
  reestablish(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: ReestablishWaiter = {
        fromStream: this.streams + 1,
        resolve: () => {
          signal.removeEventListener('abort', onAbort);
          this.waiters.delete(waiter);
          resolve();
        },
      };
      const onAbort = () => {
        this.waiters.delete(waiter);
        reject(signal.reason);
      };
      if (signal.aborted) {
        onAbort();
        return;
      }
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(waiter);
      this.log.info({ event: 'link.reestablish' });
      this.reconnectNow = true;
      this.sessionAbort?.abort(new Error('re-establishing the controller stream'));
      this.backoffWake?.abort();
    });
  }

  async stop(): Promise<void> {
    this.stopController.abort(new Error('agent stopping'));
    this.sessionAbort?.abort(new Error('agent stopping'));
    this.backoffWake?.abort();
    await this.running;
  }

  private channel(): Channel {
    const { tls } = this.settings;
    const credentials = tls
      ? ChannelCredentials.createSsl(readFileSync(tls.caFile), tls.keyFile ? readFileSync(tls.keyFile) : null, tls.certFile ? readFileSync(tls.certFile) : null)
      : ChannelCredentials.createInsecure();
    // A channel of its own connection: grpc-js would otherwise hand a new channel the pooled
    // connection of the previous one, and a re-established stream would prove nothing.
    return createChannel(this.settings.address, credentials, { ...CLIENT_KEEPALIVE_OPTIONS, 'grpc.use_local_subchannel_pool': 1 });
  }

  private async loop(): Promise<void> {
    let attempt = 0;
    const stopping = this.stopController.signal;
    while (!stopping.aborted) {
      const session = new StreamSession(++this.streams);
      const abort = new AbortController();
      this.session = session;
      this.sessionAbort = abort;
      let channel: Channel | undefined;
      try {
        // Certificates are read for every connection: a renewed node certificate is picked up.
        channel = this.channel();
        const client = createClient(HostAgentServiceDefinition, channel);
        session.push({ $case: 'hello', value: this.settings.hello() });
        for await (const response of client.connect(session.outgoing, { signal: abort.signal })) this.handle(session, response);
        this.log.info({ event: 'link.stream_ended', stream: session.number });
      } catch (err) {
        if (abort.signal.aborted) this.log.debug({ event: 'link.stream_closed', stream: session.number, reason: String(abort.signal.reason) });
        else if (err instanceof ClientError) this.log.warn({ event: 'link.stream_failed', stream: session.number, code: Status[err.code], details: err.details });
        else this.log.warn({ event: 'link.stream_failed', stream: session.number, err });
      } finally {
        session.close();
        channel?.close();
        if (this.session === session) this.session = undefined;
      }
      if (session.established) attempt = 0;
      if (stopping.aborted) break;
      if (this.reconnectNow) {
        this.reconnectNow = false;
        continue;
      }
      const delay = backoffDelayMs(attempt++, this.waiters.size > 0 ? CONFIRM_BACKOFF : (this.settings.backoff ?? DEFAULT_BACKOFF));
      this.log.debug({ event: 'link.reconnect_in', delay_ms: delay, attempt });
      this.backoffWake = new AbortController();
      await sleep(delay, AbortSignal.any([stopping, this.backoffWake.signal])).catch(() => undefined);
      this.reconnectNow = false;
    }
  }

  private handle(session: StreamSession, response: ConnectResponse): void {
    const payload = response.payload;
    if (!payload) return;
    switch (payload.$case) {
      case 'ack':
        this.acknowledge(session, payload.value.sequence, payload.value);
        return;
      case 'desiredSystem':
        this.events.desiredSystem(payload.value);
        return;
      case 'rebootGrant':
        this.events.rebootGrant(payload.value, this.clockOffsetMs);
        return;
      case 'machineCommand':
        this.events.machineCommand(payload.value);
        return;
    }
  }

  private acknowledge(session: StreamSession, sequence: bigint, ack: { heartbeatInterval?: { seconds: bigint; nanos: number }; serverTime?: Date }): void {
    if (!session.established && sequence >= 1n) {
      session.established = true;
      if (ack.serverTime) this.clockOffsetMs = ack.serverTime.getTime() - Date.now();
      const interval = durationToMs(ack.heartbeatInterval) ?? this.settings.defaultHeartbeatMs ?? 10_000;
      session.heartbeat = setInterval(() => session.push({ $case: 'heartbeat', value: this.settings.heartbeat() }), interval);
      this.log.info({ event: 'link.established', stream: session.number, heartbeat_ms: interval, pending_reports: this.outbox.length });
      for (const item of this.outbox) session.push(item.payload as ConnectRequest['payload'], item);
      for (const waiter of [...this.waiters]) if (session.number >= waiter.fromStream) waiter.resolve();
      this.events.established();
    }
    for (const [seq, item] of session.carried) {
      if (seq > sequence) break;
      session.carried.delete(seq);
      item.acknowledged();
    }
  }
}
