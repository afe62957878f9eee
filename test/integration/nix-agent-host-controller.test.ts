// The real `ultracloud nix-agent` against the real host-controller (with the deployer, served as
// `ultracloud up` serves them; test/helpers/host-fleet.ts): a node installed through a simulated
// installer, its agent dialling Connect over mTLS with the certificate the deployer issued, on
// a real Nix profile. A HostDeployment applied through HostDeploymentService is activated and
// confirmed, the machine becomes active, a failing revision is rolled back and pauses the
// rollout, and the boot strategy reboots only when the controller grants it.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import type { HostRollout } from '../../gen/ts/ultracloud/host/v1/host_deployment_service.js';
import { MachineState } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import {
  ActivationFailureReason,
  ActivationStrategy,
  HostDeployment,
  HostDeploymentPauseCause,
  HostDeploymentPhase,
  NodeRolloutPhase,
} from '../../gen/ts/ultracloud/system/v1/system.js';
import { databaseTargets, type DatabaseTargetName, unavailableTargetTest } from '../helpers/databases.js';
import { eventually } from '../helpers/eventually.js';
import { FAST_FLAGS, type FleetNode, type HostFleet, startHostFleet } from '../helpers/host-fleet.js';
import { nixStandIn } from '../helpers/nix.js';
import { hostScripts, type NixAgentProcess, serveInstallerArtefacts, startNixAgentProcess } from '../helpers/nix-agent-process.js';
import { activationLog, createTestHost, currentSystem, generationNames, rebootHost, removeTestHost, type SwitchBehaviour, type TestHost } from '../helpers/nix-systems.js';

const ROLLOUT_TIMEOUT_MS = 90_000;

/** Each database target; serial, as every test runs a control plane, an agent and Nix on 2 cores. */
function eachTarget(title: string, run: (t: ExecutionContext, target: DatabaseTargetName) => Promise<void>, only?: DatabaseTargetName): void {
  for (const target of databaseTargets()) {
    if (only && target.name !== only) continue;
    if (!target.available) unavailableTargetTest(`${title} [${target.name}]`, target);
    else if (!nixStandIn(`${title} [${target.name}]`)) test.serial(`${title} [${target.name}]`, (t) => run(t, target.name));
  }
}

interface Setup {
  readonly fleet: HostFleet;
  readonly node: FleetNode;
  readonly host: TestHost;
  readonly rebootLog: string;
  start(bootId?: string): NixAgentProcess;
}

async function setup(t: ExecutionContext, target: DatabaseTargetName, systems: Readonly<Record<string, SwitchBehaviour>>, flags: Readonly<Record<string, string>> = {}): Promise<Setup> {
  const host = await createTestHost(systems);
  const fleet = await startHostFleet(target, { nodes: 1, flags: { ...FAST_FLAGS, ...flags } });
  const node = fleet.nodes[0] as FleetNode;
  const scripts = hostScripts(host);
  const agents: NixAgentProcess[] = [];
  t.teardown(async () => {
    for (const a of agents) await a.stop('SIGKILL');
    await fleet.stop();
    removeTestHost(host);
  });
  return {
    fleet,
    node,
    host,
    rebootLog: scripts.rebootLog,
    start: (bootId = 'boot-1') => {
      const agent = startNixAgentProcess(host, fleet.address, { caFile: fleet.caFile, certFile: node.certFile, keyFile: node.keyFile }, bootId, scripts.args);
      agents.push(agent);
      t.teardown(() => {
        if (!t.passed) t.log(agent.lines.slice(-60).join('\n'));
      });
      return agent;
    },
  };
}

function deployment(node: FleetNode, systemPath: string, extra: Parameters<typeof HostDeployment.fromPartial>[0] = {}): HostDeployment {
  return HostDeployment.fromPartial({
    name: 'nodes-os',
    selector: { nodeIds: [node.nodeId] },
    target: { systemPath },
    healthCheck: { probe: { $case: 'command', value: { argv: ['ultracloud-test-health'] } }, interval: { seconds: 0n, nanos: 200_000_000 }, retries: 1 },
    rollbackPolicy: { confirmTimeout: { seconds: 20n, nanos: 0 }, activationTimeout: { seconds: 60n, nanos: 0 } },
    ...extra,
  });
}

async function nodeStatus(fleet: HostFleet, want: (phase: NodeRolloutPhase) => boolean, what: string): Promise<HostRollout> {
  return eventually(
    async () => {
      const rollout = (await fleet.rollouts.getHostDeployment({ name: 'nodes-os' })).rollout;
      const phase = rollout?.status?.nodes[0]?.phase;
      return phase !== undefined && want(phase) ? rollout : undefined;
    },
    ROLLOUT_TIMEOUT_MS,
    what,
  );
}

eachTarget('a rollout through the real host-controller: the agent activates and confirms, the machine turns active; a failing revision is rolled back and pauses the rollout', async (t, target) => {
  const s = await setup(t, target, { next: 'succeed', broken: 'fail' });
  s.start();
  const machine = await eventually(async () => {
    const m = (await s.fleet.machines.getMachine({ key: { $case: 'machineId', value: s.node.machineId } })).machine;
    return m?.state === MachineState.MACHINE_STATE_ACTIVE ? m : undefined;
  }, ROLLOUT_TIMEOUT_MS, 'the machine active after the first healthy hello');
  t.is(machine.state, MachineState.MACHINE_STATE_ACTIVE);

  await s.fleet.rollouts.applyHostDeployments({ hostDeployments: [deployment(s.node, s.host.systems.next as string)], dryRun: false, prune: false, reason: 'test' });
  const done = await nodeStatus(s.fleet, (p) => p === NodeRolloutPhase.NODE_ROLLOUT_PHASE_SUCCEEDED, 'the node SUCCEEDED');
  t.like(done.status?.nodes[0], { nodeId: s.node.nodeId, systemPath: s.host.systems.next, generation: 2n });
  t.deepEqual(await generationNames(s.host), ['1:base', '2:next*']);
  t.is(currentSystem(s.host), s.host.systems.next);
  await eventually(async () => ((await s.fleet.rollouts.getHostDeployment({ name: 'nodes-os' })).rollout?.status?.phase === HostDeploymentPhase.HOST_DEPLOYMENT_PHASE_COMPLETED ? true : undefined), ROLLOUT_TIMEOUT_MS, 'COMPLETED');

  await s.fleet.rollouts.applyHostDeployments({ hostDeployments: [deployment(s.node, s.host.systems.broken as string)], dryRun: false, prune: false, reason: 'test' });
  const failed = await nodeStatus(s.fleet, (p) => p === NodeRolloutPhase.NODE_ROLLOUT_PHASE_ROLLED_BACK, 'the node ROLLED_BACK');
  t.like(failed.status?.nodes[0], { failureReason: ActivationFailureReason.ACTIVATION_FAILURE_REASON_SWITCH_FAILED });
  t.regex(failed.status?.nodes[0]?.message ?? '', /broken\.service/);
  const paused = await eventually(async () => {
    const r = (await s.fleet.rollouts.getHostDeployment({ name: 'nodes-os' })).rollout;
    return r?.status?.phase === HostDeploymentPhase.HOST_DEPLOYMENT_PHASE_PAUSED || r?.status?.phase === HostDeploymentPhase.HOST_DEPLOYMENT_PHASE_FAILED ? r : undefined;
  }, ROLLOUT_TIMEOUT_MS, 'the rollout stopped at its failure budget');
  t.true(paused.status?.pauseCause === HostDeploymentPauseCause.HOST_DEPLOYMENT_PAUSE_CAUSE_FAILURE_BUDGET || paused.status?.phase === HostDeploymentPhase.HOST_DEPLOYMENT_PHASE_FAILED);
  t.deepEqual(await generationNames(s.host), ['1:base', '2:next*']);
  t.is(currentSystem(s.host), s.host.systems.next);
  t.deepEqual(activationLog(s.host), ['next switch start', 'next switch done', 'broken switch start', 'broken switch failed', 'next switch start', 'next switch done']);
});

eachTarget('boot strategy through the real host-controller: the agent stages, reboots on the grant, and confirms after a restart with a new boot id', async (t, target) => {
  const s = await setup(t, target, { kernel: 'succeed' });
  const first = s.start('boot-1');
  await s.fleet.rollouts.applyHostDeployments({
    hostDeployments: [deployment(s.node, s.host.systems.kernel as string, { activationStrategy: ActivationStrategy.ACTIVATION_STRATEGY_BOOT })],
    dryRun: false,
    prune: false,
    reason: 'test',
  });
  await eventually(async () => {
    try {
      return readFileSync(s.rebootLog, 'utf8');
    } catch {
      return undefined;
    }
  }, ROLLOUT_TIMEOUT_MS, 'the reboot command after the grant');
  t.deepEqual(await generationNames(s.host), ['1:base', '2:kernel*']);
  t.is(currentSystem(s.host), s.host.systems.base);
  await first.stop();

  rebootHost(s.host);
  s.start('boot-2');
  const done = await nodeStatus(s.fleet, (p) => p === NodeRolloutPhase.NODE_ROLLOUT_PHASE_SUCCEEDED, 'the node SUCCEEDED after the reboot');
  t.like(done.status?.nodes[0], { systemPath: s.host.systems.kernel, generation: 2n });
}, 'pglite');

eachTarget('an operator Reinstall reaches the node: the controller relays it as a MachineCommand and the real agent boots the installer by kexec', async (t, target) => {
  const artefacts = await serveInstallerArtefacts();
  t.teardown(() => artefacts.close());
  const dir = mkdtempSync(join(tmpdir(), 'ultracloud-installer-image-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const imageFile = join(dir, 'installer-kexec.json');
  writeFileSync(imageFile, JSON.stringify(artefacts.image('init=/init ultracloud.deployer=10.0.0.1:7001')));

  const s = await setup(t, target, {}, { 'installer-image': imageFile });
  const scripts = hostScripts(s.host);
  s.start();
  await eventually(async () => ((await s.fleet.machines.getMachine({ key: { $case: 'machineId', value: s.node.machineId } })).machine?.state === MachineState.MACHINE_STATE_ACTIVE ? true : undefined), ROLLOUT_TIMEOUT_MS, 'the machine active');

  await s.fleet.machines.reinstall({ machineId: s.node.machineId, reason: 'disk replaced', expectedResourceVersion: 0n });
  const kexecLines = await eventually(async () => {
    try {
      const lines = readFileSync(scripts.kexecLog, 'utf8').trim().split('\n');
      return lines.length === 2 ? lines : undefined;
    } catch {
      return undefined;
    }
  }, ROLLOUT_TIMEOUT_MS, 'the kexec load and jump');
  t.regex(kexecLines[0] as string, /^kexec --load \S+\/bzImage --initrd=\S+\/initrd --command-line=init=\/init ultracloud\.deployer=10\.0\.0\.1:7001$/);
  t.is(kexecLines[1], 'exec');
  const events = await eventually(async () => {
    const rows = await s.fleet.hostsDb.selectFrom('rollout_events').select(['kind', 'to_phase', 'message']).where('node_id', '=', s.node.nodeId).where('kind', 'like', 'machine.command%').orderBy('id').execute();
    return rows.some((r) => r.to_phase === 'EXECUTING') ? rows : undefined;
  }, ROLLOUT_TIMEOUT_MS, 'the EXECUTING report in the event log');
  t.deepEqual(events.map((e) => `${e.kind} ${e.to_phase}`.trim()), ['machine.command_sent', 'machine.command_report ACCEPTED', 'machine.command_report EXECUTING']);
  t.regex(events[0]?.message ?? '', new RegExp(`^reinstall: command reprovisioning-${s.node.machineId}-\\d+$`));
}, 'pglite');
