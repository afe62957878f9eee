// Integration: the real `bin/deployer-ctl.js`, run as a child process the way an operator runs
// it, against a live deployer on a loopback socket (the state dir's endpoint.json and admin.token
// tell it where and who, as after `npm start`). Checks what it prints, --json, and the exit codes
// scripts rely on: 0 ok, 1 server failure, 2 usage, 3 not found, 4 refused, 5 unreachable.
// The CLI's behaviour does not depend on the database, so one target (PGlite, what `npm start`
// uses) is enough here; MachineService itself is tested on both in machine-service.test.ts.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { ClusterState } from '../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import { InstallPhase, MachineState } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { type DeployerServer, startDeployerServer } from '../helpers/deployer-server.js';
import { machineInventory, optiplexFacts, SimulatedInstaller } from '../helpers/simulated-installer.js';
import { cleanEnv, DEPLOYER_CTL_BIN } from '../helpers/ultracloud-process.js';

const LAB6: unknown = JSON.parse(readFileSync(new URL('../fixtures/cluster-state/lab6.json', import.meta.url), 'utf8'));
const HP = { vendor: 'HP', productName: 'EliteDesk 800 G5' } as const;
const RESCUE_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBzL1fXgWk2xv6WqUoY4n9h0XcTt3bHn8j7y2QeK5m1P oncall@lab6';

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

const work = mkdtempSync(join(tmpdir(), 'deployer-ctl-test-'));
test.after.always(() => rmSync(work, { recursive: true, force: true }));

let started: Promise<DeployerServer> | undefined;
function lab(): Promise<DeployerServer> {
  started ??= (async () => {
    const server = await startDeployerServer('pglite');
    await server.cluster.applyClusterState({ state: ClusterState.fromJSON(LAB6), dryRun: false, expectedGeneration: 0n });
    return server;
  })();
  return started;
}
test.after.always(async () => (await started?.catch(() => undefined))?.stop());

/** The environment of an operator next to the server's state dir, without the developer's ULTRACLOUD_* settings. */
function operatorEnv(server: DeployerServer, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const { NO_COLOR: _noColor, FORCE_COLOR: _forceColor, ...env } = cleanEnv();
  return { ...env, ULTRACLOUD_STATE_DIR: server.stateDir, ...extra };
}

/** deployer-ctl with `args`; `tty`: on a pseudo-terminal made by script(1), as in an operator's shell. */
function ctl(server: DeployerServer, args: readonly string[], extra: NodeJS.ProcessEnv = {}, tty = false): Promise<Run> {
  const argv = [process.execPath, DEPLOYER_CTL_BIN, ...args];
  const [file, ...rest] = tty ? ['script', '-qec', argv.join(' '), '/dev/null'] : argv;
  return new Promise((resolve, reject) => {
    const child = spawn(file as string, rest, { cwd: work, env: operatorEnv(server, extra), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`deployer-ctl ${args.join(' ')} still running after 60 s:\n${stdout}\n${stderr}`));
    }, 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const show = (r: Run) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

function machine(server: DeployerServer, facts = {}): SimulatedInstaller {
  return new SimulatedInstaller({ channel: server.channel, joinToken: server.joinToken }, machineInventory(optiplexFacts(facts)));
}

async function stateOf(server: DeployerServer, machineId: string): Promise<MachineState | undefined> {
  return (await server.machines.getMachine({ key: { $case: 'machineId', value: machineId } })).machine?.state;
}

/** Checks a failed run: its exit code and the one stderr line with the gRPC code name. */
function failed(t: ExecutionContext, run: Run, code: number, line: RegExp, options: { commanderUsage?: boolean } = {}): void {
  t.is(run.code, code, show(run));
  t.regex(run.stderr, line, show(run));
  // Commander follows its own usage errors with the command's help.
  if (!options.commanderUsage) t.is(run.stderr.trim().split('\n').length, 1, `one line on stderr:\n${run.stderr}`);
}

test.serial('machines list prints the inventory table, filters, walks every page and prints JSON', async (t) => {
  const server = await lab();
  const workers = [machine(server), machine(server)];
  for (const w of workers) await w.discover();
  const spare = machine(server, HP);
  await spare.discover();

  const list = await ctl(server, ['machines', 'list']);
  t.is(list.code, 0, show(list));
  const lines = list.stdout.trimEnd().split('\n');
  t.regex(lines[0] ?? '', /^HOSTNAME\s+NODE ID\s+STATE\s+CLASS\s+POOL\s+IP\s+DISK\s+AGE\s+MACHINE ID$/);
  t.regex(lines[1] ?? '', /^worker-1\s+worker-1\s+install-pending\s+worker\s+workers\s+10\.44\.0\.142\s+nvme-eui\.\S+ \(\d+G\)\s+\d+s\s+m-/);
  t.regex(lines[3] ?? '', new RegExp(`^-\\s+-\\s+inspected\\s+-\\s+-\\s+10\\.44\\.0\\.142\\s+3 disks\\s+\\d+s\\s+${spare.machineId}$`));
  t.false(list.stdout.includes('\x1b['), 'no colour when stdout is not a terminal');
  t.is(list.stderr, '', 'no progress when stderr is not a terminal');

  const inspected = await ctl(server, ['machines', 'list', '--state', 'inspected', '--json']);
  t.is(inspected.code, 0, show(inspected));
  const parsed = JSON.parse(inspected.stdout) as { machines: { machineId: string; state: string }[] };
  t.deepEqual(parsed.machines, [{ ...parsed.machines[0], machineId: spare.machineId, state: 'MACHINE_STATE_INSPECTED' }]);

  const byLabel = await ctl(server, ['--json', 'machines', 'list', '-l', 'ultracloud.io/role=worker', '-l', 'ultracloud.io/pool=workers', '--state', 'install-pending,installing']);
  t.deepEqual((JSON.parse(byLabel.stdout) as { machines: { machineId: string }[] }).machines.map((m) => m.machineId), workers.map((w) => w.machineId));
  const byQuery = await ctl(server, ['machines', 'list', '--query', spare.inventory.identity?.serialNumber.toLowerCase() ?? '?', '--json']);
  t.deepEqual((JSON.parse(byQuery.stdout) as { machines: { machineId: string }[] }).machines.map((m) => m.machineId), [spare.machineId]);
  const none = await ctl(server, ['machines', 'list', '--class', 'control-plane']);
  t.is(none.stdout, 'no machines\n', show(none));

  // One machine per page: the CLI still shows all of them, in the server's order.
  const paged = await ctl(server, ['--json', 'machines', 'list', '--page-size', '1']);
  const all = await ctl(server, ['--json', 'machines', 'list']);
  const idsOf = (r: Run) => (JSON.parse(r.stdout) as { machines: { machineId: string }[] }).machines.map((m) => m.machineId);
  t.is(idsOf(paged).length, 3);
  t.deepEqual(idsOf(paged), idsOf(all));
});

test.serial('bad list flags exit 2 naming the flag, before anything is sent', async (t) => {
  const server = await lab();
  failed(t, await ctl(server, ['machines', 'list', '--state', 'bogus']), 2, /^deployer-ctl: unknown state "bogus" \(one of discovered, inspected, .*failed\)$/m);
  failed(t, await ctl(server, ['machines', 'list', '-l', 'role in (a)']), 2, /-l role in \(a\): expected key=value/);
  failed(t, await ctl(server, ['machines', 'frobnicate', 'worker-1']), 2, /unknown command 'frobnicate'/, { commanderUsage: true });
});

test.serial('machines show finds a machine by hostname, node id or machine id; an unknown name exits 3', async (t) => {
  const server = await lab();
  const worker = machine(server);
  await worker.discover();
  await worker.fetchPlan();
  await worker.report({ phase: InstallPhase.INSTALL_PHASE_INSTALL, percent: 60, message: 'nixos-install', logTail: 'building the system configuration...' });
  const hostname = (await server.machines.getMachine({ key: { $case: 'machineId', value: worker.machineId } })).machine?.assignment?.hostname ?? '';

  const byHost = await ctl(server, ['machines', 'show', hostname]);
  t.is(byHost.code, 0, show(byHost));
  t.regex(byHost.stdout, new RegExp(`^machine id\\s+${worker.machineId}$`, 'm'));
  t.regex(byHost.stdout, /^state\s+installing$/m);
  t.regex(byHost.stdout, /^class \/ pool\s+worker \/ workers$/m);
  t.regex(byHost.stdout, /^install\s+60% install: nixos-install$/m);
  t.regex(byHost.stdout, /^plan\s+\S+#\S+ on \/dev\/disk\/by-id\/nvme-eui\./m);
  t.regex(byHost.stdout, /installer log \(tail\):\nbuilding the system configuration\.\.\./);
  t.regex(byHost.stdout, /recent events \(oldest first\):\nTIME\s+ACTOR\s+RPC\s+CHANGE\s+REASON\n.*- -> discovered/);
  const byId = await ctl(server, ['machines', 'show', worker.machineId]);
  t.regex(byId.stdout, new RegExp(`^hostname\\s+${hostname}$`, 'm'), show(byId));

  const json = await ctl(server, ['machines', 'show', hostname, '--json']);
  t.is(json.code, 0, show(json));
  const found = JSON.parse(json.stdout) as { machine: { machineId: string; state: string; installProgress: { percent: number } }; recentEvents: { reason: string }[] };
  t.like(found.machine, { machineId: worker.machineId, state: 'MACHINE_STATE_INSTALLING', installProgress: { percent: 60 } });
  t.true(found.recentEvents.length >= 3);

  failed(t, await ctl(server, ['machines', 'show', 'no-such-host']), 3, /^deployer-ctl: NOT_FOUND: no machine named no-such-host/);
  failed(t, await ctl(server, ['machines', 'show', 'm-00000000-0000-0000-0000-000000000000', '--json']), 3, /^deployer-ctl: NOT_FOUND: /);
});

test.serial('one command per transition takes a machine from inspected through rescue to deleted, each recorded with its reason', async (t) => {
  const server = await lab();
  const hp = machine(server, HP);
  await hp.discover();
  const keyFile = join(work, 'oncall.pub');
  writeFileSync(keyFile, `${RESCUE_KEY}\n`);

  const commission = await ctl(server, ['machines', 'commission', hp.machineId, '--reason', 'lab expansion', '--class', 'worker', '--pool', 'workers', '--node-id', 'hp-1', '--hostname', 'desk-7', '-l', 'rack=r2']);
  t.is(commission.code, 0, show(commission));
  t.is(commission.stdout, `desk-7 (${hp.machineId}): inspected -> commissioned (resource version ${(await server.machines.getMachine({ key: { $case: 'nodeId', value: 'hp-1' } })).machine?.resourceVersion})\n`);
  const assigned = (await server.machines.getMachine({ key: { $case: 'hostname', value: 'desk-7' } })).machine;
  t.like(assigned?.assignment, { nodeId: 'hp-1', hostname: 'desk-7', nodeClass: 'worker', pool: 'workers', labels: { rack: 'r2' } });

  // Named by node id from here on; the output names the hostname.
  const deploy = await ctl(server, ['machines', 'deploy', 'hp-1', '--reason', 'go', '--json']);
  t.is(deploy.code, 0, show(deploy));
  t.like(JSON.parse(deploy.stdout), { machine: { machineId: hp.machineId, state: 'MACHINE_STATE_INSTALL_PENDING' } });

  // Refused by the lifecycle: exit 4, the current state named, nothing changed.
  const before = (await server.machines.getMachine({ key: { $case: 'machineId', value: hp.machineId } })).machine;
  failed(t, await ctl(server, ['machines', 'drain', 'hp-1', '--reason', 'maintenance']), 4, /^deployer-ctl: FAILED_PRECONDITION: cannot Drain a machine in state install-pending \(allowed from: active\)$/m);
  failed(t, await ctl(server, ['machines', 'mark-failed', 'hp-1', '--reason', 'bad RAM', '--expect-version', String((before?.resourceVersion ?? 0n) - 1n)]), 4, /^deployer-ctl: ABORTED: expected_resource_version \d+ is stale/m);
  // Usage errors: exit 2, nothing sent.
  failed(t, await ctl(server, ['machines', 'mark-failed', 'hp-1']), 2, /required option '--reason <text>' not specified/, { commanderUsage: true });
  failed(t, await ctl(server, ['machines', 'mark-failed', 'hp-1', '--reason', '  ']), 2, /--reason must say why/);
  failed(t, await ctl(server, ['machines', 'mark-failed', 'hp-1', '--reason', 'x', '--expect-version', 'latest']), 2, /--expect-version latest: expected a resource version/);
  failed(t, await ctl(server, ['machines', 'rescue', 'hp-1', '--reason', 'x', '--ssh-key', join(work, 'missing.pub')]), 2, /--ssh-key .*missing\.pub: neither an OpenSSH public key line nor a file/);
  failed(t, await ctl(server, ['machines', 'retry', 'no-such-host', '--reason', 'x']), 3, /^deployer-ctl: NOT_FOUND: no machine named no-such-host/);
  const unchanged = (await server.machines.getMachine({ key: { $case: 'machineId', value: hp.machineId } })).machine;
  t.is(unchanged?.resourceVersion, before?.resourceVersion);

  const markFailed = await ctl(server, ['machines', 'mark-failed', 'hp-1', '--reason', 'bad RAM', '--expect-version', String(before?.resourceVersion)]);
  t.is(markFailed.code, 0, show(markFailed));
  t.regex(markFailed.stdout, /^desk-7 \(m-\S+\): install-pending -> failed \(resource version \d+\)$/m);
  const retry = await ctl(server, ['machines', 'retry', 'hp-1', '--reason', 'RAM reseated']);
  t.regex(retry.stdout, /failed -> install-pending/, show(retry));
  t.is(await stateOf(server, hp.machineId), MachineState.MACHINE_STATE_INSTALL_PENDING);

  const rescue = await ctl(server, ['machines', 'rescue', 'hp-1', '--reason', 'check disks', '--ssh-key', keyFile]);
  t.is(rescue.code, 0, show(rescue));
  t.regex(rescue.stdout, /install-pending -> rescue/);
  t.regex(rescue.stdout, /^next: boot the machine from the installer/m);
  await hp.discover();
  const plan = await hp.fetchPlan();
  t.true(JSON.stringify(plan.plan ?? {}, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)).includes('oncall@lab6'), 'the rescue plan carries the key given with --ssh-key');
  const exit = await ctl(server, ['machines', 'exit-rescue', 'hp-1', '--reason', 'disks fine']);
  t.regex(exit.stdout, /rescue -> install-pending/, show(exit));

  const reinstall = await ctl(server, ['machines', 'reinstall', 'hp-1', '--reason', 'new disk']);
  t.regex(reinstall.stdout, /install-pending -> reprovisioning/, show(reinstall));
  const del = await ctl(server, ['machines', 'delete', 'hp-1', '--reason', 'returned to vendor']);
  t.is(del.code, 0, show(del));
  t.is(del.stdout, `deleted desk-7 (${hp.machineId}) (was reprovisioning)\n`);
  failed(t, await ctl(server, ['machines', 'show', 'hp-1']), 3, /NOT_FOUND/);

  // The audit trail outlives the machine: by machine id, oldest first, with every reason.
  const events = await ctl(server, ['events', '--machine', hp.machineId]);
  t.is(events.code, 0, show(events));
  const reasons = ['lab expansion', 'go', 'bad RAM', 'RAM reseated', 'check disks', 'disks fine', 'new disk', 'returned to vendor'];
  let at = 0;
  for (const reason of reasons) {
    const found = events.stdout.indexOf(reason, at);
    t.true(found > at, `"${reason}" after the previous reasons:\n${events.stdout}`);
    at = found;
  }
  t.regex(events.stdout, /^TIME\s+MACHINE\s+ACTOR\s+RPC\s+CHANGE\s+REASON$/m);
  t.regex(events.stdout, /hp-1\s+.+\s+Delete\s+reprovisioning -> \(deleted\)\s+returned to vendor/);
  // ... and by node id, the name it had.
  const byNode = await ctl(server, ['events', '--machine', 'hp-1', '--limit', '2', '--json']);
  t.is(byNode.code, 0, show(byNode));
  t.deepEqual((JSON.parse(byNode.stdout) as { events: { reason: string }[] }).events.map((e) => e.reason), ['returned to vendor', 'new disk']);
});

test.serial('events lists the audit log with limits and filters; an unknown machine exits 3', async (t) => {
  const server = await lab();
  const all = await ctl(server, ['events', '--json', '--limit', '1000']);
  t.is(all.code, 0, show(all));
  const events = (JSON.parse(all.stdout) as { events: { id: string; actor: string }[] }).events;
  t.true(events.length > 10);
  t.deepEqual(events.map((e) => e.id), [...events].sort((a, b) => Number(BigInt(b.id) - BigInt(a.id))).map((e) => e.id), 'JSON is newest first');
  const limited = await ctl(server, ['events', '--limit', '3']);
  t.is(limited.stdout.trimEnd().split('\n').length, 4, show(limited));
  const recent = await ctl(server, ['events', '--since', '1h', '--json', '--limit', '1000']);
  t.is((JSON.parse(recent.stdout) as { events: unknown[] }).events.length, events.length);
  const future = await ctl(server, ['events', '--since', new Date(Date.now() + 3_600_000).toISOString()]);
  t.is(future.stdout, 'no events\n', show(future));
  failed(t, await ctl(server, ['events', '--machine', 'no-such-host']), 3, /^deployer-ctl: NOT_FOUND: no machine named no-such-host/);
  failed(t, await ctl(server, ['events', '--limit', '0']), 2, /--limit 0: expected a number of events/);
  failed(t, await ctl(server, ['events', '--since', 'yesterday']), 2, /--since yesterday: expected a duration/);
});

test.serial('a wrong token exits 1 naming UNAUTHENTICATED; an unreachable server exits 5', async (t) => {
  const server = await lab();
  failed(t, await ctl(server, ['--token', 'not-a-token', 'machines', 'list']), 1, /^deployer-ctl: UNAUTHENTICATED: /);
  failed(t, await ctl(server, ['--server', '127.0.0.1:1', 'machines', 'list']), 5, /^deployer-ctl: UNAVAILABLE: /);
});

test.serial('--help ends with the exit codes', async (t) => {
  const server = await lab();
  const help = await ctl(server, ['--help']);
  t.is(help.code, 0, show(help));
  for (const line of [/^ {2}0 {2}success$/m, /^ {2}2 {2}usage or configuration error/m, /^ {2}3 {2}not found/m, /^ {2}4 {2}refused as asked/m, /^ {2}5 {2}server unreachable/m]) {
    t.regex(help.stdout, line);
  }
  const sub = await ctl(server, ['machines', 'reinstall', '--help']);
  t.regex(sub.stdout, /--reason <text>/);
  t.regex(sub.stdout, /--expect-version <n>/);
});

const hasScript = spawnSync('script', ['--version']).status === 0;
const ttyTest = hasScript || process.env.CI === 'true' ? test.serial : test.serial.skip;
ttyTest('on a terminal states are coloured, and NO_COLOR turns colour off', async (t) => {
  t.true(hasScript, 'script(1) from util-linux is needed to run deployer-ctl on a pseudo-terminal');
  const server = await lab();
  const failing = machine(server);
  await failing.discover();
  await server.machines.markFailed({ machineId: failing.machineId, reason: 'bad RAM', expectedResourceVersion: 0n });
  const coloured = await ctl(server, ['machines', 'list', '--state', 'failed'], {}, true);
  t.is(coloured.code, 0, show(coloured));
  t.true(coloured.stdout.includes('\x1b[31mfailed\x1b[0m'), JSON.stringify(coloured.stdout));
  const plain = await ctl(server, ['machines', 'list', '--state', 'failed'], { NO_COLOR: '1' }, true);
  t.is(plain.code, 0, show(plain));
  t.regex(plain.stdout, /failed/);
  t.false(plain.stdout.includes('\x1b['), JSON.stringify(plain.stdout));
});
