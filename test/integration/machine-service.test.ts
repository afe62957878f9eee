// Integration: MachineService's operator read paths — ListMachines filters and stable paging,
// GetMachine by any of its keys with everything an operator needs, ListAuditEvents filters and
// paging — and the transition contract (reason, expected_resource_version, FAILED_PRECONDITION
// naming the current state), over real gRPC on PGlite and on PostgreSQL. Each target gets a
// server of its own with a known set of machines; the tests run serially because they count.
import { readFileSync } from 'node:fs';
import test, { type ExecutionContext } from 'ava';
import { ClientError, Status } from 'nice-grpc';
import { ClusterState } from '../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import type { ListMachinesRequest, Machine } from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { AuditOutcome, InstallPhase, MachineState } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { type DeployerServer, type DeployerTarget, forEachDeployerTarget } from '../helpers/deployer-server.js';
import { machineInventory, type MachineFacts, optiplexFacts, SimulatedInstaller } from '../helpers/simulated-installer.js';

const S = MachineState;
const LAB6: unknown = JSON.parse(readFileSync(new URL('../fixtures/cluster-state/lab6.json', import.meta.url), 'utf8'));

interface Fleet {
  readonly server: DeployerServer;
  /** Enrolled by the lab's OptiPlex rule: worker-1..3, install-pending. */
  readonly workers: SimulatedInstaller[];
  /** HP EliteDesks no rule matches: inspected, no assignment. */
  readonly unassigned: SimulatedInstaller[];
  /** An HP commissioned by an operator as hp-a with label rack=r2. */
  readonly hp: SimulatedInstaller;
}

function installer(server: DeployerServer, facts: Partial<MachineFacts> = {}): SimulatedInstaller {
  return new SimulatedInstaller({ channel: server.channel, joinToken: server.joinToken }, machineInventory(optiplexFacts(facts)));
}

const HP = { vendor: 'HP', productName: 'EliteDesk 800 G5' } as const;

async function startFleet(target: DeployerTarget): Promise<Fleet> {
  const server = await target.start();
  try {
    await server.cluster.applyClusterState({ state: ClusterState.fromJSON(LAB6), dryRun: false, expectedGeneration: 0n });
    const workers = [installer(server), installer(server), installer(server)];
    for (const w of workers) await w.discover();
    const unassigned = [installer(server, HP), installer(server, HP)];
    for (const u of unassigned) await u.discover();
    const hp = installer(server, HP);
    await hp.discover();
    await server.machines.commission({
      machineId: hp.machineId,
      reason: 'lab expansion',
      expectedResourceVersion: 0n,
      nodeClass: 'worker',
      pool: 'workers',
      labels: { rack: 'r2' },
      installProfile: '',
      nodeId: 'hp-a',
      hostname: '',
      failureDomain: '',
    });
    return { server, workers, unassigned, hp };
  } catch (error) {
    await server.stop();
    throw error;
  }
}

const LIST_DEFAULTS: ListMachinesRequest = { states: [], nodeClass: '', pool: '', labelSelector: '', query: '', pageSize: 0, pageToken: '' };

async function ids(server: DeployerServer, req: Partial<ListMachinesRequest>): Promise<string[]> {
  return (await server.machines.listMachines({ ...LIST_DEFAULTS, pageSize: 1000, ...req })).machines.map((m) => m.machineId).sort();
}

const sorted = (xs: readonly SimulatedInstaller[]) => xs.map((x) => x.machineId).sort();

async function rejects(t: ExecutionContext, call: Promise<unknown>, code: Status, fragments: readonly string[]): Promise<void> {
  const error = await t.throwsAsync(call, { instanceOf: ClientError });
  if (!(error instanceof ClientError)) return;
  t.is(Status[error.code], Status[code], error.details);
  for (const f of fragments) t.true(error.details.includes(f), `"${error.details}" should name ${f}`);
}

forEachDeployerTarget('MachineService', (target) => {
  const title = (name: string) => `${name} [${target.name}]`;
  let fleet: Promise<Fleet> | undefined;
  const get = () => (fleet ??= startFleet(target));
  test.after.always(async () => {
    const started = await fleet?.catch(() => undefined);
    await started?.server.stop();
  });

  test.serial(title('ListMachines filters by state, class, pool and label selector'), async (t) => {
    const { server, workers, unassigned, hp } = await get();
    t.is(unassigned.length, 2);
    t.deepEqual(await ids(server, { states: [S.MACHINE_STATE_INSPECTED] }), sorted(unassigned));
    t.deepEqual(await ids(server, { states: [S.MACHINE_STATE_INSPECTED, S.MACHINE_STATE_COMMISSIONED] }), sorted([...unassigned, hp]));
    t.deepEqual(await ids(server, { states: [S.MACHINE_STATE_INSTALL_PENDING] }), sorted(workers));
    t.deepEqual(await ids(server, { nodeClass: 'worker' }), sorted([...workers, hp]));
    t.deepEqual(await ids(server, { nodeClass: 'control-plane' }), []);
    t.deepEqual(await ids(server, { pool: 'workers', states: [S.MACHINE_STATE_COMMISSIONED] }), sorted([hp]));
    // The hand-commissioned worker gets its class's labels too.
    t.deepEqual(await ids(server, { labelSelector: 'ultracloud.io/role=worker' }), sorted([...workers, hp]));
    t.deepEqual(await ids(server, { labelSelector: 'rack=r2' }), sorted([hp]));
    t.deepEqual(await ids(server, { labelSelector: 'rack' }), sorted([hp]));
    // `!=` also matches machines without the label, and machines without any assignment.
    t.deepEqual(await ids(server, { labelSelector: 'rack!=r2' }), sorted([...workers, ...unassigned]));
    t.deepEqual(await ids(server, { labelSelector: 'ultracloud.io/role=worker, rack!=r2' }), sorted(workers));
    t.deepEqual(await ids(server, { labelSelector: 'ultracloud.io/pool=workers,ultracloud.io/role=worker' }), sorted([...workers, hp]));
    t.deepEqual(await ids(server, { labelSelector: 'ultracloud.io/pool=workers,ultracloud.io/role=control-plane' }), []);
  });

  test.serial(title('ListMachines free text matches hostname, node id, serial, MAC and machine id, case-insensitively'), async (t) => {
    const { server, workers, unassigned, hp } = await get();
    const worker2 = (await server.machines.getMachine({ key: { $case: 'machineId', value: workers[1]?.machineId ?? '' } })).machine as Machine;
    const serial = worker2.inventory?.identity?.serialNumber ?? '';
    const mac = worker2.inventory?.nics[0]?.macAddress ?? '';
    t.deepEqual(await ids(server, { query: serial.toLowerCase() }), [worker2.machineId]);
    t.deepEqual(await ids(server, { query: mac.toUpperCase() }), [worker2.machineId]);
    t.deepEqual(await ids(server, { query: 'WORKER-2' }), [worker2.machineId]);
    t.deepEqual(await ids(server, { query: 'hp-' }), sorted([hp]));
    t.deepEqual(await ids(server, { query: unassigned[0]?.machineId.slice(0, 12) }), sorted(unassigned.slice(0, 1)));
    // LIKE wildcards in the query are plain characters.
    t.deepEqual(await ids(server, { query: '%' }), []);
    t.deepEqual(await ids(server, { query: '_' }), []);
  });

  test.serial(title('ListMachines refuses a malformed label selector or an unknown state, naming the field'), async (t) => {
    const { server } = await get();
    await rejects(t, server.machines.listMachines({ ...LIST_DEFAULTS, labelSelector: 'role=worker,=x' }), Status.INVALID_ARGUMENT, ['label_selector', '"=x"']);
    await rejects(t, server.machines.listMachines({ ...LIST_DEFAULTS, labelSelector: 'role in (a,b)' }), Status.INVALID_ARGUMENT, ['label_selector']);
    await rejects(t, server.machines.listMachines({ ...LIST_DEFAULTS, states: [42 as MachineState] }), Status.INVALID_ARGUMENT, ['states', '42']);
  });

  test.serial(title('ListMachines pages walk every machine once, sorted by hostname with unassigned machines last'), async (t) => {
    const { server, workers, unassigned, hp } = await get();
    const seen: Machine[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await server.machines.listMachines({ ...LIST_DEFAULTS, pageSize: 2, pageToken });
      t.true(page.machines.length <= 2);
      seen.push(...page.machines);
      pageToken = page.nextPageToken;
      pages += 1;
    } while (pageToken);
    t.is(pages, 3);
    t.deepEqual(
      seen.map((m) => m.assignment?.hostname ?? ''),
      ['hp-a', 'worker-1', 'worker-2', 'worker-3', '', ''],
    );
    t.deepEqual(seen.map((m) => m.machineId).slice(0, 4), [hp, ...workers].map((m) => m.machineId));
    t.deepEqual(seen.map((m) => m.machineId).slice(4), sorted(unassigned));
  });

  test.serial(title('a ListMachines page token is refused with another filter or when it is not one'), async (t) => {
    const { server } = await get();
    const first = await server.machines.listMachines({ ...LIST_DEFAULTS, pageSize: 1, nodeClass: 'worker' });
    t.not(first.nextPageToken, '');
    await rejects(t, server.machines.listMachines({ ...LIST_DEFAULTS, pageSize: 1, nodeClass: 'control-plane', pageToken: first.nextPageToken }), Status.INVALID_ARGUMENT, [
      'page_token',
      'different filter',
    ]);
    await rejects(t, server.machines.listMachines({ ...LIST_DEFAULTS, pageToken: 'not-a-token' }), Status.INVALID_ARGUMENT, ['page_token']);
    // The same filter written differently is the same filter.
    const sel = await server.machines.listMachines({ ...LIST_DEFAULTS, pageSize: 1, labelSelector: 'ultracloud.io/role=worker,ultracloud.io/pool=workers' });
    const next = await server.machines.listMachines({ ...LIST_DEFAULTS, pageSize: 1, labelSelector: 'ultracloud.io/pool=workers, ultracloud.io/role=worker', pageToken: sel.nextPageToken });
    t.is(next.machines.length, 1);
  });

  test.serial(title('GetMachine by machine id, hostname or node id shows inventory, assignment, plan, install progress and the latest 50 events'), async (t) => {
    const { server, workers } = await get();
    const worker = workers[0] as SimulatedInstaller;
    await worker.fetchPlan();
    await worker.report({ phase: InstallPhase.INSTALL_PHASE_PARTITION, percent: 25, message: 'GPT: ESP 1 GiB, root', logTail: 'disko: creating partitions' });

    const byId = await server.machines.getMachine({ key: { $case: 'machineId', value: worker.machineId } });
    const byHost = await server.machines.getMachine({ key: { $case: 'hostname', value: 'worker-1' } });
    const byNode = await server.machines.getMachine({ key: { $case: 'nodeId', value: 'worker-1' } });
    t.is(byHost.machine?.machineId, worker.machineId);
    t.is(byNode.machine?.machineId, worker.machineId);
    const m = byId.machine as Machine;
    t.is(m.state, S.MACHINE_STATE_INSTALLING);
    t.true((m.inventory?.disks.length ?? 0) > 0);
    t.like(m.assignment, { nodeId: 'worker-1', hostname: 'worker-1', nodeClass: 'worker', pool: 'workers' });
    t.truthy(m.plan?.rootDiskByIdPath);
    t.truthy(m.plan?.fetchedAt);
    t.like(m.installProgress, { phase: InstallPhase.INSTALL_PHASE_PARTITION, percent: 25, message: 'GPT: ESP 1 GiB, root', logTail: 'disko: creating partitions' });
    t.deepEqual(
      byId.recentEvents.map((e) => e.id),
      [...byId.recentEvents].sort((a, b) => Number(BigInt(b.id) - BigInt(a.id))).map((e) => e.id),
      'newest first',
    );

    // More than 50 events: only the latest 50 come back.
    const many = installer(server, HP);
    await many.discover();
    await server.machines.commission({ machineId: many.machineId, reason: 'spare', expectedResourceVersion: 0n, nodeClass: 'worker', pool: 'workers', labels: {}, installProfile: '', nodeId: 'hp-many', hostname: '', failureDomain: '' });
    for (let i = 0; i < 25; i += 1) {
      await server.machines.rescue({ machineId: many.machineId, reason: `look ${i}`, expectedResourceVersion: 0n, sshAuthorizedKeys: [] });
      await server.machines.exitRescue({ machineId: many.machineId, reason: `done ${i}`, expectedResourceVersion: 0n });
    }
    const found = await server.machines.getMachine({ key: { $case: 'machineId', value: many.machineId } });
    t.is(found.recentEvents.length, 50);
    t.is(found.recentEvents[0]?.reason, 'done 24');
    await server.machines.delete({ machineId: many.machineId, reason: 'test machine', expectedResourceVersion: 0n });

    await rejects(t, server.machines.getMachine({ key: { $case: 'hostname', value: 'no-such-host' } }), Status.NOT_FOUND, ['no-such-host']);
    await rejects(t, server.machines.getMachine({ key: { $case: 'nodeId', value: '' } }), Status.INVALID_ARGUMENT, ['node_id']);
    await rejects(t, server.machines.getMachine({}), Status.INVALID_ARGUMENT, ['key']);
  });

  test.serial(title('ListAuditEvents filters by machine, node, actor, time and outcome, and pages newest first'), async (t) => {
    const { server, hp } = await get();
    const hpEvents = (await server.machines.listAuditEvents({ machineId: hp.machineId, nodeId: '', actor: '', outcome: 0, pageSize: 100, pageToken: '' })).events;
    t.deepEqual(hpEvents.map((e) => e.reason).slice(0, 1), ['lab expansion']);
    t.true(hpEvents.every((e) => e.machineId === hp.machineId));
    // By node id: the events recorded while the machine had that node id.
    const byNode = (await server.machines.listAuditEvents({ machineId: '', nodeId: 'hp-a', actor: '', outcome: 0, pageSize: 100, pageToken: '' })).events;
    t.true(byNode.length > 0 && byNode.every((e) => e.nodeId === 'hp-a'), byNode.map((e) => `${e.machineId}/${e.nodeId}: ${e.reason}`).join('\n'));
    const operator = hpEvents[0]?.actor ?? '';
    t.truthy(operator);
    const byActor = (await server.machines.listAuditEvents({ machineId: hp.machineId, nodeId: '', actor: operator, outcome: 0, pageSize: 100, pageToken: '' })).events;
    t.deepEqual(byActor.map((e) => e.reason), ['lab expansion']);
    const future = (await server.machines.listAuditEvents({ machineId: '', nodeId: '', actor: '', since: new Date(Date.now() + 60_000), outcome: 0, pageSize: 100, pageToken: '' })).events;
    t.deepEqual(future, []);
    const allowed = (await server.machines.listAuditEvents({ machineId: hp.machineId, nodeId: '', actor: '', outcome: AuditOutcome.AUDIT_OUTCOME_ALLOWED, pageSize: 100, pageToken: '' })).events;
    t.is(allowed.length, hpEvents.length);
    const denied = (await server.machines.listAuditEvents({ machineId: hp.machineId, nodeId: '', actor: '', outcome: AuditOutcome.AUDIT_OUTCOME_DENIED, pageSize: 100, pageToken: '' })).events;
    t.deepEqual(denied, []);

    const all = (await server.machines.listAuditEvents({ machineId: '', nodeId: '', actor: '', outcome: 0, pageSize: 1000, pageToken: '' })).events;
    const paged: string[] = [];
    let pageToken = '';
    do {
      const page = await server.machines.listAuditEvents({ machineId: '', nodeId: '', actor: '', outcome: 0, pageSize: 7, pageToken });
      paged.push(...page.events.map((e) => e.id));
      pageToken = page.nextPageToken;
    } while (pageToken);
    t.deepEqual(paged, all.map((e) => e.id));
    t.deepEqual(paged, [...paged].sort((a, b) => Number(BigInt(b) - BigInt(a))));
    await rejects(t, server.machines.listAuditEvents({ machineId: '', nodeId: '', actor: '', outcome: 0, pageSize: 0, pageToken: 'x' }), Status.INVALID_ARGUMENT, ['page_token']);
  });

  test.serial(title('transitions need a reason and a current version, and a refused one names the current state and changes nothing'), async (t) => {
    const { server, hp } = await get();
    const before = (await server.machines.getMachine({ key: { $case: 'machineId', value: hp.machineId } })).machine as Machine;
    await rejects(t, server.machines.deploy({ machineId: hp.machineId, reason: '', expectedResourceVersion: 0n }), Status.INVALID_ARGUMENT, ['reason']);
    await rejects(t, server.machines.drain({ machineId: hp.machineId, reason: 'maintenance', expectedResourceVersion: 0n }), Status.FAILED_PRECONDITION, ['state commissioned', 'active']);
    await rejects(t, server.machines.deploy({ machineId: hp.machineId, reason: 'go', expectedResourceVersion: before.resourceVersion + 1n }), Status.ABORTED, ['expected_resource_version']);
    await rejects(t, server.machines.deploy({ machineId: 'm-00000000-0000-0000-0000-000000000000', reason: 'go', expectedResourceVersion: 0n }), Status.NOT_FOUND, ['m-00000000']);
    const after = (await server.machines.getMachine({ key: { $case: 'machineId', value: hp.machineId } })).machine as Machine;
    t.is(after.resourceVersion, before.resourceVersion);
    t.is(after.state, S.MACHINE_STATE_COMMISSIONED);
    const deployed = await server.machines.deploy({ machineId: hp.machineId, reason: 'go', expectedResourceVersion: before.resourceVersion });
    t.is(deployed.machine?.state, S.MACHINE_STATE_INSTALL_PENDING);
  });

  test.serial(title('a ListMachines walk sees each machine once while machines are added and changed between pages'), async (t) => {
    const { server, workers, unassigned, hp } = await get();
    const first = await server.machines.listMachines({ ...LIST_DEFAULTS, pageSize: 2 });
    const added = installer(server, HP);
    await added.discover();
    await server.machines.markFailed({ machineId: workers[2]?.machineId ?? '', reason: 'bad RAM', expectedResourceVersion: 0n });
    const rest: Machine[] = [];
    let pageToken = first.nextPageToken;
    while (pageToken) {
      const page = await server.machines.listMachines({ ...LIST_DEFAULTS, pageSize: 2, pageToken });
      rest.push(...page.machines);
      pageToken = page.nextPageToken;
    }
    const walked = [...first.machines, ...rest].map((m) => m.machineId);
    t.is(new Set(walked).size, walked.length, 'no machine twice');
    for (const m of [hp, ...workers, ...unassigned]) t.true(walked.includes(m.machineId), `${m.machineId} missing`);
    t.true(walked.includes(added.machineId), 'a machine added behind the cursor is seen');
  });
});
