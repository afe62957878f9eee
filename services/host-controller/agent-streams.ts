// HostAgentService.Connect on every replica: one stream per node (a newer one replaces an older
// one, on any replica, with ABORTED). The replica holding a node's stream records the hello,
// persists every report before acknowledging it (into the inbox the leader works from), keeps
// the agent's liveness, and delivers what the leader decided — the node's desired system and
// reboot grants, read from the database when woken by a notification — never deciding itself.
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { ServerError, Status } from 'nice-grpc';
import {
  ActivationPhase,
  type ConnectRequest,
  type ConnectResponse,
  type HostAgentHello,
  type KexecImage,
  MachineCommandPhase,
  RebootRequest,
} from '../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import type { DatabaseNotifications } from '../../lib/db/notifications.js';
import { FailedPreconditionError, type FieldViolation, InvalidArgumentError, PermissionDeniedError, UnavailableError } from '../../lib/errors.js';
import type { DirectCall } from '../../lib/grpc/direct-stream.js';
import type { Logger } from '../../lib/log.js';
import { durationOfMs } from './domain/deployment-spec.js';
import { machineCommandFor, wantsMachineCommand } from './domain/machine-commands.js';
import type { NodeFacts } from './domain/selection.js';
import type { MachineInventory } from './machine-inventory.js';
import { disconnectReplica, enqueue, type Heartbeat, markHealthy, recordDisconnect, recordHello, recordReport, streamOwner, touchAgents } from './store/agents.js';
import { activationReportJson } from './store/documents.js';
import { DesiredSystemFrames } from './desired-frames.js';
import { appendEvents, desiredSystemsOf, type StoredDesiredSystem } from './store/rollouts.js';
import type { HostsDatabase } from './store/tables.js';
import { parseNodeListBody, parseWakeup, WAKEUP_CHANNELS, wakeupPayload } from './wakeups.js';

interface AgentSession {
  readonly nodeId: string;
  readonly streamId: string;
  readonly bootId: string;
  /** The stream: messages to the agent are written to it in order. */
  readonly call: DirectCall<ConnectRequest, ConnectResponse>;
  /** `deployment/revision` of the desired system sent on this stream. */
  sentDesired: string | undefined;
  /** Deadline (ms) of the reboot grant sent on this stream. */
  sentGrant: number | undefined;
  /** Reported healthy on this boot (so the leader may activate the machine). */
  healthy: boolean;
  /** An activation is under way (per the hello's journal or the latest report). */
  activating: boolean;
  /** Id of the MachineCommand sent (or found impossible to send) on this stream. */
  sentCommand: string | undefined;
  /** The leader's latest decision for this node while it waits in the delivery queue. */
  decided?: StoredDesiredSystem | undefined;
}

export interface AgentStreamsObserver {
  message(kind: string): void;
}

export interface AgentStreamsOptions {
  readonly db: Kysely<HostsDatabase>;
  readonly log: Logger;
  readonly replica: string;
  readonly inventory: MachineInventory;
  readonly notifications: DatabaseNotifications | undefined;
  readonly heartbeatIntervalMs: number;
  /** The installer reinstall and rescue commands boot (kexec); unset: those requests cannot be relayed. */
  readonly installerImage?: KexecImage | undefined;
  /** Wakes the leader when it runs in this process (the notification reaches other replicas). */
  readonly wakeLeader: () => void;
  readonly observer?: AgentStreamsObserver;
}

const TERMINAL_ACTIVATION = new Set([ActivationPhase.ACTIVATION_PHASE_UNSPECIFIED, ActivationPhase.ACTIVATION_PHASE_CONFIRMED, ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK, ActivationPhase.ACTIVATION_PHASE_FAILED]);
const HEALTHY_STATES = new Set(['running', 'degraded']);
const HEARTBEAT_FLUSH_MS = 1_000;
/** Streams written to per turn of the event loop when delivering a large decision. */
const DELIVERY_CHUNK = 250;

function helloViolations(h: HostAgentHello): FieldViolation[] {
  const out: FieldViolation[] = [];
  if (h.nodeId === '') out.push({ field: 'hello.node_id', description: 'required' });
  if (h.bootId === '') out.push({ field: 'hello.boot_id', description: 'required' });
  return out;
}

function activationFieldViolations(field: string, m: { deployment: string; revision: bigint }): FieldViolation[] {
  const out: FieldViolation[] = [];
  if (m.deployment === '') out.push({ field: `${field}.deployment`, description: 'required' });
  if (m.revision === 0n) out.push({ field: `${field}.revision`, description: 'must be at least 1' });
  return out;
}

export class AgentStreams {
  private readonly sessions = new Map<string, AgentSession>();
  /** Encodes the desired systems sent, sharing what one decision's messages have in common. */
  private readonly frames = new DesiredSystemFrames();
  private readonly beats = new Map<string, Heartbeat>();
  private readonly pendingDelivery = new Set<string>();
  /** Decisions committed by this process's leader, oldest batch first, being written to streams. */
  private readonly decidedQueue: [AgentSession, StoredDesiredSystem][][] = [];
  private readonly sentWaiters: (() => void)[] = [];
  private deliverAll = false;
  private deliveryScheduled = false;
  private inventoryCheckScheduled = false;
  private flushTimer: NodeJS.Timeout | undefined;
  private unlisten: (() => void)[] = [];
  private readonly log: Logger;

  constructor(private readonly options: AgentStreamsOptions) {
    this.log = options.log.child({ component: 'agent-streams' });
  }

  /** Streams held by this replica now. */
  get size(): number {
    return this.sessions.size;
  }

  async start(): Promise<void> {
    // Streams a previous run of this replica held are gone.
    await disconnectReplica(this.options.db, this.options.replica, new Date());
    const n = this.options.notifications;
    if (n) {
      this.unlisten.push(
        n.listen(WAKEUP_CHANNELS.deliver, {
          onNotification: (payload) => {
            const { replica, body } = parseWakeup(payload);
            // This replica's leader delivered to its own streams before notifying.
            if (replica !== this.options.replica) this.deliver(parseNodeListBody(body));
          },
          onResync: () => this.deliver('*'),
        }),
        n.listen(WAKEUP_CHANNELS.streams, {
          onNotification: (payload) => {
            // A newer stream on this replica has replaced the older one in memory already.
            const { replica, body } = parseWakeup(payload);
            if (replica !== this.options.replica) void this.checkOwner(body);
          },
        }),
      );
    }
    this.flushTimer = setInterval(() => void this.flushBeats(), HEARTBEAT_FLUSH_MS);
    this.flushTimer.unref();
  }

  async stop(): Promise<void> {
    for (const u of this.unlisten) u();
    clearInterval(this.flushTimer);
    for (const s of this.sessions.values()) s.call.end(new ServerError(Status.UNAVAILABLE, 'the host-controller is shutting down; reconnect'));
    await this.flushBeats();
    await disconnectReplica(this.options.db, this.options.replica, new Date()).catch(() => undefined);
  }

  /**
   * Delivers what the leader decided for these nodes, if this replica holds their streams:
   * `decided` (what the leader in this process just committed) from memory, the rest after
   * reading it from the database. Decisions are written to the streams a few hundred at a time,
   * yielding to the event loop in between, so that a decision for thousands of nodes does not
   * hold up the leader's next batch (its statements wait for this thread) or the streams'
   * own traffic; a newer decision for a node supersedes one not yet sent.
   */
  deliver(nodeIds: readonly string[] | '*', decided?: ReadonlyMap<string, StoredDesiredSystem>): void {
    if (decided && decided.size > 0) {
      const batch: [AgentSession, StoredDesiredSystem][] = [];
      for (const [id, d] of decided) {
        const session = this.sessions.get(id);
        if (!session) continue;
        session.decided = d;
        batch.push([session, d]);
      }
      if (batch.length > 0) this.queueDecided(batch);
    }
    if (nodeIds === '*') this.deliverAll = true;
    else for (const id of nodeIds) if (this.sessions.has(id) && !decided?.has(id)) this.pendingDelivery.add(id);
    if (this.deliveryScheduled || (!this.deliverAll && this.pendingDelivery.size === 0)) return;
    this.deliveryScheduled = true;
    setImmediate(() => void this.flushDeliveries());
  }

  private queueDecided(batch: [AgentSession, StoredDesiredSystem][]): void {
    this.decidedQueue.push(batch);
    if (this.decidedQueue.length === 1) this.sendDecided(0, 0);
  }

  /** Resolves once every decision handed to `deliver` so far has been written to its stream. */
  deliveriesSent(): Promise<void> {
    if (this.decidedQueue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.sentWaiters.push(resolve));
  }

  /** Writes queued decisions from `index` of the oldest batch on, DELIVERY_CHUNK per turn of the event loop. */
  private sendDecided(index: number, sentBefore: number): void {
    const batch = this.decidedQueue[0];
    if (!batch) return;
    const end = Math.min(batch.length, index + DELIVERY_CHUNK);
    let sent = sentBefore;
    for (let i = index; i < end; i++) {
      const [session, d] = batch[i] as [AgentSession, StoredDesiredSystem];
      // Ended or replaced streams, and decisions a newer one superseded, are left out.
      if (session.decided !== d || this.sessions.get(session.nodeId) !== session) continue;
      session.decided = undefined;
      if (this.send(session, d)) sent++;
    }
    if (end < batch.length) {
      setImmediate(() => this.sendDecided(end, sent));
      return;
    }
    if (sent > 0) this.log.info({ event: 'desired_systems.sent', streams: sent });
    this.decidedQueue.shift();
    if (this.decidedQueue.length > 0) {
      setImmediate(() => this.sendDecided(0, 0));
      return;
    }
    for (const resolve of this.sentWaiters.splice(0)) resolve();
  }

  private async flushDeliveries(): Promise<void> {
    const ids = this.deliverAll ? [...this.sessions.keys()] : [...this.pendingDelivery];
    this.deliverAll = false;
    this.pendingDelivery.clear();
    this.deliveryScheduled = false;
    if (ids.length === 0) return;
    try {
      const desired = await desiredSystemsOf(this.options.db, ids);
      let sent = 0;
      for (const id of ids) {
        const session = this.sessions.get(id);
        const d = desired.get(id);
        if (session && d && this.send(session, d)) sent++;
      }
      if (sent > 0) this.log.info({ event: 'desired_systems.sent', streams: sent });
    } catch (err) {
      this.log.error({ event: 'delivery.failed', nodes: ids.length, err });
    }
  }

  /** Sends what the stream has not had yet; true when something was sent. */
  private send(session: AgentSession, stored: StoredDesiredSystem): boolean {
    const d = stored.desired;
    const key = this.frames.key(d);
    let sent = false;
    if (session.sentDesired !== key) {
      session.call.writeEncoded(this.frames.frame(d));
      session.sentDesired = key;
      session.sentGrant = undefined;
      sent = true;
      if (this.log.isLevelEnabled('debug')) this.log.debug({ event: 'desired_system.sent', node_id: session.nodeId, deployment: d.deployment, revision: String(d.revision) });
    }
    const deadline = stored.rebootGrantDeadline?.getTime();
    const sameBoot = stored.rebootGrantBootId === '' || stored.rebootGrantBootId === session.bootId;
    if (deadline !== undefined && deadline > Date.now() && sameBoot && session.sentGrant !== deadline) {
      session.call.write({ payload: { $case: 'rebootGrant', value: { deployment: d.deployment, revision: d.revision, deadline: new Date(deadline) } } });
      session.sentGrant = deadline;
      sent = true;
      this.log.info({ event: 'reboot_grant.sent', node_id: session.nodeId, deployment: d.deployment, revision: String(d.revision) });
    }
    return sent;
  }

  /** The deployer's machines changed: streams of nodes that lost their assignment end. */
  inventoryChanged(): void {
    if (this.inventoryCheckScheduled || !this.options.inventory.ready) return;
    this.inventoryCheckScheduled = true;
    setImmediate(() => {
      this.inventoryCheckScheduled = false;
      for (const session of [...this.sessions.values()]) {
        const node = this.options.inventory.byNode(session.nodeId);
        if (node) {
          this.relayMachineCommand(session, node);
          continue;
        }
        this.sessions.delete(session.nodeId);
        session.call.end(new FailedPreconditionError(`node ${session.nodeId} no longer has an assignment in the deployer`));
      }
    });
  }

  /**
   * Sends the node its reinstall or rescue command while its machine is in `reprovisioning` or
   * `rescue` (once per stream; the agent carries out each command id once and repeats its last
   * report). Without an installer image the request cannot be carried out: said once per stream,
   * in the log and the node's events.
   */
  private relayMachineCommand(session: AgentSession, node: NodeFacts): void {
    if (!wantsMachineCommand(node)) return;
    const image = this.options.installerImage;
    const command = machineCommandFor(node, image);
    if (!command || session.sentCommand === command.commandId) return;
    session.sentCommand = command.commandId;
    const kind = node.machineState === 'rescue' ? 'rescue' : 'reinstall';
    if (!image) {
      this.log.warn({ event: 'machine_command.unavailable', node_id: node.nodeId, machine_id: node.machineId, kind, reason: 'no installer image configured (--installer-image)' });
      this.recordCommandEvent(node.nodeId, 'machine.command_unavailable', `${kind} requested in the deployer, but this host-controller has no installer image to boot (--installer-image); boot the installer by hand`);
      return;
    }
    session.call.write({ payload: { $case: 'machineCommand', value: command } });
    this.log.info({ event: 'machine_command.sent', node_id: node.nodeId, machine_id: node.machineId, command_id: command.commandId, kind });
    this.recordCommandEvent(node.nodeId, 'machine.command_sent', `${kind}: command ${command.commandId}`);
  }

  private recordCommandEvent(nodeId: string, kind: string, message: string): void {
    appendEvents(this.options.db, [{ at: new Date(), deployment: '', revision: 0n, nodeId, kind, fromPhase: '', toPhase: '', message, replica: this.options.replica }]).catch((err: unknown) =>
      this.log.warn({ event: 'machine_command.event_failed', node_id: nodeId, err }),
    );
  }

  private async checkOwner(nodeId: string): Promise<void> {
    const session = this.sessions.get(nodeId);
    if (!session) return;
    const owner = await streamOwner(this.options.db, nodeId).catch(() => undefined);
    if (owner !== undefined && owner !== session.streamId) this.supersede(session);
  }

  private supersede(session: AgentSession): void {
    if (this.sessions.get(session.nodeId) === session) this.sessions.delete(session.nodeId);
    session.call.end(new ServerError(Status.ABORTED, `a newer stream of node ${session.nodeId} replaced this one`));
  }

  private notifyLeader(): void {
    this.options.wakeLeader();
    void this.options.notifications?.notify(WAKEUP_CHANNELS.leader, wakeupPayload(this.options.replica));
  }

  private ack(session: AgentSession, sequence: bigint, hello = false): void {
    if (sequence === 0n && !hello) return;
    session.call.write({
      payload: {
        $case: 'ack',
        value: { sequence, ...(hello ? { heartbeatInterval: durationOfMs(this.options.heartbeatIntervalMs) } : {}), serverTime: new Date() },
      },
    });
  }

  /** One agent's stream, from its hello until either side ends it. */
  async connect(call: DirectCall<ConnectRequest, ConnectResponse>): Promise<void> {
    const first = await call.read();
    if (first === undefined) return;
    const payload = first.payload;
    if (payload?.$case !== 'hello') throw new InvalidArgumentError({ field: 'payload', description: 'the first message of a stream must be a hello' });
    const hello = payload.value;
    const problems = helloViolations(hello);
    if (problems.length > 0) throw new InvalidArgumentError(problems);
    const principal = call.principal;
    if (principal.kind !== 'agent' || principal.nodeId !== hello.nodeId) throw new PermissionDeniedError(`only node ${hello.nodeId}'s certificate may open its stream`);
    if (!this.options.inventory.ready) throw new UnavailableError('the host-controller has not loaded the machine inventory from the deployer yet; reconnect shortly');
    if (!this.options.inventory.byNode(hello.nodeId)) throw new FailedPreconditionError(`node ${hello.nodeId} has no assignment in the deployer`);

    const activating = hello.journal !== undefined && !TERMINAL_ACTIVATION.has(hello.journal.phase);
    const session: AgentSession = {
      nodeId: hello.nodeId,
      streamId: randomUUID(),
      bootId: hello.bootId,
      call,
      sentDesired: undefined,
      sentGrant: undefined,
      healthy: HEALTHY_STATES.has(hello.systemState) && !activating,
      activating,
      sentCommand: undefined,
      decided: undefined,
    };
    const log = call.log;
    const previous = this.sessions.get(hello.nodeId);
    this.sessions.set(hello.nodeId, session);
    if (previous) this.supersede(previous);
    try {
      await recordHello(this.options.db, hello, { streamId: session.streamId, replica: this.options.replica, peer: call.peer }, session.healthy, new Date());
      log.info({ event: 'agent.connected', node_id: hello.nodeId, boot_id: hello.bootId, current_system: hello.currentSystemPath, healthy: session.healthy, peer: call.peer });
      this.options.observer?.message('hello');
      void this.options.notifications?.notify(WAKEUP_CHANNELS.streams, wakeupPayload(this.options.replica, hello.nodeId));
      this.notifyLeader();
      this.ack(session, first.sequence, true);
      const desired = await desiredSystemsOf(this.options.db, [hello.nodeId]);
      const current = desired.get(hello.nodeId);
      if (current) this.send(session, current);
      const node = this.options.inventory.byNode(hello.nodeId);
      if (node) this.relayMachineCommand(session, node);
      await this.read(session, log);
    } finally {
      if (this.sessions.get(hello.nodeId) === session) this.sessions.delete(hello.nodeId);
      this.beats.delete(hello.nodeId);
      await recordDisconnect(this.options.db, hello.nodeId, session.streamId, new Date()).catch((err: unknown) => log.warn({ event: 'agent.disconnect_record_failed', node_id: hello.nodeId, err }));
      log.info({ event: 'agent.disconnected', node_id: hello.nodeId });
      this.notifyLeader();
    }
  }

  /** Reads the agent's messages after the hello (persist, then acknowledge) until the stream ends. */
  private async read(session: AgentSession, log: Logger): Promise<void> {
    const db = this.options.db;
    const node_id = session.nodeId;
    for (let next = await session.call.read(); next !== undefined; next = await session.call.read()) {
      if (this.sessions.get(session.nodeId) !== session) return;
      const { sequence, payload } = next;
      const now = new Date();
      switch (payload?.$case) {
        case undefined:
          throw new InvalidArgumentError({ field: 'payload', description: 'empty message' });
        case 'hello':
          throw new InvalidArgumentError({ field: 'hello', description: 'only the first message of a stream may be a hello' });
        case 'activationReport': {
          const report = payload.value;
          const problems = activationFieldViolations('activation_report', report);
          if (report.phase <= 0 || ActivationPhase[report.phase] === undefined) problems.push({ field: 'activation_report.phase', description: `unknown phase ${report.phase}` });
          if (problems.length > 0) throw new InvalidArgumentError(problems);
          await db.transaction().execute(async (trx) => {
            await enqueue(trx, session.nodeId, 'activation_report', activationReportJson.toJson(report), now);
            await recordReport(trx, session.nodeId, session.streamId, report, now);
          });
          session.activating = !TERMINAL_ACTIVATION.has(report.phase);
          log.info({ event: 'activation.report', node_id, deployment: report.deployment, revision: String(report.revision), phase: ActivationPhase[report.phase], message: report.message });
          this.ack(session, sequence);
          this.notifyLeader();
          break;
        }
        case 'rebootRequest': {
          const problems = activationFieldViolations('reboot_request', payload.value);
          if (problems.length > 0) throw new InvalidArgumentError(problems);
          await enqueue(db, session.nodeId, 'reboot_request', RebootRequest.toJSON(payload.value) as Record<string, unknown>, now);
          log.info({ event: 'reboot.requested', node_id, deployment: payload.value.deployment, revision: String(payload.value.revision) });
          this.ack(session, sequence);
          this.notifyLeader();
          break;
        }
        case 'heartbeat': {
          const state = payload.value.systemState;
          this.beats.set(session.nodeId, { nodeId: session.nodeId, streamId: session.streamId, at: now, systemState: state });
          if (!session.healthy && !session.activating && HEALTHY_STATES.has(state)) {
            session.healthy = true;
            await markHealthy(db, session.nodeId, session.streamId, session.bootId);
            this.notifyLeader();
          }
          this.ack(session, sequence);
          break;
        }
        case 'machineCommandReport': {
          const report = payload.value;
          if (report.commandId === '') throw new InvalidArgumentError({ field: 'machine_command_report.command_id', description: 'required' });
          const phase = (MachineCommandPhase[report.phase] ?? 'MACHINE_COMMAND_PHASE_UNSPECIFIED').replace(/^MACHINE_COMMAND_PHASE_/, '');
          await appendEvents(db, [{ at: now, deployment: '', revision: 0n, nodeId: session.nodeId, kind: 'machine.command_report', fromPhase: '', toPhase: phase, message: `${report.commandId}${report.message ? `: ${report.message}` : ''}`, replica: this.options.replica }]);
          log.info({ event: 'machine_command.report', node_id, command_id: report.commandId, phase, message: report.message });
          this.ack(session, sequence);
          break;
        }
      }
      this.options.observer?.message(payload.$case);
    }
  }

  private async flushBeats(): Promise<void> {
    if (this.beats.size === 0) return;
    const batch = [...this.beats.values()];
    this.beats.clear();
    await touchAgents(this.options.db, batch).catch((err: unknown) => this.log.warn({ event: 'heartbeats.flush_failed', beats: batch.length, err }));
  }
}
