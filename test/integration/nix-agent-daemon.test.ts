// The real `ultracloud nix-agent` binary as a child process, on a real Nix profile in a temporary
// host, connected over mTLS (its node certificate) to a scripted HostAgentService through a TCP
// relay that can refuse new connections. Covers the stream (hello, acknowledgements,
// heartbeats, reports resent after a reconnect), magic rollback over a real new connection,
// SIGKILL mid-activation and mid-confirmation followed by a restart, the boot strategy with a
// reboot command and a restart with a new boot id, and kexec machine commands.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { ActivationPhase, type ActivationReport, MachineCommandKind, MachineCommandPhase } from '../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import { ActivationFailureReason, ActivationStrategy, type DesiredSystem } from '../../gen/ts/ultracloud/system/v1/system.js';
import { signalProcessGroup } from '../../agents/nix-agent/commands.js';
import { eventually } from '../helpers/eventually.js';
import {
  activationLog,
  createTestHost,
  currentSystem,
  generationNames,
  rebootHost,
  removeTestHost,
  serialNixTest,
  type SwitchBehaviour,
  TEST_HEALTH_CHECK,
  type TestHost,
  testDesiredSystem,
} from '../helpers/nix-systems.js';
import { hostScripts, type NixAgentProcess, readJournal, serveInstallerArtefacts, startNixAgentProcess } from '../helpers/nix-agent-process.js';
import { type Relay, ScriptedHostController, startRelay } from '../helpers/scripted-host-controller.js';
import { cleanEnv, ULTRACLOUD_BIN } from '../helpers/ultracloud-process.js';

const NODE = 'node-1';

const nixTest = serialNixTest;

function desired(systemPath: string, o: { revision?: bigint; strategy?: ActivationStrategy; confirmS?: number; activationS?: number } = {}): DesiredSystem {
  return testDesiredSystem(systemPath, { ...o, nodeId: NODE, healthCheck: TEST_HEALTH_CHECK, activationTimeoutS: o.activationS ?? 60, confirmTimeoutS: o.confirmS ?? 20 });
}

interface Fixture {
  readonly host: TestHost;
  readonly controller: ScriptedHostController;
  readonly relay: Relay;
  readonly rebootLog: string;
  readonly kexecLog: string;
  start(bootId?: string): NixAgentProcess;
}

async function fixture(t: ExecutionContext, systems: Readonly<Record<string, SwitchBehaviour>>): Promise<Fixture> {
  const host = await createTestHost(systems);
  const controller = await ScriptedHostController.start(NODE);
  const relay = await startRelay(controller.server.address, host.blockedFile);
  const scripts = hostScripts(host);
  const agents: NixAgentProcess[] = [];
  t.teardown(async () => {
    for (const a of agents) await a.stop('SIGKILL');
    await relay.close();
    await controller.stop();
    removeTestHost(host);
  });
  const start = (bootId = 'boot-1'): NixAgentProcess => {
    const agent = startNixAgentProcess(host, relay.address, controller.credentials, bootId, scripts.args);
    agents.push(agent);
    t.teardown(() => {
      if (!t.passed) t.log(agent.lines.slice(-80).join('\n'));
    });
    return agent;
  };
  return { host, controller, relay, rebootLog: scripts.rebootLog, kexecLog: scripts.kexecLog, start };
}

function reports(controller: ScriptedHostController): ActivationReport[] {
  return controller.of('activationReport');
}

function phaseNames(list: readonly ActivationReport[]): string[] {
  const names = list.map((r) => ActivationPhase[r.phase].replace('ACTIVATION_PHASE_', ''));
  // A report resent after a reconnect counts once.
  return names.filter((n, i) => i === 0 || names[i - 1] !== n);
}

async function finalReport(controller: ScriptedHostController, timeoutMs = 60_000): Promise<ActivationReport> {
  const terminal = new Set([ActivationPhase.ACTIVATION_PHASE_CONFIRMED, ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK, ActivationPhase.ACTIVATION_PHASE_FAILED]);
  return eventually(async () => reports(controller).find((r) => terminal.has(r.phase)), timeoutMs, 'a final activation report');
}

nixTest('the agent opens its stream with its certificate, says hello with the host state, and sends heartbeats', async (t) => {
  const f = await fixture(t, {});
  f.start('boot-7');
  const hello = await eventually(async () => f.controller.of('hello')[0], 60_000, 'hello');
  t.like(hello, {
    nodeId: NODE,
    bootId: 'boot-7',
    currentSystemPath: f.host.systems.base,
    bootedSystemPath: f.host.systems.base,
    profileSystemPath: f.host.systems.base,
    profileGeneration: 1n,
    agentVersion: '0.1.0',
    systemState: 'running',
  });
  t.is(hello.journal, undefined);
  await eventually(async () => (f.controller.of('heartbeat').length >= 2 ? true : undefined), 10_000, 'two heartbeats');
  t.is(f.controller.of('heartbeat')[0]?.systemState, 'running');
});

nixTest('a desired system is activated and confirmed by a stream on a new connection, and every report is acknowledged', async (t) => {
  const f = await fixture(t, { next: 'succeed' });
  f.controller.desired = desired(f.host.systems.next as string);
  f.start();
  const final = await finalReport(f.controller);
  t.is(final.phase, ActivationPhase.ACTIVATION_PHASE_CONFIRMED);
  t.is(final.generation, 2n);
  t.deepEqual(phaseNames(reports(f.controller)), ['REALISING', 'ACTIVATING', 'CONFIRMING', 'CONFIRMED']);
  t.deepEqual(await generationNames(f.host), ['1:base', '2:next*']);
  // The confirming stream is a new one, and its hello carries the new generation.
  t.true(f.controller.streamCount >= 2);
  const hellos = f.controller.of('hello');
  t.like(hellos.at(-1), { profileGeneration: 2n, currentSystemPath: f.host.systems.next });
  // The controller sends the same desired system on every new stream: applied once.
  t.deepEqual(activationLog(f.host), ['next switch start', 'next switch done']);
  t.is(readJournal(f.host)?.journal.phase, 'ACTIVATION_PHASE_CONFIRMED');
});

nixTest('a system that refuses new connections is rolled back at the confirm timeout, and the outcome reaches the controller', async (t) => {
  const f = await fixture(t, { island: 'disconnect' });
  f.controller.desired = desired(f.host.systems.island as string, { confirmS: 3 });
  f.start();
  const final = await finalReport(f.controller);
  t.is(final.phase, ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK);
  t.is(final.failureReason, ActivationFailureReason.ACTIVATION_FAILURE_REASON_CONTROLLER_UNREACHABLE);
  t.true(f.relay.refused() > 0, 'the agent tried new connections while the new system ran');
  t.deepEqual(await generationNames(f.host), ['1:base*']);
  t.is(currentSystem(f.host), f.host.systems.base);
});

nixTest('an agent killed (SIGKILL) while switch-to-configuration runs: the restarted agent stops the leftover switch and rolls back', async (t) => {
  const f = await fixture(t, { stuck: 'hang' });
  f.controller.desired = desired(f.host.systems.stuck as string, { activationS: 600 });
  const first = f.start();
  await eventually(async () => (activationLog(f.host).includes('stuck switch hanging') ? true : undefined), 60_000, 'the switch to hang');
  const pgid = (await eventually(async () => readJournal(f.host)?.switchProcessGroup, 10_000, 'the switch process group in the journal')) as number;
  t.is(readJournal(f.host)?.journal.phase, 'ACTIVATION_PHASE_ACTIVATING');
  await first.stop('SIGKILL');
  t.true(signalProcessGroup(pgid, 0), 'switch-to-configuration outlives the killed agent');

  f.start();
  const final = await finalReport(f.controller);
  t.is(final.phase, ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK);
  t.is(final.failureReason, ActivationFailureReason.ACTIVATION_FAILURE_REASON_AGENT_RESTARTED);
  t.false(signalProcessGroup(pgid, 0), 'the leftover switch was stopped');
  t.deepEqual(await generationNames(f.host), ['1:base*']);
  t.is(currentSystem(f.host), f.host.systems.base);
  t.deepEqual(activationLog(f.host).slice(-2), ['base switch start', 'base switch done']);
  // The second agent's hello carried the unfinished journal entry.
  t.is(f.controller.of('hello').find((h) => h.journal)?.journal?.phase, ActivationPhase.ACTIVATION_PHASE_ACTIVATING);
});

nixTest('an agent killed while confirming: the restarted agent confirms the generation once the controller is reachable again', async (t) => {
  const f = await fixture(t, { island: 'disconnect' });
  f.controller.desired = desired(f.host.systems.island as string, { confirmS: 120 });
  const first = f.start();
  await eventually(async () => (readJournal(f.host)?.journal.phase === 'ACTIVATION_PHASE_CONFIRMING' ? true : undefined), 60_000, 'CONFIRMING in the journal');
  await first.stop('SIGKILL');
  // The network comes back (say, the operator fixed the firewall) before the agent restarts.
  rmSync(f.host.blockedFile, { force: true });
  f.start();
  const final = await finalReport(f.controller);
  t.is(final.phase, ActivationPhase.ACTIVATION_PHASE_CONFIRMED);
  t.deepEqual(await generationNames(f.host), ['1:base', '2:island*']);
  t.is(currentSystem(f.host), f.host.systems.island);
});

nixTest('boot strategy: the agent asks for a reboot, reboots when granted, and after a restart with a new boot id confirms', async (t) => {
  const f = await fixture(t, { kernel: 'succeed' });
  f.controller.desired = desired(f.host.systems.kernel as string, { strategy: ActivationStrategy.ACTIVATION_STRATEGY_BOOT });
  const first = f.start('boot-1');
  await eventually(async () => {
    try {
      return readFileSync(f.rebootLog, 'utf8');
    } catch {
      return undefined;
    }
  }, 60_000, 'the reboot command');
  t.is(readFileSync(f.rebootLog, 'utf8'), 'reboot --now\n');
  t.like(f.controller.of('rebootRequest')[0], { deployment: 'workers-os', revision: 1n, generation: 2n });
  t.deepEqual(phaseNames(reports(f.controller)), ['REALISING', 'ACTIVATING', 'AWAITING_REBOOT']);
  t.is(currentSystem(f.host), f.host.systems.base);
  t.is(await first.stop(), 0);

  rebootHost(f.host);
  f.start('boot-2');
  const final = await finalReport(f.controller);
  t.is(final.phase, ActivationPhase.ACTIVATION_PHASE_CONFIRMED);
  t.is(final.bootId, 'boot-2');
  t.like(f.controller.of('hello').at(-1), { bootId: 'boot-2', bootedSystemPath: f.host.systems.kernel, profileGeneration: 2n });
  t.true(phaseNames(reports(f.controller)).includes('REBOOTED'));
  t.deepEqual(await generationNames(f.host), ['1:base', '2:kernel*']);
});

nixTest('after its connections are cut the agent reconnects with backoff and resends the reports not yet acknowledged', async (t) => {
  const f = await fixture(t, { next: 'succeed' });
  f.controller.holdAcks = true;
  f.controller.desired = desired(f.host.systems.next as string);
  f.start();
  const confirmed = await finalReport(f.controller);
  const stream = f.controller.messages.find((m) => m.request.payload?.$case === 'activationReport' && m.request.payload.value.phase === confirmed.phase)?.stream;
  f.controller.holdAcks = false;
  f.relay.cut();
  await eventually(
    async () => f.controller.messages.find((m) => m.stream > (stream ?? 0) && m.request.payload?.$case === 'activationReport' && m.request.payload.value.phase === ActivationPhase.ACTIVATION_PHASE_CONFIRMED),
    30_000,
    'the CONFIRMED report on a new stream',
  );
  t.deepEqual(activationLog(f.host), ['next switch start', 'next switch done']);
});

nixTest('a reinstall command: the agent fetches and checks the installer, runs the kexec commands once, and reports each phase', async (t) => {
  const f = await fixture(t, {});
  const artefacts = await serveInstallerArtefacts();
  t.teardown(() => artefacts.close());
  const { kernel } = artefacts;
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  f.start();
  await eventually(async () => f.controller.of('hello')[0], 60_000, 'hello');
  const command = {
    commandId: 'cmd-1',
    kind: MachineCommandKind.MACHINE_COMMAND_KIND_REINSTALL,
    reason: 'disk replaced',
    installer: artefacts.image('init=/init ultracloud.mode=install'),
  };
  f.controller.sendMachineCommand(command);
  await eventually(async () => (f.controller.of('machineCommandReport').some((r) => r.phase === MachineCommandPhase.MACHINE_COMMAND_PHASE_EXECUTING) ? true : undefined), 30_000, 'EXECUTING');
  await eventually(async () => (/^exec/m.test(readFileSync(f.kexecLog, 'utf8')) ? true : undefined), 10_000, 'the kexec jump');
  const kexec = readFileSync(f.kexecLog, 'utf8').trim().split('\n');
  t.is(kexec.length, 2);
  t.regex(kexec[0] as string, /^kexec --load \S+\/kexec\/cmd-1\/bzImage --initrd=\S+\/kexec\/cmd-1\/initrd --command-line=init=\/init ultracloud\.mode=install$/);
  t.is(kexec[1], 'exec');
  t.deepEqual(
    f.controller.of('machineCommandReport').map((r) => MachineCommandPhase[r.phase]),
    ['MACHINE_COMMAND_PHASE_ACCEPTED', 'MACHINE_COMMAND_PHASE_EXECUTING'],
  );
  // Delivered again: reported again, not executed again.
  f.controller.sendMachineCommand(command);
  await eventually(async () => (f.controller.of('machineCommandReport').length === 3 ? true : undefined), 10_000, 'the repeated report');
  t.is(readFileSync(f.kexecLog, 'utf8').trim().split('\n').length, 2);
  // A digest mismatch fails without running kexec.
  f.controller.sendMachineCommand({ ...command, commandId: 'cmd-2', installer: { ...command.installer, initrdSha256: sha(kernel) } });
  const failed = await eventually(async () => f.controller.of('machineCommandReport').find((r) => r.commandId === 'cmd-2' && r.phase === MachineCommandPhase.MACHINE_COMMAND_PHASE_FAILED), 10_000, 'FAILED');
  t.regex(failed.message, /SHA-256 .* does not match/);
  t.is(readFileSync(f.kexecLog, 'utf8').trim().split('\n').length, 2);
});

nixTest('the agent refuses to start without its certificate, naming the setting', async (t) => {
  const f = await fixture(t, {});
  const child = spawn(process.execPath, [ULTRACLOUD_BIN, 'nix-agent', '--host-controller', f.relay.address, '--tls-cert', join(f.host.root, 'missing.crt'), '--state-dir', f.host.stateDir], {
    env: cleanEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  t.is(code, 2);
  t.regex(stderr, /ULTRACLOUD_TLS_CERT \(--tls-cert\): the node certificate \S+missing\.crt does not exist/);
});
