// The leader's loop. Each tick is one fenced transaction: take the agents' messages from the
// inbox and apply them to the node entries, plan every deployment, and store the plan — node
// phases, desired systems, reboot grants and an event per change — before anything is sent.
// After commit the replicas holding the affected streams are told to deliver, and the side
// effects run: drains, uncordons, and Activate for nodes whose first healthy report came in.
// A decision of many activations is committed as intents (store/intents.ts), sent, and then
// written out in full.
// Ticks run one at a time, on a wake-up (operator write, agent message, inventory change) or
// every reconcile interval (timeouts, staleness).
import type { Kysely } from 'kysely';
import { ClientError, Status } from 'nice-grpc';
import { type ActivationReport, RebootRequest } from '../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import { type DesiredSystem, NodeRolloutPhase as P } from '../../gen/ts/ultracloud/system/v1/system.js';
import type { DatabaseNotifications } from '../../lib/db/notifications.js';
import type { Logger } from '../../lib/log.js';
import { applyActivationReport, applyRebootRequest, FAILED_PHASES, IN_PROGRESS, type NodeRollout, phaseName } from './domain/node-rollout.js';
import { nodeOwners, planRollout } from './domain/rollout-planner.js';
import { fence, LeadershipLost } from './leader-election.js';
import type { MachineInventory } from './machine-inventory.js';
import type { NodeDrainer } from './node-drainer.js';
import { agentsLiveness, deleteInbox, takeInbox } from './store/agents.js';
import { activationReportJson } from './store/documents.js';
import { listDeployments, plannerStateChanged, rolloutPhaseName, updatePlannerState } from './store/deployments.js';
import {
  appendEvents,
  deleteNodeRollouts,
  grantReboot,
  nodeRollouts,
  type RolloutEvent,
  saveDesiredSystems,
  saveNodeRollouts,
  setCordoned,
  type StoredDesiredSystem,
  withdrawDesiredSystems,
} from './store/rollouts.js';
import { type DecidedActivation, IntentBuilder, saveIntents, writeIntents } from './store/intents.js';
import type { HostsDatabase } from './store/tables.js';
import { nodeListBody, parseWakeup, WAKEUP_CHANNELS, wakeupPayload } from './wakeups.js';

const INBOX_BATCH = 5000;
/** How often the same node is asked to drain while its drain is in progress. */
const DRAIN_CALL_INTERVAL_MS = 5_000;

export interface RolloutControllerObserver {
  tick(seconds: number, outcome: 'ok' | 'failed' | 'deposed'): void;
  leader(isLeader: boolean): void;
}

export interface RolloutControllerOptions {
  readonly db: Kysely<HostsDatabase>;
  readonly log: Logger;
  readonly replica: string;
  readonly inventory: MachineInventory;
  readonly drainer: NodeDrainer | undefined;
  readonly notifications: DatabaseNotifications | undefined;
  readonly staleAfterMs: number;
  readonly reconcileIntervalMs: number;
  readonly rebootGrantMs: number;
  /**
   * Delivers to streams this replica holds, without waiting for a notification: `decided` are the
   * desired systems this tick committed (sent from memory), the other nodes are read back.
   */
  readonly deliverLocally: (nodeIds: readonly string[], decided: ReadonlyMap<string, StoredDesiredSystem>) => void;
  /**
   * Resolves once what deliverLocally was given has been written to the streams. The next tick
   * waits for it: its reads would otherwise hold this thread while the last batch of a large
   * decision is still being sent.
   */
  readonly localDeliveriesSent?: () => Promise<void>;
  readonly observer?: RolloutControllerObserver;
  /**
   * A tick handing out more activations than this commits them as intents, sends them, and then
   * writes their node entries, desired systems and events; default 1,000.
   */
  readonly activationBatch?: number;
}

const DEFAULT_ACTIVATION_BATCH = 1_000;
const ACTIVATING_NAME = phaseName(P.NODE_ROLLOUT_PHASE_ACTIVATING);

interface TickOutcome {
  readonly deliver: string[];
  /** Desired systems handed out by this tick, as stored (no reboot grant yet). */
  readonly decided: Map<string, StoredDesiredSystem>;
  readonly drains: { nodeId: string; deployment: string; revision: bigint }[];
  readonly uncordons: { nodeId: string; deployment: string }[];
  readonly draining: Set<string>;
  readonly healthy: Set<string>;
  /** Nodes of the intents this tick committed (delivered from `decided` too), written out after the sends. */
  readonly intended: readonly string[];
}

export class RolloutController {
  private epoch: bigint | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private unlisten: (() => void) | undefined;
  private stopped = false;
  /** Nodes the scheduler reported drained, for the next tick (leader memory; a new leader asks again). */
  private readonly drained = new Set<string>();
  private readonly drainCalls = new Map<string, number>();
  private readonly drainsInFlight = new Set<string>();
  private readonly activationsTried = new Map<string, bigint>();
  private readonly log: Logger;

  constructor(private readonly options: RolloutControllerOptions) {
    this.log = options.log.child({ component: 'rollout-controller' });
  }

  get isLeader(): boolean {
    return this.epoch !== undefined;
  }

  elected(epoch: bigint): void {
    this.epoch = epoch;
    this.drained.clear();
    this.activationsTried.clear();
    this.options.observer?.leader(true);
    this.wake();
  }

  deposed(): void {
    this.epoch = undefined;
    this.options.observer?.leader(false);
  }

  start(): void {
    this.unlisten = this.options.notifications?.listen(WAKEUP_CHANNELS.leader, {
      // This replica's own writers woke it directly.
      onNotification: (payload) => {
        if (parseWakeup(payload).replica !== this.options.replica) this.wake();
      },
      onResync: () => this.wake(),
    });
    this.timer = setInterval(() => this.wake(), this.options.reconcileIntervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.unlisten?.();
    await this.running;
  }

  /** Asks for a tick; several wake-ups during one tick make one more tick. */
  wake(): void {
    if (this.stopped || this.epoch === undefined) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.tickSafely();
        await this.options.localDeliveriesSent?.();
      } while (this.again && !this.stopped && this.epoch !== undefined);
    })().finally(() => {
      this.running = undefined;
    });
  }

  /** Resolves once no tick is running (tests and shutdown). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async tickSafely(): Promise<void> {
    const epoch = this.epoch;
    if (epoch === undefined || !this.options.inventory.ready) return;
    const started = process.hrtime.bigint();
    let outcome: 'ok' | 'failed' | 'deposed' = 'ok';
    try {
      const result = await this.tick(epoch);
      this.afterCommit(epoch, result);
      if (result.intended.length > 0) {
        // The streams first; then the entries, desired systems and events the intents stand for
        // (the next tick would write them before planning anyway).
        await this.options.localDeliveriesSent?.();
        const written = await writeIntents(this.options.db, epoch, new Date());
        if (written === 'deposed') throw new LeadershipLost(epoch);
        // Streams held by other replicas are served from the database, now complete.
        if (written.length > 0) void this.options.notifications?.notify(WAKEUP_CHANNELS.deliver, wakeupPayload(this.options.replica, nodeListBody(written)));
      }
    } catch (err) {
      if (err instanceof LeadershipLost) {
        outcome = 'deposed';
        this.log.warn({ event: 'leader.superseded', epoch: String(epoch) });
        if (this.epoch === epoch) this.deposed();
      } else {
        outcome = 'failed';
        this.log.error({ event: 'reconcile.failed', err });
      }
    } finally {
      this.options.observer?.tick(Number(process.hrtime.bigint() - started) / 1e9, outcome);
    }
  }

  private async tick(epoch: bigint): Promise<TickOutcome> {
    const now = new Date();
    const staleBefore = new Date(now.getTime() - this.options.staleAfterMs);
    const { nodes, byId: nodeIndex } = this.options.inventory.snapshot();
    const drained = new Set(this.drained);
    const replica = this.options.replica;
    return this.options.db.transaction().execute(async (trx) => {
      await fence(trx, epoch, now);
      // Intents a previous tick (of this leader or one that died) committed and did not write out.
      const recovered = await writeIntents(trx, epoch, now);
      if (recovered === 'deposed') throw new LeadershipLost(epoch);
      const deployments = await listDeployments(trx, { lock: true });
      const rowsByDeployment = await nodeRollouts(trx);
      const agents = await agentsLiveness(trx, staleBefore);
      const inbox = await takeInbox(trx, INBOX_BATCH);
      // As loaded, to see which activations this tick ended (by report or by plan).
      const loaded = new Map([...rowsByDeployment].map(([name, rows]) => [name, new Map(rows)]));
      const events: RolloutEvent[] = [];
      const dirty = new Map<string, Map<string, NodeRollout>>();
      const changeEvent = (deployment: string, before: NodeRollout | undefined, after: NodeRollout) => {
        if (before && before.phase === after.phase) return;
        events.push({ at: now, deployment, revision: after.revision, nodeId: after.nodeId, kind: 'node.phase', fromPhase: before ? phaseName(before.phase) : '', toPhase: phaseName(after.phase), message: after.message, replica });
      };
      /** Nodes whose entry an agent's message changed in this tick (never made intents: this tick consumes their inbox entries). */
      const reported = new Set<string>();
      const markDirty = (deployment: string, row: NodeRollout) => {
        let m = dirty.get(deployment);
        if (!m) dirty.set(deployment, (m = new Map()));
        m.set(row.nodeId, row);
      };

      // The agents' messages, in the order they arrived.
      for (const entry of inbox) {
        const message = entry.kind === 'activation_report' ? activationReportJson.fromJson(entry.payload) : RebootRequest.fromJSON(entry.payload);
        const rows = rowsByDeployment.get(message.deployment);
        const row = rows?.get(entry.nodeId);
        if (!rows || !row) continue;
        const next =
          entry.kind === 'activation_report'
            ? applyActivationReport(row, message.deployment, message as ActivationReport, now)
            : applyRebootRequest(row, message.deployment, message as RebootRequest);
        if (!next) continue;
        changeEvent(message.deployment, row, next);
        rows.set(next.nodeId, next);
        reported.add(`${message.deployment}\u0000${next.nodeId}`);
        markDirty(message.deployment, next);
      }

      // Plan every deployment; then store the plans. A tick handing out more activations than
      // the batch commits the fresh starts among them as intents (store/intents.ts) instead of
      // their node entries, desired systems and events, except for nodes an agent's message
      // changed in this tick (their inbox entries are consumed here).
      const owners = nodeOwners(deployments, nodes);
      const drain = { configured: this.options.drainer !== undefined, drained };
      const plans = deployments.map((d) => {
        const rows = rowsByDeployment.get(d.spec.name) ?? new Map<string, NodeRollout>();
        return { d, rows, plan: planRollout({ deployment: d, rows, nodes, nodeIndex, agents, owners, drain, now, rebootGrantMs: this.options.rebootGrantMs }) };
      });
      const decisionSize = plans.reduce((n, p) => n + p.plan.activations.length, 0);
      const intents = decisionSize > (this.options.activationBatch ?? DEFAULT_ACTIVATION_BATCH) ? new IntentBuilder(now, replica) : undefined;
      const deliver = new Set<string>(recovered);
      const activations: DecidedActivation[] = [];
      /** Activations written with the tick. */
      const kept: DecidedActivation[] = [];
      /** Nodes granted a reboot slot by this tick: what they are sent is read back with the grant. */
      const granted = new Set<string>();
      const drains: TickOutcome['drains'] = [];
      const uncordons: TickOutcome['uncordons'] = [];
      const draining = new Set<string>();
      const withdraw: { nodeId: string; deployment: string; revision: bigint }[] = [];
      for (const { d, rows, plan } of plans) {
        const name = d.spec.name;
        // An activation's event records the node's move to ACTIVATING too: one row per node decided.
        const activated = new Set(plan.activated);
        for (const c of plan.changes) {
          if (activated.has(c.after)) continue;
          changeEvent(name, c.before, c.after);
          markDirty(name, c.after);
          rows.set(c.after.nodeId, c.after);
        }
        for (const r of plan.removed) {
          events.push({ at: now, deployment: name, revision: r.revision, nodeId: r.nodeId, kind: 'node.removed', fromPhase: phaseName(r.phase), toPhase: '', message: 'no longer selected', replica });
          dirty.get(name)?.delete(r.nodeId);
        }
        await deleteNodeRollouts(trx, name, plan.removed.map((r) => r.nodeId));
        for (let i = 0; i < plan.activations.length; i++) {
          const desired = plan.activations[i] as DesiredSystem;
          const row = plan.activated[i] as NodeRollout;
          // The entry as the plan found it (rows is updated here, after this read).
          const before = rows.get(row.nodeId);
          const a: DecidedActivation = { deployment: name, row, desired, fromPhase: before ? phaseName(before.phase) : '' };
          rows.set(row.nodeId, row);
          activations.push(a);
          if (intents && (reported.size === 0 || !reported.has(`${name}\u0000${row.nodeId}`)) && intents.add(a)) continue;
          kept.push(a);
          markDirty(name, row);
          events.push({ at: now, deployment: name, revision: desired.revision, nodeId: row.nodeId, kind: 'decision.activate', fromPhase: a.fromPhase, toPhase: ACTIVATING_NAME, message: desired.systemPath || `${desired.flakeRef}#${desired.flakeAttr}`, replica });
        }
        for (const g of plan.rebootGrants) {
          deliver.add(g.nodeId);
          granted.add(g.nodeId);
          await grantReboot(trx, g.nodeId, g.deadline, agents.get(g.nodeId)?.bootId ?? '', now);
          events.push({ at: now, deployment: name, revision: d.revision, nodeId: g.nodeId, kind: 'decision.reboot_grant', fromPhase: '', toPhase: '', message: `reboot before ${g.deadline.toISOString()}`, replica });
        }
        for (const message of plan.decisions) events.push({ at: now, deployment: name, revision: d.revision, nodeId: '', kind: 'rollout.paused', fromPhase: '', toPhase: '', message, replica });
        if (plan.deployment.rolloutPhase !== d.rolloutPhase) {
          events.push({ at: now, deployment: name, revision: d.revision, nodeId: '', kind: 'rollout.phase', fromPhase: rolloutPhaseName(d.rolloutPhase), toPhase: rolloutPhaseName(plan.deployment.rolloutPhase), message: plan.deployment.statusMessage, replica });
        }
        if (plannerStateChanged(d, plan.deployment)) await updatePlannerState(trx, plan.deployment, now);
        for (const nodeId of plan.drains) {
          draining.add(nodeId);
          drains.push({ nodeId, deployment: name, revision: d.revision });
        }
        for (const nodeId of plan.uncordons) uncordons.push({ nodeId, deployment: name });
      }
      const decided = new Map<string, StoredDesiredSystem>();
      for (const a of activations) {
        const id = a.desired.nodeId;
        if (!granted.has(id)) decided.set(id, { desired: a.desired, rebootGrantDeadline: undefined, rebootGrantBootId: '' });
      }
      for (const a of kept) deliver.add(a.desired.nodeId);
      await saveIntents(trx, intents?.intents ?? []);
      await saveDesiredSystems(trx, kept.map((a) => a.desired), now);
      for (const [name, rows] of dirty) {
        await saveNodeRollouts(trx, name, [...rows.values()]);
        // An activation that ended without success is not handed out again.
        for (const row of rows.values()) {
          const before = loaded.get(name)?.get(row.nodeId);
          if (before && IN_PROGRESS.has(before.phase) && (FAILED_PHASES.has(row.phase) || row.phase === P.NODE_ROLLOUT_PHASE_SKIPPED)) withdraw.push({ nodeId: row.nodeId, deployment: name, revision: before.revision });
        }
      }
      await withdrawDesiredSystems(trx, withdraw);
      await appendEvents(trx, events);
      await deleteInbox(trx, inbox.map((e) => e.id));
      const healthy = new Set<string>();
      for (const a of agents.values()) if (a.connected && a.healthyThisBoot) healthy.add(a.nodeId);
      if (inbox.length === INBOX_BATCH) this.again = true;
      return { deliver: [...deliver], decided, drains, uncordons, draining, healthy, intended: intents?.nodeIds ?? [] };
    });
  }

  private afterCommit(epoch: bigint, t: TickOutcome): void {
    // Every activation (intended ones included) is in `decided`; intended ones reach the other
    // replicas' streams once written out.
    if (t.deliver.length > 0 || t.decided.size > 0) this.options.deliverLocally(t.deliver, t.decided);
    if (t.deliver.length > 0) void this.options.notifications?.notify(WAKEUP_CHANNELS.deliver, wakeupPayload(this.options.replica, nodeListBody(t.deliver)));
    // What the scheduler said about nodes no longer draining is no longer news.
    for (const n of [...this.drained]) if (!t.draining.has(n)) this.drained.delete(n);
    for (const d of t.drains) this.requestDrain(d);
    for (const u of t.uncordons) this.requestUncordon(epoch, u);
    this.activateHealthy(epoch, t.healthy);
  }

  private requestDrain(d: { nodeId: string; deployment: string; revision: bigint }): void {
    const drainer = this.options.drainer;
    if (!drainer || this.drainsInFlight.has(d.nodeId)) return;
    const last = this.drainCalls.get(d.nodeId) ?? 0;
    if (Date.now() - last < DRAIN_CALL_INTERVAL_MS) return;
    this.drainCalls.set(d.nodeId, Date.now());
    this.drainsInFlight.add(d.nodeId);
    drainer
      .drain(d.nodeId, `host rollout ${d.deployment} revision ${d.revision}`)
      .then((progress) => {
        if (progress.drained) {
          this.drained.add(d.nodeId);
          this.wake();
        } else {
          this.log.debug({ event: 'drain.progress', node_id: d.nodeId, message: progress.message });
        }
      })
      .catch((err: unknown) => this.log.warn({ event: 'drain.failed', node_id: d.nodeId, reason: err instanceof Error ? err.message : String(err) }))
      .finally(() => this.drainsInFlight.delete(d.nodeId));
  }

  private requestUncordon(epoch: bigint, u: { nodeId: string; deployment: string }): void {
    const drainer = this.options.drainer;
    if (!drainer || this.drainsInFlight.has(u.nodeId)) return;
    this.drainsInFlight.add(u.nodeId);
    drainer
      .uncordon(u.nodeId, `host rollout ${u.deployment}: node done`)
      .then(async () => {
        await this.options.db.transaction().execute(async (trx) => {
          const now = new Date();
          await fence(trx, epoch, now);
          await setCordoned(trx, u.deployment, u.nodeId, false);
          await appendEvents(trx, [{ at: now, deployment: u.deployment, revision: 0n, nodeId: u.nodeId, kind: 'decision.uncordon', fromPhase: '', toPhase: '', message: 'uncordoned through the fleet-scheduler', replica: this.options.replica }]);
        });
      })
      .catch((err: unknown) => this.log.warn({ event: 'uncordon.failed', node_id: u.nodeId, reason: err instanceof Error ? err.message : String(err) }))
      .finally(() => this.drainsInFlight.delete(u.nodeId));
  }

  /** The first healthy report of a node whose machine is `installed` moves it to `active`. */
  private activateHealthy(epoch: bigint, healthy: ReadonlySet<string>): void {
    for (const node of this.options.inventory.nodes()) {
      if (node.machineState !== 'installed' || !healthy.has(node.nodeId)) continue;
      if (this.activationsTried.get(node.machineId) === node.resourceVersion) continue;
      this.activationsTried.set(node.machineId, node.resourceVersion);
      this.options.inventory
        .activate(node, 'first healthy nix-agent report')
        .then(async () => {
          this.log.info({ event: 'machine.activated', node_id: node.nodeId, machine_id: node.machineId });
          await this.options.db.transaction().execute(async (trx) => {
            const now = new Date();
            await fence(trx, epoch, now);
            await appendEvents(trx, [{ at: now, deployment: '', revision: 0n, nodeId: node.nodeId, kind: 'machine.activated', fromPhase: 'installed', toPhase: 'active', message: 'first healthy nix-agent report', replica: this.options.replica }]);
          });
        })
        .catch((err: unknown) => {
          // Another writer moved the machine first (ABORTED), or it is no longer installed: the
          // watch brings its new version and the next tick looks again.
          const code = err instanceof ClientError ? Status[err.code] : undefined;
          this.log.warn({ event: 'machine.activate_failed', node_id: node.nodeId, code, reason: err instanceof Error ? err.message : String(err) });
        });
    }
  }
}
