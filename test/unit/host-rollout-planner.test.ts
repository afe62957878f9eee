// The host rollout planner and its parts, as table tests: max_unavailable rounding, selection,
// failure-domain order, and what the planner decides for a rollout in a given state.
import test from 'ava';
import { ActivationPhase, type ActivationReport } from '../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import {
  ActivationFailureReason as Reason,
  ActivationStrategy,
  FailureDomainOrdering as Ordering,
  HostDeployment,
  HostDeploymentPhase as Phase,
  NodeRolloutPhase as P,
} from '../../gen/ts/ultracloud/system/v1/system.js';
import { resolveMaxUnavailable } from '../../services/host-controller/domain/deployment-spec.js';
import { applyActivationReport, applyRebootRequest, newNodeRollout, type NodeRollout, phaseName } from '../../services/host-controller/domain/node-rollout.js';
import { type AgentLiveness, DRAIN_UNAVAILABLE, type DeploymentState, nodeOwners, type PlanInput, planRollout } from '../../services/host-controller/domain/rollout-planner.js';
import { effectivePhase, rolloutStatus } from '../../services/host-controller/domain/rollout-status.js';
import { type NodeFacts, rolloutSequence, selects } from '../../services/host-controller/domain/selection.js';

const NOW = new Date('2025-03-01T12:00:00Z');
const EARLIER = new Date('2025-03-01T11:00:00Z');
const PATH = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-node-24.11';
const OLD_PATH = '/nix/store/zyxwvsrqpnmlkjihgfdcba9876543210-nixos-system-node-24.05';

function node(nodeId: string, failureDomain = 'rack-a', extra: Partial<NodeFacts> = {}): NodeFacts {
  return { nodeId, hostname: nodeId, machineId: `m-${nodeId}`, machineState: 'active', resourceVersion: 1n, nodeClass: 'worker', pool: 'workers', labels: {}, failureDomain, ...extra };
}

function spec(extra: Parameters<typeof HostDeployment.fromPartial>[0] = {}): HostDeployment {
  return HostDeployment.fromPartial({
    name: 'workers-os',
    selector: { pools: ['workers'] },
    target: { systemPath: PATH },
    maxUnavailable: { value: { $case: 'count', value: 1 } },
    ...extra,
  });
}

function deployment(s: HostDeployment, extra: Partial<DeploymentState> = {}): DeploymentState {
  return {
    spec: s,
    revision: 1n,
    createdAt: EARLIER,
    operatorPaused: false,
    budgetPaused: false,
    abortedRevision: 0n,
    rolloutPhase: Phase.HOST_DEPLOYMENT_PHASE_PENDING,
    statusMessage: '',
    selectedNodes: 0,
    maxUnavailableNodes: 0,
    startedAt: undefined,
    finishedAt: undefined,
    ...extra,
  };
}

function row(n: NodeFacts, phase: P, extra: Partial<NodeRollout> = {}): NodeRollout {
  const started = phase !== P.NODE_ROLLOUT_PHASE_PENDING && phase !== P.NODE_ROLLOUT_PHASE_SKIPPED;
  return { ...newNodeRollout(n, 1n, EARLIER), phase, systemPath: PATH, ...(started ? { startedAt: EARLIER, attempts: 1 } : {}), ...extra };
}

const connected: AgentLiveness = { connected: true, currentSystemPath: OLD_PATH };

function plan(s: HostDeployment, nodes: NodeFacts[], rows: NodeRollout[] = [], extra: Partial<PlanInput> & { state?: Partial<DeploymentState> } = {}) {
  const dep = deployment(s, extra.state);
  return planRollout({
    deployment: dep,
    rows: new Map(rows.map((r) => [r.nodeId, r])),
    nodes,
    agents: new Map(nodes.map((n) => [n.nodeId, connected])),
    owners: nodeOwners([dep], nodes),
    drain: { configured: false, drained: new Set() },
    now: NOW,
    rebootGrantMs: 120_000,
    ...extra,
  });
}

/** Phase of each node after the plan, `node:PHASE`, in node order. */
function phases(p: ReturnType<typeof planRollout>, rows: NodeRollout[] = []): string[] {
  const after = new Map(rows.map((r) => [r.nodeId, r]));
  for (const c of p.changes) after.set(c.after.nodeId, c.after);
  return [...after.values()].sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1)).map((r) => `${r.nodeId}:${phaseName(r.phase)}`);
}

const six = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6'].map((id) => node(id));

test('max_unavailable resolves counts and percentages as Kubernetes does (percent rounds down, at least one)', (t) => {
  const cases: [Parameters<typeof resolveMaxUnavailable>[0], number, number][] = [
    [undefined, 6, 1],
    [{ value: undefined }, 6, 1],
    [{ value: { $case: 'count', value: 2 } }, 6, 2],
    [{ value: { $case: 'count', value: 10 } }, 3, 10],
    [{ value: { $case: 'percent', value: 25 } }, 10, 2],
    [{ value: { $case: 'percent', value: 50 } }, 6, 3],
    [{ value: { $case: 'percent', value: 10 } }, 3, 1],
    [{ value: { $case: 'percent', value: 100 } }, 7, 7],
    [{ value: { $case: 'percent', value: 33 } }, 0, 1],
  ];
  for (const [m, selected, expected] of cases) t.is(resolveMaxUnavailable(m, selected), expected, `${JSON.stringify(m)} of ${selected}`);
});

test('a node is selected when it matches every non-empty criterion', (t) => {
  const n = node('worker-3', 'rack-b', { nodeClass: 'gpu', pool: 'workers', labels: { zone: 'a', tier: 'gold' } });
  const cases: [Partial<HostDeployment['selector']>, boolean][] = [
    [{}, false],
    [{ allNodes: true }, true],
    [{ nodeIds: ['worker-3'] }, true],
    [{ nodeIds: ['worker-4'] }, false],
    [{ nodeClasses: ['gpu', 'cpu'] }, true],
    [{ nodeClasses: ['gpu'], pools: ['control'] }, false],
    [{ matchLabels: { zone: 'a' } }, true],
    [{ matchLabels: { zone: 'a', tier: 'silver' } }, false],
    [{ allNodes: true, pools: ['control'] }, false],
  ];
  for (const [selector, expected] of cases) {
    t.is(selects({ nodeIds: [], nodeClasses: [], pools: [], matchLabels: {}, allNodes: false, ...selector }, n), expected, JSON.stringify(selector));
  }
});

test('rollout order: sequential by failure domain, interleaved round-robin, or node id only', (t) => {
  const nodes = [node('a2', 'rack-a'), node('b1', 'rack-b'), node('x1', ''), node('a1', 'rack-a'), node('c1', 'rack-c'), node('b2', 'rack-b')];
  const order = (byFailureDomain: Ordering, failureDomains: string[] = []) => rolloutSequence(nodes, { byFailureDomain, failureDomains }).map((n) => n.nodeId);
  t.deepEqual(order(Ordering.FAILURE_DOMAIN_ORDERING_UNSPECIFIED), ['a1', 'a2', 'b1', 'b2', 'c1', 'x1'], 'default: sequential, lexical, no domain last');
  t.deepEqual(order(Ordering.FAILURE_DOMAIN_ORDERING_SEQUENTIAL, ['rack-c', 'rack-b']), ['c1', 'b1', 'b2', 'a1', 'a2', 'x1'], 'listed domains first');
  t.deepEqual(order(Ordering.FAILURE_DOMAIN_ORDERING_INTERLEAVED), ['a1', 'b1', 'c1', 'x1', 'a2', 'b2']);
  t.deepEqual(order(Ordering.FAILURE_DOMAIN_ORDERING_NONE), ['a1', 'a2', 'b1', 'b2', 'c1', 'x1']);
});

test('max_unavailable = 1: one node starts, the others wait for a slot; none while one is in progress', (t) => {
  const first = plan(spec(), six);
  t.deepEqual(phases(first), ['n1:ACTIVATING', 'n2:PENDING', 'n3:PENDING', 'n4:PENDING', 'n5:PENDING', 'n6:PENDING']);
  t.is(first.activations.length, 1);
  t.like(first.activations[0], { nodeId: 'n1', deployment: 'workers-os', revision: 1n, systemPath: PATH, activationStrategy: ActivationStrategy.ACTIVATION_STRATEGY_SWITCH });
  t.is(first.activations[0]?.rollbackPolicy?.activationTimeout?.seconds, 240n, 'defaults are filled in');
  t.regex(first.changes.find((c) => c.after.nodeId === 'n2')?.after.message ?? '', /waiting for a slot: 1 of 1/);
  t.is(first.deployment.rolloutPhase, Phase.HOST_DEPLOYMENT_PHASE_PROGRESSING);
  t.is(first.deployment.maxUnavailableNodes, 1);

  const busy = [row(six[0] as NodeFacts, P.NODE_ROLLOUT_PHASE_CONFIRMING), ...six.slice(1).map((n) => row(n, P.NODE_ROLLOUT_PHASE_PENDING))];
  const second = plan(spec(), six, busy);
  t.deepEqual(second.activations, [], 'no start while n1 is confirming');

  const done = [row(six[0] as NodeFacts, P.NODE_ROLLOUT_PHASE_SUCCEEDED), ...six.slice(1).map((n) => row(n, P.NODE_ROLLOUT_PHASE_PENDING))];
  t.deepEqual(plan(spec(), six, done).activations.map((a) => a.nodeId), ['n2'], 'the next one once n1 succeeded');
});

test('percent max_unavailable starts that share of the selected nodes at once', (t) => {
  const p = plan(spec({ maxUnavailable: { value: { $case: 'percent', value: 50 } } }), six);
  t.deepEqual(p.activations.map((a) => a.nodeId), ['n1', 'n2', 'n3']);
  t.is(p.deployment.maxUnavailableNodes, 3);
});

test('sequential failure domains: the next domain starts only when the first has finished', (t) => {
  const nodes = [node('a1', 'rack-a'), node('a2', 'rack-a'), node('b1', 'rack-b'), node('b2', 'rack-b')];
  const s = spec({ maxUnavailable: { value: { $case: 'count', value: 4 } } });
  const first = plan(s, nodes);
  t.deepEqual(first.activations.map((a) => a.nodeId), ['a1', 'a2']);
  t.regex(first.changes.find((c) => c.after.nodeId === 'b1')?.after.message ?? '', /waiting for failure domain rack-a to finish/);
  const rows = [row(nodes[0] as NodeFacts, P.NODE_ROLLOUT_PHASE_SUCCEEDED), row(nodes[1] as NodeFacts, P.NODE_ROLLOUT_PHASE_ROLLED_BACK, { budgetCounted: false }), ...nodes.slice(2).map((n) => row(n, P.NODE_ROLLOUT_PHASE_PENDING))];
  t.deepEqual(plan(s, nodes, rows, { state: {} }).activations.map((a) => a.nodeId), ['b1', 'b2'], 'rolled back counts as finished');
});

test('interleaved failure domains: concurrent nodes come from different domains', (t) => {
  const nodes = [node('a1', 'rack-a'), node('a2', 'rack-a'), node('b1', 'rack-b'), node('b2', 'rack-b')];
  const s = spec({ maxUnavailable: { value: { $case: 'count', value: 2 } }, rolloutOrder: { byFailureDomain: Ordering.FAILURE_DOMAIN_ORDERING_INTERLEAVED, failureDomains: [] } });
  t.deepEqual(plan(s, nodes).activations.map((a) => a.nodeId), ['a1', 'b1']);
  const rows = [row(nodes[0] as NodeFacts, P.NODE_ROLLOUT_PHASE_SUCCEEDED), row(nodes[1] as NodeFacts, P.NODE_ROLLOUT_PHASE_PENDING), row(nodes[2] as NodeFacts, P.NODE_ROLLOUT_PHASE_ACTIVATING), row(nodes[3] as NodeFacts, P.NODE_ROLLOUT_PHASE_PENDING)];
  t.deepEqual(plan(s, nodes, rows).activations.map((a) => a.nodeId), ['a2'], 'rack-a, which has nothing in progress, before a second rack-b node');
});

test('the failure budget: a failure beyond it pauses the rollout; within it the rollout goes on', (t) => {
  const rows = [row(six[0] as NodeFacts, P.NODE_ROLLOUT_PHASE_ROLLED_BACK, { budgetCounted: true, failureReason: Reason.ACTIVATION_FAILURE_REASON_SWITCH_FAILED }), ...six.slice(1).map((n) => row(n, P.NODE_ROLLOUT_PHASE_PENDING))];
  const strict = plan(spec(), six, rows);
  t.true(strict.deployment.budgetPaused);
  t.deepEqual(strict.activations, []);
  t.deepEqual(strict.decisions, ['paused: 1 failed node exceed the failure budget of 0']);
  t.regex(strict.deployment.statusMessage, /1 failed node exceed the failure budget of 0/);
  const view = { ...strict.deployment, operatorPauseReason: '', abortReason: '', statusUpdatedAt: NOW };
  t.like(effectivePhase(view), { phase: Phase.HOST_DEPLOYMENT_PHASE_PAUSED });

  const tolerant = plan(spec({ failureBudget: 1 }), six, rows);
  t.false(tolerant.deployment.budgetPaused);
  t.deepEqual(tolerant.activations.map((a) => a.nodeId), ['n2']);

  const forgiven = [{ ...(rows[0] as NodeRollout), budgetCounted: false }, ...rows.slice(1)];
  t.deepEqual(plan(spec(), six, forgiven).activations.map((a) => a.nodeId), ['n2'], 'a resumed rollout counts from zero');
});

test('a node already running the target system succeeds without taking a slot; a disconnected agent waits', (t) => {
  const agents = new Map<string, AgentLiveness>([
    ['n1', { connected: true, currentSystemPath: PATH }],
    ['n2', { connected: false, currentSystemPath: OLD_PATH }],
    ['n3', connected],
  ]);
  const p = plan(spec(), six.slice(0, 3), [], { agents });
  t.deepEqual(phases(p), ['n1:SUCCEEDED', 'n2:PENDING', 'n3:ACTIVATING']);
  t.regex(p.changes.find((c) => c.after.nodeId === 'n2')?.after.message ?? '', /waiting for its nix-agent to connect/);
});

test('nodes that cannot be rolled out are skipped with the reason, and join when they can', (t) => {
  const nodes = [node('n1', 'rack-a', { machineState: 'installing' }), node('n2'), node('n3')];
  const older = HostDeployment.fromPartial({ ...spec({ name: 'gpu-os', selector: { nodeIds: ['n3'] } }) });
  const s = spec({ target: { nodeSystemPaths: { n1: PATH, n3: PATH } } });
  const dep = deployment(s, { createdAt: NOW });
  const owners = nodeOwners([dep, { spec: older, createdAt: EARLIER }], nodes);
  const p = plan(s, nodes, [], { owners, state: { createdAt: NOW } });
  const messages = Object.fromEntries(p.changes.map((c) => [c.after.nodeId, `${phaseName(c.after.phase)}: ${c.after.message}`]));
  t.regex(messages.n1 ?? '', /^SKIPPED: machine is installing/);
  t.regex(messages.n2 ?? '', /^SKIPPED: no target for this node/);
  t.regex(messages.n3 ?? '', /^SKIPPED: also selected by deployment gpu-os/);
  t.is(p.deployment.rolloutPhase, Phase.HOST_DEPLOYMENT_PHASE_PENDING);
  t.regex(p.deployment.statusMessage, /no selected node can be rolled out yet \(3 skipped\)/);

  const skipped = p.changes.map((c) => c.after);
  const later = plan(s, [node('n1'), nodes[1] as NodeFacts, nodes[2] as NodeFacts], skipped, { owners, state: { createdAt: NOW } });
  t.deepEqual(later.activations.map((a) => a.nodeId), ['n1'], 'n1 joins once installed');
});

test('drain without a fleet-scheduler: the node waits, visibly; with one it is drained before activation', (t) => {
  const s = spec({ drain: true });
  const none = plan(s, six.slice(0, 2));
  t.deepEqual(phases(none), ['n1:PENDING', 'n2:PENDING']);
  t.deepEqual(none.activations, []);
  t.regex(none.changes[0]?.after.message ?? '', new RegExp(DRAIN_UNAVAILABLE));
  t.regex(none.deployment.statusMessage, /drain requested but no fleet-scheduler configured: 2 nodes wait/);

  const configured = plan(s, six.slice(0, 2), [], { drain: { configured: true, drained: new Set() } });
  t.deepEqual(phases(configured), ['n1:DRAINING', 'n2:PENDING']);
  t.deepEqual(configured.drains, ['n1']);
  t.deepEqual(configured.activations, [], 'nothing is activated before the drain finished');
  const draining = configured.changes.map((c) => c.after);
  t.true(draining.find((r) => r.nodeId === 'n1')?.cordoned);

  const drained = plan(s, six.slice(0, 2), draining, { drain: { configured: true, drained: new Set(['n1']) } });
  t.deepEqual(drained.activations.map((a) => a.nodeId), ['n1']);
  const confirmed = drained.changes.map((c) => c.after).map((r) => (r.nodeId === 'n1' ? { ...r, phase: P.NODE_ROLLOUT_PHASE_SUCCEEDED } : r));
  t.deepEqual(plan(s, six.slice(0, 2), confirmed, { drain: { configured: true, drained: new Set() } }).uncordons, ['n1'], 'uncordoned once confirmed');

  const late = draining.map((r) => (r.nodeId === 'n1' ? { ...r, startedAt: new Date(NOW.getTime() - 301_000) } : r));
  const timedOut = plan(s, six.slice(0, 2), late, { drain: { configured: true, drained: new Set() } });
  const n1 = timedOut.changes.find((c) => c.after.nodeId === 'n1')?.after;
  t.is(n1?.phase, P.NODE_ROLLOUT_PHASE_FAILED);
  t.is(n1?.failureReason, Reason.ACTIVATION_FAILURE_REASON_DRAIN_TIMEOUT);
  t.deepEqual(timedOut.uncordons, ['n1'], 'a node that never drained is uncordoned and left untouched');
});

test('boot strategy: staged nodes do not hold a slot; reboot grants come from max_unavailable', (t) => {
  const s = spec({ activationStrategy: ActivationStrategy.ACTIVATION_STRATEGY_BOOT });
  const staged = [
    row(six[0] as NodeFacts, P.NODE_ROLLOUT_PHASE_AWAITING_REBOOT, { rebootRequested: true }),
    row(six[1] as NodeFacts, P.NODE_ROLLOUT_PHASE_AWAITING_REBOOT, { rebootRequested: true }),
    row(six[2] as NodeFacts, P.NODE_ROLLOUT_PHASE_PENDING),
  ];
  const p = plan(s, six.slice(0, 3), staged);
  t.deepEqual(p.rebootGrants.map((g) => g.nodeId), ['n1'], 'one reboot at a time');
  t.is(p.rebootGrants[0]?.deadline.getTime(), NOW.getTime() + 120_000);
  t.deepEqual(phases(p, staged), ['n1:REBOOTING', 'n2:AWAITING_REBOOT', 'n3:PENDING'], 'the slot went to the reboot');

  const waiting = [{ ...(staged[0] as NodeRollout), rebootRequested: false }, staged[1] as NodeRollout, staged[2] as NodeRollout].map((r) => ({ ...r, rebootRequested: false }));
  t.deepEqual(plan(s, six.slice(0, 3), waiting).activations.map((a) => a.nodeId), ['n3'], 'staged nodes leave the slot free for the next activation');

  const again = [row(six[0] as NodeFacts, P.NODE_ROLLOUT_PHASE_REBOOTING, { rebootRequested: true, rebootGrantedAt: EARLIER })];
  const regrant = plan(s, six.slice(0, 1), again, { now: new Date(EARLIER.getTime() + 60_000) });
  t.deepEqual(regrant.rebootGrants.map((g) => g.nodeId), ['n1'], 'a node that asks again after its deadline gets a new one');

  const lost = plan(s, six.slice(0, 1), [{ ...(again[0] as NodeRollout), rebootRequested: false }]);
  const n1 = lost.changes[0]?.after;
  t.is(n1?.phase, P.NODE_ROLLOUT_PHASE_FAILED, 'not back within the reboot timeout');
  t.is(n1?.failureReason, Reason.ACTIVATION_FAILURE_REASON_REBOOT_FAILED);
});

test('paused, aborted: no node starts; nodes in progress keep going', (t) => {
  const rows = [row(six[0] as NodeFacts, P.NODE_ROLLOUT_PHASE_ACTIVATING), ...six.slice(1, 3).map((n) => row(n, P.NODE_ROLLOUT_PHASE_PENDING))];
  const states: [string, HostDeployment, Partial<DeploymentState>, RegExp][] = [
    ['spec', spec({ paused: true, maxUnavailable: { value: { $case: 'count', value: 3 } } }), {}, /paused in its spec/],
    ['operator', spec({ maxUnavailable: { value: { $case: 'count', value: 3 } } }), { operatorPaused: true }, /paused by an operator/],
    ['aborted', spec({ maxUnavailable: { value: { $case: 'count', value: 3 } } }), { abortedRevision: 1n }, /aborted/],
  ];
  for (const [what, s, state, message] of states) {
    const p = plan(s, six.slice(0, 3), rows, { state });
    t.deepEqual(p.activations, [], what);
    t.regex(p.changes.find((c) => c.after.nodeId === 'n2')?.after.message ?? '', message, what);
    t.false(p.changes.some((c) => c.after.nodeId === 'n1'), `${what}: n1 untouched`);
  }
});

test('a new revision restarts finished nodes; a node still in progress finishes its old revision first', (t) => {
  const rows = [row(six[0] as NodeFacts, P.NODE_ROLLOUT_PHASE_SUCCEEDED), row(six[1] as NodeFacts, P.NODE_ROLLOUT_PHASE_CONFIRMING)];
  const p = plan(spec({ target: { systemPath: OLD_PATH } }), six.slice(0, 2), rows, { state: { revision: 2n } });
  const after = new Map(p.changes.map((c) => [c.after.nodeId, c.after]));
  t.is(after.get('n1')?.revision, 2n);
  t.false(after.has('n2'), 'n2 keeps revision 1 while it confirms');
  t.deepEqual(p.activations, [], 'n2 still holds the only slot');
});

test('the rollout completes when every node succeeded, and fails when some failed within the budget', (t) => {
  const ok = plan(spec(), six.slice(0, 2), six.slice(0, 2).map((n) => row(n, P.NODE_ROLLOUT_PHASE_SUCCEEDED)));
  t.is(ok.deployment.rolloutPhase, Phase.HOST_DEPLOYMENT_PHASE_COMPLETED);
  t.deepEqual(ok.deployment.finishedAt, NOW);
  const failed = plan(spec({ failureBudget: 1 }), six.slice(0, 2), [row(six[0] as NodeFacts, P.NODE_ROLLOUT_PHASE_SUCCEEDED), row(six[1] as NodeFacts, P.NODE_ROLLOUT_PHASE_ROLLED_BACK, { budgetCounted: true })]);
  t.is(failed.deployment.rolloutPhase, Phase.HOST_DEPLOYMENT_PHASE_FAILED);
  const view = { ...failed.deployment, operatorPauseReason: '', abortReason: '', statusUpdatedAt: NOW };
  const status = rolloutStatus(view, [row(six[0] as NodeFacts, P.NODE_ROLLOUT_PHASE_SUCCEEDED), row(six[1] as NodeFacts, P.NODE_ROLLOUT_PHASE_ROLLED_BACK)], true);
  t.like(status, { succeededNodes: 1, rolledBackNodes: 1, selectedNodes: 2, phase: Phase.HOST_DEPLOYMENT_PHASE_FAILED });
  t.deepEqual(status.nodes.map((n) => n.nodeId), ['n1', 'n2']);
});

function report(phase: ActivationPhase, extra: Partial<ActivationReport> = {}): ActivationReport {
  return { deployment: 'workers-os', revision: 1n, phase, systemPath: PATH, generation: 0n, failureReason: 0, message: '', bootId: 'b', startedAt: undefined, occurredAt: undefined, ...extra };
}

test('activation reports move the node entry; reports about other activations change nothing', (t) => {
  const n = six[0] as NodeFacts;
  const cases: [P, ActivationReport, P | undefined][] = [
    [P.NODE_ROLLOUT_PHASE_ACTIVATING, report(ActivationPhase.ACTIVATION_PHASE_REALISING), undefined],
    [P.NODE_ROLLOUT_PHASE_ACTIVATING, report(ActivationPhase.ACTIVATION_PHASE_CONFIRMING, { generation: 7n }), P.NODE_ROLLOUT_PHASE_CONFIRMING],
    [P.NODE_ROLLOUT_PHASE_CONFIRMING, report(ActivationPhase.ACTIVATION_PHASE_CONFIRMED), P.NODE_ROLLOUT_PHASE_SUCCEEDED],
    [P.NODE_ROLLOUT_PHASE_CONFIRMING, report(ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK, { failureReason: Reason.ACTIVATION_FAILURE_REASON_HEALTH_CHECK_FAILED }), P.NODE_ROLLOUT_PHASE_ROLLED_BACK],
    [P.NODE_ROLLOUT_PHASE_ACTIVATING, report(ActivationPhase.ACTIVATION_PHASE_FAILED), P.NODE_ROLLOUT_PHASE_FAILED],
    [P.NODE_ROLLOUT_PHASE_ACTIVATING, report(ActivationPhase.ACTIVATION_PHASE_AWAITING_REBOOT), P.NODE_ROLLOUT_PHASE_AWAITING_REBOOT],
    [P.NODE_ROLLOUT_PHASE_REBOOTING, report(ActivationPhase.ACTIVATION_PHASE_AWAITING_REBOOT), undefined],
    [P.NODE_ROLLOUT_PHASE_REBOOTING, report(ActivationPhase.ACTIVATION_PHASE_REBOOTED), P.NODE_ROLLOUT_PHASE_CONFIRMING],
    [P.NODE_ROLLOUT_PHASE_SUCCEEDED, report(ActivationPhase.ACTIVATION_PHASE_CONFIRMED), undefined],
    [P.NODE_ROLLOUT_PHASE_ACTIVATING, report(ActivationPhase.ACTIVATION_PHASE_CONFIRMED, { revision: 2n }), undefined],
    [P.NODE_ROLLOUT_PHASE_ACTIVATING, report(ActivationPhase.ACTIVATION_PHASE_CONFIRMED, { deployment: 'gpu-os' }), undefined],
    [P.NODE_ROLLOUT_PHASE_PENDING, report(ActivationPhase.ACTIVATION_PHASE_CONFIRMED), undefined],
  ];
  for (const [from, r, to] of cases) {
    const before = row(n, from, { message: 'realising' });
    const after = applyActivationReport(before, 'workers-os', r, NOW);
    const label = `${phaseName(from)} + ${ActivationPhase[r.phase]} (${r.deployment}@${r.revision})`;
    if (to === undefined) t.true(after === undefined || after.phase === from, label);
    else t.is(after?.phase, to, label);
  }
  const rolledBack = applyActivationReport(row(n, P.NODE_ROLLOUT_PHASE_CONFIRMING), 'workers-os', report(ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK, { failureReason: Reason.ACTIVATION_FAILURE_REASON_HEALTH_CHECK_FAILED, message: 'curl: 503' }), NOW);
  t.like(rolledBack, { budgetCounted: true, failureReason: Reason.ACTIVATION_FAILURE_REASON_HEALTH_CHECK_FAILED, finishedAt: NOW });
  t.regex(rolledBack?.message ?? '', /curl: 503/);
  const asked = applyRebootRequest(row(n, P.NODE_ROLLOUT_PHASE_AWAITING_REBOOT), 'workers-os', { deployment: 'workers-os', revision: 1n, generation: 3n, reason: 'kernel' });
  t.like(asked, { rebootRequested: true, generation: 3n });
  t.is(applyRebootRequest(row(n, P.NODE_ROLLOUT_PHASE_ACTIVATING), 'workers-os', { deployment: 'workers-os', revision: 1n, generation: 3n, reason: '' }), undefined);
});
