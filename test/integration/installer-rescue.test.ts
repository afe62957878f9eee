// Integration: rescue and reinstall end to end (issue 5 item 4). A machine is installed through
// the real installer against a real deployer over gRPC (lab6 applied, PGlite; postgres too when
// ULTRACLOUD_TEST_DATABASE_URL is set), with a fake /dev/disk/by-id tree and a recording runner;
// then an operator rescues it (the next installer boot opens sshd with the operator keys and
// touches no disk, ExitRescue reboots it back to installed) or reinstalls it (the next installer
// boot gets a fresh plan and fresh secrets).
import { createHash, X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { ClientError, Metadata, Status } from 'nice-grpc';
import { BootstrapServiceDefinition, type FetchPlanResponse } from '../../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import { ClusterState } from '../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import type { Machine as MachineRecord } from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { PlanMode } from '../../gen/ts/ultracloud/installplan/v1/installplan.js';
import type { MachineInventory } from '../../gen/ts/ultracloud/inventory/v1/inventory.js';
import { InstallOutcome, InstallPhase, MachineState } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { createLogger } from '../../lib/log.js';
import { fsFileSink } from '../../agents/installer/files.js';
import { type AttemptOutcome, type BootstrapClient, runInstaller } from '../../agents/installer/protocol.js';
import { DEFAULT_SSHD_COMMAND } from '../../agents/installer/rescue.js';
import { RecordingRunner, type ScriptedCommand } from '../../agents/installer/runner.js';
import { type DeployerServer, type DeployerTarget, forEachDeployerTarget, sharedDeployer } from '../helpers/deployer-server.js';
import { machineInventory, optiplexFacts } from '../helpers/simulated-installer.js';

const BY_ID_LISTING = readFileSync(new URL('../fixtures/lsblk/nvme-workstation.by-id.txt', import.meta.url), 'utf8');
const LAB6: unknown = JSON.parse(readFileSync(new URL('../fixtures/cluster-state/lab6.json', import.meta.url), 'utf8'));
const BUNDLE = Buffer.from('not really a tarball: tar runs through the recording runner\n');
const BUNDLE_SHA256 = createHash('sha256').update(BUNDLE).digest('hex');
const FAST = { initialMs: 20, maxMs: 200, factor: 2 };
const EXTRA_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk4Jf9m0oO8tQ6wqkq3bE5XbX1n3c3QpX8m2s7yZr2T oncall@laptop';
const silent = createLogger({ level: 'silent' });

const bundleServer = createHttpServer((req, res) => {
  if (req.url === '/bundle.tar.gz') res.end(BUNDLE);
  else res.writeHead(404).end();
});
const bundleReady = new Promise<string>((resolve) => bundleServer.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(bundleServer.address() as AddressInfo).port}/bundle.tar.gz`)));
test.after.always(() => bundleServer.close());

async function startLab(target: DeployerTarget): Promise<DeployerServer> {
  // A short progress interval: the rescue heartbeat comes every second, so ExitRescue is seen soon.
  const server = await target.start({ flags: { 'progress-interval': '2s' } });
  const state = ClusterState.fromJSON(LAB6);
  const worker = state.installProfiles.worker;
  if (!worker) throw new Error('lab6 has no worker profile');
  state.installProfiles.worker = { ...worker, flakeRef: 'path:.', bundleUrl: await bundleReady, bundleSha256: BUNDLE_SHA256 };
  await server.cluster.applyClusterState({ state, dryRun: false, expectedGeneration: 0n });
  return server;
}

function fakeDevTree(): string {
  const root = mkdtempSync(join(tmpdir(), 'installer-dev-'));
  mkdirSync(join(root, 'dev/disk/by-id'), { recursive: true });
  const section = BY_ID_LISTING.split('/dev/disk/by-path:')[0] ?? '';
  for (const m of section.matchAll(/ (\S+) -> \.\.\/\.\.\/(\S+)$/gm)) {
    const [, name, device] = m as unknown as [string, string, string];
    writeFileSync(join(root, 'dev', device), '');
    symlinkSync(`../../${device}`, join(root, 'dev/disk/by-id', name));
  }
  return root;
}

interface Machine {
  readonly inventory: MachineInventory;
  readonly devRoot: string;
  /** The installed system's root. */
  readonly target: string;
  /** The installer's live root (rescue writes /root/.ssh/authorized_keys under it). */
  readonly live: string;
  readonly workDir: string;
  readonly samsungSize: bigint;
}

function machine(): Machine {
  const inventory = machineInventory(optiplexFacts());
  const samsung = inventory.disks.find((d) => d.name === 'nvme0n1');
  if (!samsung) throw new Error('fixture lost nvme0n1');
  const target = mkdtempSync(join(tmpdir(), 'installer-target-'));
  return { inventory, devRoot: fakeDevTree(), target, live: mkdtempSync(join(tmpdir(), 'installer-live-')), workDir: `${target}-work`, samsungSize: samsung.sizeBytes };
}

function cleanup(m: Machine): void {
  for (const dir of [m.devRoot, m.target, m.live, m.workDir]) rmSync(dir, { recursive: true, force: true });
}

/** A BootstrapService client that keeps every FetchPlan response (the secrets of each attempt). */
function recordingClient(server: DeployerServer): { client: BootstrapClient; fetched: FetchPlanResponse[] } {
  const base: BootstrapClient = server.client(BootstrapServiceDefinition);
  const fetched: FetchPlanResponse[] = [];
  const client: BootstrapClient = {
    discover: (req, options) => base.discover(req, options),
    reportInstallProgress: (req, options) => base.reportInstallProgress(req, options),
    fetchPlan: async (req, options) => {
      const response = await base.fetchPlan(req, options);
      fetched.push(response);
      return response;
    },
  };
  return { client, fetched };
}

/** One installer boot: `bootId` tells the deployer it is a new boot. */
function boot(client: BootstrapClient, server: DeployerServer, m: Machine, runner: RecordingRunner, bootId: string, signal: AbortSignal = AbortSignal.timeout(30_000), once = true): Promise<AttemptOutcome | undefined> {
  return runInstaller(
    {
      client,
      joinToken: server.joinToken,
      collectInventory: async () => m.inventory,
      bootId,
      installerVersion: 'ultracloud-installer test',
      runner,
      files: fsFileSink(),
      plan: { targetRoot: m.target, devRoot: m.devRoot, workDir: m.workDir },
      rescue: { liveRoot: m.live, sshdCommand: [...DEFAULT_SSHD_COMMAND] },
      rebootCommand: ['reboot-now'],
      logger: silent,
      once,
      backoff: FAST,
      defaultRetryAfterMs: 50,
    },
    signal,
  );
}

function blockdev(size: bigint): ScriptedCommand {
  return { match: ['blockdev', '--getsize64'], stdout: `${size}\n` };
}

function installCommands(m: Machine): string[] {
  return [
    `tar -xf ${m.workDir}/bundle.tar -C ${m.workDir}/bundle`,
    `blockdev --getsize64 /dev/disk/by-id/nvme-eui.002538b221b3c4d5`,
    `disko --mode destroy,format,mount --yes-wipe-all-disks --root-mountpoint ${m.target} ${m.workDir}/disko.nix`,
    `nixos-install --flake path:${m.workDir}/bundle#worker --no-root-passwd --root ${m.target}`,
    `umount --recursive ${m.target}`,
    'reboot-now',
  ];
}

async function getMachine(server: DeployerServer, machineId: string): Promise<MachineRecord> {
  const got = await server.machines.getMachine({ key: { $case: 'machineId', value: machineId } });
  if (!got.machine) throw new Error('GetMachine returned nothing');
  return got.machine;
}

/** Installs a fresh machine through the installer (boot-1); returns its id and that install's plan. */
async function installed(server: DeployerServer, m: Machine, client: BootstrapClient, fetched: FetchPlanResponse[]): Promise<{ machineId: string; first: FetchPlanResponse }> {
  const runner = new RecordingRunner([blockdev(m.samsungSize)]);
  const outcome = await boot(client, server, m, runner, 'boot-1');
  if (outcome?.kind !== 'installed') throw new Error(`first install: ${JSON.stringify(outcome)}`);
  const first = fetched[0];
  const machineId = first?.assignment && (await server.machines.listMachines({ query: m.inventory.identity?.serialNumber ?? '', pageSize: 10 })).machines[0]?.machineId;
  if (!first || !machineId) throw new Error('the first install left no plan or machine');
  if ((await getMachine(server, machineId)).state !== MachineState.MACHINE_STATE_INSTALLED) throw new Error('the first install did not end installed');
  return { machineId, first };
}

function joinMetadata(server: DeployerServer): { metadata: Metadata } {
  const metadata = Metadata();
  metadata.set('authorization', `Bearer ${server.joinToken}`);
  return { metadata };
}

function modeOf(path: string): string {
  return (statSync(path).mode & 0o777).toString(8).padStart(4, '0');
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

forEachDeployerTarget('installer rescue and reinstall', (target) => {
  const title = (name: string) => `${name} [${target.name}]`;
  const lab = sharedDeployer(() => startLab(target));
  test.after.always(() => lab.stop());

  test(title('Rescue: the next installer boot writes the operator keys, starts sshd, reports RESCUE_READY, and ExitRescue reboots it back to installed'), async (t) => {
    const server = await lab.get();
    const m = machine();
    t.teardown(() => cleanup(m));
    const { client, fetched } = recordingClient(server);
    const { machineId } = await installed(server, m, client, fetched);

    const rescued = await server.machines.rescue({ machineId, reason: 'disk errors in dmesg, looking by hand', expectedResourceVersion: 0n, sshAuthorizedKeys: [EXTRA_KEY] });
    t.is(rescued.machine?.state, MachineState.MACHINE_STATE_RESCUE);
    t.is(rescued.machine?.previousState, MachineState.MACHINE_STATE_INSTALLED);

    // The next boot runs until the deployer tells it to reboot (or the test stops it).
    const runner = new RecordingRunner();
    const stop = new AbortController();
    const running = boot(client, server, m, runner, 'boot-2', AbortSignal.any([stop.signal, AbortSignal.timeout(30_000)]), false);
    t.teardown(() => stop.abort());
    const ready = await until('RESCUE_READY', async () => {
      const found = await getMachine(server, machineId);
      return found.installProgress?.outcome === InstallOutcome.INSTALL_OUTCOME_RESCUE_READY ? found : undefined;
    });

    const rescuePlan = fetched[1];
    t.is(rescuePlan?.plan?.mode, PlanMode.PLAN_MODE_RESCUE);
    t.is(rescuePlan?.secrets?.tlsPrivateKeyPem, '', 'a rescue plan carries no node secrets');
    t.is(rescuePlan?.secrets?.sshHostEd25519PrivateKey, '');
    t.not(rescuePlan?.secrets?.installToken, '');
    t.is(rescuePlan?.secrets?.caChainPem, server.caPem);
    const lab6Keys = (LAB6 as { cluster: { rescueSshAuthorizedKeys: string[] } }).cluster.rescueSshAuthorizedKeys;
    const authorizedKeys = join(m.live, 'root/.ssh/authorized_keys');
    t.is(readFileSync(authorizedKeys, 'utf8'), `${[...lab6Keys, EXTRA_KEY].join('\n')}\n`);
    t.is(modeOf(authorizedKeys), '0600');
    t.is(modeOf(join(m.live, 'root/.ssh')), '0700');
    t.deepEqual(runner.commandLines.slice(0, 1), ['systemctl start sshd.service'], 'sshd is started through the runner and no disk is touched');
    t.true(runner.commandLines.every((l) => l === 'systemctl start sshd.service'), runner.commandLines.join('\n'));

    t.is(ready.state, MachineState.MACHINE_STATE_RESCUE);
    t.is(ready.previousState, MachineState.MACHINE_STATE_INSTALLED);
    t.is(ready.installProgress?.phase, InstallPhase.INSTALL_PHASE_RESCUE);
    t.is(ready.statusMessage, `rescue: sshd is running with ${lab6Keys.length + 1} operator key(s)`);

    const exited = await server.machines.exitRescue({ machineId, reason: 'disk is fine after all', expectedResourceVersion: 0n });
    t.is(exited.machine?.state, MachineState.MACHINE_STATE_INSTALLED);
    t.is(exited.machine?.previousState, MachineState.MACHINE_STATE_UNSPECIFIED);
    // The next heartbeat is answered REBOOT: the machine boots back into its installed system.
    await until('the reboot', async () => (runner.commandLines.includes('reboot-now') ? true : undefined));
    stop.abort();
    await running;
    t.deepEqual(runner.commandLines, ['systemctl start sshd.service', 'reboot-now']);
    t.is((await getMachine(server, machineId)).state, MachineState.MACHINE_STATE_INSTALLED);
  });

  test(title('Reinstall: the next installer boot gets a fresh plan and installs again with new secrets'), async (t) => {
    const server = await lab.get();
    const m = machine();
    t.teardown(() => cleanup(m));
    const { client, fetched } = recordingClient(server);
    const { machineId, first } = await installed(server, m, client, fetched);
    const firstCert = new X509Certificate(readFileSync(join(m.target, 'var/lib/ultracloud/credentials/tls.crt')));
    const firstHostKey = readFileSync(join(m.target, 'etc/ssh/ssh_host_ed25519_key'), 'utf8');
    const firstPlan = (await getMachine(server, machineId)).plan;

    const reinstalling = await server.machines.reinstall({ machineId, reason: 'new disk layout', expectedResourceVersion: 0n });
    t.is(reinstalling.machine?.state, MachineState.MACHINE_STATE_REPROVISIONING);
    // The first install's token is revoked.
    const metadata = Metadata();
    metadata.set('authorization', `Bearer ${first.secrets?.installToken ?? ''}`);
    const stale = await server
      .client(BootstrapServiceDefinition)
      .reportInstallProgress({ machineId, phase: InstallPhase.INSTALL_PHASE_FINALIZE, percent: 100, message: 'late', outcome: InstallOutcome.INSTALL_OUTCOME_SUCCEEDED }, { metadata })
      .catch((err: unknown) => err);
    t.true(stale instanceof ClientError && stale.code === Status.UNAUTHENTICATED, String(stale));

    // The same boot (no new boot id) does not start the reinstall; a new boot does.
    const sameBoot = await client.discover({ inventory: m.inventory, bootId: 'boot-1', installerVersion: 'test' }, joinMetadata(server));
    t.false(sameBoot.planReady);
    t.is(sameBoot.state, MachineState.MACHINE_STATE_REPROVISIONING);
    const pending = await client.discover({ inventory: m.inventory, bootId: 'boot-2', installerVersion: 'test' }, joinMetadata(server));
    t.is(pending.state, MachineState.MACHINE_STATE_INSTALL_PENDING);
    t.true(pending.planReady);
    const rendered = await getMachine(server, machineId);
    t.is(rendered.plan?.mode, PlanMode.PLAN_MODE_INSTALL);
    t.is(rendered.plan?.fetchedAt, undefined, 'a fresh, unfetched plan');
    t.true((rendered.plan?.createdAt?.getTime() ?? 0) > (firstPlan?.createdAt?.getTime() ?? Infinity), 'rendered after the first one');

    const runner = new RecordingRunner([blockdev(m.samsungSize)]);
    const outcome = await boot(client, server, m, runner, 'boot-2');
    t.is(outcome?.kind, 'installed', JSON.stringify(outcome));
    t.deepEqual(runner.commandLines, installCommands(m));
    const second = fetched[1];
    t.is(second?.plan?.mode, PlanMode.PLAN_MODE_INSTALL);
    t.is(second?.plan?.nodeId, first.plan?.nodeId, 'the node keeps its identity');
    t.not(second?.secrets?.installToken, first.secrets?.installToken);
    const secondCert = new X509Certificate(readFileSync(join(m.target, 'var/lib/ultracloud/credentials/tls.crt')));
    t.not(secondCert.serialNumber, firstCert.serialNumber, 'a new TLS certificate');
    t.is(secondCert.subject, firstCert.subject);
    t.not(readFileSync(join(m.target, 'etc/ssh/ssh_host_ed25519_key'), 'utf8'), firstHostKey, 'a new SSH host key');
    t.is(modeOf(join(m.target, 'var/lib/ultracloud/credentials/tls.key')), '0600');
    const done = await getMachine(server, machineId);
    t.is(done.state, MachineState.MACHINE_STATE_INSTALLED);
    t.is(done.installProgress?.outcome, InstallOutcome.INSTALL_OUTCOME_SUCCEEDED);
  });
});

