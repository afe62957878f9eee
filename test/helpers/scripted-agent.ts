// TEST-ONLY: a nix-agent reduced to its conversation with the host-controller. It speaks the
// HostAgentService.Connect protocol over real mTLS as the contract describes it — hello first,
// acknowledged reports kept and sent again on the next stream, heartbeats at the interval the
// controller asks for, reconnects with backoff (to the next address, for several replicas) —
// and activates each DesiredSystem at most once per (deployment, revision), reporting success,
// rollback, failure or nothing at all, as the test's script says. It records everything it
// receives so tests can assert what the controller sent.
import { randomUUID } from 'node:crypto';
import { ClientError, Status } from 'nice-grpc';
import {
  ActivationPhase,
  type ActivationReport,
  type ConnectRequest,
  type ConnectResponse,
  HostAgentServiceDefinition,
  type RebootGrant,
  type RebootRequest,
} from '../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import { ActivationFailureReason, ActivationStrategy, type DesiredSystem } from '../../gen/ts/ultracloud/system/v1/system.js';
import { AsyncQueue } from '../../lib/async-queue.js';
import { backoffDelayMs, sleep } from '../../lib/backoff.js';
import { type ClientTls, createServiceClient, openChannel } from '../../lib/grpc/client.js';

/** What the agent does with one desired system. */
export type Outcome =
  | { readonly kind: 'succeed' }
  /** Activation fails and the previous generation is restored: ROLLED_BACK with the reason. */
  | { readonly kind: 'roll-back'; readonly reason?: ActivationFailureReason; readonly message?: string }
  /** Fails without rollback: FAILED. */
  | { readonly kind: 'fail'; readonly reason?: ActivationFailureReason }
  /** Reports ACTIVATING and then nothing (a stuck switch-to-configuration). */
  | { readonly kind: 'hang' };

export interface ScriptedAgentOptions {
  readonly nodeId: string;
  /** Controller replicas; the agent dials them in turn when a stream breaks. */
  readonly addresses: readonly string[];
  readonly tls: ClientTls;
  readonly currentSystemPath?: string;
  /** `systemctl is-system-running` as reported; "running" makes the hello healthy. */
  readonly systemState?: string;
  /** Decides each activation; default: succeed. */
  readonly script?: (desired: DesiredSystem) => Outcome;
  /** Pause between reported phases. */
  readonly stepDelayMs?: number;
  /** The hello names this node instead of its own (a node lying about who it is). */
  readonly claimNodeId?: string;
}

interface Pending {
  readonly id: number;
  readonly message: ConnectRequest['payload'];
  /** Sequence on the current stream, once sent on it. */
  sequence?: bigint;
}

export interface StreamEnd {
  readonly address: string;
  readonly code: Status | 'ok';
  readonly details: string;
}

export class ScriptedAgent {
  /** Every DesiredSystem received, duplicates included. */
  readonly deliveries: DesiredSystem[] = [];
  /** `deployment/revision` of every activation started, in order (each at most once). */
  readonly activations: string[] = [];
  readonly grants: RebootGrant[] = [];
  readonly streamEnds: StreamEnd[] = [];
  /** Acknowledged sequence numbers of the current stream. */
  acked = 0n;
  bootId = randomUUID();
  currentSystemPath: string;
  profileGeneration = 1n;
  /** Streams opened so far (a reconnect opens another). */
  streams = 0;
  connected = false;

  private readonly pending: Pending[] = [];
  private nextPendingId = 1;
  /** Requests of the current stream, fed as the agent goes. */
  private queue: AsyncQueue<ConnectRequest> | undefined;
  private sequence = 0n;
  private abort: AbortController | undefined;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private addressIndex = 0;
  private readonly waiters = new Set<() => void>();
  /** The staged boot-strategy activation waiting for its grant, if any. */
  private staged: DesiredSystem | undefined;

  constructor(private readonly options: ScriptedAgentOptions) {
    this.currentSystemPath = options.currentSystemPath ?? '/nix/store/00000000000000000000000000000000-nixos-system-installed';
  }

  get nodeId(): string {
    return this.options.nodeId;
  }

  start(): this {
    this.loop ??= this.run();
    return this;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort?.abort();
    clearInterval(this.heartbeat);
    await this.loop?.catch(() => undefined);
  }

  /** Ends the current stream as a network break would; the agent reconnects with backoff. */
  disconnect(): void {
    this.abort?.abort();
  }

  /** Resolves when `predicate` holds, checked after every message; fails after `timeoutMs`. */
  waitFor(predicate: (agent: this) => boolean, timeoutMs = 30_000, what = 'condition'): Promise<void> {
    if (predicate(this)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!predicate(this)) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`${this.nodeId}: ${what} not met within ${timeoutMs} ms (streams ${this.streams}, ends ${JSON.stringify(this.streamEnds.slice(-3))})`));
      }, timeoutMs);
      this.waiters.add(check);
    });
  }

  private changed(): void {
    for (const w of [...this.waiters]) w();
  }

  private send(message: ConnectRequest['payload']): void {
    const entry: Pending = { id: this.nextPendingId++, message };
    // Heartbeats are not kept: a lost one is replaced by the next.
    if (message?.$case !== 'heartbeat') this.pending.push(entry);
    this.transmit(entry);
  }

  private transmit(entry: Pending): void {
    if (!this.queue) return;
    this.sequence += 1n;
    entry.sequence = this.sequence;
    this.queue.push({ sequence: this.sequence, payload: entry.message });
  }

  private report(desired: DesiredSystem, phase: ActivationPhase, extra: Partial<ActivationReport> = {}): void {
    const now = new Date();
    this.send({
      $case: 'activationReport',
      value: {
        deployment: desired.deployment,
        revision: desired.revision,
        phase,
        systemPath: desired.systemPath,
        generation: this.profileGeneration,
        failureReason: ActivationFailureReason.ACTIVATION_FAILURE_REASON_UNSPECIFIED,
        message: '',
        bootId: this.bootId,
        startedAt: now,
        occurredAt: now,
        ...extra,
      },
    });
  }

  private async activate(desired: DesiredSystem): Promise<void> {
    const outcome = this.options.script?.(desired) ?? { kind: 'succeed' };
    const delay = this.options.stepDelayMs ?? 30;
    this.report(desired, ActivationPhase.ACTIVATION_PHASE_REALISING);
    await sleep(delay);
    this.profileGeneration += 1n;
    this.report(desired, ActivationPhase.ACTIVATION_PHASE_ACTIVATING);
    if (outcome.kind === 'hang') return;
    await sleep(delay);
    if (outcome.kind === 'roll-back') {
      this.report(desired, ActivationPhase.ACTIVATION_PHASE_ROLLING_BACK, { failureReason: outcome.reason ?? ActivationFailureReason.ACTIVATION_FAILURE_REASON_SWITCH_FAILED });
      await sleep(delay);
      this.profileGeneration -= 1n;
      this.report(desired, ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK, {
        failureReason: outcome.reason ?? ActivationFailureReason.ACTIVATION_FAILURE_REASON_SWITCH_FAILED,
        message: outcome.message ?? 'switch-to-configuration exited with status 1',
      });
      return;
    }
    if (outcome.kind === 'fail') {
      this.report(desired, ActivationPhase.ACTIVATION_PHASE_FAILED, { failureReason: outcome.reason ?? ActivationFailureReason.ACTIVATION_FAILURE_REASON_SWITCH_FAILED, message: 'left on the failed generation' });
      return;
    }
    if (desired.activationStrategy === ActivationStrategy.ACTIVATION_STRATEGY_BOOT) {
      this.staged = desired;
      this.report(desired, ActivationPhase.ACTIVATION_PHASE_AWAITING_REBOOT);
      const request: RebootRequest = { deployment: desired.deployment, revision: desired.revision, generation: this.profileGeneration, reason: 'boot strategy' };
      this.send({ $case: 'rebootRequest', value: request });
      return;
    }
    this.report(desired, ActivationPhase.ACTIVATION_PHASE_CONFIRMING);
    await sleep(delay);
    this.currentSystemPath = desired.systemPath || this.currentSystemPath;
    this.report(desired, ActivationPhase.ACTIVATION_PHASE_CONFIRMED);
  }

  /** The granted reboot: the stream drops, the host comes back with a new boot id on the staged system. */
  private async reboot(): Promise<void> {
    const desired = this.staged;
    if (!desired) return;
    this.staged = undefined;
    this.bootId = randomUUID();
    this.currentSystemPath = desired.systemPath || this.currentSystemPath;
    this.disconnect();
    this.report(desired, ActivationPhase.ACTIVATION_PHASE_REBOOTED);
    this.report(desired, ActivationPhase.ACTIVATION_PHASE_CONFIRMED);
  }

  private handle(response: ConnectResponse): void {
    const p = response.payload;
    switch (p?.$case) {
      case 'ack': {
        const seq = p.value.sequence;
        if (seq > this.acked) this.acked = seq;
        for (let i = this.pending.length - 1; i >= 0; i--) {
          const entry = this.pending[i] as Pending;
          if (entry.sequence !== undefined && entry.sequence <= seq) this.pending.splice(i, 1);
        }
        const interval = p.value.heartbeatInterval;
        if (interval) {
          const ms = Number(interval.seconds) * 1000 + interval.nanos / 1e6;
          clearInterval(this.heartbeat);
          this.heartbeat = setInterval(() => this.send({ $case: 'heartbeat', value: { sentAt: new Date(), systemState: this.options.systemState ?? 'running' } }), ms);
          this.heartbeat.unref();
        }
        break;
      }
      case 'desiredSystem': {
        const d = p.value;
        this.deliveries.push(d);
        const key = `${d.deployment}/${d.revision}`;
        // Already confirmed or being activated: a repeated delivery is a no-op.
        if (!this.activations.includes(key)) {
          this.activations.push(key);
          void this.activate(d);
        }
        break;
      }
      case 'rebootGrant':
        this.grants.push(p.value);
        void this.reboot();
        break;
      default:
        break;
    }
    this.changed();
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      const address = this.options.addresses[this.addressIndex % this.options.addresses.length] as string;
      const channel = openChannel(address, { tls: this.options.tls });
      const client = createServiceClient(HostAgentServiceDefinition, channel);
      const abort = new AbortController();
      this.abort = abort;
      const queue = new AsyncQueue<ConnectRequest>();
      this.queue = queue;
      this.sequence = 0n;
      this.acked = 0n;
      this.streams += 1;
      const hello: ConnectRequest['payload'] = {
        $case: 'hello',
        value: {
          nodeId: this.options.claimNodeId ?? this.options.nodeId,
          bootId: this.bootId,
          currentSystemPath: this.currentSystemPath,
          bootedSystemPath: this.currentSystemPath,
          profileSystemPath: this.currentSystemPath,
          profileGeneration: this.profileGeneration,
          agentVersion: 'scripted 0.1.0',
          journal: undefined,
          hostname: this.options.nodeId,
          systemState: this.options.systemState ?? 'running',
        },
      };
      this.transmit({ id: 0, message: hello });
      for (const entry of this.pending) this.transmit(entry);
      let end: StreamEnd = { address, code: 'ok', details: '' };
      try {
        for await (const response of client.connect(queue, { signal: abort.signal })) {
          if (!this.connected) {
            this.connected = true;
            failures = 0;
          }
          this.handle(response);
        }
      } catch (err) {
        end = err instanceof ClientError ? { address, code: err.code, details: err.details } : { address, code: Status.CANCELLED, details: err instanceof Error ? err.message : String(err) };
      } finally {
        this.connected = false;
        this.queue = undefined;
        queue.end();
        clearInterval(this.heartbeat);
        channel.close();
      }
      this.streamEnds.push(end);
      this.changed();
      if (this.stopped) return;
      // Another replica next time; back off a little, growing while nothing answers.
      this.addressIndex += 1;
      await sleep(Math.max(50, backoffDelayMs(failures++, { initialMs: 100, maxMs: 1_000, factor: 2 })));
    }
  }
}
