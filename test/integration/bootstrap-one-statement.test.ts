// The bootstrap's one-statement path (services/deployer/store/one-statement.ts): a new machine on
// a DHCP network is discovered, inspected, commissioned and deployed by one write; FetchPlan and
// the final report are one guarded write each. These tests drive it over real gRPC on both
// databases and check what the locking path guaranteed before: one machine per identity under
// concurrency, distinct names (also across two replicas of one PostgreSQL database), one audit
// event per step, and every row an install needs.
import { readFileSync } from 'node:fs';
import test, { type ExecutionContext } from 'ava';
import { ClientError, Status } from 'nice-grpc';
import pg from 'pg';
import { ClusterState } from '../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import type { MachineServiceDefinition } from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { AddressMode } from '../../gen/ts/ultracloud/installplan/v1/installplan.js';
import { type AuditEvent, AuditOutcome, InstallOutcome, InstallPhase, MachineState, MachineTransition } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import type { ServiceClient } from '../../lib/grpc/client.js';
import { hashToken } from '../../lib/pki/index.js';
import { databaseTargets, unavailableTargetTest } from '../helpers/databases.js';
import { type DeployerServer, forEachDeployerTarget } from '../helpers/deployer-server.js';
import { createDeployerStore, startReplica } from '../helpers/deployer-replicas.js';
import { type InstallerConnection, machineInventory, optiplexFacts, SimulatedInstaller } from '../helpers/simulated-installer.js';

const S = MachineState;
const T = MachineTransition;

/** lab6 with DHCP on its networks: no address pool, so new machines take the one-statement path. */
function lab6Dhcp(): ClusterState {
  const state = ClusterState.fromJSON(JSON.parse(readFileSync(new URL('../fixtures/cluster-state/lab6.json', import.meta.url), 'utf8')));
  for (const network of Object.values(state.networks)) network.addressMode = AddressMode.ADDRESS_MODE_DHCP;
  return state;
}

function installer(connection: InstallerConnection): SimulatedInstaller {
  return new SimulatedInstaller(connection, machineInventory(optiplexFacts()));
}

type Machines = ServiceClient<typeof MachineServiceDefinition>;

async function auditOf(machines: Machines, machineId: string) {
  const { events } = await machines.listAuditEvents({ machineId, pageSize: 100 });
  return [...events].reverse();
}

async function startDhcpLab(start: () => Promise<DeployerServer>): Promise<DeployerServer> {
  const server = await start();
  await server.cluster.applyClusterState({ state: lab6Dhcp(), dryRun: false, expectedGeneration: 0n });
  return server;
}

async function refused(t: ExecutionContext, call: Promise<unknown>, code: Status, pattern: RegExp): Promise<void> {
  const err = await t.throwsAsync(call);
  t.true(err instanceof ClientError && err.code === code, `${Status[code]} expected: ${String(err)}`);
  t.regex((err as ClientError).details, pattern);
}

async function versionOf(machines: Machines, machineId: string): Promise<{ state: MachineState | undefined; resourceVersion: bigint | undefined }> {
  const { machine } = await machines.getMachine({ key: { $case: 'machineId', value: machineId } });
  return { state: machine?.state, resourceVersion: machine?.resourceVersion };
}

function distinct(t: ExecutionContext, values: readonly string[], count: number): void {
  t.is(new Set(values).size, count, values.join(', '));
}

forEachDeployerTarget('bootstrap one-statement path', (target) => {
  const title = (what: string) => `${what} [${target.name}]`;

  test(title('12 new machines discovered at once are enrolled with distinct names by one write each, then installed'), async (t) => {
    const server = await startDhcpLab(() => target.start());
    t.teardown(() => server.stop());
    const fleet = Array.from({ length: 12 }, () => installer(server));
    const discovered = await Promise.all(fleet.map((m) => m.discover()));
    t.true(discovered.every((d) => d.state === S.MACHINE_STATE_INSTALL_PENDING && d.planReady), JSON.stringify(discovered.map((d) => d.message)));

    // One write: the four steps' events share the resource_version the machine was created with.
    const first = fleet[0] as SimulatedInstaller;
    const created = (await server.machines.getMachine({ key: { $case: 'machineId', value: first.machineId } })).machine;
    const steps = await auditOf(server.machines, first.machineId);
    t.deepEqual(steps.map((e) => e.transition), [T.MACHINE_TRANSITION_DISCOVER, T.MACHINE_TRANSITION_INSPECT, T.MACHINE_TRANSITION_COMMISSION, T.MACHINE_TRANSITION_DEPLOY]);
    t.deepEqual(steps.map((e) => e.toState), [S.MACHINE_STATE_DISCOVERED, S.MACHINE_STATE_INSPECTED, S.MACHINE_STATE_COMMISSIONED, S.MACHINE_STATE_INSTALL_PENDING]);
    t.true(steps.every((e) => e.resourceVersion === created?.resourceVersion), JSON.stringify(steps.map((e) => String(e.resourceVersion))));
    t.is(created?.plan?.rootDiskByIdPath, '/dev/disk/by-id/nvme-eui.002538b221b3c4d5');

    const plans = await Promise.all(fleet.map((m) => m.fetchPlan()));
    const nodeIds = plans.map((p) => p.assignment?.nodeId ?? '');
    t.true(nodeIds.every((id) => /^worker-\d+$/.test(id)), nodeIds.join(', '));
    distinct(t, nodeIds, 12);
    distinct(t, plans.map((p) => p.assignment?.hostname ?? ''), 12);
    t.true(plans.every((p) => p.secrets?.installToken.startsWith('ucinst_') && p.secrets.tlsCertificatePem.includes('BEGIN CERTIFICATE')));

    const finals = await Promise.all(fleet.map(async (m) => (await m.install()).at(-1)?.state));
    t.true(finals.every((s) => s === S.MACHINE_STATE_INSTALLED), JSON.stringify(finals));
    const trail = await auditOf(server.machines, first.machineId);
    const tail = trail.slice(4);
    t.deepEqual(tail.map((e) => e.transition), [T.MACHINE_TRANSITION_START_INSTALL, T.MACHINE_TRANSITION_INSTALL_SUCCEEDED]);
    // The final report's event names the node although the installer only sent its machine id.
    t.true(tail.every((e) => e.nodeId === plans[0]?.assignment?.nodeId), JSON.stringify(tail.map((e) => e.nodeId)));

    // A second FetchPlan is refused (the guarded write does not hand the plan out twice).
    await t.throwsAsync(first.fetchPlan());
  });

  test(title('20 concurrent Discovers of one new machine make one machine, one assignment and one name'), async (t) => {
    const server = await startDhcpLab(() => target.start());
    t.teardown(() => server.stop());
    const inventory = machineInventory(optiplexFacts());
    const copies = Array.from({ length: 20 }, () => new SimulatedInstaller(server, inventory));
    const answers = await Promise.all(copies.map((c) => c.discover()));
    t.is(new Set(answers.map((a) => a.machineId)).size, 1);
    const { machines } = await server.machines.listMachines({ pageSize: 100 });
    t.is(machines.length, 1);
    // Each racer picked a different free name before the INSERTs met on the identity; the one
    // whose INSERT won kept its name, whichever it was.
    const taken = machines[0]?.assignment?.nodeId ?? '';
    t.regex(taken, /^worker-\d+$/);
    // The losers' names were given back: the next machine gets the lowest free name.
    const next = installer(server);
    await next.discover();
    t.is((await next.fetchPlan()).assignment?.nodeId, taken === 'worker-1' ? 'worker-2' : 'worker-1');
  });

  // FetchPlan and ReportInstallProgress do not look their token up first: the statement acting on
  // the machine matches the token's hash, and only when it does not answer is the token looked up.
  test(title('a session secret replaced by a newer Discover cannot take the plan the first Discover left ready'), async (t) => {
    const server = await startDhcpLab(() => target.start());
    t.teardown(() => server.stop());
    const machine = installer(server);
    t.true((await machine.discover()).planReady);
    const first = machine.sessionSecret;
    t.true((await machine.discover()).planReady);
    const before = await versionOf(server.machines, machine.machineId);
    await refused(t, machine.bootstrap(first).fetchPlan({ machineId: machine.machineId }), Status.UNAUTHENTICATED, /session secret not recognised/);
    t.deepEqual(await versionOf(server.machines, machine.machineId), before);
    // The refusal is audited (denials are written in batches) as a refused credential: no actor.
    const deadline = Date.now() + 10_000;
    let refusal: AuditEvent | undefined;
    while (!refusal && Date.now() < deadline) {
      const { events } = await server.machines.listAuditEvents({ pageSize: 100 });
      refusal = events.find((e) => e.outcome === AuditOutcome.AUDIT_OUTCOME_DENIED && e.rpc.endsWith('/FetchPlan'));
      if (!refusal) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    t.like(refusal, { actor: 'anonymous' });
    t.regex(refusal?.reason ?? '', /^UNAUTHENTICATED: session secret not recognised/);
    // The current secret still gets the plan, once.
    t.truthy((await machine.fetchPlan()).secrets?.installToken);
    t.is((await versionOf(server.machines, machine.machineId)).state, S.MACHINE_STATE_INSTALLING);
  });

  test(title('an install token past its lifetime is refused for progress and for the final report, and nothing is written'), async (t) => {
    // Long enough for the first report to land before it even on a busy machine; the test then
    // waits for the expiry the FetchPlan answer states.
    const server = await target.start({ flags: { 'install-token-ttl': '5s' } });
    t.teardown(() => server.stop());
    await server.cluster.applyClusterState({ state: lab6Dhcp(), dryRun: false, expectedGeneration: 0n });
    const machine = installer(server);
    await machine.discover();
    const expiresAt = (await machine.fetchPlan()).secrets?.installTokenExpiresAt?.getTime() ?? 0;
    t.true(expiresAt > 0, 'FetchPlan states when the install token expires');
    t.is((await machine.report({ phase: InstallPhase.INSTALL_PHASE_PARTITION, percent: 10 })).state, S.MACHINE_STATE_INSTALLING);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt - Date.now()) + 100));
    const before = await versionOf(server.machines, machine.machineId);
    await refused(t, machine.report({ phase: InstallPhase.INSTALL_PHASE_INSTALL, percent: 60 }), Status.UNAUTHENTICATED, /install token expired/);
    await refused(t, machine.report({ phase: InstallPhase.INSTALL_PHASE_FINALIZE, percent: 100, outcome: InstallOutcome.INSTALL_OUTCOME_SUCCEEDED }), Status.UNAUTHENTICATED, /install token expired/);
    // A bad request with the expired token is refused for the token, not for the request.
    await refused(t, machine.report({ phase: InstallPhase.INSTALL_PHASE_INSTALL, percent: 150 }), Status.UNAUTHENTICATED, /install token expired/);
    t.deepEqual(await versionOf(server.machines, machine.machineId), before);
  });

  test(title("an install token reporting for another machine is denied and changes neither machine"), async (t) => {
    const server = await startDhcpLab(() => target.start());
    t.teardown(() => server.stop());
    const [victim, thief] = [installer(server), installer(server)] as const;
    for (const m of [victim, thief]) {
      await m.discover();
      await m.fetchPlan();
    }
    const before = await Promise.all([victim, thief].map((m) => versionOf(server.machines, m.machineId)));
    await refused(t, thief.bootstrap(thief.installToken).reportInstallProgress({ machineId: victim.machineId, phase: InstallPhase.INSTALL_PHASE_FINALIZE, percent: 100, message: '', logTail: '', outcome: InstallOutcome.INSTALL_OUTCOME_SUCCEEDED }), Status.PERMISSION_DENIED, /another machine/);
    await refused(t, thief.bootstrap(thief.installToken).reportInstallProgress({ machineId: victim.machineId, phase: InstallPhase.INSTALL_PHASE_INSTALL, percent: 50, message: '', logTail: '', outcome: InstallOutcome.INSTALL_OUTCOME_IN_PROGRESS }), Status.PERMISSION_DENIED, /another machine/);
    t.deepEqual(await Promise.all([victim, thief].map((m) => versionOf(server.machines, m.machineId))), before);
  });
});

// Two replicas on one PostgreSQL database hand out names from their own books; the unique
// indexes make the loser of each collision pick again.
const postgres = databaseTargets().find((d) => d.name === 'postgres');
if (postgres && !postgres.available) {
  unavailableTargetTest('two replicas enrolling at once give every machine its own name [postgres]', postgres);
} else if (postgres) {
  test('two replicas enrolling at once give every machine its own name [postgres]', async (t) => {
    const store = await createDeployerStore('postgres');
    const a = await startReplica(store);
    const b = await startReplica(store);
    t.teardown(async () => {
      await a.stop();
      await b.stop();
      await store.remove();
    });
    await a.cluster.applyClusterState({ state: lab6Dhcp(), dryRun: false, expectedGeneration: 0n });
    const fleet = [...Array.from({ length: 10 }, () => installer(a)), ...Array.from({ length: 10 }, () => installer(b))];
    const discovered = await Promise.all(fleet.map((m) => m.discover()));
    t.true(discovered.every((d) => d.state === S.MACHINE_STATE_INSTALL_PENDING), JSON.stringify(discovered.map((d) => d.message)));
    const { machines } = await a.machines.listMachines({ pageSize: 100 });
    t.is(machines.length, 20);
    distinct(t, machines.map((m) => m.assignment?.nodeId ?? ''), 20);
    distinct(t, machines.map((m) => m.assignment?.hostname ?? ''), 20);
  });

  test('an install from this replica\'s Discover runs no token look-up and no read of the machine [postgres]', async (t) => {
    const store = await createDeployerStore('postgres');
    const replica = await startReplica(store);
    t.teardown(async () => {
      await replica.stop();
      await store.remove();
    });
    await replica.cluster.applyClusterState({ state: lab6Dhcp(), dryRun: false, expectedGeneration: 0n });
    // Every statement this process sends to PostgreSQL while the install runs (other tests of
    // this file run in the same process: only the statements naming this machine's ids count).
    const seen: { text: string; values: unknown[] }[] = [];
    const query = pg.Client.prototype.query;
    const capture = function (this: pg.Client, ...args: unknown[]) {
      const first = args[0] as string | { text?: string; values?: unknown[] };
      if (typeof first === 'string') seen.push({ text: first, values: Array.isArray(args[1]) ? args[1] : [] });
      else seen.push({ text: first?.text ?? '', values: first?.values ?? [] });
      return (query as (...a: unknown[]) => unknown).apply(this, args);
    };
    pg.Client.prototype.query = capture as typeof query;
    t.teardown(() => {
      pg.Client.prototype.query = query;
    });
    const machine = installer(replica);
    const mine = (values: unknown[]) => values.some((v) => v === machine.machineId || (typeof v === 'string' && [machine.sessionSecret, machine.installToken].some((token) => token !== '' && v === hashToken(token))));
    const lookUps = () => seen.filter((q) => mine(q.values) && /^(\/\* ultracloud:prepare uc_[0-9a-f]{24} \*\/ )?select "machine_id"(, "install_token_expires_at")? from "[a-z_]+"\."machines" where "(session_secret|install_token)_hash" = \$1$/.test(q.text));
    const snapshots = () => seen.filter((q) => mine(q.values) && q.text.includes('"assignment_json"'));

    await machine.discover();
    await machine.fetchPlan();
    const answers = await machine.install();
    t.is(answers.at(-1)?.state, S.MACHINE_STATE_INSTALLED);
    t.deepEqual(lookUps(), [], 'no token was looked up before its statement');
    t.deepEqual(snapshots(), [], 'FetchPlan used what the Discover wrote');

    // The capture sees those statements when they do run: a token the statements do not match
    // is looked up (and refused), and a plan the Discover did not leave is read.
    await refused(t, machine.report({ phase: InstallPhase.INSTALL_PHASE_INSTALL, percent: 50 }), Status.UNAUTHENTICATED, /install token/);
    t.is(lookUps().length, 1);
    await refused(t, machine.fetchPlan(), Status.FAILED_PRECONDITION, /installed/);
    t.true(snapshots().length > 0);
  });
}
