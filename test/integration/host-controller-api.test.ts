// Integration: HostDeploymentService over real gRPC on PGlite and PostgreSQL — apply (create,
// unchanged, update, new revision, dry run, prune, warnings), validation naming every field with
// nothing written, list paging and filters, pause/resume/abort/delete with their reasons,
// versions and state checks, the audit log, roles, and the access policy covering every RPC.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFileRegistry, fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import test, { type ExecutionContext } from 'ava';
import { ClientError, Status } from 'nice-grpc';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from '../../gen/ts/grpc/health/v1/health.js';
import { AccessServiceDefinition, Role } from '../../gen/ts/ultracloud/deployer/v1/access_service.js';
import { DiffAction, HostDeploymentServiceDefinition } from '../../gen/ts/ultracloud/host/v1/host_deployment_service.js';
import { HostDeployment, HostDeploymentPauseCause as Cause, HostDeploymentPhase as Phase, NodeRolloutPhase as P } from '../../gen/ts/ultracloud/system/v1/system.js';
import { REFLECTION_IMAGE_PATH } from '../../lib/grpc/image.js';
import { HOST_CONTROLLER_POLICY } from '../../services/host-controller/rpc/policy.js';
import { databaseTargets, type DatabaseTargetName, unavailableTargetTest } from '../helpers/databases.js';
import { eventually } from '../helpers/eventually.js';
import { type HostFleet, startHostFleet } from '../helpers/host-fleet.js';
import { cleanEnv, runNode, ULTRACLOUD_BIN } from '../helpers/ultracloud-process.js';

const PATH_A = `/nix/store/${'c'.repeat(32)}-nixos-system-a`;
const PATH_B = `/nix/store/${'d'.repeat(32)}-nixos-system-b`;

type Fleet = Promise<HostFleet>;
const fleets = new Map<DatabaseTargetName, Fleet>();

/** One control plane with two installed nodes per target, shared by this file's (serial) tests. */
function fleetFor(target: DatabaseTargetName): Fleet {
  let f = fleets.get(target);
  if (!f) fleets.set(target, (f = startHostFleet(target, { nodes: 2 })));
  return f;
}

test.after.always(async () => {
  for (const f of fleets.values()) await (await f.catch(() => undefined))?.stop();
});

function eachTarget(title: string, run: (t: ExecutionContext, f: HostFleet) => Promise<void>): void {
  for (const target of databaseTargets()) {
    if (!target.available) {
      unavailableTargetTest(`${title} [${target.name}]`, target);
      continue;
    }
    test.serial(`${title} [${target.name}]`, async (t) => run(t, await fleetFor(target.name)));
  }
}

function d(name: string, extra: Parameters<typeof HostDeployment.fromPartial>[0] = {}): HostDeployment {
  return HostDeployment.fromPartial({ name, selector: { nodeIds: ['cp-1', 'cp-2'] }, target: { systemPath: PATH_A }, ...extra });
}

async function refused(t: ExecutionContext, call: Promise<unknown>, code: Status, text: RegExp): Promise<void> {
  const err = await t.throwsAsync(call);
  t.true(err instanceof ClientError, String(err));
  t.is(Status[(err as ClientError).code], Status[code], (err as ClientError).details);
  t.regex((err as ClientError).details, text);
}

/** Removes every deployment, so each test starts from none. */
async function clean(f: HostFleet): Promise<void> {
  await f.rollouts.applyHostDeployments({ hostDeployments: [], dryRun: false, prune: true, reason: 'clean slate' });
}

eachTarget('ApplyHostDeployments creates, keeps, updates and prunes, with warnings; a dry run writes nothing', async (t, f) => {
  await clean(f);
  const dry = await f.rollouts.applyHostDeployments({ hostDeployments: [d('a')], dryRun: true, prune: false, reason: 'look first' });
  t.like(dry, { dryRun: true });
  t.like(dry.diffs[0], { name: 'a', action: DiffAction.DIFF_ACTION_CREATE, revision: 1n, startsRollout: true });
  t.deepEqual((await f.rollouts.listHostDeployments({ pageSize: 0, pageToken: '', phases: [] })).rollouts, [], 'nothing written by a dry run');

  const created = await f.rollouts.applyHostDeployments({
    hostDeployments: [d('a'), d('b', { selector: { nodeIds: ['cp-1'] } }), d('c', { selector: { pools: ['nowhere'] } })],
    dryRun: false,
    prune: false,
    reason: 'first apply',
  });
  t.deepEqual(created.diffs.map((x) => [x.name, DiffAction[x.action]]), [['a', 'DIFF_ACTION_CREATE'], ['b', 'DIFF_ACTION_CREATE'], ['c', 'DIFF_ACTION_CREATE']]);
  t.deepEqual(created.diffs[0]?.warnings, ['cp-1 is also selected by deployment b']);
  t.deepEqual(created.diffs[2]?.warnings, ['selector matches no installed node']);
  const a1 = (await f.rollouts.getHostDeployment({ name: 'a' })).rollout?.hostDeployment;
  t.like(a1, { name: 'a', revision: 1n });
  t.truthy(a1?.createdAt);

  const same = await f.rollouts.applyHostDeployments({ hostDeployments: [d('a')], dryRun: false, prune: false, reason: 'again' });
  t.like(same.diffs[0], { action: DiffAction.DIFF_ACTION_UNCHANGED, revision: 1n, changedFields: [] });
  t.is((await f.rollouts.getHostDeployment({ name: 'a' })).rollout?.hostDeployment?.resourceVersion, a1?.resourceVersion, 'an unchanged object is not written');

  const budget = await f.rollouts.applyHostDeployments({ hostDeployments: [d('a', { maxUnavailable: { value: { $case: 'count', value: 2 } }, failureBudget: 1 })], dryRun: false, prune: false, reason: 'more at once' });
  t.like(budget.diffs[0], { action: DiffAction.DIFF_ACTION_UPDATE, revision: 1n, startsRollout: false, changedFields: ['failureBudget', 'maxUnavailable'] });
  const a2 = (await f.rollouts.getHostDeployment({ name: 'a' })).rollout?.hostDeployment;
  t.true((a2?.resourceVersion ?? 0n) > (a1?.resourceVersion ?? 0n));

  const retarget = await f.rollouts.applyHostDeployments({
    hostDeployments: [d('a', { maxUnavailable: { value: { $case: 'count', value: 2 } }, failureBudget: 1, target: { systemPath: PATH_B } })],
    dryRun: false,
    prune: true,
    reason: 'new system, and only a',
  });
  t.deepEqual(retarget.diffs.map((x) => [x.name, DiffAction[x.action], x.revision, x.startsRollout]), [
    ['a', 'DIFF_ACTION_UPDATE', 2n, true],
    ['b', 'DIFF_ACTION_DELETE', 0n, false],
    ['c', 'DIFF_ACTION_DELETE', 0n, false],
  ]);
  t.deepEqual(retarget.diffs[0]?.changedFields, ['target.systemPath']);
  t.deepEqual((await f.rollouts.listHostDeployments({ pageSize: 0, pageToken: '', phases: [] })).rollouts.map((r) => r.hostDeployment?.name), ['a']);

  const audit = await f.hostsDb.selectFrom('audit_events').select(['action', 'deployment', 'reason', 'actor']).where('outcome', '=', 'ALLOWED').orderBy('id').execute();
  const mine = audit.filter((r) => ['first apply', 'more at once', 'new system, and only a'].includes(r.reason)).map((r) => `${r.action} ${r.deployment}`);
  t.deepEqual(mine, ['apply.create a', 'apply.create b', 'apply.create c', 'apply.update a', 'apply.update a', 'apply.delete b', 'apply.delete c']);
  t.true(audit.every((r) => r.actor === 'bootstrap'), 'the admin token acts as "bootstrap"');
});

eachTarget('a bad batch is refused whole, naming every offending field, and nothing is written', async (t, f) => {
  await clean(f);
  const bad = [d('ok'), d('broken', { maxUnavailable: { value: { $case: 'count', value: 0 } }, target: { systemPath: '/tmp/x' } }), d('ok')];
  const err = await t.throwsAsync(f.rollouts.applyHostDeployments({ hostDeployments: bad, dryRun: false, prune: false, reason: 'bad' }));
  const details = (err as ClientError).details;
  t.is((err as ClientError).code, Status.INVALID_ARGUMENT);
  t.regex(details, /host_deployments\[1\]\.target\.system_path: "\/tmp\/x" is not a Nix store path/);
  t.regex(details, /host_deployments\[1\]\.max_unavailable\.count: must be at least 1/);
  t.regex(details, /host_deployments\[2\]\.name: "ok" repeats host_deployments\[0\]/);
  t.deepEqual((await f.rollouts.listHostDeployments({ pageSize: 0, pageToken: '', phases: [] })).rollouts, []);
  await refused(t, f.rollouts.applyHostDeployments({ hostDeployments: [d('x', { selector: { nodeIds: [], nodeClasses: [], pools: [], matchLabels: {}, allNodes: false } })], dryRun: false, prune: false, reason: '' }), Status.INVALID_ARGUMENT, /host_deployments\[0\]\.selector: matches nothing as written/);
});

eachTarget('ListHostDeployments pages in name order and filters by phase; a malformed or foreign page token is refused', async (t, f) => {
  await clean(f);
  await f.rollouts.applyHostDeployments({ hostDeployments: ['d3', 'd1', 'd2'].map((n) => d(n, { paused: n === 'd2' })), dryRun: false, prune: false, reason: 'three' });
  const first = await f.rollouts.listHostDeployments({ pageSize: 2, pageToken: '', phases: [] });
  t.deepEqual(first.rollouts.map((r) => r.hostDeployment?.name), ['d1', 'd2']);
  t.true(first.rollouts.every((r) => r.status?.nodes.length === 0), 'no per-node detail in lists');
  const second = await f.rollouts.listHostDeployments({ pageSize: 2, pageToken: first.nextPageToken, phases: [] });
  t.deepEqual(second.rollouts.map((r) => r.hostDeployment?.name), ['d3']);
  t.is(second.nextPageToken, '');
  const paused = await f.rollouts.listHostDeployments({ pageSize: 0, pageToken: '', phases: [Phase.HOST_DEPLOYMENT_PHASE_PAUSED] });
  t.deepEqual(paused.rollouts.map((r) => [r.hostDeployment?.name, r.status?.pauseCause]), [['d2', Cause.HOST_DEPLOYMENT_PAUSE_CAUSE_SPEC]]);
  await refused(t, f.rollouts.listHostDeployments({ pageSize: 0, pageToken: 'not-a-token', phases: [] }), Status.INVALID_ARGUMENT, /^page_token: malformed/);
  await refused(t, f.rollouts.listHostDeployments({ pageSize: 2, pageToken: first.nextPageToken, phases: [Phase.HOST_DEPLOYMENT_PHASE_PAUSED] }), Status.INVALID_ARGUMENT, /^page_token: was issued for a different filter/);
  await refused(t, f.rollouts.listHostDeployments({ pageSize: 1001, pageToken: '', phases: [] }), Status.INVALID_ARGUMENT, /^page_size: must be between 1 and 1000/);
  await refused(t, f.rollouts.getHostDeployment({ name: 'nope' }), Status.NOT_FOUND, /host deployment nope not found/);

  const detail = await eventually(async () => {
    const r = (await f.rollouts.getHostDeployment({ name: 'd1' })).rollout;
    return r?.status?.nodes.length === 2 ? r : undefined;
  }, 20_000, 'per-node detail');
  t.deepEqual(detail.status?.nodes.map((n) => [n.nodeId, n.phase]), [['cp-1', P.NODE_ROLLOUT_PHASE_PENDING], ['cp-2', P.NODE_ROLLOUT_PHASE_PENDING]]);
  t.regex(detail.status?.nodes[0]?.message ?? '', /waiting for its nix-agent to connect/);
  t.like(detail.status, { selectedNodes: 2, pendingNodes: 2, maxUnavailableNodes: 1, phase: Phase.HOST_DEPLOYMENT_PHASE_PENDING });
});

eachTarget('Pause, Resume, Abort and Delete need a reason, check versions and states, and are audited', async (t, f) => {
  await clean(f);
  await f.rollouts.applyHostDeployments({ hostDeployments: [d('p')], dryRun: false, prune: false, reason: 'for pausing' });
  const call = { name: 'p', reason: 'maintenance window', expectedResourceVersion: 0n };
  await refused(t, f.rollouts.pauseHostDeployment({ ...call, reason: ' ' }), Status.INVALID_ARGUMENT, /^reason: required/);
  await refused(t, f.rollouts.pauseHostDeployment({ ...call, name: '' }), Status.INVALID_ARGUMENT, /^name: required/);
  await refused(t, f.rollouts.pauseHostDeployment({ ...call, name: 'missing' }), Status.NOT_FOUND, /host deployment missing not found/);
  await refused(t, f.rollouts.pauseHostDeployment({ ...call, expectedResourceVersion: 999_999n }), Status.ABORTED, /not 999999; read it again/);

  const paused = await f.rollouts.pauseHostDeployment(call);
  t.like(paused.rollout?.status, { phase: Phase.HOST_DEPLOYMENT_PHASE_PAUSED, pauseCause: Cause.HOST_DEPLOYMENT_PAUSE_CAUSE_OPERATOR, message: 'maintenance window' });
  const again = await f.rollouts.pauseHostDeployment(call);
  t.is(again.rollout?.hostDeployment?.resourceVersion, paused.rollout?.hostDeployment?.resourceVersion, 'pausing twice changes nothing');
  // The pause survives a re-apply of an unrelated change.
  await f.rollouts.applyHostDeployments({ hostDeployments: [d('p', { failureBudget: 2 })], dryRun: false, prune: false, reason: 'budget' });
  t.is((await f.rollouts.getHostDeployment({ name: 'p' })).rollout?.status?.pauseCause, Cause.HOST_DEPLOYMENT_PAUSE_CAUSE_OPERATOR);
  const resumed = await f.rollouts.resumeHostDeployment({ ...call, reason: 'window over' });
  t.not(resumed.rollout?.status?.phase, Phase.HOST_DEPLOYMENT_PHASE_PAUSED);

  await f.rollouts.applyHostDeployments({ hostDeployments: [d('p', { failureBudget: 2, paused: true })], dryRun: false, prune: false, reason: 'pause in nix' });
  await refused(t, f.rollouts.resumeHostDeployment({ ...call, reason: 'try' }), Status.FAILED_PRECONDITION, /has paused: true in its spec/);
  await f.rollouts.applyHostDeployments({ hostDeployments: [d('p', { failureBudget: 2 })], dryRun: false, prune: false, reason: 'unpause in nix' });

  const aborted = await f.rollouts.abortHostDeployment({ ...call, reason: 'wrong system' });
  t.like(aborted.rollout?.status, { phase: Phase.HOST_DEPLOYMENT_PHASE_ABORTED, message: 'wrong system' });
  t.truthy(aborted.rollout?.status?.finishedAt);
  await refused(t, f.rollouts.pauseHostDeployment(call), Status.FAILED_PRECONDITION, /revision 1 is aborted; there is nothing to pause/);
  await refused(t, f.rollouts.resumeHostDeployment(call), Status.FAILED_PRECONDITION, /was aborted; apply a new revision/);
  t.is((await f.rollouts.abortHostDeployment({ ...call, reason: 'again' })).rollout?.hostDeployment?.resourceVersion, aborted.rollout?.hostDeployment?.resourceVersion, 'aborting twice changes nothing');
  const fresh = await f.rollouts.applyHostDeployments({ hostDeployments: [d('p', { failureBudget: 2, target: { systemPath: PATH_B } })], dryRun: false, prune: false, reason: 'fixed system' });
  t.like(fresh.diffs[0], { revision: 2n, startsRollout: true });
  t.not((await f.rollouts.getHostDeployment({ name: 'p' })).rollout?.status?.phase, Phase.HOST_DEPLOYMENT_PHASE_ABORTED, 'a new revision rolls out again');

  const rv = (await f.rollouts.getHostDeployment({ name: 'p' })).rollout?.hostDeployment?.resourceVersion ?? 0n;
  await refused(t, f.rollouts.deleteHostDeployment({ ...call, reason: 'gone', expectedResourceVersion: rv + 100n }), Status.ABORTED, /read it again/);
  const deleted = await f.rollouts.deleteHostDeployment({ ...call, reason: 'gone', expectedResourceVersion: rv });
  t.is(deleted.hostDeployment?.name, 'p');
  await refused(t, f.rollouts.getHostDeployment({ name: 'p' }), Status.NOT_FOUND, /not found/);

  const audit = await f.hostsDb.selectFrom('audit_events').select(['action', 'reason']).where('deployment', '=', 'p').where('rpc', 'like', '%Deployment').orderBy('id').execute();
  t.deepEqual(audit.map((r) => `${r.action}: ${r.reason}`), ['paused: maintenance window', 'resumed: window over', 'aborted: wrong system', 'delete: gone']);
});

eachTarget('a viewer reads and an operator changes rollouts; every host-controller RPC has an access rule; denials are audited', async (t, f) => {
  await clean(f);
  const access = f.client(AccessServiceDefinition, f.adminToken);
  const token = async (name: string, role: Role) => (await access.createToken({ name: `${name}-${f.target}`, role, description: '' })).secret;
  const viewer = f.client(HostDeploymentServiceDefinition, await token('hc-viewer', Role.ROLE_VIEWER));
  const operator = f.client(HostDeploymentServiceDefinition, await token('hc-operator', Role.ROLE_OPERATOR));
  await refused(t, viewer.applyHostDeployments({ hostDeployments: [d('r')], dryRun: false, prune: false, reason: '' }), Status.PERMISSION_DENIED, /operator:hc-viewer-\w+\(viewer\) may not call \/ultracloud\.host\.v1\.HostDeploymentService\/ApplyHostDeployments/);
  await operator.applyHostDeployments({ hostDeployments: [d('r')], dryRun: false, prune: false, reason: 'as operator' });
  t.deepEqual((await viewer.listHostDeployments({ pageSize: 0, pageToken: '', phases: [] })).rollouts.map((r) => r.hostDeployment?.name), ['r']);
  await refused(t, f.client(HostDeploymentServiceDefinition).listHostAgents({ pageSize: 0, pageToken: '', nodeIds: [], staleOnly: false }), Status.UNAUTHENTICATED, /credential is required/);
  const denied = await eventually(async () => {
    const rows = await f.hostsDb.selectFrom('audit_events').selectAll().where('outcome', '=', 'DENIED').where('rpc', 'like', '%ApplyHostDeployments').execute();
    return rows.length > 0 ? rows : undefined;
  });
  t.regex(denied[0]?.reason ?? '', /^PERMISSION_DENIED: operator:hc-viewer/);

  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(REFLECTION_IMAGE_PATH)));
  const rpcs = ['ultracloud.host.v1.HostDeploymentService', 'ultracloud.host.v1.HostAgentService'].flatMap((s) => registry.getService(s)?.methods.map((m) => `/${s}/${m.name}`) ?? []);
  t.is(rpcs.length, 9);
  t.deepEqual(rpcs.filter((rpc) => !(rpc in HOST_CONTROLLER_POLICY)), [], 'RPCs without a rule');
  t.deepEqual(Object.keys(HOST_CONTROLLER_POLICY).filter((rpc) => !rpcs.includes(rpc)), [], 'rules for RPCs that do not exist');

  const health = f.client(HealthDefinition);
  for (const service of ['ultracloud.host.v1.HostDeploymentService', 'ultracloud.host.v1.HostAgentService']) {
    t.is((await health.check({ service })).status, HealthCheckResponse_ServingStatus.SERVING, service);
  }
});

test('ultracloud host-controller refuses to start without a deployer to watch, or with a token file others can read', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ultracloud-hc-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const none = await runNode([ULTRACLOUD_BIN, 'host-controller', '--listen', '127.0.0.1:0', '--state-dir', join(dir, 'state')], { cwd: dir, env: cleanEnv(), timeoutMs: 120_000 });
  t.is(none.code, 2, none.stderr);
  t.regex(none.stderr, /ULTRACLOUD_DEPLOYER \(--deployer\): required/);
  t.regex(none.stderr, /ULTRACLOUD_DEPLOYER_TOKEN_FILE \(--deployer-token-file\): required/);
  const token = join(dir, 'token');
  writeFileSync(token, 'ucop_secret\n', { mode: 0o644 });
  const open = await runNode([ULTRACLOUD_BIN, 'host-controller', '--listen', '127.0.0.1:0', '--state-dir', join(dir, 'state'), '--deployer', '127.0.0.1:7001', '--deployer-token-file', token, '--heartbeat-interval', 'soon'], { cwd: dir, env: cleanEnv(), timeoutMs: 120_000 });
  t.is(open.code, 2, open.stderr);
  t.regex(open.stderr, /ULTRACLOUD_DEPLOYER_TOKEN_FILE \(--deployer-token-file\): the file is readable or writable by group or others; it holds a credential: chmod 600 it/);
  t.regex(open.stderr, /ULTRACLOUD_HEARTBEAT_INTERVAL \(--heartbeat-interval\): expected a duration/);
  t.false(open.stderr.includes('ucop_secret'), 'the token never appears in the message');
});
