// Integration: the real installer protocol and plan execution against a real deployer over gRPC
// (lab6 applied, PGlite; postgres too when ULTRACLOUD_TEST_DATABASE_URL is set), with a fake
// /dev/disk/by-id tree of symlinks in a temporary root, a recording runner in place of blockdev,
// disko and nixos-install, and the real file sink writing into a temporary target.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer, connect, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { BootstrapServiceDefinition } from '../../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import { ClusterState } from '../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import type { MachineInventory } from '../../gen/ts/ultracloud/inventory/v1/inventory.js';
import { InstallOutcome, MachineState } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { createServiceClient, openChannel } from '../../lib/grpc/client.js';
import { createLogger } from '../../lib/log.js';
import { fsFileSink, RecordingFileSink } from '../../agents/installer/files.js';
import { formatDryRun } from '../../agents/installer/main.js';
import { type AttemptOutcome, type BootstrapClient, runInstaller } from '../../agents/installer/protocol.js';
import { RecordingRunner, type ScriptedCommand } from '../../agents/installer/runner.js';
import { type DeployerServer, type DeployerTarget, forEachDeployerTarget, sharedDeployer } from '../helpers/deployer-server.js';
import { machineInventory, optiplexFacts } from '../helpers/simulated-installer.js';

const SAMSUNG_BY_ID = '/dev/disk/by-id/nvme-eui.002538b221b3c4d5';
const BY_ID_LISTING = readFileSync(new URL('../fixtures/lsblk/nvme-workstation.by-id.txt', import.meta.url), 'utf8');
const LAB6: unknown = JSON.parse(readFileSync(new URL('../fixtures/cluster-state/lab6.json', import.meta.url), 'utf8'));
const BUNDLE = Buffer.from('not really a tarball: tar runs through the recording runner\n');
const BUNDLE_SHA256 = createHash('sha256').update(BUNDLE).digest('hex');
const FAST = { initialMs: 20, maxMs: 200, factor: 2 };
const silent = createLogger({ level: 'silent' });

/** A bundle server on loopback, started once for the file. */
const bundleServer = createHttpServer((req, res) => {
  if (req.url === '/bundle.tar.gz') res.end(BUNDLE);
  else res.writeHead(404).end();
});
const bundleReady = new Promise<string>((resolve) => bundleServer.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(bundleServer.address() as AddressInfo).port}/bundle.tar.gz`)));
test.after.always(() => bundleServer.close());

async function startLab(target: DeployerTarget): Promise<DeployerServer> {
  const server = await target.start();
  const state = ClusterState.fromJSON(LAB6);
  const worker = state.installProfiles.worker;
  if (!worker) throw new Error('lab6 has no worker profile');
  state.installProfiles.worker = { ...worker, flakeRef: 'path:.', bundleUrl: await bundleReady, bundleSha256: BUNDLE_SHA256 };
  await server.cluster.applyClusterState({ state, dryRun: false, expectedGeneration: 0n });
  return server;
}

/** A temp root with /dev/<kernel name> files and /dev/disk/by-id links from the captured listing. */
function fakeDevTree(redirect: Readonly<Record<string, string>> = {}): string {
  const root = mkdtempSync(join(tmpdir(), 'installer-dev-'));
  mkdirSync(join(root, 'dev/disk/by-id'), { recursive: true });
  const section = BY_ID_LISTING.split('/dev/disk/by-path:')[0] ?? '';
  for (const m of section.matchAll(/ (\S+) -> \.\.\/\.\.\/(\S+)$/gm)) {
    const [, name, device] = m as unknown as [string, string, string];
    const target = redirect[name] ?? device;
    writeFileSync(join(root, 'dev', target), '');
    symlinkSync(`../../${target}`, join(root, 'dev/disk/by-id', name));
  }
  return root;
}

interface Machine {
  readonly inventory: MachineInventory;
  readonly devRoot: string;
  readonly target: string;
  readonly workDir: string;
  readonly samsungSize: bigint;
}

function machine(redirect: Readonly<Record<string, string>> = {}): Machine {
  const inventory = machineInventory(optiplexFacts());
  const samsung = inventory.disks.find((d) => d.name === 'nvme0n1');
  if (!samsung) throw new Error('fixture lost nvme0n1');
  const target = mkdtempSync(join(tmpdir(), 'installer-target-'));
  return { inventory, devRoot: fakeDevTree(redirect), target, workDir: join(target, '..', `${target.split('/').pop()}-work`), samsungSize: samsung.sizeBytes };
}

function cleanup(m: Machine): void {
  for (const dir of [m.devRoot, m.target, m.workDir]) rmSync(dir, { recursive: true, force: true });
}

function install(client: BootstrapClient, joinToken: string, m: Machine, runner: RecordingRunner, options: { dryRun?: boolean; files?: RecordingFileSink } = {}): Promise<AttemptOutcome | undefined> {
  return runInstaller(
    {
      client,
      joinToken,
      collectInventory: async () => m.inventory,
      bootId: 'boot-1',
      installerVersion: 'ultracloud-installer test',
      runner,
      files: options.files ?? fsFileSink(),
      plan: { targetRoot: m.target, devRoot: m.devRoot, workDir: m.workDir },
      rescue: { liveRoot: m.target, sshdCommand: ['systemctl', 'start', 'sshd.service'] },
      rebootCommand: ['reboot-now'],
      logger: silent,
      once: true,
      dryRun: options.dryRun ?? false,
      backoff: FAST,
      defaultRetryAfterMs: 50,
    },
    AbortSignal.timeout(45_000),
  );
}

function blockdev(size: bigint): ScriptedCommand {
  return { match: ['blockdev', '--getsize64'], stdout: `${size}\n` };
}

function bootstrapClient(server: DeployerServer): BootstrapClient {
  return server.client(BootstrapServiceDefinition);
}

async function machineByUuid(server: DeployerServer, m: Machine) {
  const found = await server.machines.listMachines({ query: m.inventory.identity?.serialNumber ?? '', pageSize: 10 });
  const id = found.machines[0]?.machineId;
  if (!id) throw new Error('machine not found');
  const got = await server.machines.getMachine({ key: { $case: 'machineId', value: id } });
  if (!got.machine) throw new Error('GetMachine returned nothing');
  return got.machine;
}

function modeOf(path: string): string {
  return (statSync(path).mode & 0o777).toString(8).padStart(4, '0');
}

forEachDeployerTarget('installer', (target) => {
  const title = (name: string) => `${name} [${target.name}]`;
  const lab = sharedDeployer(() => startLab(target));
  test.after.always(() => lab.stop());

  test(title('a successful install runs exactly the expected commands, writes the secrets with their modes and ends installed'), async (t) => {
    const server = await lab.get();
    const m = machine();
    t.teardown(() => cleanup(m));
    const runner = new RecordingRunner([blockdev(m.samsungSize)]);
    const outcome = await install(bootstrapClient(server), server.joinToken, m, runner);
    t.is(outcome?.kind, 'installed', JSON.stringify(outcome));
    t.deepEqual(runner.commandLines, [
      `tar -xf ${m.workDir}/bundle.tar -C ${m.workDir}/bundle`,
      `blockdev --getsize64 ${SAMSUNG_BY_ID}`,
      `disko --mode destroy,format,mount --yes-wipe-all-disks --root-mountpoint ${m.target} ${m.workDir}/disko.nix`,
      `nixos-install --flake path:${m.workDir}/bundle#worker --no-root-passwd --root ${m.target}`,
      `umount --recursive ${m.target}`,
      'reboot-now',
    ]);
    t.deepEqual(readFileSync(join(m.workDir, 'bundle.tar')), BUNDLE);
    t.regex(readFileSync(join(m.workDir, 'disko.nix'), 'utf8'), /device = "\/dev\/disk\/by-id\/nvme-eui\.002538b221b3c4d5";/);
    const modes = Object.fromEntries(
      ['etc/ssh/ssh_host_ed25519_key', 'etc/ssh/ssh_host_ed25519_key.pub', 'var/lib/ultracloud/credentials', 'var/lib/ultracloud/credentials/tls.key', 'var/lib/ultracloud/credentials/tls.crt', 'var/lib/ultracloud/credentials/ca.pem', 'var/lib/ultracloud/node.json', 'var/lib/ultracloud/agents.json'].map((p) => [p, modeOf(join(m.target, p))]),
    );
    t.deepEqual(modes, {
      'etc/ssh/ssh_host_ed25519_key': '0600',
      'etc/ssh/ssh_host_ed25519_key.pub': '0644',
      'var/lib/ultracloud/credentials': '0700',
      'var/lib/ultracloud/credentials/tls.key': '0600',
      'var/lib/ultracloud/credentials/tls.crt': '0644',
      'var/lib/ultracloud/credentials/ca.pem': '0644',
      'var/lib/ultracloud/node.json': '0644',
      'var/lib/ultracloud/agents.json': '0644',
    });
    t.regex(readFileSync(join(m.target, 'etc/ssh/ssh_host_ed25519_key'), 'utf8'), /BEGIN OPENSSH PRIVATE KEY/);
    const identity = JSON.parse(readFileSync(join(m.target, 'var/lib/ultracloud/node.json'), 'utf8')) as Record<string, unknown>;
    const found = await machineByUuid(server, m);
    t.is(found.state, MachineState.MACHINE_STATE_INSTALLED);
    t.is(identity.nodeId, found.assignment?.nodeId);
    t.is(identity.hostname, found.assignment?.hostname);
    t.is(identity.domain, 'lab6.internal');
    t.is((identity.interfaces as { macAddress: string; mode: string }[])[0]?.mode, 'ADDRESS_MODE_STATIC');
    const agents = JSON.parse(readFileSync(join(m.target, 'var/lib/ultracloud/agents.json'), 'utf8')) as Record<string, unknown>;
    t.is(agents.hostControllerAddress, '10.44.0.2:7000');
  });

  test(title('a by-id link leading to another disk is refused before any destructive command and the machine fails with the reason'), async (t) => {
    const server = await lab.get();
    const m = machine({ 'nvme-eui.002538b221b3c4d5': 'nvme1n1' });
    t.teardown(() => cleanup(m));
    const runner = new RecordingRunner([blockdev(2_000_398_934_016n)]);
    const outcome = await install(bootstrapClient(server), server.joinToken, m, runner);
    t.is(outcome?.kind, 'failed');
    t.deepEqual(runner.commandLines, [`tar -xf ${m.workDir}/bundle.tar -C ${m.workDir}/bundle`], 'nothing but unpacking the bundle ran');
    t.false(existsSync(join(m.target, 'etc')), 'nothing was written into the target');
    const found = await machineByUuid(server, m);
    t.is(found.state, MachineState.MACHINE_STATE_FAILED);
    t.regex(found.installProgress?.failureReason ?? '', /nvme-eui\.002538b221b3c4d5 resolves to \/dev\/nvme1n1 with serial "23123A800123", the plan expects "S5GXNF0R123456X"/);
  });

  test(title('a failing nixos-install ends failed with the log tail visible through GetMachine'), async (t) => {
    const server = await lab.get();
    const m = machine();
    t.teardown(() => cleanup(m));
    const runner = new RecordingRunner([
      blockdev(m.samsungSize),
      { match: ['nixos-install'], exitCode: 1, stdout: 'building the system configuration...\n', stderr: "error: builder for '/nix/store/abc-nixos-system-worker-1.drv' failed with exit code 1\n" },
    ]);
    const outcome = await install(bootstrapClient(server), server.joinToken, m, runner);
    t.like(outcome, { kind: 'failed' });
    t.false(runner.commandLines.some((l) => l.startsWith('umount') || l === 'reboot-now'));
    const found = await machineByUuid(server, m);
    t.is(found.state, MachineState.MACHINE_STATE_FAILED);
    t.is(found.installProgress?.outcome, InstallOutcome.INSTALL_OUTCOME_FAILED);
    t.regex(found.installProgress?.failureReason ?? '', /nixos-install exited with status 1: error: builder for/);
    const logTail = found.installProgress?.logTail ?? '';
    t.regex(logTail, /\$ nixos-install --flake /);
    t.regex(logTail, /building the system configuration/);
    t.regex(logTail, /error: builder for '\/nix\/store\/abc-nixos-system-worker-1\.drv' failed/);
  });

  test(title('--dry-run prints the plan, its commands and files, and runs nothing'), async (t) => {
    const server = await lab.get();
    const m = machine();
    t.teardown(() => cleanup(m));
    const runner = new RecordingRunner();
    const files = new RecordingFileSink();
    const outcome = await install(bootstrapClient(server), server.joinToken, m, runner, { dryRun: true, files });
    if (outcome?.kind !== 'dry-run') return t.fail(JSON.stringify(outcome));
    const printed = formatDryRun(outcome.plan, runner.commands.map((c) => c.argv), files);
    t.regex(printed, /disk: \/dev\/disk\/by-id\/nvme-eui\.002538b221b3c4d5/);
    t.regex(printed, /\n {2}disko --mode destroy,format,mount --yes-wipe-all-disks/);
    t.regex(printed, /file 0600 \d+ bytes .*\/etc\/ssh\/ssh_host_ed25519_key\n/);
    t.false(printed.includes(outcome.plan.secrets?.sshHostEd25519PrivateKey ?? 'unset'), 'no secret content');
    t.false(printed.includes('BEGIN'), 'no key material');
    t.false(runner.commandLines.some((l) => l.startsWith('blockdev')), 'the dry run takes the disk size from the inventory');
    t.false(existsSync(join(m.workDir, 'bundle.tar')), 'nothing downloaded');
    t.false(existsSync(join(m.target, 'etc')), 'nothing written');
    const found = await machineByUuid(server, m);
    t.is(found.state, MachineState.MACHINE_STATE_FAILED, 'the fetched plan is released for a Retry');
    t.regex(found.installProgress?.failureReason ?? '', /^dry run/);
  });

  test(title('an installer started while the deployer is down gets through once it is up'), async (t) => {
    // The deployer helper listens on a port of its own choosing, so the fixed address the
    // installer dials is a TCP forwarder that accepts nothing until the deployer is up.
    const probe = createTcpServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const channel = openChannel(`127.0.0.1:${port}`);
    const client = createServiceClient(BootstrapServiceDefinition, channel, { defaultDeadlineMs: 5_000 });
    const m = machine();
    const server = await lab.get();
    const [host, upstreamPort] = server.address.split(':') as [string, string];
    const forwarder: Server = createTcpServer((socket) => {
      const upstream = connect(Number(upstreamPort), host);
      socket.pipe(upstream).pipe(socket);
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
    });
    t.teardown(() => {
      cleanup(m);
      channel.close();
      forwarder.close();
    });
    const runner = new RecordingRunner([blockdev(m.samsungSize)]);
    const installing = install(client, server.joinToken, m, runner);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await new Promise<void>((resolve) => forwarder.listen(port, '127.0.0.1', resolve));
    const outcome = await installing;
    t.is(outcome?.kind, 'installed', JSON.stringify(outcome));
    t.is((await machineByUuid(server, m)).state, MachineState.MACHINE_STATE_INSTALLED);
  });
});
