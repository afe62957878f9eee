// Integration: host rollouts end to end on PGlite and PostgreSQL — the deployer and the
// host-controller served over TLS from the cluster CA, machines installed through simulated
// installers, and scripted nix-agents dialling Connect over real mTLS with the certificates the
// deployer issued. Assertions come from the API and from the controller's event log.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { sql } from 'kysely';
import { ClientError, Status } from 'nice-grpc';
import { HostAgentServiceDefinition } from '../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import { DiffAction, type HostRollout } from '../../gen/ts/ultracloud/host/v1/host_deployment_service.js';
import { MachineState } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import {
  ActivationFailureReason,
  ActivationStrategy,
  HostDeployment,
  FailureDomainOrdering,
  HostDeploymentPauseCause as Cause,
  HostDeploymentPhase as Phase,
  NodeRolloutPhase as P,
} from '../../gen/ts/ultracloud/system/v1/system.js';
import { type DrainNodeRequest, SchedulerServiceDefinition, type UncordonNodeRequest } from '../../gen/ts/ultracloud/runtime/v1/scheduler_service.js';
import { UnauthenticatedError } from '../../lib/errors.js';
import { createServiceClient, openChannel } from '../../lib/grpc/client.js';
import { bindService, startGrpcServer } from '../../lib/grpc/server.js';
import { createLogger } from '../../lib/log.js';
import { desiredSystems } from '../../services/host-controller/domain/desired-system.js';
import type { NodeRollout } from '../../services/host-controller/domain/node-rollout.js';
import { ACTIVATION_MESSAGE } from '../../services/host-controller/domain/rollout-planner.js';
import { activationIntents, saveIntents } from '../../services/host-controller/store/intents.js';
import { listEvents, nodeRollouts, PHASE_EVENT_KINDS } from '../../services/host-controller/store/rollouts.js';
import { databaseTargets, type DatabaseTargetName, unavailableTargetTest } from '../helpers/databases.js';
import { eventually } from '../helpers/eventually.js';
import { FAST_FLAGS, type HostFleet, startHostFleet } from '../helpers/host-fleet.js';
import type { ScriptedAgent } from '../helpers/scripted-agent.js';

const STORE = '/nix/store';
const systemPath = (name: string) => `${STORE}/${'a'.repeat(31)}${name.length % 10}-nixos-system-${name}`;
const TARGET = systemPath('fleet-25.05');
const ROLLOUT_TIMEOUT_MS = 90_000;

function eachTarget(title: string, run: (t: ExecutionContext, target: DatabaseTargetName) => Promise<void>): void {
  for (const target of databaseTargets()) {
    if (!target.available) {
      unavailableTargetTest(`${title} [${target.name}]`, target);
      continue;
    }
    // One fleet at a time: each is a control plane with installed machines, heavy on a small machine.
    test.serial(`${title} [${target.name}]`, (t) => run(t, target.name));
  }
}

async function fleet(t: ExecutionContext, target: DatabaseTargetName, nodes = 6, flags: Record<string, string> = {}): Promise<HostFleet> {
  const f = await startHostFleet(target, { nodes, flags: { ...FAST_FLAGS, ...flags } });
  t.teardown(() => f.stop());
  return f;
}

function deployment(extra: Parameters<typeof HostDeployment.fromPartial>[0] = {}): HostDeployment {
  return HostDeployment.fromPartial({ name: 'fleet-os', selector: { allNodes: true }, target: { systemPath: TARGET }, maxUnavailable: { value: { $case: 'count', value: 1 } }, ...extra });
}

async function apply(f: HostFleet, d: HostDeployment): Promise<void> {
  await f.rollouts.applyHostDeployments({ hostDeployments: [d], dryRun: false, prune: false, reason: 'test' });
}

async function get(f: HostFleet, name = 'fleet-os'): Promise<HostRollout> {
  return (await f.rollouts.getHostDeployment({ name })).rollout as HostRollout;
}

async function waitForPhase(f: HostFleet, phase: Phase, name = 'fleet-os', timeoutMs = ROLLOUT_TIMEOUT_MS): Promise<HostRollout> {
  return eventually(
    async () => {
      const r = await get(f, name);
      return r.status?.phase === phase ? r : undefined;
    },
    timeoutMs,
    `${name} ${Phase[phase]}`,
  );
}

const DISRUPTING = new Set(['DRAINING', 'ACTIVATING', 'CONFIRMING', 'REBOOTING']);

/** Replays the event log's node phase changes: the most nodes disrupted at once, and the starts per node. */
async function replay(f: HostFleet, name = 'fleet-os') {
  const events = await listEvents(f.hostsDb, { deployment: name });
  const phase = new Map<string, string>();
  let most = 0;
  for (const e of events) {
    if (!PHASE_EVENT_KINDS.has(e.kind)) continue;
    phase.set(e.nodeId, e.toPhase);
    most = Math.max(most, [...phase.values()].filter((p) => DISRUPTING.has(p)).length);
  }
  const activations = new Map<string, number>();
  for (const e of events) if (e.kind === 'decision.activate') activations.set(e.nodeId, (activations.get(e.nodeId) ?? 0) + 1);
  return { events, most, activations };
}

eachTarget('agents authenticate with the node certificate the deployer issued; another node\'s name, no certificate or no assignment is refused', async (t, target) => {
  const f = await fleet(t, target, 2);
  const [cp1, cp2] = f.nodes as [HostFleet['nodes'][0], HostFleet['nodes'][0]];
  const agent = f.agent(cp1);
  await agent.waitFor((a) => a.connected, 30_000, 'connected');
  const listed = await eventually(async () => {
    const res = await f.rollouts.listHostAgents({ pageSize: 0, pageToken: '', nodeIds: [], staleOnly: false });
    return res.agents.find((a) => a.nodeId === cp1.nodeId && a.connected) ? res : undefined;
  });
  t.like(listed.agents.find((a) => a.nodeId === cp1.nodeId), { connected: true, stale: false, agentVersion: 'scripted 0.1.0', hostname: cp1.nodeId });
  t.deepEqual(listed.staleAfter, { seconds: 1n, nanos: 500_000_000 });

  // cp-2's certificate, claiming to be cp-1.
  const liar = f.agent(cp2, { claimNodeId: cp1.nodeId });
  await liar.waitFor((a) => a.streamEnds.length > 0, 30_000, 'refused');
  t.is(liar.streamEnds[0]?.code, Status.PERMISSION_DENIED);
  t.regex(liar.streamEnds[0]?.details ?? '', new RegExp(`agent:${cp2.nodeId} may not call .*/Connect for node ${cp1.nodeId}`));
  await liar.stop();

  // No client certificate at all.
  const channel = openChannel(f.address, { tls: { caFile: f.caFile } });
  t.teardown(() => channel.close());
  const anonymous = createServiceClient(HostAgentServiceDefinition, channel);
  const err = await t.throwsAsync(async () => {
    async function* hello() {
      yield { sequence: 1n, payload: { $case: 'hello' as const, value: { nodeId: cp1.nodeId, bootId: 'b', currentSystemPath: '', bootedSystemPath: '', profileSystemPath: '', profileGeneration: 0n, agentVersion: '', journal: undefined, hostname: '', systemState: '' } } };
    }
    for await (const _ of anonymous.connect(hello())) void _;
  });
  t.is((err as ClientError).code, Status.UNAUTHENTICATED);

  // A node deleted from the deployer keeps a valid certificate but has no assignment.
  await f.machines.delete({ machineId: cp2.machineId, reason: 'test', expectedResourceVersion: 0n });
  const released = f.agent(cp2);
  await released.waitFor((a) => a.streamEnds.some((e) => e.code === Status.FAILED_PRECONDITION), 30_000, 'refused for no assignment');
  t.regex(released.streamEnds.find((e) => e.code === Status.FAILED_PRECONDITION)?.details ?? '', new RegExp(`node ${cp2.nodeId} (has no|no longer has an) assignment in the deployer`));
});

eachTarget('the first healthy report of an installed node moves its machine to active', async (t, target) => {
  const f = await fleet(t, target, 1);
  const node = f.nodes[0] as HostFleet['nodes'][0];
  t.is((await f.machines.getMachine({ key: { $case: 'machineId', value: node.machineId } })).machine?.state, MachineState.MACHINE_STATE_INSTALLED);
  f.agent(node);
  const active = await eventually(async () => {
    const m = (await f.machines.getMachine({ key: { $case: 'machineId', value: node.machineId } })).machine;
    return m?.state === MachineState.MACHINE_STATE_ACTIVE ? m : undefined;
  }, 30_000, 'machine active');
  t.is(active.state, MachineState.MACHINE_STATE_ACTIVE);
  const events = await eventually(async () => {
    const e = await listEvents(f.hostsDb, { nodeId: node.nodeId });
    return e.some((x) => x.kind === 'machine.activated') ? e : undefined;
  });
  t.like(events.find((e) => e.kind === 'machine.activated'), { fromPhase: 'installed', toPhase: 'active', message: 'first healthy nix-agent report' });
  const audit = await f.machines.getMachine({ key: { $case: 'machineId', value: node.machineId } });
  t.true(audit.recentEvents.some((e) => e.reason === 'first healthy nix-agent report'), 'the deployer audited the transition with the reason');
});

eachTarget('a 6-node rollout with max_unavailable 1 never has more than one node in progress, and activates each node once', async (t, target) => {
  const t0 = Date.now();
  const f = await fleet(t, target, 6);
  const agents = f.nodes.map((n) => f.agent(n, { stepDelayMs: 40 }));
  await Promise.all(agents.map((a) => a.waitFor((x) => x.connected, 30_000, 'connected')));
  t.log(`fleet ready after ${Date.now() - t0} ms`);
  await apply(f, deployment());
  const done = await waitForPhase(f, Phase.HOST_DEPLOYMENT_PHASE_COMPLETED);
  t.log(`rollout done after ${Date.now() - t0} ms`);
  t.like(done.status, { selectedNodes: 6, succeededNodes: 6, inProgressNodes: 0, maxUnavailableNodes: 1, revision: 1n });
  t.deepEqual(
    done.status?.nodes.map((n) => n.nodeId),
    ['cp-1', 'cp-2', 'cp-3', 'worker-1', 'worker-2', 'worker-3'],
    'failure domains power-a, power-b, power-c, then power-d',
  );
  for (const n of done.status?.nodes ?? []) t.like(n, { phase: P.NODE_ROLLOUT_PHASE_SUCCEEDED, systemPath: TARGET });

  const { events, most, activations } = await replay(f);
  t.is(most, 1, 'never more than one node disrupted at a time');
  t.deepEqual([...activations.values()], [1, 1, 1, 1, 1, 1], 'each node handed its desired system once');
  const starts = events.filter((e) => PHASE_EVENT_KINDS.has(e.kind) && e.toPhase === 'ACTIVATING').map((e) => e.nodeId);
  // Failure domains in order (power-a, -b, -c, then the workers' power-d); within one domain the
  // order depends on which node is ready first.
  t.deepEqual(starts.slice(0, 3), ['cp-1', 'cp-2', 'cp-3'], 'in failure-domain order');
  t.deepEqual([...starts.slice(3)].sort(), ['worker-1', 'worker-2', 'worker-3'], 'then the workers');
  for (const a of agents) t.deepEqual(a.activations, ['fleet-os/1'], `${a.nodeId} activated once`);
  t.true(events.some((e) => e.kind === 'rollout.phase' && e.toPhase === 'COMPLETED'));

  // Nothing changes on re-apply; a new target is a new revision that runs again.
  const again = await f.rollouts.applyHostDeployments({ hostDeployments: [deployment()], dryRun: false, prune: false, reason: 'test' });
  t.like(again.diffs[0], { action: DiffAction.DIFF_ACTION_UNCHANGED, revision: 1n, startsRollout: false });
  const next = systemPath('fleet-25.11');
  await apply(f, deployment({ target: { systemPath: next } }));
  const second = await waitForPhase(f, Phase.HOST_DEPLOYMENT_PHASE_COMPLETED, 'fleet-os', ROLLOUT_TIMEOUT_MS);
  t.is(second.status?.revision, 2n);
  t.true((second.status?.nodes ?? []).every((n) => n.systemPath === next && n.phase === P.NODE_ROLLOUT_PHASE_SUCCEEDED));
  for (const a of agents) t.deepEqual(a.activations, ['fleet-os/1', 'fleet-os/2']);
  t.is((await replay(f)).most, 1);
});

eachTarget('a decision larger than the activation threshold is committed as an intent, sent, then written out: every node activated once, the event log complete', async (t, target) => {
  const f = await fleet(t, target, 6, { 'activation-batch': '2' });
  // Slow activations: all six are under way before the first finishes.
  const agents = f.nodes.map((n) => f.agent(n, { stepDelayMs: 1_000 }));
  await Promise.all(agents.map((a) => a.waitFor((x) => x.connected, 30_000, 'connected')));
  // No failure-domain ordering: one decision hands out all six (more than the threshold of two).
  await apply(f, deployment({ maxUnavailable: { value: { $case: 'percent', value: 100 } }, rolloutOrder: { byFailureDomain: FailureDomainOrdering.FAILURE_DOMAIN_ORDERING_NONE, failureDomains: [] } }));
  const done = await waitForPhase(f, Phase.HOST_DEPLOYMENT_PHASE_COMPLETED);
  t.like(done.status, { selectedNodes: 6, succeededNodes: 6, maxUnavailableNodes: 6 });
  const { events, most, activations } = await replay(f);
  t.is(most, 6, 'all six in progress together, as max_unavailable allows');
  t.deepEqual([...activations.values()], [1, 1, 1, 1, 1, 1], 'each node handed its desired system once');
  for (const a of agents) t.deepEqual(a.activations, ['fleet-os/1'], `${a.nodeId} activated once`);
  // Each node's decision records its move to ACTIVATING, in one event: no separate phase event.
  for (const e of events.filter((x) => x.kind === 'decision.activate')) {
    t.is(e.toPhase, 'ACTIVATING', `${e.nodeId} recorded ACTIVATING`);
    // From PENDING, or from no entry at all when the node joined in the tick that started it.
    t.true(e.fromPhase === 'PENDING' || e.fromPhase === '', `${e.nodeId} came from ${e.fromPhase}`);
    t.false(events.some((x) => x.kind === 'node.phase' && x.nodeId === e.nodeId && x.toPhase === 'ACTIVATING'), `${e.nodeId}: one event for the move`);
  }
  t.deepEqual(events.filter((e) => e.kind === 'decision.activate').map((e) => e.nodeId).sort(), ['cp-1', 'cp-2', 'cp-3', 'worker-1', 'worker-2', 'worker-3']);
  // Written out together, in a transaction of their own after the decision's: six decisions and
  // six desired systems, and no intent left.
  const written = await sql<{ tx: string; decisions: string; desired: string; planned: string }>`
    SELECT e.xmin::text AS tx, count(*)::text AS decisions,
           (SELECT count(*) FROM ${sql.table('desired_systems')} d WHERE d.xmin = e.xmin)::text AS desired,
           (SELECT count(*) FROM ${sql.table('host_deployments')} h WHERE h.xmin = e.xmin)::text AS planned
    FROM ${sql.table('rollout_events')} e WHERE e.kind = 'decision.activate' GROUP BY e.xmin`.execute(f.hostsDb);
  t.deepEqual(written.rows.map((r) => `${r.decisions}/${r.desired}/${r.planned}`), ['6/6/0']);
  t.is((await f.hostsDb.selectFrom('activation_intents').select('id').execute()).length, 0);
});

eachTarget('intents a leader committed and never wrote out are written out by the next tick before it plans: those nodes get their desired system, once', async (t, target) => {
  const f = await fleet(t, target, 6);
  const agents = new Map(f.nodes.map((n) => [n.nodeId, f.agent(n, { stepDelayMs: 20 })]));
  await Promise.all([...agents.values()].map((a) => a.waitFor((x) => x.connected, 30_000, 'connected')));
  const spec = deployment({ paused: true });
  await apply(f, spec);
  const entries = await eventually(async () => {
    const m = (await nodeRollouts(f.hostsDb, 'fleet-os')).get('fleet-os');
    return m && m.size === 6 && [...m.values()].every((e) => e.phase === P.NODE_ROLLOUT_PHASE_PENDING) ? m : undefined;
  });
  // What a leader that died right after committing a decision leaves behind: three nodes started,
  // recorded as intents only.
  const now = new Date();
  const make = desiredSystems(spec, now);
  const started = ['cp-1', 'cp-2', 'worker-1'].map((id) => {
    const e = entries.get(id) as NodeRollout;
    const row: NodeRollout = { ...e, phase: P.NODE_ROLLOUT_PHASE_ACTIVATING, systemPath: TARGET, message: ACTIVATION_MESSAGE, attempts: e.attempts + 1, startedAt: now, phaseChangedAt: now, finishedAt: undefined };
    return { deployment: 'fleet-os', row, desired: make(e.revision, id, { systemPath: TARGET, flakeRef: '', flakeAttr: '' }), fromPhase: 'PENDING' };
  });
  const { intents, rest } = activationIntents(started, now, 'hc-gone');
  t.deepEqual(rest, []);
  await saveIntents(f.hostsDb, intents);

  // The running leader's next tick writes them out and delivers them; nothing else starts (paused).
  for (const id of ['cp-1', 'cp-2', 'worker-1']) await (agents.get(id) as ScriptedAgent).waitFor((a) => a.activations.length === 1, 30_000, `${id} handed its desired system`);
  t.is((await f.hostsDb.selectFrom('activation_intents').select('id').execute()).length, 0);
  for (const id of ['cp-3', 'worker-2', 'worker-3']) t.deepEqual((agents.get(id) as ScriptedAgent).activations, [], `${id} not started: paused`);

  // Resumed: the rest roll out one at a time, and nobody is handed a desired system twice.
  await apply(f, deployment());
  await waitForPhase(f, Phase.HOST_DEPLOYMENT_PHASE_COMPLETED);
  const { events, activations } = await replay(f);
  t.deepEqual([...activations.values()], [1, 1, 1, 1, 1, 1], 'each node decided once');
  for (const [id, a] of agents) t.deepEqual(a.activations, ['fleet-os/1'], `${id} activated once`);
  t.deepEqual(
    events.filter((e) => e.kind === 'decision.activate' && e.replica === 'hc-gone').map((e) => e.nodeId),
    ['cp-1', 'cp-2', 'worker-1'],
    'the intents\' events carry the replica that decided them',
  );
});

eachTarget('failures beyond the failure budget pause the rollout; resuming forgives them and it goes on', async (t, target) => {
  const f = await fleet(t, target, 4);
  const failing = new Set(['cp-1', 'cp-2']);
  const agents = f.nodes.map((n) =>
    f.agent(n, { stepDelayMs: 20, script: () => (failing.has(n.nodeId) ? { kind: 'roll-back', reason: ActivationFailureReason.ACTIVATION_FAILURE_REASON_HEALTH_CHECK_FAILED, message: 'curl: 503' } : { kind: 'succeed' }) }),
  );
  await Promise.all(agents.map((a) => a.waitFor((x) => x.connected, 30_000, 'connected')));
  await apply(f, deployment({ failureBudget: 1 }));
  const paused = await waitForPhase(f, Phase.HOST_DEPLOYMENT_PHASE_PAUSED);
  t.is(paused.status?.pauseCause, Cause.HOST_DEPLOYMENT_PAUSE_CAUSE_FAILURE_BUDGET);
  t.regex(paused.status?.message ?? '', /2 failed nodes exceed the failure budget of 1/);
  t.like(paused.status, { rolledBackNodes: 2, succeededNodes: 0, inProgressNodes: 0 });
  const cp1 = paused.status?.nodes.find((n) => n.nodeId === 'cp-1');
  t.like(cp1, { phase: P.NODE_ROLLOUT_PHASE_ROLLED_BACK, failureReason: ActivationFailureReason.ACTIVATION_FAILURE_REASON_HEALTH_CHECK_FAILED });
  t.regex(cp1?.message ?? '', /curl: 503/);
  // Paused for good: nothing else starts.
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  const still = await get(f);
  t.is(still.status?.phase, Phase.HOST_DEPLOYMENT_PHASE_PAUSED);
  t.deepEqual(still.status?.nodes.filter((n) => n.phase === P.NODE_ROLLOUT_PHASE_PENDING).map((n) => n.nodeId), ['cp-3', 'worker-1']);
  const { events } = await replay(f);
  t.true(events.some((e) => e.kind === 'rollout.paused' && /exceed the failure budget of 1/.test(e.message)));

  // A rolled-back node is not handed the same system again when its agent reconnects.
  const first = agents[0] as ScriptedAgent;
  const delivered = first.deliveries.length;
  first.disconnect();
  await first.waitFor((a) => a.streams >= 2 && a.connected, 30_000, 'reconnected');
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.is(first.deliveries.length, delivered, 'no redelivery of a rolled-back activation');

  await f.rollouts.resumeHostDeployment({ name: 'fleet-os', reason: 'health endpoint fixed', expectedResourceVersion: 0n });
  const finished = await waitForPhase(f, Phase.HOST_DEPLOYMENT_PHASE_FAILED);
  t.like(finished.status, { succeededNodes: 2, rolledBackNodes: 2 });
  t.is((await replay(f)).most, 1);
});

eachTarget('an agent that loses its stream mid-activation reconnects, resends what was not acknowledged, and the rollout finishes', async (t, target) => {
  const f = await fleet(t, target, 2);
  const [a1, a2] = f.nodes.map((n) => f.agent(n, { stepDelayMs: 300 })) as [ScriptedAgent, ScriptedAgent];
  await Promise.all([a1, a2].map((a) => a.waitFor((x) => x.connected, 30_000, 'connected')));
  await apply(f, deployment());
  await a1.waitFor((a) => a.activations.length === 1, 30_000, 'activation started');
  a1.disconnect();
  const done = await waitForPhase(f, Phase.HOST_DEPLOYMENT_PHASE_COMPLETED);
  t.is(done.status?.succeededNodes, 2);
  t.true(a1.streams >= 2, 'cp-1 reconnected');
  t.deepEqual(a1.activations, ['fleet-os/1'], 'the desired system sent again on the new stream was not activated twice');
  t.true(a1.deliveries.length >= 2, 'the controller sent the node\'s current desired system on the new stream');
  t.is((await replay(f)).activations.get('cp-1'), 1);

  // A silent agent goes stale.
  await a2.stop();
  const stale = await eventually(async () => {
    const res = await f.rollouts.listHostAgents({ pageSize: 0, pageToken: '', nodeIds: [], staleOnly: true });
    return res.agents.length === 1 ? res : undefined;
  }, 15_000, 'stale agent listed');
  t.like(stale.agents[0], { nodeId: a2.nodeId, connected: false, stale: true, deployment: 'fleet-os', revision: 1n });
});

eachTarget('drain without a fleet-scheduler: the rollout waits and says why; boot strategy reboots within max_unavailable', async (t, target) => {
  const f = await fleet(t, target, 3);
  const agents = f.nodes.map((n) => f.agent(n, { stepDelayMs: 30 }));
  await Promise.all(agents.map((a) => a.waitFor((x) => x.connected, 30_000, 'connected')));
  await apply(f, deployment({ name: 'drained-os', drain: true }));
  const waiting = await eventually(async () => {
    const r = await get(f, 'drained-os');
    return /drain requested but no fleet-scheduler configured/.test(r.status?.message ?? '') ? r : undefined;
  }, 30_000, 'drain message');
  t.is(waiting.status?.phase, Phase.HOST_DEPLOYMENT_PHASE_PENDING);
  t.true((waiting.status?.nodes ?? []).every((n) => n.phase === P.NODE_ROLLOUT_PHASE_PENDING));
  t.regex(waiting.status?.nodes[0]?.message ?? '', /drain requested but no fleet-scheduler configured; the node waits/);
  t.true(agents.every((a) => a.deliveries.length === 0), 'nothing was sent to any node');
  await f.rollouts.deleteHostDeployment({ name: 'drained-os', reason: 'test', expectedResourceVersion: 0n });

  await apply(f, deployment({ name: 'kernel-os', activationStrategy: ActivationStrategy.ACTIVATION_STRATEGY_BOOT }));
  const done = await waitForPhase(f, Phase.HOST_DEPLOYMENT_PHASE_COMPLETED, 'kernel-os');
  t.is(done.status?.succeededNodes, 3);
  for (const a of agents) t.is(a.grants.length, 1, `${a.nodeId} rebooted once, when granted`);
  const { events } = await replay(f, 'kernel-os');
  const phase = new Map<string, string>();
  let rebooting = 0;
  for (const e of events) {
    if (!PHASE_EVENT_KINDS.has(e.kind)) continue;
    phase.set(e.nodeId, e.toPhase);
    rebooting = Math.max(rebooting, [...phase.values()].filter((p) => p === 'REBOOTING').length);
  }
  t.is(rebooting, 1, 'one reboot slot at a time');
  t.is(events.filter((e) => e.kind === 'decision.reboot_grant').length, 3);
});

/** A fleet-scheduler reduced to DrainNode and UncordonNode, over real gRPC with a bearer token. */
async function scriptedScheduler(t: ExecutionContext, drainedAfter: (nodeId: string) => number) {
  const dir = mkdtempSync(join(tmpdir(), 'ultracloud-scheduler-'));
  const token = 'ucop_scripted-scheduler-token';
  const tokenFile = join(dir, 'scheduler.token');
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  const drains: DrainNodeRequest[] = [];
  const uncordons: UncordonNodeRequest[] = [];
  const unimplemented = async () => {
    throw new Error('not part of this scheduler');
  };
  const server = await startGrpcServer({
    logger: createLogger({ level: 'silent' }),
    listen: { host: '127.0.0.1', port: 0 },
    services: [
      bindService(SchedulerServiceDefinition, {
        applyServiceSpecs: unimplemented,
        listServiceSpecs: unimplemented,
        getServiceSpec: unimplemented,
        deleteServiceSpec: unimplemented,
        listInstances: unimplemented,
        listSchedulerNodes: unimplemented,
        cordonNode: unimplemented,
        async drainNode(req) {
          drains.push(req);
          const calls = drains.filter((d) => d.nodeId === req.nodeId).length;
          const drained = calls >= drainedAfter(req.nodeId);
          return { drained, remainingInstances: drained ? 0 : 1, unplacedReplacements: 0, node: undefined };
        },
        async uncordonNode(req) {
          uncordons.push(req);
          return { node: undefined };
        },
      }),
    ],
    policy: { '/ultracloud.runtime.v1.SchedulerService/DrainNode': { operator: 'operator' }, '/ultracloud.runtime.v1.SchedulerService/UncordonNode': { operator: 'operator' } },
    authenticators: [
      {
        async authenticate({ bearer }) {
          if (bearer !== token) throw new UnauthenticatedError('unknown token');
          return { kind: 'operator', role: 'operator', subject: 'host-controller' };
        },
      },
    ],
  });
  t.teardown(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { address: server.address, tokenFile, drains, uncordons };
}

eachTarget('with a fleet-scheduler, a node is drained before it is activated and uncordoned once it succeeded', async (t, target) => {
  // cp-1 drains at the first call, cp-2 only when asked again.
  const scheduler = await scriptedScheduler(t, (nodeId) => (nodeId === 'cp-1' ? 1 : 2));
  const f = await fleet(t, target, 2, { 'fleet-scheduler': scheduler.address, 'fleet-scheduler-token-file': scheduler.tokenFile });
  const agents = f.nodes.map((n) => f.agent(n, { stepDelayMs: 20 }));
  await Promise.all(agents.map((a) => a.waitFor((x) => x.connected, 30_000, 'connected')));
  await apply(f, deployment({ name: 'drained-os', drain: true }));
  const done = await waitForPhase(f, Phase.HOST_DEPLOYMENT_PHASE_COMPLETED, 'drained-os');
  t.is(done.status?.succeededNodes, 2);
  t.true(scheduler.drains.every((d) => d.owner === 'host-controller' && /host rollout drained-os revision 1/.test(d.reason)));
  t.is(scheduler.drains.filter((d) => d.nodeId === 'cp-2').length, 2, 'cp-2 was asked until it had drained');
  const { events } = await eventually(async () => {
    const r = await replay(f, 'drained-os');
    return r.events.filter((e) => e.kind === 'decision.uncordon').length === 2 ? r : undefined;
  }, 30_000, 'both uncordoned');
  for (const node of ['cp-1', 'cp-2']) {
    const order = events.filter((e) => e.nodeId === node && PHASE_EVENT_KINDS.has(e.kind)).map((e) => e.toPhase);
    t.deepEqual(order.filter((p) => p !== 'PENDING'), ['DRAINING', 'ACTIVATING', 'CONFIRMING', 'SUCCEEDED'], `${node}: drained, then activated`);
  }
  t.deepEqual(scheduler.uncordons.map((u) => [u.nodeId, u.owner]).sort(), [['cp-1', 'host-controller'], ['cp-2', 'host-controller']]);
  t.is((await replay(f, 'drained-os')).most, 1);
});
