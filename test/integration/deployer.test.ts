// Integration: the deployer served by the real serveComponents on a loopback socket, driven by a
// simulated installer and an operator over real gRPC clients, on PGlite and on PostgreSQL.
// One server per target is shared: tests use machines of their own (random UUIDs, MACs and
// serials); tests that compare machine counts run serially, before the concurrent ones.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { ClientError, Status } from 'nice-grpc';
import { AssignmentSource } from '../../gen/ts/ultracloud/assignment/v1/assignment.js';
import { InstallerAction } from '../../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import { ClusterServiceDefinition } from '../../gen/ts/ultracloud/deployer/v1/cluster_service.js';
import { ClusterState } from '../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import type { GetMachineResponse, Machine } from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { AddressMode, PartitionTableType, PartitionType, PlanMode } from '../../gen/ts/ultracloud/installplan/v1/installplan.js';
import { InstallOutcome, InstallPhase, MachineState, MachineTransition } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { type DeployerServer, type DeployerTarget, forEachDeployerTarget, sharedDeployer } from '../helpers/deployer-server.js';
import { loadLsblkFixture } from '../helpers/lsblk-fixtures.js';
import { machineInventory, type MachineFacts, optiplexFacts, randomMac, SimulatedInstaller } from '../helpers/simulated-installer.js';

const S = MachineState;
const T = MachineTransition;

const LAB6: unknown = JSON.parse(readFileSync(new URL('../fixtures/cluster-state/lab6.json', import.meta.url), 'utf8'));

/** A fresh, independently mutable copy of the lab6 cluster state. */
function lab6(): ClusterState {
  return ClusterState.fromJSON(LAB6);
}

/** The Samsung 980 PRO of the nvme-workstation fixture: the only disk lab6's system-ssd policy picks. */
const SAMSUNG_BY_ID = '/dev/disk/by-id/nvme-eui.002538b221b3c4d5';

async function startLab(target: DeployerTarget, flags?: Readonly<Record<string, string>>): Promise<DeployerServer> {
  const server = await target.start(flags ? { flags } : {});
  try {
    const applied = await server.cluster.applyClusterState({ state: lab6(), dryRun: false, expectedGeneration: 0n });
    if (applied.generation !== 1n) throw new Error(`lab6 applied as generation ${applied.generation}`);
    return server;
  } catch (error) {
    await server.stop();
    throw error;
  }
}

function installer(server: DeployerServer, facts: Partial<MachineFacts> = {}): SimulatedInstaller {
  return new SimulatedInstaller({ channel: server.channel, joinToken: server.joinToken }, machineInventory(optiplexFacts(facts)));
}

/** Awaits a call expected to fail; checks its status and that its message names every fragment. */
async function rejects(t: ExecutionContext, call: Promise<unknown>, code: Status, fragments: readonly string[] = []): Promise<ClientError> {
  const error = await t.throwsAsync(call, { instanceOf: ClientError });
  if (!(error instanceof ClientError)) throw new Error('call did not fail with a ClientError');
  t.is(Status[error.code], Status[code], error.details);
  for (const fragment of fragments) t.true(error.details.includes(fragment), `"${error.details}" should name ${fragment}`);
  return error;
}

async function machineCount(server: DeployerServer): Promise<number> {
  return (await server.machines.listMachines({ pageSize: 1000 })).machines.length;
}

/** Machines whose serial, MAC, node_id or hostname contains `query`. */
async function machinesMatching(server: DeployerServer, query: string): Promise<Machine[]> {
  return (await server.machines.listMachines({ query, pageSize: 1000 })).machines;
}

async function getMachine(server: DeployerServer, machineId: string): Promise<GetMachineResponse & { machine: Machine }> {
  const found = await server.machines.getMachine({ key: { $case: 'machineId', value: machineId } });
  if (!found.machine) throw new Error(`GetMachine ${machineId} returned no machine`);
  return found as GetMachineResponse & { machine: Machine };
}

async function stateOf(server: DeployerServer, machineId: string): Promise<MachineState> {
  return (await getMachine(server, machineId)).machine.state;
}

/** Transitions of the machine's audit trail, oldest first, as `from -> to (TRANSITION)`. */
function transitionsOf(found: GetMachineResponse): string[] {
  return [...found.recentEvents]
    .reverse()
    .filter((e) => e.transition !== T.MACHINE_TRANSITION_UNSPECIFIED)
    .map((e) => `${S[e.fromState]} -> ${S[e.toState]} (${T[e.transition]})`);
}

function edge(from: MachineState, to: MachineState, transition: MachineTransition): string {
  return `${S[from]} -> ${S[to]} (${T[transition]})`;
}

const DISCOVERED_TO_PENDING = [
  edge(S.MACHINE_STATE_UNSPECIFIED, S.MACHINE_STATE_DISCOVERED, T.MACHINE_TRANSITION_DISCOVER),
  edge(S.MACHINE_STATE_DISCOVERED, S.MACHINE_STATE_INSPECTED, T.MACHINE_TRANSITION_INSPECT),
  edge(S.MACHINE_STATE_INSPECTED, S.MACHINE_STATE_COMMISSIONED, T.MACHINE_TRANSITION_COMMISSION),
  edge(S.MACHINE_STATE_COMMISSIONED, S.MACHINE_STATE_INSTALL_PENDING, T.MACHINE_TRANSITION_DEPLOY),
];

/** Polls until `check` holds or `timeoutMs` passes; returns the last value seen. */
async function pollUntil<V>(read: () => Promise<V>, check: (value: V) => boolean, timeoutMs: number): Promise<V> {
  const deadline = Date.now() + timeoutMs;
  let value = await read();
  while (!check(value) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    value = await read();
  }
  return value;
}

/** Checks the node's TLS certificate against the CA the deployer wrote to its state dir. */
function checkNodeCertificate(t: ExecutionContext, server: DeployerServer, pem: string, privateKeyPem: string, nodeId: string, hostname: string): void {
  const ca = new X509Certificate(readFileSync(join(server.stateDir, 'ca.pem')));
  const cert = new X509Certificate(pem);
  t.is(cert.subject, `CN=${nodeId}`);
  const sans = (cert.subjectAltName ?? '').split(', ');
  t.true(sans.includes(`DNS:${hostname}`), cert.subjectAltName);
  t.true(sans.includes(`DNS:${nodeId}`), cert.subjectAltName);
  t.true(sans.includes(`DNS:${hostname}.lab6.internal`), cert.subjectAltName);
  t.true(cert.checkIssued(ca), 'issued by the cluster CA');
  t.true(cert.verify(ca.publicKey), 'signed by the cluster CA key');
  t.true(cert.checkPrivateKey(createPrivateKey(privateKeyPem)), 'the private key belongs to the certificate');
}

forEachDeployerTarget('deployer integration', (target) => {
  const title = (name: string) => `${name} [${target.name}]`;
  const lab = sharedDeployer(() => startLab(target));
  test.after.always(() => lab.stop());

  // ---- serial: these compare machine counts, so nothing else may write meanwhile -------------

  const badInventories: { name: string; field: string; edit: (facts: MachineFacts) => Partial<MachineFacts> }[] = [
    { name: 'a malformed MAC', field: 'inventory.nics[0].mac_address', edit: () => ({ macs: ['d8:9e:f3:3a:6z:0b'] }) },
    { name: 'a zero-size disk', field: 'inventory.disks[1].size_bytes', edit: (f) => ({ disks: f.disks.map((d, i) => (i === 1 ? { ...d, sizeBytes: 0n } : d)) }) },
    { name: 'no disks', field: 'inventory.disks', edit: () => ({ disks: [] }) },
    { name: 'no NICs', field: 'inventory.nics', edit: () => ({ macs: [] }) },
  ];
  for (const bad of badInventories) {
    test.serial(title(`Discover refuses an inventory with ${bad.name}, naming ${bad.field}, and writes nothing`), async (t) => {
      const server = await lab.get();
      const before = await machineCount(server);
      const base = optiplexFacts();
      const facts = { ...base, ...bad.edit(base) };
      const machine = new SimulatedInstaller({ channel: server.channel, joinToken: server.joinToken }, machineInventory(facts));
      await rejects(t, machine.discover(), Status.INVALID_ARGUMENT, [`${bad.field}:`]);
      t.is(await machineCount(server), before);
      t.deepEqual(await machinesMatching(server, facts.serialNumber.toLowerCase()), []);
    });
  }

  test.serial(title('Discover without an inventory is refused naming inventory and writes nothing'), async (t) => {
    const server = await lab.get();
    const before = await machineCount(server);
    const bootstrap = installer(server).bootstrap(server.joinToken);
    await rejects(t, bootstrap.discover({ bootId: 'b', installerVersion: 'test' }), Status.INVALID_ARGUMENT, ['inventory: required']);
    t.is(await machineCount(server), before);
  });

  test.serial(title('ApplyClusterState refuses an unknown class reference, naming its path, and applies nothing'), async (t) => {
    const server = await lab.get();
    const before = await server.cluster.getClusterState({});
    const state = lab6();
    (state.enrollmentRules['optiplex-workers'] as { nodeClass: string }).nodeClass = 'wrker';
    await rejects(t, server.cluster.applyClusterState({ state, dryRun: false, expectedGeneration: 0n }), Status.INVALID_ARGUMENT, [
      'state.enrollmentRules.optiplex-workers.nodeClass: unknown node class "wrker"',
    ]);
    const after = await server.cluster.getClusterState({});
    t.is(after.generation, before.generation);
    t.deepEqual(after.state, before.state);
  });

  test.serial(title('ApplyClusterState lists every problem of a document and applies nothing'), async (t) => {
    const server = await lab.get();
    const before = await server.cluster.getClusterState({});
    const state = lab6();
    (state.enrollmentRules['optiplex-workers'] as { nodeClass: string }).nodeClass = 'wrker';
    (state.nodes['cp-2'] as { pool: string }).pool = 'controll';
    (state.installProfiles['worker'] as { diskPolicy: string }).diskPolicy = 'system-nvme';
    (state.networks['lab'] as { cidr: string }).cidr = '10.44.0.0/33';
    const error = await rejects(t, server.cluster.applyClusterState({ state, dryRun: false, expectedGeneration: 0n }), Status.INVALID_ARGUMENT, [
      'state.enrollmentRules.optiplex-workers.nodeClass',
      'state.nodes.cp-2.pool',
      'state.installProfiles.worker.diskPolicy',
      'state.networks.lab.cidr',
    ]);
    t.true(error.details.split('\n').length >= 4, error.details);
    t.is((await server.cluster.getClusterState({})).generation, before.generation);
  });

  test.serial(title('20 concurrent Discovers of one new machine make exactly one machine'), async (t) => {
    const server = await lab.get();
    const before = await machineCount(server);
    const facts = optiplexFacts();
    const installers = Array.from({ length: 20 }, () => new SimulatedInstaller({ channel: server.channel, joinToken: server.joinToken }, machineInventory(facts)));
    const responses = await Promise.all(installers.map((i) => i.discover()));
    const ids = new Set(responses.map((r) => r.machineId));
    t.is(ids.size, 1, [...ids].join(', '));
    t.is(await machineCount(server), before + 1);
    const matching = await machinesMatching(server, facts.serialNumber.toLowerCase());
    t.deepEqual(matching.map((m) => m.machineId), [...ids]);
    t.is(matching[0]?.state, S.MACHINE_STATE_INSTALL_PENDING);
    // Each Discover issued its own session secret; only the latest one stays valid.
    t.is(new Set(responses.map((r) => r.sessionSecret)).size, 20);
  });

  // ---- concurrent: each test uses machines of its own -----------------------------------------

  test(title('12 new machines enrolled concurrently by one rule get distinct names and addresses'), async (t) => {
    const server = await lab.get();
    const machines = Array.from({ length: 12 }, () => installer(server));
    const discovered = await Promise.all(machines.map((m) => m.discover()));
    t.true(discovered.every((d) => d.state === S.MACHINE_STATE_INSTALL_PENDING && d.planReady), JSON.stringify(discovered.map((d) => d.message)));
    const plans = await Promise.all(machines.map((m) => m.fetchPlan()));
    const nodeIds = plans.map((p) => p.assignment?.nodeId ?? '');
    const hostnames = plans.map((p) => p.assignment?.hostname ?? '');
    const addresses = plans.flatMap((p) => p.plan?.network?.interfaces.flatMap((i) => i.addresses) ?? []);
    t.true(nodeIds.every((id) => /^worker-\d+$/.test(id)), nodeIds.join(', '));
    t.is(new Set(nodeIds).size, 12, nodeIds.join(', '));
    t.is(new Set(hostnames).size, 12, hostnames.join(', '));
    t.is(addresses.length, 12);
    t.is(new Set(addresses).size, 12, addresses.join(', '));
  });


  test(title('a new OptiPlex goes from unknown to installed over real gRPC'), async (t) => {
    const server = await lab.get();
    const machine = installer(server);
    const nicMac = machine.inventory.nics[0]?.macAddress ?? '';

    const discovered = await machine.discover();
    t.is(discovered.state, S.MACHINE_STATE_INSTALL_PENDING);
    t.true(discovered.planReady);
    t.regex(discovered.machineId, /^m-/);
    t.regex(discovered.sessionSecret, /^ucsess_/);
    t.deepEqual(transitionsOf(await getMachine(server, discovered.machineId)), DISCOVERED_TO_PENDING);

    const { assignment, secrets, plan } = await machine.fetchPlan();
    if (!assignment || !secrets || !plan) return t.fail('FetchPlan returned no assignment, secrets or plan');
    t.regex(assignment.nodeId, /^worker-\d+$/);
    t.is(assignment.hostname, assignment.nodeId);
    t.like(assignment, { nodeClass: 'worker', pool: 'workers', installProfile: 'worker', source: AssignmentSource.ASSIGNMENT_SOURCE_ENROLLMENT_RULE, sourceName: 'optiplex-workers' });
    t.like(assignment.labels, { 'ultracloud.io/role': 'worker', 'ultracloud.io/pool': 'workers' });

    t.is(secrets.nodeId, assignment.nodeId);
    checkNodeCertificate(t, server, secrets.tlsCertificatePem, secrets.tlsPrivateKeyPem, assignment.nodeId, assignment.hostname);
    t.true(secrets.caChainPem.includes(server.caPem.trim()));
    t.regex(secrets.sshHostEd25519PublicKey, /^ssh-ed25519 AAAA/);
    t.regex(secrets.sshHostEd25519PrivateKey, /^-----BEGIN OPENSSH PRIVATE KEY-----/);
    t.regex(secrets.installToken, /^ucinst_/);
    t.true((secrets.installTokenExpiresAt?.getTime() ?? 0) > Date.now());

    t.like(plan, { nodeId: assignment.nodeId, machineId: machine.machineId, mode: PlanMode.PLAN_MODE_INSTALL, installProfile: 'worker', flakeRef: 'github:ultracloud/ultracloud', flakeAttr: 'nixosConfigurations.worker', clusterGeneration: 1n });
    t.like(plan.disk, { byIdPath: SAMSUNG_BY_ID, name: 'nvme0n1', sizeBytes: 1000204886016n });
    t.is(plan.disk?.layout?.partitionTable, PartitionTableType.PARTITION_TABLE_TYPE_GPT);
    t.deepEqual(plan.disk?.layout?.partitions.map((p) => [p.name, p.type, p.mountpoint]), [
      ['ESP', PartitionType.PARTITION_TYPE_ESP, '/boot'],
      ['root', PartitionType.PARTITION_TYPE_ROOT, '/'],
    ]);
    t.like(plan.network, { hostname: assignment.hostname, domain: 'lab6.internal', gateway: '10.44.0.1' });
    t.is(plan.network?.interfaces.length, 1);
    t.like(plan.network?.interfaces[0], { macAddress: nicMac, name: 'eno1', mode: AddressMode.ADDRESS_MODE_STATIC });
    t.regex(plan.network?.interfaces[0]?.addresses[0] ?? '', /^10\.44\.0\.(2[1-9]|[3-9]\d)\/24$/);
    t.is(await stateOf(server, machine.machineId), S.MACHINE_STATE_INSTALLING);

    const responses = await machine.install();
    const last = responses.pop();
    for (const r of responses) t.like(r, { state: S.MACHINE_STATE_INSTALLING, nextAction: InstallerAction.INSTALLER_ACTION_CONTINUE });
    t.like(last, { state: S.MACHINE_STATE_INSTALLED, nextAction: InstallerAction.INSTALLER_ACTION_REBOOT });

    const found = await getMachine(server, machine.machineId);
    t.is(found.machine.state, S.MACHINE_STATE_INSTALLED);
    t.like(found.machine.installProgress, { outcome: InstallOutcome.INSTALL_OUTCOME_SUCCEEDED, percent: 100 });
    t.like(found.machine.plan, { rootDiskByIdPath: SAMSUNG_BY_ID, installProfile: 'worker' });
    t.truthy(found.machine.plan?.fetchedAt);
    t.deepEqual(transitionsOf(found), [
      ...DISCOVERED_TO_PENDING,
      edge(S.MACHINE_STATE_INSTALL_PENDING, S.MACHINE_STATE_INSTALLING, T.MACHINE_TRANSITION_START_INSTALL),
      edge(S.MACHINE_STATE_INSTALLING, S.MACHINE_STATE_INSTALLED, T.MACHINE_TRANSITION_INSTALL_SUCCEEDED),
    ]);
    const resourceVersions = [...found.recentEvents].reverse().filter((e) => e.transition !== T.MACHINE_TRANSITION_UNSPECIFIED).map((e) => e.resourceVersion);
    t.deepEqual(resourceVersions, [...resourceVersions].sort((a, b) => (a < b ? -1 : 1)), 'resource versions grow with each transition');
    const byHostname = await server.machines.getMachine({ key: { $case: 'hostname', value: assignment.hostname } });
    t.is(byHostname.machine?.machineId, machine.machineId);
  });

  test(title('a fixed control-plane node gets its node_id, hostname and static address'), async (t) => {
    const server = await lab.get();
    const machine = installer(server, { macs: ['D8:9E:F3:3A:61:0B'], memoryBytes: 32n * 2n ** 30n });
    const discovered = await machine.discover();
    t.like(discovered, { state: S.MACHINE_STATE_INSTALL_PENDING, planReady: true });
    const { assignment, secrets, plan } = await machine.fetchPlan();
    t.like(assignment, { nodeId: 'cp-1', hostname: 'cp-1', nodeClass: 'control-plane', pool: 'control', failureDomain: 'power-a', installProfile: 'control-plane', source: AssignmentSource.ASSIGNMENT_SOURCE_FIXED_NODE });
    checkNodeCertificate(t, server, secrets?.tlsCertificatePem ?? '', secrets?.tlsPrivateKeyPem ?? '', 'cp-1', 'cp-1');
    t.like(plan, { nodeId: 'cp-1', flakeAttr: 'nixosConfigurations.cp-1' });
    t.is(plan?.disk?.byIdPath, SAMSUNG_BY_ID);
    t.deepEqual(plan?.network?.interfaces, [{ macAddress: 'd8:9e:f3:3a:61:0b', name: 'eno1', mode: AddressMode.ADDRESS_MODE_STATIC, addresses: ['10.44.0.11/24'], mtu: 0 }]);
  });

  test(title('Discover is idempotent per DMI UUID and per MAC set, and records inventory changes'), async (t) => {
    const server = await lab.get();
    const facts = optiplexFacts({ macs: [randomMac(), randomMac()] });
    const first = await new SimulatedInstaller({ channel: server.channel, joinToken: server.joinToken }, machineInventory(facts)).discover();

    // Same DMI UUID, a different boot: the same machine, a new session secret.
    const again = await new SimulatedInstaller({ channel: server.channel, joinToken: server.joinToken }, machineInventory(facts)).discover();
    t.is(again.machineId, first.machineId);
    t.not(again.sessionSecret, first.sessionSecret);

    // A machine whose firmware has no usable UUID is recognised by its MACs, whatever their case or order.
    const macOnly = optiplexFacts({ systemUuid: '', macs: [randomMac(), randomMac()] });
    const byMacs = await new SimulatedInstaller({ channel: server.channel, joinToken: server.joinToken }, machineInventory(macOnly)).discover();
    const reordered = { ...macOnly, macs: [...macOnly.macs].reverse().map((m) => m.toUpperCase()) };
    const byMacsAgain = await new SimulatedInstaller({ channel: server.channel, joinToken: server.joinToken }, machineInventory(reordered)).discover();
    t.is(byMacsAgain.machineId, byMacs.machineId);
    t.not(byMacs.machineId, first.machineId);
    t.is((await machinesMatching(server, macOnly.serialNumber.toLowerCase())).length, 1);

    // A memory upgrade is an inventory change: recorded with a new hash, same machine.
    const before = await getMachine(server, first.machineId);
    const upgraded = await new SimulatedInstaller({ channel: server.channel, joinToken: server.joinToken }, machineInventory({ ...facts, memoryBytes: 64n * 2n ** 30n })).discover();
    t.is(upgraded.machineId, first.machineId);
    const after = await getMachine(server, first.machineId);
    t.is(after.machine.inventory?.memoryBytes, 64n * 2n ** 30n);
    t.regex(after.machine.inventory?.inventoryHash ?? '', /^[0-9a-f]{64}$/);
    t.not(after.machine.inventory?.inventoryHash, before.machine.inventory?.inventoryHash);
    t.true(after.recentEvents.some((e) => e.reason === 'inventory changed'));
    t.is((await machinesMatching(server, facts.serialNumber.toLowerCase())).length, 1);
  });

  test(title('bootstrap secrets are single use'), async (t) => {
    const server = await lab.get();
    const machine = installer(server);
    await machine.discover();
    const firstSession = machine.sessionSecret;
    await machine.fetchPlan();
    const stateAfterFetch = await getMachine(server, machine.machineId);

    await rejects(t, machine.fetchPlan(), Status.FAILED_PRECONDITION, ['machine is installing']);

    // A new Discover in the same boot replaces the session secret.
    await machine.discover();
    t.not(machine.sessionSecret, firstSession);
    await rejects(t, machine.bootstrap(firstSession).fetchPlan({ machineId: machine.machineId }), Status.UNAUTHENTICATED, ['session secret']);
    t.is((await getMachine(server, machine.machineId)).machine.state, stateAfterFetch.machine.state);

    await machine.install();
    await rejects(t, machine.report({ phase: InstallPhase.INSTALL_PHASE_FINALIZE, percent: 100, outcome: InstallOutcome.INSTALL_OUTCOME_IN_PROGRESS }), Status.UNAUTHENTICATED, ['install token']);
    t.is(await stateOf(server, machine.machineId), S.MACHINE_STATE_INSTALLED);

    const stranger = installer(server);
    await rejects(t, stranger.bootstrap().discover({ inventory: stranger.inventory, bootId: 'b', installerVersion: 'test' }), Status.UNAUTHENTICATED, ['credential is required']);
    await rejects(t, stranger.bootstrap('ucjoin_not-the-join-token').discover({ inventory: stranger.inventory, bootId: 'b', installerVersion: 'test' }), Status.UNAUTHENTICATED, ['join token']);
    t.deepEqual(await machinesMatching(server, stranger.inventory.identity?.serialNumber.toLowerCase() ?? ''), []);

    const generation = (await server.cluster.getClusterState({})).generation;
    const anonymous = server.client(ClusterServiceDefinition);
    await rejects(t, anonymous.applyClusterState({ state: lab6(), dryRun: false, expectedGeneration: 0n }), Status.UNAUTHENTICATED);
    t.is((await server.cluster.getClusterState({})).generation, generation);
  });

  test(title('ReportInstallProgress refuses percent 150, naming percent, and writes nothing'), async (t) => {
    const server = await lab.get();
    const machine = installer(server);
    await machine.discover();
    await machine.fetchPlan();
    await machine.report({ phase: InstallPhase.INSTALL_PHASE_FETCH_BUNDLE, percent: 10 });
    const before = await getMachine(server, machine.machineId);
    await rejects(t, machine.report({ phase: InstallPhase.INSTALL_PHASE_INSTALL, percent: 150 }), Status.INVALID_ARGUMENT, ['percent']);
    const after = await getMachine(server, machine.machineId);
    t.is(after.machine.resourceVersion, before.machine.resourceVersion);
    t.deepEqual(after.machine.installProgress, before.machine.installProgress);
  });

  test(title("FetchPlan for another machine's id is denied and changes neither machine"), async (t) => {
    const server = await lab.get();
    const victim = installer(server);
    const thief = installer(server);
    await victim.discover();
    await thief.discover();
    const before = await getMachine(server, victim.machineId);
    await rejects(t, thief.fetchPlan(victim.machineId), Status.PERMISSION_DENIED, ['another machine']);
    const after = await getMachine(server, victim.machineId);
    t.is(after.machine.resourceVersion, before.machine.resourceVersion);
    t.is(after.machine.state, S.MACHINE_STATE_INSTALL_PENDING);
    t.is(after.machine.plan?.fetchedAt, undefined);
    t.is(await stateOf(server, thief.machineId), S.MACHINE_STATE_INSTALL_PENDING);
  });

  const unresolvable: { name: string; fixture: string; fragments: string[] }[] = [
    { name: 'two disks match the disk policy', fixture: 'sata-server', fragments: ['matched 2 disks', 'wwn', 'sda', 'sdb'] },
    { name: 'no disk matches the disk policy', fixture: 'multipath-san', fragments: ['matched no disk', 'wwn'] },
  ];
  for (const c of unresolvable) {
    test(title(`a machine where ${c.name} ends in failed with the hint named`), async (t) => {
      const server = await lab.get();
      const machine = installer(server, { disks: loadLsblkFixture(c.fixture) });
      const discovered = await machine.discover();
      t.like(discovered, { state: S.MACHINE_STATE_FAILED, planReady: false });
      const { machine: failed } = await getMachine(server, machine.machineId);
      t.is(failed.state, S.MACHINE_STATE_FAILED);
      for (const fragment of c.fragments) t.true(failed.lastError.includes(fragment), `"${failed.lastError}" should name ${fragment}`);
      t.is(failed.plan, undefined);
      await rejects(t, machine.fetchPlan(), Status.FAILED_PRECONDITION, ['failed']);
      // Retrying without changing the policy or the disks tells the operator why, and changes nothing.
      await rejects(t, server.machines.retry({ machineId: machine.machineId, reason: 'try again', expectedResourceVersion: 0n }), Status.FAILED_PRECONDITION, c.fragments);
      const after = (await getMachine(server, machine.machineId)).machine;
      t.like(after, { state: S.MACHINE_STATE_FAILED, resourceVersion: failed.resourceVersion, lastError: failed.lastError });
    });
  }

  test(title('a failed install is visible with its log tail, and Retry issues a new plan with new secrets'), async (t) => {
    const server = await lab.get();
    const machine = installer(server);
    await machine.discover();
    const first = await machine.fetchPlan();
    await machine.report({ phase: InstallPhase.INSTALL_PHASE_FETCH_BUNDLE, percent: 5 });
    const logTail = 'building the system configuration...\nerror: hash mismatch in fixed-output derivation\n';
    const failedReport = await machine.report({ phase: InstallPhase.INSTALL_PHASE_INSTALL, percent: 40, message: 'nixos-install failed: hash mismatch', logTail, outcome: InstallOutcome.INSTALL_OUTCOME_FAILED });
    t.like(failedReport, { state: S.MACHINE_STATE_FAILED, nextAction: InstallerAction.INSTALLER_ACTION_REDISCOVER });

    const failed = (await getMachine(server, machine.machineId)).machine;
    t.is(failed.state, S.MACHINE_STATE_FAILED);
    t.is(failed.lastError, 'nixos-install failed: hash mismatch');
    t.like(failed.installProgress, { logTail, outcome: InstallOutcome.INSTALL_OUTCOME_FAILED, phase: InstallPhase.INSTALL_PHASE_INSTALL, failureReason: 'nixos-install failed: hash mismatch' });
    await rejects(t, machine.report({ phase: InstallPhase.INSTALL_PHASE_INSTALL, percent: 50 }), Status.UNAUTHENTICATED, ['install token']);

    const retried = await server.machines.retry({ machineId: machine.machineId, reason: 'mirror fixed', expectedResourceVersion: failed.resourceVersion });
    t.is(retried.machine?.state, S.MACHINE_STATE_INSTALL_PENDING);
    t.is(retried.machine?.lastError, '');

    machine.reboot();
    t.like(await machine.discover(), { state: S.MACHINE_STATE_INSTALL_PENDING, planReady: true });
    const second = await machine.fetchPlan();
    t.not(second.secrets?.installToken, first.secrets?.installToken);
    t.not(second.secrets?.tlsCertificatePem, first.secrets?.tlsCertificatePem);
    t.is(second.assignment?.nodeId, first.assignment?.nodeId);
    const last = (await machine.install()).pop();
    t.is(last?.state, S.MACHINE_STATE_INSTALLED);
    t.deepEqual(transitionsOf(await getMachine(server, machine.machineId)).slice(DISCOVERED_TO_PENDING.length), [
      edge(S.MACHINE_STATE_INSTALL_PENDING, S.MACHINE_STATE_INSTALLING, T.MACHINE_TRANSITION_START_INSTALL),
      edge(S.MACHINE_STATE_INSTALLING, S.MACHINE_STATE_FAILED, T.MACHINE_TRANSITION_INSTALL_FAILED),
      edge(S.MACHINE_STATE_FAILED, S.MACHINE_STATE_INSTALL_PENDING, T.MACHINE_TRANSITION_RETRY),
      edge(S.MACHINE_STATE_INSTALL_PENDING, S.MACHINE_STATE_INSTALLING, T.MACHINE_TRANSITION_START_INSTALL),
      edge(S.MACHINE_STATE_INSTALLING, S.MACHINE_STATE_INSTALLED, T.MACHINE_TRANSITION_INSTALL_SUCCEEDED),
    ]);
  });

  test(title('operator transitions need a reason, the right state and a current resource_version'), async (t) => {
    const server = await lab.get();
    const machine = installer(server);
    await machine.discover();
    const pending = (await getMachine(server, machine.machineId)).machine;

    await rejects(t, server.machines.retry({ machineId: machine.machineId, reason: '  ', expectedResourceVersion: 0n }), Status.INVALID_ARGUMENT, ['reason']);
    await rejects(t, server.machines.retry({ machineId: machine.machineId, reason: 'try again', expectedResourceVersion: 0n }), Status.FAILED_PRECONDITION, ['install-pending']);
    await rejects(t, server.machines.markFailed({ machineId: machine.machineId, reason: 'bad RAM', expectedResourceVersion: pending.resourceVersion - 1n }), Status.ABORTED, [
      'expected_resource_version',
    ]);
    const unchanged = (await getMachine(server, machine.machineId)).machine;
    t.is(unchanged.resourceVersion, pending.resourceVersion);
    t.is(unchanged.state, S.MACHINE_STATE_INSTALL_PENDING);

    const marked = await server.machines.markFailed({ machineId: machine.machineId, reason: 'bad RAM', expectedResourceVersion: pending.resourceVersion });
    t.like(marked.machine, { state: S.MACHINE_STATE_FAILED, lastError: 'bad RAM' });
    t.true((marked.machine?.resourceVersion ?? 0n) > pending.resourceVersion);
  });

  test(title('machines matching no rule wait in inspected; concurrent operator Deploys get distinct addresses'), async (t) => {
    const server = await lab.get();
    const machines = Array.from({ length: 5 }, () => installer(server, { vendor: 'HP', productName: 'EliteDesk 800 G5' }));
    for (const m of machines) {
      t.like(await m.discover(), { state: S.MACHINE_STATE_INSPECTED, planReady: false, message: 'no enrollment rule matched; waiting for an operator to commission' });
    }
    await Promise.all(
      machines.map((m, i) =>
        server.machines.commission({ machineId: m.machineId, reason: 'lab expansion', expectedResourceVersion: 0n, nodeClass: 'worker', pool: 'workers', labels: {}, installProfile: '', nodeId: `hp-${target.name}-${i}`, hostname: '', failureDomain: '' }),
      ),
    );
    const deployed = await Promise.all(machines.map((m) => server.machines.deploy({ machineId: m.machineId, reason: 'lab expansion', expectedResourceVersion: 0n })));
    t.deepEqual(deployed.map((d) => d.machine?.state), machines.map(() => S.MACHINE_STATE_INSTALL_PENDING));
    const addresses: string[] = [];
    for (const m of machines) {
      t.like(await m.discover(), { state: S.MACHINE_STATE_INSTALL_PENDING, planReady: true });
      const { assignment, plan } = await m.fetchPlan();
      t.like(assignment, { source: AssignmentSource.ASSIGNMENT_SOURCE_OPERATOR, nodeClass: 'worker' });
      // Commissioned by hand, the node still gets its class's and pool's labels.
      t.like(assignment?.labels, { 'ultracloud.io/role': 'worker', 'ultracloud.io/pool': 'workers' });
      addresses.push(plan?.network?.interfaces[0]?.addresses[0] ?? '');
    }
    t.is(new Set(addresses).size, machines.length, addresses.join(', '));
  });

  test(title('an install that reports nothing for the install timeout goes to failed'), async (t) => {
    const server = await startLab(target, { 'install-timeout': '1s' });
    t.teardown(() => server.stop());
    const machine = installer(server);
    await machine.discover();
    await machine.fetchPlan();
    const started = Date.now();
    const found = await pollUntil(() => getMachine(server, machine.machineId), (m) => m.machine.state !== S.MACHINE_STATE_INSTALLING, 8_000);
    t.is(found.machine.state, S.MACHINE_STATE_FAILED, `still ${S[found.machine.state]} after ${Date.now() - started} ms`);
    t.regex(found.machine.lastError, /no install progress reported for 1s/);
    t.is(found.recentEvents[0]?.transition, T.MACHINE_TRANSITION_INSTALL_TIMED_OUT);
    await rejects(t, machine.report({ phase: InstallPhase.INSTALL_PHASE_INSTALL, percent: 50 }), Status.UNAUTHENTICATED, ['install token']);
  });
});
