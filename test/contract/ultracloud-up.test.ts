// Contract: the real `ultracloud up` binary, on a real socket with embedded PGlite, serves what it
// says it serves, answers buf curl and deployer-ctl, stops cleanly on SIGTERM, and refuses bad
// settings before it writes anything.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFileRegistry, fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import test from 'ava';
import { ClientError, createChannel, createClient, Status } from 'nice-grpc';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from '../../gen/ts/grpc/health/v1/health.js';
import { REFLECTION_IMAGE_PATH } from '../../lib/grpc/image.js';
import { BootstrapServiceDefinition } from '../../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import { MachineInventory } from '../../gen/ts/ultracloud/inventory/v1/inventory.js';
import { createServiceClient, openChannel } from '../../lib/grpc/client.js';
import { bufCurl, describeResult, outputLines } from '../helpers/buf.js';
import { DEPLOYER_CTL_BIN, logEvents, type NodeRun, runNode, startUltracloud, ULTRACLOUD_BIN, type UltracloudProcess } from '../helpers/ultracloud-process.js';

const HEALTH = 'grpc.health.v1.Health';
const COMPONENTS = ['deployer', 'host-controller', 'fleet-scheduler'];

let workDir: string;
let up: UltracloudProcess;
/** Runs of the binary with refused settings, started alongside `up` to save wall-clock time. */
let badListen: Promise<RefusedRun>;
let wildcardListen: Promise<RefusedRun>;
/** The `services` array of the process's `server.listening` event. */
let listening: string[];

/** The environment without any ULTRACLOUD_* setting of the developer running the tests. */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ULTRACLOUD_')) env[k] = v;
  return { ...env, ...extra };
}


interface RefusedRun extends NodeRun {
  readonly dir: string;
  readonly stateDir: string;
}

async function runRefused(name: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<RefusedRun> {
  const dir = await mkdtemp(join(tmpdir(), `ultracloud-${name}-`));
  const stateDir = join(dir, 'state');
  const run = await runNode([ULTRACLOUD_BIN, 'up', ...args.map((a) => a.replace('$STATE', stateDir))], {
    cwd: dir,
    env: cleanEnv(Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v?.replace('$STATE', stateDir)]))),
  });
  return { ...run, dir, stateDir };
}

test.before(async () => {
  badListen = runRefused('badlisten', [], { ULTRACLOUD_LISTEN: 'nonsense', ULTRACLOUD_STATE_DIR: '$STATE' });
  wildcardListen = runRefused('wildcard', ['--listen', '0.0.0.0:0', '--state-dir', '$STATE', '--insecure-loopback'], {});
  badListen.catch(() => undefined);
  wildcardListen.catch(() => undefined);
  // The state dir is `<workDir>/.ultracloud`, as `npm start` makes it, so deployer-ctl run from
  // workDir finds the admin token like a kubeconfig.
  // `--no-cluster`: these tests start from an empty deployer, not the example lab `up` applies.
  workDir = await mkdtemp(join(tmpdir(), 'ultracloud-up-'));
  up = await startUltracloud('up', { stateDir: join(workDir, '.ultracloud'), args: ['--no-cluster'], env: cleanEnv({ ULTRACLOUD_LOG_LEVEL: 'debug' }) });
  const event = logEvents(up.output).find((e) => e.event === 'server.listening');
  if (!event || !Array.isArray(event.services)) throw new Error(`no server.listening event with services:\n${up.output.join('')}`);
  listening = event.services as string[];
});

test.after.always(async () => {
  await up?.stop('SIGKILL');
  for (const run of [badListen, wildcardListen]) {
    const dir = await run?.then((r) => r.dir).catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  }
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

test.serial('buf curl lists grpc.health.v1.Health and exactly the services the process says it serves', async (t) => {
  const result = await bufCurl(up.address, ['--list-services']);
  t.is(result.code, 0, describeResult('curl --list-services', result));
  t.deepEqual(outputLines(result).sort(), [...new Set([...listening, HEALTH])].sort(), `server.listening said: ${listening.join(', ')}`);
});

test.serial('buf curl Health/Check against the running binary reports SERVING', async (t) => {
  const result = await bufCurl(up.address, ['--data', '{}'], { path: `${HEALTH}/Check` });
  t.is(result.code, 0, describeResult('curl Health/Check', result));
  t.regex(result.stdout, /"status":\s*"SERVING"/);
});

test.serial('up writes admin.token into its state dir, readable only by its owner', (t) => {
  const path = join(up.stateDir, 'admin.token');
  t.true(existsSync(path), `${path} missing`);
  t.is(statSync(path).mode & 0o777, 0o600);
  t.regex(readFileSync(path, 'utf8'), /^ucadm_[A-Za-z0-9_-]{20,}\n$/);
  const ready = logEvents(up.output).find((e) => e.event === 'ready');
  t.is(ready?.admin_token_file, path);
  t.false(up.output.join('').includes(readFileSync(path, 'utf8').trim()), 'the admin token itself must never be logged');
});

test.serial('deployer-ctl status --json, run next to the state dir, reports every component with the documented exit code', async (t) => {
  const run = await runNode([DEPLOYER_CTL_BIN, '--server', up.address, '--json', 'status'], { cwd: workDir, env: cleanEnv() });
  const report = JSON.parse(run.stdout) as { services: { component: string; service: string; address: string; health: string }[] };
  t.deepEqual([...new Set(report.services.map((s) => s.component))].sort(), [...COMPONENTS].sort());

  // Every UltraCloud service in the contract is accounted for, and each one's health matches
  // what the server actually registered.
  const image = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(REFLECTION_IMAGE_PATH)));
  const contract = [...image.files].flatMap((f) => f.services.map((s) => s.typeName)).filter((n) => n.startsWith('ultracloud.'));
  t.deepEqual(report.services.map((s) => s.service).sort(), contract.sort());
  for (const s of report.services) {
    t.is(s.address, up.address);
    t.is(s.health, listening.includes(s.service) ? 'serving' : 'not-served', `${s.component} ${s.service}`);
  }
  // cli/deployer-ctl/output.ts: 0 when what is served is serving, 1 when nothing is.
  const expectedCode = report.services.some((s) => listening.includes(s.service)) ? 0 : 1;
  t.is(run.code, expectedCode, `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
});

test.serial('the deployer is served, and an RPC with an empty required field answers INVALID_ARGUMENT naming the field', async (t) => {
  t.true(listening.includes('ultracloud.bootstrap.v1.BootstrapService'), `served: ${listening.join(', ')}`);
  const joinToken = readFileSync(join(up.stateDir, 'join.token'), 'utf8').trim();
  const discover = await bufCurl(up.address, ['-H', `authorization: Bearer ${joinToken}`, '--data', '{"bootId":"b"}'], { path: 'ultracloud.bootstrap.v1.BootstrapService/Discover' });
  t.not(discover.code, 0);
  t.regex(discover.stdout + discover.stderr, /invalid_argument/);
  t.regex(discover.stdout + discover.stderr, /inventory: required/);

  const admin = readFileSync(join(up.stateDir, 'admin.token'), 'utf8').trim();
  const apply = await bufCurl(up.address, ['-H', `authorization: Bearer ${admin}`, '--data', '{"dryRun":true}'], { path: 'ultracloud.deployer.v1.ClusterService/ApplyClusterState' });
  t.regex(apply.stdout + apply.stderr, /invalid_argument/);
  t.regex(apply.stdout + apply.stderr, /state: required/);

  // Nothing was written: no machine, no cluster state.
  const list = await bufCurl(up.address, ['-H', `authorization: Bearer ${admin}`, '--data', '{}'], { path: 'ultracloud.deployer.v1.MachineService/ListMachines' });
  t.is(list.code, 0, describeResult('ListMachines', list));
  t.notRegex(list.stdout, /machineId/);
  const state = await bufCurl(up.address, ['-H', `authorization: Bearer ${admin}`, '--data', '{}'], { path: 'ultracloud.deployer.v1.ClusterService/GetClusterState' });
  t.regex(state.stdout + state.stderr, /not_found/);
});

test.serial('deployer-ctl machines list and show present a discovered machine, with exit codes scripts can rely on', async (t) => {
  const joinToken = readFileSync(join(up.stateDir, 'join.token'), 'utf8').trim();
  const installer = createServiceClient(BootstrapServiceDefinition, openChannel(up.address), { token: joinToken });
  const discovered = await installer.discover({
    bootId: 'boot-1',
    installerVersion: 'test',
    inventory: MachineInventory.fromPartial({
      identity: { systemUuid: '4c4c4544-0042-3510-8051-b4c04f4e4d31', serialNumber: 'CLI-TEST-1', vendor: 'Dell Inc.', productName: 'OptiPlex 7080' },
      cpu: { model: 'Intel(R) Core(TM) i7-10700', cores: 8, threads: 16 },
      memoryBytes: 32n * 1024n ** 3n,
      disks: [{ name: 'nvme0n1', sizeBytes: 512n * 1024n ** 3n, model: 'Samsung SSD 980', serial: 'S64DNF0R123456', byIdLinks: ['/dev/disk/by-id/nvme-Samsung_SSD_980_S64DNF0R123456'] }],
      nics: [{ name: 'eno1', macAddress: '3c:ec:ef:00:11:22', permanentMacAddress: '3c:ec:ef:00:11:22', linkUp: true, speedMbps: 1000 }],
    }),
  });
  t.regex(discovered.machineId, /^m-/);
  const env = cleanEnv();
  const list = await runNode([DEPLOYER_CTL_BIN, '--server', up.address, 'machines', 'list'], { cwd: workDir, env });
  t.is(list.code, 0, list.stderr);
  t.regex(list.stdout, /^HOSTNAME\s+NODE ID\s+STATE\s+CLASS\s+POOL\s+IP\s+DISK\s+AGE\s+MACHINE ID$/m);
  t.true(list.stdout.includes(discovered.machineId), list.stdout);
  t.regex(list.stdout, /inspected/);

  const json = await runNode([DEPLOYER_CTL_BIN, '--server', up.address, '--json', 'machines', 'list', '--state', 'inspected'], { cwd: workDir, env });
  t.is(json.code, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as { machines: { machineId: string }[] };
  t.deepEqual(parsed.machines.map((m) => m.machineId), [discovered.machineId]);

  const show = await runNode([DEPLOYER_CTL_BIN, '--server', up.address, 'machines', 'show', discovered.machineId], { cwd: workDir, env });
  t.is(show.code, 0, show.stderr);
  t.regex(show.stdout, /^state\s+inspected/m);
  t.regex(show.stdout, /^serial\s+CLI-TEST-1/m);
  t.regex(show.stdout, /recent events \(oldest first\):/);

  const missing = await runNode([DEPLOYER_CTL_BIN, '--server', up.address, 'machines', 'show', 'no-such-host'], { cwd: workDir, env });
  t.is(missing.code, 3, 'not found');
  t.regex(missing.stderr, /no machine named no-such-host/);
  const usage = await runNode([DEPLOYER_CTL_BIN, '--server', up.address, 'machines', 'list', '--state', 'bogus'], { cwd: workDir, env });
  t.is(usage.code, 2);
  t.regex(usage.stderr, /unknown state "bogus"/);
  const down = await runNode([DEPLOYER_CTL_BIN, '--server', '127.0.0.1:1', 'machines', 'list'], { cwd: workDir, env });
  t.is(down.code, 5, 'unreachable');
});

test.serial('SIGTERM ends an open Health/Watch stream with UNAVAILABLE and exits 0', async (t) => {
  const channel = createChannel(up.address);
  t.teardown(() => channel.close());
  const health = createClient(HealthDefinition, channel);
  const stream = health.watch({ service: '' })[Symbol.asyncIterator]();
  const first = await stream.next();
  t.is(first.done, false);
  t.is(first.value?.status, HealthCheckResponse_ServingStatus.SERVING);

  const statuses: HealthCheckResponse_ServingStatus[] = [];
  const ended = (async () => {
    try {
      for (let next = await stream.next(); !next.done; next = await stream.next()) statuses.push(next.value.status);
      return 'ended without a status' as const;
    } catch (err) {
      return err;
    }
  })();
  const started = Date.now();
  const [outcome, code] = await Promise.all([ended, up.stop('SIGTERM')]);
  const elapsed = Date.now() - started;

  t.true(outcome instanceof ClientError, `stream ended with ${String(outcome)}`);
  const error = outcome as ClientError;
  t.is(Status[error.code], 'UNAVAILABLE', `details: ${error.details}`);
  // grpc-js also reports a dropped connection as UNAVAILABLE; the server's own words tell them apart.
  t.is(error.details, 'server is shutting down');
  t.false(statuses.includes(HealthCheckResponse_ServingStatus.SERVING), `statuses after SIGTERM: ${statuses.join(',')}`);
  t.is(code, 0, up.output.join(''));
  t.true(elapsed < 5_000, `took ${elapsed} ms to exit`);
  t.true(
    logEvents(up.output).some((e) => e.event === 'server.stopped'),
    'no server.stopped event',
  );
});

test('a malformed ULTRACLOUD_LISTEN stops the binary with exit code 2, naming the variable, before anything is written', async (t) => {
  const run = await badListen;
  t.is(run.code, 2, `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
  t.regex(run.stderr, /ULTRACLOUD_LISTEN/);
  t.regex(run.stderr, /nonsense/);
  t.false(existsSync(run.stateDir), 'state dir created despite bad configuration');
  t.deepEqual(await readdir(run.dir), []);
});

test('plaintext (--insecure-loopback) on 0.0.0.0 is refused with exit code 2 and a message about loopback', async (t) => {
  const run = await wildcardListen;
  t.is(run.code, 2, `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
  t.regex(run.stderr, /ULTRACLOUD_LISTEN/);
  t.regex(run.stderr, /loopback/);
  t.false(existsSync(run.stateDir), 'state dir created despite refused configuration');
  t.deepEqual(await readdir(run.dir), []);
});
