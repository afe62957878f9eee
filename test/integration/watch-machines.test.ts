// Integration: MachineService.WatchMachines over real gRPC on PGlite and PostgreSQL — a machine's
// install seen change by change, filters, resuming from a resource_version, two deployer replicas
// on one PostgreSQL database (LISTEN/NOTIFY), a watcher outliving a deployer restart, a watcher
// that falls behind, and `deployer-ctl machines watch` against a live server.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { ClientError, Status } from 'nice-grpc';
import pg from 'pg';
import { ClusterState } from '../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import {
  MachineEventType,
  MachineServiceDefinition,
  type WatchMachinesRequest,
  type WatchMachinesResponse,
} from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { InstallOutcome, InstallPhase, MachineState } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { createServiceClient, openChannel, type ServiceClient } from '../../lib/grpc/client.js';
import { databaseTargets, type DatabaseTargetName, unavailableTargetTest } from '../helpers/databases.js';
import { createDeployerStore, type DeployerReplica, type DeployerStore, type ReplicaOptions, startReplica } from '../helpers/deployer-replicas.js';
import { INSTALL_STEPS, machineInventory, type MachineFacts, optiplexFacts, SimulatedInstaller } from '../helpers/simulated-installer.js';
import { DEPLOYER_CTL_BIN } from '../helpers/ultracloud-process.js';

const E = MachineEventType;
const S = MachineState;
const LAB6: unknown = JSON.parse(readFileSync(new URL('../fixtures/cluster-state/lab6.json', import.meta.url), 'utf8'));
const EVENT_TIMEOUT_MS = 20_000;

type MachineClient = ServiceClient<typeof MachineServiceDefinition>;

/** Registers `title [target]` for every database target (skipped, or failing under CI, when one cannot run). */
function eachTarget(title: string, run: (t: ExecutionContext, target: DatabaseTargetName) => Promise<void>, only?: DatabaseTargetName): void {
  for (const target of databaseTargets()) {
    if (only && target.name !== only) continue;
    if (!target.available) {
      unavailableTargetTest(`${title} [${target.name}]`, target);
      continue;
    }
    // Embedded PGlite runs on this process's one thread: its servers take turns, so each test
    // finishes in its own time instead of all of them together after the longest wait.
    const register = target.name === 'pglite' ? test.serial : test;
    register(`${title} [${target.name}]`, (t) => run(t, target.name));
  }
}

interface Lab {
  readonly store: DeployerStore;
  /** The first deployer, with the lab6 cluster state applied. */
  readonly server: DeployerReplica;
  /** Another deployer on the same store (a replica, or the first one started again). */
  start(options?: ReplicaOptions): Promise<DeployerReplica>;
}

/** A store and a first deployer on it; every deployer started and the store are removed after the test. */
async function lab(t: ExecutionContext, target: DatabaseTargetName, options: ReplicaOptions = {}): Promise<Lab> {
  const store = await createDeployerStore(target);
  const replicas: DeployerReplica[] = [];
  t.teardown(async () => {
    for (const r of replicas) await r.stop();
    await store.remove();
  });
  const start = async (more: ReplicaOptions = {}) => {
    const replica = await startReplica(store, more);
    replicas.push(replica);
    return replica;
  };
  const server = await start(options);
  await server.cluster.applyClusterState({ state: ClusterState.fromJSON(LAB6), dryRun: false, expectedGeneration: 0n });
  return { store, server, start };
}

function targetOf(t: ExecutionContext): DatabaseTargetName {
  return t.title.endsWith('[postgres]') ? 'postgres' : 'pglite';
}

function installer(server: { channel: DeployerReplica['channel']; joinToken: string }, facts: Partial<MachineFacts> = {}): SimulatedInstaller {
  return new SimulatedInstaller({ channel: server.channel, joinToken: server.joinToken }, machineInventory(optiplexFacts(facts)));
}

/** The same installer, talking to `server` (a replica, or the deployer started again) from now on. */
function reconnected(machine: SimulatedInstaller, server: { channel: DeployerReplica['channel']; joinToken: string }): SimulatedInstaller {
  return Object.assign(new SimulatedInstaller({ channel: server.channel, joinToken: server.joinToken }, machine.inventory), {
    machineId: machine.machineId,
    sessionSecret: machine.sessionSecret,
    installToken: machine.installToken,
    bootId: machine.bootId,
  });
}

/**
 * Retries `call` while the server is UNAVAILABLE, as an installer does: just after a restart the
 * client may still be backing off from the connection it lost.
 */
async function whenServed<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (!(err instanceof ClientError) || err.code !== Status.UNAVAILABLE || attempt >= 50) throw err;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

function watchRequest(request: Partial<WatchMachinesRequest> = {}): WatchMachinesRequest {
  return { sinceResourceVersion: 0n, states: [], nodeClass: '', pool: '', labelSelector: '', query: '', ...request };
}

/** A watch read in the background; tests take its events one at a time, in order. */
class Watcher {
  readonly events: WatchMachinesResponse[] = [];
  private taken = 0;
  private readonly abort = new AbortController();
  private waiting: (() => void) | undefined;
  /** How the stream ended: undefined while open or after a clean end. */
  error: unknown;
  ended = false;
  readonly done: Promise<void>;

  constructor(client: MachineClient, request: Partial<WatchMachinesRequest> = {}) {
    this.done = (async () => {
      try {
        for await (const e of client.watchMachines(watchRequest(request), { signal: this.abort.signal })) {
          this.events.push(e);
          this.waiting?.();
        }
      } catch (err) {
        this.error = err;
      } finally {
        this.ended = true;
        this.waiting?.();
      }
    })();
  }

  /** The next event, waiting for it. */
  async next(timeoutMs = EVENT_TIMEOUT_MS): Promise<WatchMachinesResponse> {
    const deadline = Date.now() + timeoutMs;
    while (this.events.length <= this.taken) {
      if (this.ended) throw new Error(`watch ended: ${String(this.error)}`);
      if (Date.now() > deadline) throw new Error(`no watch event within ${timeoutMs} ms (got ${this.events.length})`);
      await new Promise<void>((resolve) => {
        this.waiting = resolve;
        setTimeout(resolve, 100);
      });
    }
    return this.events[this.taken++] as WatchMachinesResponse;
  }

  /** The events up to and including the first BOOKMARK. */
  async snapshot(): Promise<{ machines: WatchMachinesResponse[]; bookmark: WatchMachinesResponse }> {
    const machines: WatchMachinesResponse[] = [];
    for (;;) {
      const e = await this.next();
      if (e.type === E.MACHINE_EVENT_TYPE_BOOKMARK) return { machines, bookmark: e };
      machines.push(e);
    }
  }

  /** The next event that is not a BOOKMARK. */
  async change(): Promise<WatchMachinesResponse> {
    for (;;) {
      const e = await this.next();
      if (e.type !== E.MACHINE_EVENT_TYPE_BOOKMARK) return e;
    }
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.done;
  }
}

function openWatch(t: ExecutionContext, client: MachineClient, request: Partial<WatchMachinesRequest> = {}): Watcher {
  const watcher = new Watcher(client, request);
  t.teardown(() => watcher.close());
  return watcher;
}

/** `TYPE state machine` for messages. */
function describe(e: WatchMachinesResponse): string {
  return `${E[e.type]} ${e.machine ? `${S[e.machine.state]} ${e.machine.machineId}` : ''} rv=${e.resourceVersion}`;
}

function expectEvent(t: ExecutionContext, e: WatchMachinesResponse, type: MachineEventType, machineId: string, state?: MachineState): void {
  t.is(E[e.type], E[type], describe(e));
  t.is(e.machine?.machineId, machineId, describe(e));
  if (state !== undefined) t.is(S[e.machine?.state ?? S.MACHINE_STATE_UNSPECIFIED], S[state], describe(e));
}

eachTarget('a watcher sees a machine discovered and walked through its install, change by change and in order', async (t) => {
  const { server } = await lab(t, targetOf(t));
  const watcher = openWatch(t, server.machines);
  const { machines, bookmark } = await watcher.snapshot();
  t.deepEqual(machines, [], 'no machine yet');

  const machine = installer(server);
  const discovered = await machine.discover();
  const seen: WatchMachinesResponse[] = [];
  const added = await watcher.change();
  seen.push(added);
  expectEvent(t, added, E.MACHINE_EVENT_TYPE_ADDED, machine.machineId, discovered.state);
  t.is(discovered.state, S.MACHINE_STATE_INSTALL_PENDING, 'the lab6 rule enrols and deploys an OptiPlex on its first Discover');
  t.truthy(added.machine?.assignment?.hostname, 'the version sent carries the assignment made in the same change');

  await machine.fetchPlan();
  const installing = await watcher.change();
  seen.push(installing);
  expectEvent(t, installing, E.MACHINE_EVENT_TYPE_MODIFIED, machine.machineId, S.MACHINE_STATE_INSTALLING);
  for (const step of INSTALL_STEPS) {
    await machine.report({ ...step, outcome: InstallOutcome.INSTALL_OUTCOME_IN_PROGRESS });
    const progress = await watcher.change();
    seen.push(progress);
    expectEvent(t, progress, E.MACHINE_EVENT_TYPE_MODIFIED, machine.machineId, S.MACHINE_STATE_INSTALLING);
    t.is(progress.machine?.installProgress?.percent, step.percent);
    t.is(InstallPhase[progress.machine?.installProgress?.phase ?? 0], InstallPhase[step.phase]);
  }
  await machine.report({ phase: InstallPhase.INSTALL_PHASE_FINALIZE, percent: 100, message: 'installed; rebooting', outcome: InstallOutcome.INSTALL_OUTCOME_SUCCEEDED });
  const installed = await watcher.change();
  seen.push(installed);
  expectEvent(t, installed, E.MACHINE_EVENT_TYPE_MODIFIED, machine.machineId, S.MACHINE_STATE_INSTALLED);

  let previous = bookmark.resourceVersion;
  for (const e of seen) {
    t.true(e.resourceVersion > previous, `${describe(e)} comes after ${previous}`);
    t.is<bigint | undefined, bigint | undefined>(e.resourceVersion, e.machine?.resourceVersion, 'a live event carries the version of the machine it sends');
    previous = e.resourceVersion;
  }
  const listed = await server.machines.getMachine({ key: { $case: 'machineId', value: machine.machineId } });
  t.deepEqual(listed.machine, installed.machine, 'the last event is the machine as GetMachine returns it');
});

eachTarget('a filtered watch sends the machines that match, a machine entering as ADDED and leaving once', async (t) => {
  const { server } = await lab(t, targetOf(t));
  const thinkcentre = installer(server, { vendor: 'LENOVO', productName: 'ThinkCentre M720q' });
  await thinkcentre.discover();
  const installingWorkers = openWatch(t, server.machines, { nodeClass: 'worker', states: [S.MACHINE_STATE_INSTALLING] });
  const bySerial = openWatch(t, server.machines, { query: thinkcentre.inventory.identity?.serialNumber.toLowerCase() ?? '' });
  t.deepEqual((await installingWorkers.snapshot()).machines, []);
  const only = await bySerial.snapshot();
  t.deepEqual(
    only.machines.map((e) => [E[e.type], e.machine?.machineId, e.resourceVersion]),
    [[E[E.MACHINE_EVENT_TYPE_ADDED], thinkcentre.machineId, 0n]],
    'the snapshot holds the one matching machine; snapshot events carry 0',
  );

  const worker = installer(server);
  await worker.discover();
  await worker.fetchPlan();
  const entered = await installingWorkers.change();
  expectEvent(t, entered, E.MACHINE_EVENT_TYPE_ADDED, worker.machineId, S.MACHINE_STATE_INSTALLING);
  await worker.report({ ...INSTALL_STEPS[0], outcome: InstallOutcome.INSTALL_OUTCOME_IN_PROGRESS });
  expectEvent(t, await installingWorkers.change(), E.MACHINE_EVENT_TYPE_MODIFIED, worker.machineId, S.MACHINE_STATE_INSTALLING);
  await worker.report({ phase: InstallPhase.INSTALL_PHASE_FINALIZE, percent: 100, message: 'done', outcome: InstallOutcome.INSTALL_OUTCOME_SUCCEEDED });
  expectEvent(t, await installingWorkers.change(), E.MACHINE_EVENT_TYPE_MODIFIED, worker.machineId, S.MACHINE_STATE_INSTALLED);

  // Nothing more of either machine reaches either watch: the next events are the ones below.
  await thinkcentre.discover();
  const other = installer(server);
  await other.discover();
  await other.fetchPlan();
  expectEvent(t, await installingWorkers.change(), E.MACHINE_EVENT_TYPE_ADDED, other.machineId, S.MACHINE_STATE_INSTALLING);
  expectEvent(t, await bySerial.change(), E.MACHINE_EVENT_TYPE_MODIFIED, thinkcentre.machineId, S.MACHINE_STATE_INSPECTED);

  const bad = new Watcher(server.machines, { labelSelector: 'rack=a=b' });
  await bad.done;
  t.true(bad.error instanceof ClientError && bad.error.code === Status.INVALID_ARGUMENT && bad.error.details.includes('label_selector'), String(bad.error));
});

eachTarget('a watch resumed from a resource_version gets exactly the changes made since, once each', async (t) => {
  const { server } = await lab(t, targetOf(t));
  const early = installer(server);
  await early.discover();
  const first = new Watcher(server.machines);
  const { machines, bookmark } = await first.snapshot();
  await first.close();
  t.deepEqual(machines.map((e) => [E[e.type], e.machine?.machineId]), [[E[E.MACHINE_EVENT_TYPE_ADDED], early.machineId]]);

  // While nobody watches: a known machine is deleted, a new one installs, a short-lived one comes and goes.
  await server.machines.delete({ machineId: early.machineId, reason: 'watch test', expectedResourceVersion: 0n });
  const fresh = installer(server);
  await fresh.discover();
  await fresh.fetchPlan();
  const shortLived = installer(server);
  await shortLived.discover();
  await server.machines.delete({ machineId: shortLived.machineId, reason: 'watch test', expectedResourceVersion: 0n });

  const resumed = openWatch(t, server.machines, { sinceResourceVersion: bookmark.resourceVersion });
  const deleted = await resumed.change();
  expectEvent(t, deleted, E.MACHINE_EVENT_TYPE_DELETED, early.machineId, S.MACHINE_STATE_INSTALL_PENDING);
  t.truthy(deleted.machine?.assignment?.hostname, 'DELETED carries the last version, assignment included');
  t.true(deleted.resourceVersion > bookmark.resourceVersion);
  const caughtUp = await resumed.change();
  expectEvent(t, caughtUp, E.MACHINE_EVENT_TYPE_ADDED, fresh.machineId, S.MACHINE_STATE_INSTALLING);
  t.true(caughtUp.resourceVersion > deleted.resourceVersion);

  const sentinel = installer(server);
  await sentinel.discover();
  expectEvent(t, await resumed.change(), E.MACHINE_EVENT_TYPE_ADDED, sentinel.machineId);

  const fromMiddle = openWatch(t, server.machines, { sinceResourceVersion: deleted.resourceVersion });
  expectEvent(t, await fromMiddle.change(), E.MACHINE_EVENT_TYPE_ADDED, fresh.machineId, S.MACHINE_STATE_INSTALLING);
  expectEvent(t, await fromMiddle.change(), E.MACHINE_EVENT_TYPE_ADDED, sentinel.machineId);

  // ListMachines' resource_version: a watch from it starts after everything listed.
  const listed = await server.machines.listMachines({});
  t.deepEqual(listed.machines.map((m) => m.machineId).sort(), [fresh.machineId, sentinel.machineId].sort());
  const afterList = openWatch(t, server.machines, { sinceResourceVersion: listed.resourceVersion });
  await fresh.report({ ...INSTALL_STEPS[0], outcome: InstallOutcome.INSTALL_OUTCOME_IN_PROGRESS });
  expectEvent(t, await afterList.change(), E.MACHINE_EVENT_TYPE_MODIFIED, fresh.machineId, S.MACHINE_STATE_INSTALLING);
  expectEvent(t, await resumed.change(), E.MACHINE_EVENT_TYPE_MODIFIED, fresh.machineId, S.MACHINE_STATE_INSTALLING);
  expectEvent(t, await fromMiddle.change(), E.MACHINE_EVENT_TYPE_MODIFIED, fresh.machineId, S.MACHINE_STATE_INSTALLING);

  const future = new Watcher(server.machines, { sinceResourceVersion: listed.resourceVersion + 1_000_000n });
  await future.done;
  t.true(future.error instanceof ClientError && future.error.code === Status.OUT_OF_RANGE, String(future.error));
});

eachTarget(
  'a change made through one deployer replica reaches a watcher on another (LISTEN/NOTIFY)',
  async (t) => {
    // Polls far apart: only a notification can bring a change within the time allowed below.
    const slowPoll = { component: { machineFeed: { pollIntervalMs: 600_000 } } };
    const { server: a, start } = await lab(t, 'postgres', slowPoll);
    const b = await start(slowPoll);
    const onA = openWatch(t, a.machines);
    const onB = openWatch(t, b.machines);
    await onA.snapshot();
    await onB.snapshot();

    // The first change may also reach B when its listening connection comes up (a resync);
    // the ones after it can only come by notification.
    const viaA = installer(a);
    await viaA.discover();
    expectEvent(t, await onB.change(), E.MACHINE_EVENT_TYPE_ADDED, viaA.machineId, S.MACHINE_STATE_INSTALL_PENDING);
    expectEvent(t, await onA.change(), E.MACHINE_EVENT_TYPE_ADDED, viaA.machineId, S.MACHINE_STATE_INSTALL_PENDING);

    const viaB = reconnected(viaA, b);
    await viaB.fetchPlan();
    expectEvent(t, await onA.change(), E.MACHINE_EVENT_TYPE_MODIFIED, viaA.machineId, S.MACHINE_STATE_INSTALLING);
    expectEvent(t, await onB.change(), E.MACHINE_EVENT_TYPE_MODIFIED, viaA.machineId, S.MACHINE_STATE_INSTALLING);
    await reconnected(viaB, a).report({ ...INSTALL_STEPS[0], outcome: InstallOutcome.INSTALL_OUTCOME_IN_PROGRESS });
    const progress = await onB.change();
    expectEvent(t, progress, E.MACHINE_EVENT_TYPE_MODIFIED, viaA.machineId, S.MACHINE_STATE_INSTALLING);
    t.is(progress.machine?.installProgress?.percent, INSTALL_STEPS[0]?.percent);
  },
  'postgres',
);

eachTarget(
  'a change committed after a later one is still delivered first: a watch waits for transactions still writing',
  async (t) => {
    const { store, server } = await lab(t, 'postgres');
    const held = installer(server);
    const other = installer(server);
    await held.discover();
    await other.discover();
    const watcher = openWatch(t, server.machines);
    await watcher.snapshot();
    const before = watcher.events.length;

    // A transaction takes the next resource_version for one machine and stays open...
    const writer = new pg.Client({ connectionString: store.databaseUrl });
    await writer.connect();
    t.teardown(() => writer.end());
    await writer.query('BEGIN');
    const taken = await writer.query<{ resource_version: string }>(
      `UPDATE deployer.machines SET resource_version = nextval('deployer.resource_version_seq'), status_message = 'held by a slow transaction' WHERE machine_id = $1 RETURNING resource_version`,
      [held.machineId],
    );
    // ...while a change with a larger version commits.
    await other.discover();
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    t.deepEqual(watcher.events.slice(before).map(describe), [], 'nothing is sent while a smaller version may still appear');

    await writer.query('COMMIT');
    const first = await watcher.change();
    expectEvent(t, first, E.MACHINE_EVENT_TYPE_MODIFIED, held.machineId);
    t.is(first.resourceVersion, BigInt(taken.rows[0]?.resource_version ?? 0));
    t.is(first.machine?.statusMessage, 'held by a slow transaction');
    const second = await watcher.change();
    expectEvent(t, second, E.MACHINE_EVENT_TYPE_MODIFIED, other.machineId);
    t.true(second.resourceVersion > first.resourceVersion);
  },
  'postgres',
);

eachTarget(
  'machines discovered concurrently through two replicas reach a watcher each once, in order, and a resumed watch gets exactly the later ones',
  async (t) => {
    const { server: a, start } = await lab(t, 'postgres');
    const b = await start();
    const watcher = openWatch(t, a.machines);
    await watcher.snapshot();
    const machines = Array.from({ length: 30 }, (_, i) => installer(i % 2 === 0 ? a : b));
    // An installer whose Discover lost every name to concurrent enrolments asks again.
    const discover = async (m: SimulatedInstaller): Promise<void> => {
      for (let attempt = 0; ; attempt++) {
        try {
          await m.discover();
          return;
        } catch (err) {
          if (!(err instanceof ClientError) || err.code !== Status.ABORTED || attempt >= 10) throw err;
        }
      }
    };
    await Promise.all(machines.map(discover));
    const seen: WatchMachinesResponse[] = [];
    while (seen.length < machines.length) seen.push(await watcher.change());
    t.deepEqual(seen.map((e) => e.machine?.machineId).sort(), machines.map((m) => m.machineId).sort(), seen.map(describe).join('\n'));
    t.true(seen.every((e) => e.type === E.MACHINE_EVENT_TYPE_ADDED));
    t.deepEqual(seen.map((e) => e.resourceVersion), [...seen.map((e) => e.resourceVersion)].sort((x, y) => (x < y ? -1 : 1)));

    const middle = seen[14] as WatchMachinesResponse;
    const resumed = openWatch(t, b.machines, { sinceResourceVersion: middle.resourceVersion });
    const later = seen.slice(15).map((e) => e.machine?.machineId);
    const caughtUp: WatchMachinesResponse[] = [];
    while (caughtUp.length < later.length) caughtUp.push(await resumed.change());
    t.deepEqual(caughtUp.map((e) => e.machine?.machineId), later);
  },
  'postgres',
);

/** A watch that, like a controller or `deployer-ctl`, reconnects after UNAVAILABLE and resumes from the last version received. */
class ResumingWatcher {
  readonly events: WatchMachinesResponse[] = [];
  readonly interruptions: Status[] = [];
  private last = 0n;
  private readonly abort = new AbortController();
  private readonly done: Promise<void>;
  private taken = 0;

  constructor(address: string, token: string) {
    const channel = openChannel(address);
    const client = createServiceClient(MachineServiceDefinition, channel, { token });
    this.done = (async () => {
      while (!this.abort.signal.aborted) {
        try {
          for await (const e of client.watchMachines(watchRequest({ sinceResourceVersion: this.last }), { signal: this.abort.signal })) {
            this.events.push(e);
            if (e.resourceVersion > 0n) this.last = e.resourceVersion;
          }
        } catch (err) {
          if (this.abort.signal.aborted) break;
          if (!(err instanceof ClientError) || err.code !== Status.UNAVAILABLE) throw err;
          this.interruptions.push(err.code);
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      }
      channel.close();
    })();
  }

  async change(): Promise<WatchMachinesResponse> {
    const deadline = Date.now() + EVENT_TIMEOUT_MS * 2;
    for (;;) {
      const e = this.events[this.taken];
      if (e) {
        this.taken++;
        if (e.type !== E.MACHINE_EVENT_TYPE_BOOKMARK) return e;
        continue;
      }
      if (Date.now() > deadline) throw new Error('no watch event in time');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.done;
  }
}

eachTarget('a watcher outlives a deployer restart: UNAVAILABLE, then it resumes with no change lost or repeated', async (t) => {
  const { server, start } = await lab(t, targetOf(t));
  const watcher = new ResumingWatcher(server.address, server.adminToken);
  t.teardown(() => watcher.close());
  let machine = installer(server);
  await machine.discover();
  expectEvent(t, await watcher.change(), E.MACHINE_EVENT_TYPE_ADDED, machine.machineId, S.MACHINE_STATE_INSTALL_PENDING);

  await server.stop();
  machine = reconnected(machine, await start({ port: server.port }));
  // Made before the watcher is back, most likely: read from the tables when it resumes.
  await whenServed(() => machine.fetchPlan());
  expectEvent(t, await watcher.change(), E.MACHINE_EVENT_TYPE_MODIFIED, machine.machineId, S.MACHINE_STATE_INSTALLING);
  await machine.report({ ...INSTALL_STEPS[0], outcome: InstallOutcome.INSTALL_OUTCOME_IN_PROGRESS });
  expectEvent(t, await watcher.change(), E.MACHINE_EVENT_TYPE_MODIFIED, machine.machineId, S.MACHINE_STATE_INSTALLING);

  t.true(watcher.interruptions.includes(Status.UNAVAILABLE), 'the open watch ended with UNAVAILABLE');
  const changes = watcher.events.filter((e) => e.type !== E.MACHINE_EVENT_TYPE_BOOKMARK);
  t.is(changes.length, 3, changes.map(describe).join('\n'));
  const versions = changes.map((e) => e.resourceVersion);
  t.deepEqual([...versions].sort((x, y) => (x < y ? -1 : 1)), versions, 'in resource_version order');
  t.is(new Set(versions).size, versions.length, 'no change twice');
});

eachTarget(
  'a watcher that stops reading is ended with RESOURCE_EXHAUSTED, saying where to resume',
  async (t) => {
    const { server } = await lab(t, 'pglite', { component: { machineFeed: { queueLimit: 4, bookmarkIntervalMs: 300 } } });
    const iterator = server.machines.watchMachines(watchRequest())[Symbol.asyncIterator]();
    t.teardown(() => iterator.return?.());
    const first = (await iterator.next()).value as WatchMachinesResponse;
    t.is(E[first.type], E[E.MACHINE_EVENT_TYPE_BOOKMARK]);
    const idle = (await iterator.next()).value as WatchMachinesResponse;
    t.like(idle, { type: E.MACHINE_EVENT_TYPE_BOOKMARK, resourceVersion: first.resourceVersion }, 'a quiet watch gets bookmarks');
    // The client reads nothing while many machines arrive: flow control holds the server's
    // writes, so changes pile up in the watch's queue.
    for (let batch = 0; batch < 8; batch++) await Promise.all(Array.from({ length: 10 }, () => installer(server).discover()));
    let received = 0;
    const error = await t.throwsAsync(async () => {
      for (;;) {
        const step = await iterator.next();
        if (step.done) return;
        received++;
      }
    });
    t.true(error instanceof ClientError && error.code === Status.RESOURCE_EXHAUSTED, String(error));
    t.regex((error as ClientError).details, /watch again from resource_version \d+/);
    t.true(received < 80, `the stream ended before all 80 machines were sent (${received} were)`);
  },
  'pglite',
);

/** Runs `deployer-ctl` with `args`, collecting its output lines. */
function runCli(t: ExecutionContext, args: readonly string[], stateDir: string): { child: ChildProcess; lines: string[]; stderr: string[]; exited: Promise<number | null>; waitFor(predicate: (line: string) => boolean, what: string): Promise<string> } {
  // The state dir (endpoint.json, ca.pem) is the server's, whatever the directory the tests run in holds.
  const child = spawn(process.execPath, [DEPLOYER_CTL_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', ULTRACLOUD_STATE_DIR: stateDir } });
  const lines: string[] = [];
  const stderr: string[] = [];
  let buffer = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    const parts = buffer.split('\n');
    buffer = parts.pop() ?? '';
    lines.push(...parts);
  });
  child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return {
    child,
    lines,
    stderr,
    exited,
    async waitFor(predicate, what) {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const found = lines.find(predicate);
        if (found) return found;
        if (child.exitCode !== null) throw new Error(`deployer-ctl exited (${child.exitCode}) before ${what}:\n${lines.join('\n')}\n${stderr.join('')}`);
        if (Date.now() > deadline) throw new Error(`deployer-ctl printed no ${what}:\n${lines.join('\n')}\n${stderr.join('')}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
  };
}

interface CliChange {
  type: string;
  resourceVersion: string;
  machineId: string;
  hostname: string;
  from: string | null;
  to: string;
  progress?: { percent: number };
}

eachTarget('deployer-ctl machines watch prints each change as it happens and resumes after a server restart', async (t) => {
  const { store, server, start } = await lab(t, targetOf(t));
  let machine = installer(server);
  await machine.discover();
  const json = runCli(t, ['--server', server.address, '--token', server.adminToken, 'machines', 'watch', '--json'], store.stateDir);
  const text = runCli(t, ['--server', server.address, '--token', server.adminToken, 'machines', 'watch', '--state', 'installing,installed'], store.stateDir);
  const parsed = () => json.lines.map((l) => JSON.parse(l) as CliChange);
  const mine = (c: CliChange) => c.machineId === machine.machineId;

  const added = JSON.parse(await json.waitFor((l) => l.includes('"added"'), 'the snapshot line')) as CliChange;
  t.like(added, { type: 'added', machineId: machine.machineId, from: null, to: 'install-pending' });
  t.regex(added.hostname, /^worker-\d+$/);

  await machine.fetchPlan();
  await json.waitFor((l) => l.includes('"to":"installing"'), 'the installing line');
  const line = await text.waitFor((l) => l.includes(' installing '), 'the text line');
  t.regex(line, new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ  added     ${added.hostname} \\(${machine.machineId}\\)  - → installing  rv \\d+$`));

  await server.stop();
  machine = reconnected(machine, await start({ port: server.port }));
  await whenServed(() => machine.report({ ...INSTALL_STEPS[0], outcome: InstallOutcome.INSTALL_OUTCOME_IN_PROGRESS }));
  await machine.report({ phase: InstallPhase.INSTALL_PHASE_FINALIZE, percent: 100, message: 'done', outcome: InstallOutcome.INSTALL_OUTCOME_SUCCEEDED });
  await json.waitFor((l) => l.includes('"to":"installed"'), 'the installed line');
  await text.waitFor((l) => l.includes('installing → installed'), 'the text installed line');

  // The progress report and the success may reach a watcher resuming after both as one change.
  const changes = parsed().filter(mine);
  t.deepEqual(
    changes.filter((c) => c.from !== c.to).map((c) => [c.type, c.from, c.to]),
    [
      ['added', null, 'install-pending'],
      ['modified', 'install-pending', 'installing'],
      ['modified', 'installing', 'installed'],
    ],
    json.lines.join('\n'),
  );
  const versions = changes.map((c) => BigInt(c.resourceVersion));
  t.is(new Set(versions).size, versions.length, 'no change printed twice');
  t.true(json.stderr.join('').includes('resuming after resource_version'), 'it said it was resuming');

  json.child.kill('SIGINT');
  t.is(await json.exited, 0, 'Ctrl-C ends the watch with exit code 0');
});

test('deployer-ctl machines watch reports a server it cannot reach (exit 5) and a bad --since (exit 2)', async (t) => {
  const empty = await mkdtemp(join(tmpdir(), 'ultracloud-watch-cli-'));
  t.teardown(() => rm(empty, { recursive: true, force: true }));
  const unreachable = runCli(t, ['--server', '127.0.0.1:1', '--token', 'x', 'machines', 'watch'], empty);
  t.is(await unreachable.exited, 5);
  t.regex(unreachable.stderr.join(''), /^deployer-ctl: UNAVAILABLE: /m);
  const badSince = runCli(t, ['--server', '127.0.0.1:1', '--token', 'x', 'machines', 'watch', '--since', 'yesterday'], empty);
  t.is(await badSince.exited, 2);
  t.regex(badSince.stderr.join(''), /--since yesterday: expected a resource_version/);
});
