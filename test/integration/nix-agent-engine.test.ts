// The nix-agent's activation engine on real Nix: systems built with builtins.derivation into the
// real store, a real system profile under a temporary directory, switch-to-configuration scripts
// that succeed, fail, hang, break health or connectivity, real child processes and timeouts.
// Generations are asserted with `nix-env --list-generations`. The controller side (confirm,
// reboot grants) is played by the test through the engine's hooks.
import { chmodSync, existsSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { ActivationPhase, type ActivationReport, type RebootRequest } from '../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import { ActivationFailureReason, ActivationStrategy, type HealthCheck } from '../../gen/ts/ultracloud/system/v1/system.js';
import { processRunner } from '../../agents/nix-agent/commands.js';
import { type ActivationHooks, ActivationEngine, type ActivationOutcome, type ConfirmTarget, type HostView, SupersededError } from '../../agents/nix-agent/engine.js';
import { JOURNAL_FILE, JournalFile } from '../../agents/nix-agent/journal.js';
import { SystemProfile } from '../../agents/nix-agent/nix.js';
import { createLogger } from '../../lib/log.js';
import {
  activationLog,
  bootDefault,
  createTestHost,
  currentSystem,
  generationNames,
  rebootHost,
  removeTestHost,
  seconds,
  serialNixTest,
  type SwitchBehaviour,
  TEST_HEALTH_CHECK,
  type TestHost,
  testDesiredSystem,
  writeTestFlake,
} from '../helpers/nix-systems.js';

const logger = createLogger({ level: 'silent' });

const runner = processRunner({ logger, killGraceMs: 500 });

const HEALTH_COMMAND = TEST_HEALTH_CHECK;
const nixTest = serialNixTest;
const desired = testDesiredSystem;

/** What the test's controller does: confirm unless the new system blocked the network. */
interface Harness {
  readonly engine: ActivationEngine;
  readonly reports: ActivationReport[];
  readonly rebootRequests: RebootRequest[];
  readonly confirmations: ConfirmTarget[];
  readonly rebootMarker: string;
}

interface HarnessOptions {
  readonly bootId?: string;
  /** Resolve grants at once (default), never, or reject as superseded. */
  readonly grant?: 'now' | 'never' | 'superseded';
  readonly controllerReachable?: () => boolean;
  readonly rebootExitCode?: number;
  readonly copyCommand?: readonly string[];
}

function hostView(host: TestHost, bootId: string): HostView {
  const link = (path: string) => {
    try {
      return readlinkSync(path);
    } catch {
      return undefined;
    }
  };
  return { bootId: () => bootId, currentSystem: () => link(host.currentSystemLink), bootedSystem: () => link(host.bootedSystemLink) };
}

function never(signal: AbortSignal): Promise<void> {
  return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
}

function harness(host: TestHost, options: HarnessOptions = {}): Harness {
  const reports: ActivationReport[] = [];
  const rebootRequests: RebootRequest[] = [];
  const confirmations: ConfirmTarget[] = [];
  const rebootMarker = join(host.root, 'reboots.log');
  const rebootScript = join(host.root, 'reboot.sh');
  writeFileSync(rebootScript, `#!/bin/sh\necho "reboot $*" >> '${rebootMarker}'\nexit ${options.rebootExitCode ?? 0}\n`);
  chmodSync(rebootScript, 0o755);
  const reachable = options.controllerReachable ?? (() => !existsSync(host.blockedFile));
  const hooks: ActivationHooks = {
    report: (r) => reports.push(r),
    confirm: async (target, signal) => {
      if (!reachable()) return never(signal);
      confirmations.push(target);
    },
    awaitRebootGrant: async (request, signal) => {
      rebootRequests.push(request);
      if (options.grant === 'superseded') throw new SupersededError('superseded by workers-os revision 2');
      if (options.grant === 'never') return never(signal);
    },
  };
  const engine = new ActivationEngine(
    {
      profile: new SystemProfile(host.profile, runner),
      journal: new JournalFile(join(host.stateDir, JOURNAL_FILE)),
      runner,
      host: hostView(host, options.bootId ?? 'boot-1'),
      logger,
      rebootCommand: [rebootScript, 'now'],
      gcRoot: join(host.stateDir, 'target'),
      nodeId: 'node-1',
      killGraceMs: 500,
      ...(options.copyCommand ? { copyCommand: options.copyCommand } : {}),
    },
    hooks,
  );
  return { engine, reports, rebootRequests, confirmations, rebootMarker };
}

function phases(reports: readonly ActivationReport[]): string[] {
  return reports.map((r) => ActivationPhase[r.phase].replace('ACTIVATION_PHASE_', ''));
}

function finished(t: ExecutionContext, outcome: ActivationOutcome): ActivationReport {
  if (outcome.kind !== 'finished') t.fail(`expected a finished activation, got ${outcome.kind}`);
  return (outcome as { report: ActivationReport }).report;
}

async function withHost(systems: Readonly<Record<string, SwitchBehaviour>>, body: (host: TestHost) => Promise<void>): Promise<void> {
  const host = await createTestHost(systems);
  try {
    await body(host);
  } finally {
    removeTestHost(host);
  }
}

const stop = new AbortController().signal;

nixTest('switch: realise, set the profile, switch, confirm; the new generation is current', async (t) => {
  await withHost({ next: 'succeed' }, async (host) => {
    const h = harness(host);
    const report = finished(t, await h.engine.activate(desired(host.systems.next as string, { healthCheck: HEALTH_COMMAND }), stop));
    t.is(report.phase, ActivationPhase.ACTIVATION_PHASE_CONFIRMED);
    t.is(report.generation, 2n);
    t.deepEqual(phases(h.reports), ['REALISING', 'ACTIVATING', 'CONFIRMING', 'CONFIRMED']);
    t.deepEqual(await generationNames(host), ['1:base', '2:next*']);
    t.is(currentSystem(host), host.systems.next);
    t.is(bootDefault(host), host.systems.next);
    t.deepEqual(activationLog(host), ['next switch start', 'next switch done']);
    t.deepEqual(h.confirmations, [{ deployment: 'workers-os', revision: 1n, systemPath: host.systems.next as string, generation: 2n }]);
    const journalPath = join(host.stateDir, JOURNAL_FILE);
    t.is(statSync(journalPath).mode & 0o777, 0o600);
    const journal = JSON.parse(readFileSync(journalPath, 'utf8')) as { journal: Record<string, unknown> };
    t.like(journal.journal, { phase: 'ACTIVATION_PHASE_CONFIRMED', generation: '2', previousGeneration: '1', previousSystemPath: host.systems.base });
  });
});

nixTest('switch-to-configuration failing rolls back to the previous generation and deletes the failed one', async (t) => {
  await withHost({ broken: 'fail' }, async (host) => {
    const h = harness(host);
    const report = finished(t, await h.engine.activate(desired(host.systems.broken as string), stop));
    t.is(report.phase, ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK);
    t.is(report.failureReason, ActivationFailureReason.ACTIVATION_FAILURE_REASON_SWITCH_FAILED);
    t.regex(report.message, /exited with status 4[\s\S]*broken\.service/);
    t.deepEqual(phases(h.reports), ['REALISING', 'ACTIVATING', 'ROLLING_BACK', 'ROLLED_BACK']);
    t.deepEqual(await generationNames(host), ['1:base*']);
    t.is(currentSystem(host), host.systems.base);
    t.deepEqual(activationLog(host), ['broken switch start', 'broken switch failed', 'base switch start', 'base switch done']);
    t.deepEqual(h.confirmations, []);
  });
});

nixTest('a hanging switch-to-configuration is killed at the activation timeout and rolled back', async (t) => {
  await withHost({ stuck: 'hang' }, async (host) => {
    const h = harness(host);
    const started = Date.now();
    const report = finished(t, await h.engine.activate(desired(host.systems.stuck as string, { activationTimeoutS: 1.5 }), stop));
    t.true(Date.now() - started < 20_000);
    t.is(report.phase, ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK);
    t.is(report.failureReason, ActivationFailureReason.ACTIVATION_FAILURE_REASON_ACTIVATION_TIMEOUT);
    t.regex(report.message, /timed out/);
    t.deepEqual(await generationNames(host), ['1:base*']);
    t.is(currentSystem(host), host.systems.base);
    t.deepEqual(activationLog(host), ['stuck switch start', 'stuck switch hanging', 'base switch start', 'base switch done']);
  });
});

nixTest('a system whose health check fails is rolled back with the probe output in the report', async (t) => {
  await withHost({ sick: 'unhealthy' }, async (host) => {
    const h = harness(host);
    const report = finished(t, await h.engine.activate(desired(host.systems.sick as string, { healthCheck: HEALTH_COMMAND }), stop));
    t.is(report.phase, ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK);
    t.is(report.failureReason, ActivationFailureReason.ACTIVATION_FAILURE_REASON_HEALTH_CHECK_FAILED);
    t.regex(report.message, /ultracloud-test-health exited with status 1: unhealthy: service answers 503/);
    t.deepEqual(phases(h.reports), ['REALISING', 'ACTIVATING', 'CONFIRMING', 'ROLLING_BACK', 'ROLLED_BACK']);
    t.deepEqual(await generationNames(host), ['1:base*']);
    t.is(currentSystem(host), host.systems.base);
  });
});

nixTest('a system that breaks connectivity is never confirmed and is rolled back at the confirm timeout (magic rollback)', async (t) => {
  await withHost({ island: 'disconnect' }, async (host) => {
    const h = harness(host);
    const started = Date.now();
    const report = finished(t, await h.engine.activate(desired(host.systems.island as string, { healthCheck: HEALTH_COMMAND, confirmTimeoutS: 1.5 }), stop));
    t.true(Date.now() - started >= 1_500);
    t.is(report.phase, ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK);
    t.is(report.failureReason, ActivationFailureReason.ACTIVATION_FAILURE_REASON_CONTROLLER_UNREACHABLE);
    t.deepEqual(await generationNames(host), ['1:base*']);
    t.is(currentSystem(host), host.systems.base);
    t.deepEqual(h.confirmations, []);
  });
});

nixTest('the HTTP health check gates confirmation: 200 confirms, 503 rolls back', async (t) => {
  let status = 200;
  const server: Server = createServer((_req, res) => {
    res.statusCode = status;
    res.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const { port } = server.address() as { port: number };
  const http: HealthCheck = { probe: { $case: 'http', value: { url: `http://127.0.0.1:${port}/healthz`, expectedStatus: 0 } }, interval: seconds(0.1), retries: 2 };
  await withHost({ next: 'succeed', later: 'succeed' }, async (host) => {
    const h = harness(host);
    t.is(finished(t, await h.engine.activate(desired(host.systems.next as string, { healthCheck: http }), stop)).phase, ActivationPhase.ACTIVATION_PHASE_CONFIRMED);
    status = 503;
    const report = finished(t, await h.engine.activate(desired(host.systems.later as string, { revision: 2n, healthCheck: http }), stop));
    t.is(report.failureReason, ActivationFailureReason.ACTIVATION_FAILURE_REASON_HEALTH_CHECK_FAILED);
    t.regex(report.message, /status 503/);
    t.deepEqual(await generationNames(host), ['1:base', '2:next*']);
    t.is(currentSystem(host), host.systems.next);
  });
});

nixTest('test strategy activates without touching the profile, and its rollback re-activates the profile generation with test', async (t) => {
  await withHost({ trial: 'succeed', broken: 'fail' }, async (host) => {
    const h = harness(host);
    const ok = finished(t, await h.engine.activate(desired(host.systems.trial as string, { strategy: ActivationStrategy.ACTIVATION_STRATEGY_TEST }), stop));
    t.is(ok.phase, ActivationPhase.ACTIVATION_PHASE_CONFIRMED);
    t.is(ok.generation, 0n);
    t.deepEqual(await generationNames(host), ['1:base*']);
    t.is(currentSystem(host), host.systems.trial);
    t.is(bootDefault(host), host.systems.base);

    const failed = finished(t, await h.engine.activate(desired(host.systems.broken as string, { revision: 2n, strategy: ActivationStrategy.ACTIVATION_STRATEGY_TEST }), stop));
    t.is(failed.phase, ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK);
    t.deepEqual(await generationNames(host), ['1:base*']);
    t.is(currentSystem(host), host.systems.base);
    t.deepEqual(activationLog(host).slice(-4), ['broken test start', 'broken test failed', 'base test start', 'base test done']);
  });
});

nixTest('with auto_rollback off a failed generation stays in place and is reported FAILED', async (t) => {
  await withHost({ broken: 'fail' }, async (host) => {
    const h = harness(host);
    const report = finished(t, await h.engine.activate(desired(host.systems.broken as string, { autoRollback: false }), stop));
    t.is(report.phase, ActivationPhase.ACTIVATION_PHASE_FAILED);
    t.is(report.failureReason, ActivationFailureReason.ACTIVATION_FAILURE_REASON_SWITCH_FAILED);
    t.deepEqual(await generationNames(host), ['1:base', '2:broken*']);
  });
});

nixTest('a closure that cannot be realised changes nothing and is reported with REALISE_FAILED', async (t) => {
  await withHost({}, async (host) => {
    const h = harness(host);
    const missing = '/nix/store/00000000000000000000000000000000-ultracloud-missing-system';
    const report = finished(t, await h.engine.activate(desired(missing), stop));
    t.is(report.phase, ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK);
    t.is(report.failureReason, ActivationFailureReason.ACTIVATION_FAILURE_REASON_REALISE_FAILED);
    t.deepEqual(phases(h.reports), ['REALISING', 'ROLLED_BACK']);
    t.deepEqual(await generationNames(host), ['1:base*']);
    t.deepEqual(activationLog(host), []);
  });
});

nixTest('a repeated delivery of the same deployment revision is a no-op that returns its last report', async (t) => {
  await withHost({ next: 'succeed' }, async (host) => {
    const h = harness(host);
    await h.engine.activate(desired(host.systems.next as string), stop);
    const again = await h.engine.activate(desired(host.systems.next as string), stop);
    t.is(again.kind, 'duplicate');
    t.is((again as { report: ActivationReport }).report.phase, ActivationPhase.ACTIVATION_PHASE_CONFIRMED);
    t.deepEqual(await generationNames(host), ['1:base', '2:next*']);
    t.deepEqual(activationLog(host), ['next switch start', 'next switch done']);
  });
});

nixTest('a desired system for another node is refused without touching the host', async (t) => {
  await withHost({ next: 'succeed' }, async (host) => {
    const h = harness(host);
    const report = finished(t, await h.engine.activate({ ...desired(host.systems.next as string), nodeId: 'node-2' }, stop));
    t.is(report.phase, ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK);
    t.regex(report.message, /node_id: this agent is node node-1/);
    t.deepEqual(await generationNames(host), ['1:base*']);
  });
});

nixTest('boot strategy: stage, wait for the grant, reboot; after the reboot a new engine confirms the booted generation', async (t) => {
  await withHost({ kernel: 'succeed' }, async (host) => {
    const before = harness(host, { bootId: 'boot-1' });
    const outcome = await before.engine.activate(desired(host.systems.kernel as string, { strategy: ActivationStrategy.ACTIVATION_STRATEGY_BOOT, healthCheck: HEALTH_COMMAND }), stop);
    t.is(outcome.kind, 'rebooting');
    t.deepEqual(phases(before.reports), ['REALISING', 'ACTIVATING', 'AWAITING_REBOOT']);
    t.like(before.rebootRequests[0], { deployment: 'workers-os', revision: 1n, generation: 2n });
    t.is(readFileSync(before.rebootMarker, 'utf8'), 'reboot now\n');
    // Staged: the profile and the boot default moved, the running system did not.
    t.deepEqual(await generationNames(host), ['1:base', '2:kernel*']);
    t.is(currentSystem(host), host.systems.base);
    t.is(bootDefault(host), host.systems.kernel);

    rebootHost(host);
    const after = harness(host, { bootId: 'boot-2' });
    const resumed = await after.engine.resume(stop);
    const report = finished(t, resumed as ActivationOutcome);
    t.is(report.phase, ActivationPhase.ACTIVATION_PHASE_CONFIRMED);
    t.is(report.bootId, 'boot-2');
    t.deepEqual(phases(after.reports), ['REBOOTED', 'CONFIRMED']);
    t.deepEqual(await generationNames(host), ['1:base', '2:kernel*']);
    t.deepEqual(activationLog(host), ['kernel boot start', 'kernel boot done']);
  });
});

nixTest('boot strategy: a host that booted the old system (bootloader fallback) rolls the profile back with REBOOT_FAILED', async (t) => {
  await withHost({ kernel: 'succeed' }, async (host) => {
    const before = harness(host, { bootId: 'boot-1' });
    t.is((await before.engine.activate(desired(host.systems.kernel as string, { strategy: ActivationStrategy.ACTIVATION_STRATEGY_BOOT }), stop)).kind, 'rebooting');
    rebootHost(host, host.systems.base);
    const after = harness(host, { bootId: 'boot-2' });
    const report = finished(t, (await after.engine.resume(stop)) as ActivationOutcome);
    t.is(report.phase, ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK);
    t.is(report.failureReason, ActivationFailureReason.ACTIVATION_FAILURE_REASON_REBOOT_FAILED);
    t.deepEqual(await generationNames(host), ['1:base*']);
    t.is(bootDefault(host), host.systems.base);
    t.deepEqual(activationLog(host).slice(-2), ['base boot start', 'base boot done']);
  });
});

nixTest('boot strategy: an unhealthy booted generation is rolled back and the previous system activated now', async (t) => {
  await withHost({ kernel: 'unhealthy' }, async (host) => {
    const before = harness(host, { bootId: 'boot-1' });
    await before.engine.activate(desired(host.systems.kernel as string, { strategy: ActivationStrategy.ACTIVATION_STRATEGY_BOOT, healthCheck: HEALTH_COMMAND }), stop);
    rebootHost(host);
    t.is(currentSystem(host), host.systems.kernel);
    const after = harness(host, { bootId: 'boot-2' });
    const report = finished(t, (await after.engine.resume(stop)) as ActivationOutcome);
    t.is(report.failureReason, ActivationFailureReason.ACTIVATION_FAILURE_REASON_HEALTH_CHECK_FAILED);
    t.deepEqual(phases(after.reports), ['REBOOTED', 'ROLLING_BACK', 'ROLLED_BACK']);
    t.deepEqual(await generationNames(host), ['1:base*']);
    t.is(currentSystem(host), host.systems.base);
    t.is(bootDefault(host), host.systems.base);
  });
});

nixTest('boot strategy: a failing reboot command rolls the staged generation back', async (t) => {
  await withHost({ kernel: 'succeed' }, async (host) => {
    const h = harness(host, { rebootExitCode: 1 });
    const report = finished(t, await h.engine.activate(desired(host.systems.kernel as string, { strategy: ActivationStrategy.ACTIVATION_STRATEGY_BOOT }), stop));
    t.is(report.failureReason, ActivationFailureReason.ACTIVATION_FAILURE_REASON_REBOOT_FAILED);
    t.deepEqual(await generationNames(host), ['1:base*']);
    t.is(bootDefault(host), host.systems.base);
  });
});

nixTest('boot strategy: a staged generation superseded before its grant is unstaged', async (t) => {
  await withHost({ kernel: 'succeed' }, async (host) => {
    const h = harness(host, { grant: 'superseded' });
    const report = finished(t, await h.engine.activate(desired(host.systems.kernel as string, { strategy: ActivationStrategy.ACTIVATION_STRATEGY_BOOT }), stop));
    t.is(report.phase, ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK);
    t.regex(report.message, /superseded/);
    t.deepEqual(await generationNames(host), ['1:base*']);
    t.is(bootDefault(host), host.systems.base);
  });
});

nixTest('an agent stopping while waiting for a reboot grant keeps the staged generation; the next agent asks again', async (t) => {
  await withHost({ kernel: 'succeed' }, async (host) => {
    const first = harness(host, { grant: 'never' });
    const stopping = new AbortController();
    const pending = first.engine.activate(desired(host.systems.kernel as string, { strategy: ActivationStrategy.ACTIVATION_STRATEGY_BOOT }), stopping.signal);
    while (first.rebootRequests.length === 0) await new Promise((r) => setTimeout(r, 50));
    stopping.abort();
    t.deepEqual(await pending, { kind: 'interrupted', phase: ActivationPhase.ACTIVATION_PHASE_AWAITING_REBOOT });
    const second = harness(host, { grant: 'now' });
    t.is((await second.engine.resume(stop))?.kind, 'rebooting');
    t.is(second.rebootRequests.length, 1);
    t.deepEqual(await generationNames(host), ['1:base', '2:kernel*']);
  });
});

nixTest('an agent stopped while confirming leaves the journal at CONFIRMING; the next agent confirms or rolls back', async (t) => {
  await withHost({ next: 'succeed', island: 'disconnect' }, async (host) => {
    // The controller is unreachable while the first agent confirms; it stops (SIGTERM).
    let reachable = false;
    const first = harness(host, { controllerReachable: () => reachable });
    const stopping = new AbortController();
    const pending = first.engine.activate(desired(host.systems.next as string), stopping.signal);
    while (!phases(first.reports).includes('CONFIRMING')) await new Promise((r) => setTimeout(r, 50));
    stopping.abort();
    t.deepEqual(await pending, { kind: 'interrupted', phase: ActivationPhase.ACTIVATION_PHASE_CONFIRMING });
    t.deepEqual(await generationNames(host), ['1:base', '2:next*']);
    // The next agent reaches the controller: confirmed.
    reachable = true;
    const second = harness(host, { controllerReachable: () => reachable });
    t.is(finished(t, (await second.engine.resume(stop)) as ActivationOutcome).phase, ActivationPhase.ACTIVATION_PHASE_CONFIRMED);
    t.deepEqual(await generationNames(host), ['1:base', '2:next*']);

    // Same again with a system that cuts the network: the resumed confirmation times out.
    const third = harness(host, { controllerReachable: () => false });
    const interrupted = new AbortController();
    const p = third.engine.activate(desired(host.systems.island as string, { revision: 2n, confirmTimeoutS: 1 }), interrupted.signal);
    while (!phases(third.reports).includes('CONFIRMING')) await new Promise((r) => setTimeout(r, 50));
    interrupted.abort();
    await p;
    const fourth = harness(host);
    const report = finished(t, (await fourth.engine.resume(stop)) as ActivationOutcome);
    t.is(report.failureReason, ActivationFailureReason.ACTIVATION_FAILURE_REASON_CONTROLLER_UNREACHABLE);
    t.deepEqual(await generationNames(host), ['1:base', '2:next*']);
    t.is(currentSystem(host), host.systems.next);
  });
});

nixTest('an agent restarted with the journal at ACTIVATING rolls back with AGENT_RESTARTED, even across a reboot', async (t) => {
  await withHost({ next: 'succeed' }, async (host) => {
    const h = harness(host);
    await h.engine.activate(desired(host.systems.next as string), stop);
    // Rewrite the journal as a crash after the profile change would have left it.
    const journal = new JournalFile(join(host.stateDir, JOURNAL_FILE));
    const record = journal.read();
    if (!record) throw new Error('no journal');
    journal.write({ ...record, journal: { ...record.journal, deployment: 'workers-os', revision: 5n, phase: ActivationPhase.ACTIVATION_PHASE_ACTIVATING, previousGeneration: 1n, previousSystemPath: host.systems.base as string } });
    rebootHost(host);
    const after = harness(host, { bootId: 'boot-9' });
    const report = finished(t, (await after.engine.resume(stop)) as ActivationOutcome);
    t.is(report.failureReason, ActivationFailureReason.ACTIVATION_FAILURE_REASON_AGENT_RESTARTED);
    t.deepEqual(await generationNames(host), ['1:base*']);
    t.is(currentSystem(host), host.systems.base);
  });
});

nixTest('a target given only as a flake is built locally and activated; a configured copy command runs before realising', async (t) => {
  await withHost({}, async (host) => {
    const copyLog = join(host.root, 'copies.log');
    const copy = join(host.root, 'copy.sh');
    writeFileSync(copy, `#!/bin/sh\necho "$*" >> '${copyLog}'\n`);
    chmodSync(copy, 0o755);
    const h = harness(host, { copyCommand: [copy, '--from', 'cache-host'] });
    const flakeRef = await writeTestFlake(host.root, 'flaked', 'succeed');
    const report = finished(t, await h.engine.activate({ ...desired(''), flakeRef, flakeAttr: 'system' }, stop));
    t.is(report.phase, ActivationPhase.ACTIVATION_PHASE_CONFIRMED);
    t.regex(report.systemPath, /^\/nix\/store\/[0-9a-z]{32}-ultracloud-test-flaked$/);
    t.is(currentSystem(host), report.systemPath);
    t.deepEqual(activationLog(host), ['flaked switch start', 'flaked switch done']);
    // The flake's output is already local; a store path from the controller goes through the copy command.
    t.false(existsSync(copyLog));
    const again = finished(t, await h.engine.activate(desired(host.systems.base as string, { revision: 2n }), stop));
    t.is(again.phase, ActivationPhase.ACTIVATION_PHASE_CONFIRMED);
    t.is(readFileSync(copyLog, 'utf8'), `--from cache-host ${host.systems.base}\n`);
    t.deepEqual(await generationNames(host), ['1:base', `2:${report.systemPath}`, '3:base*']);
  });
});
