// The nix-agent daemon: the controller link, the activation engine and machine commands wired
// together. Desired systems are applied one at a time (a newer one waits for the current one;
// only the newest waiting one is kept); an unfinished activation from a previous process is
// resumed first. On stop (SIGTERM) waits end at once, a running switch-to-configuration is let
// finish, the journal keeps the phase, and queued reports get a moment to reach the controller.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type ActivationReport, type HostAgentHello, type RebootGrant, type RebootRequest } from '../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import type { DesiredSystem } from '../../gen/ts/ultracloud/system/v1/system.js';
import { formatHostPort } from '../../lib/config/settings.js';
import type { Logger } from '../../lib/log.js';
import { processRunner } from './commands.js';
import type { NixAgentConfig } from './config.js';
import { ControllerLink } from './connection.js';
import { ActivationEngine, type ActivationOutcome, SupersededError } from './engine.js';
import { HostFacts } from './host.js';
import { JOURNAL_FILE, JournalFile } from './journal.js';
import { MachineCommandExecutor } from './machine-commands.js';
import { SystemProfile } from './nix.js';

export const NIX_AGENT_VERSION = '0.1.0';

interface GrantWaiter {
  readonly request: RebootRequest;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

export interface RunningNixAgent {
  /** Stops gracefully; resolves when the agent has stopped. */
  stop(): Promise<void>;
}

function sameActivation(a: { deployment: string; revision: bigint } | undefined, b: { deployment: string; revision: bigint }): boolean {
  return a !== undefined && a.deployment === b.deployment && a.revision === b.revision;
}

export class NixAgent implements RunningNixAgent {
  private readonly log: Logger;
  private readonly stopping = new AbortController();
  private readonly host: HostFacts;
  private readonly profile: SystemProfile;
  private readonly engine: ActivationEngine;
  private readonly link: ControllerLink;
  private readonly commands: MachineCommandExecutor;
  private pending: DesiredSystem | undefined;
  private active: DesiredSystem | undefined;
  private grantWaiter: GrantWaiter | undefined;
  /** Boot strategy: the reboot command ran; nothing more is applied in this boot. */
  private rebooting = false;
  private wakeWorker: (() => void) | undefined;
  private worker: Promise<void> | undefined;
  private stateTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly config: NixAgentConfig,
    logger: Logger,
  ) {
    this.log = logger.child({ component: 'nix-agent', node_id: config.nodeId });
    mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
    const runner = processRunner({ logger: this.log });
    this.host = new HostFacts(config, runner, this.log);
    this.profile = new SystemProfile(config.systemProfile, runner);
    this.link = new ControllerLink(
      {
        address: formatHostPort(config.hostController),
        tls: config.insecureLoopback ? undefined : { caFile: config.caFile, certFile: config.tlsCertFile, keyFile: config.tlsKeyFile },
        logger: this.log,
        hello: () => this.hello(),
        heartbeat: () => ({ sentAt: new Date(), systemState: this.host.systemState() }),
      },
      {
        desiredSystem: (d) => this.onDesiredSystem(d),
        rebootGrant: (g, offset) => this.onRebootGrant(g, offset),
        machineCommand: (c) => void this.commands.handle(c),
        established: () => this.onEstablished(),
      },
    );
    this.engine = new ActivationEngine(
      {
        profile: this.profile,
        journal: new JournalFile(join(config.stateDir, JOURNAL_FILE)),
        runner,
        host: this.host,
        logger: this.log,
        rebootCommand: config.rebootCommand,
        ...(config.copyCommand ? { copyCommand: config.copyCommand } : {}),
        gcRoot: join(config.stateDir, 'target-system'),
        nodeId: config.nodeId,
      },
      {
        report: (r) => this.report(r),
        confirm: (_target, signal) => this.link.reestablish(signal),
        awaitRebootGrant: (request, signal) => this.awaitRebootGrant(request, signal),
      },
    );
    this.commands = new MachineCommandExecutor({
      kexec: { loadCommand: config.kexecCommand, execCommand: config.kexecExecCommand, workDir: join(config.stateDir, 'kexec'), ...(config.insecureLoopback ? {} : { caFile: config.caFile }) },
      stateDir: config.stateDir,
      runner,
      logger: this.log,
      send: (report) => this.link.send({ $case: 'machineCommandReport', value: report }),
    });
  }

  async start(): Promise<void> {
    await this.host.refresh();
    this.stateTimer = setInterval(() => void this.host.refresh(), 30_000);
    this.log.info({
      event: 'ready',
      controller: formatHostPort(this.config.hostController),
      boot_id: this.host.bootId(),
      profile: this.config.systemProfile,
      profile_generation: this.profile.current()?.generation ?? 0,
      current_system: this.host.currentSystem(),
      unfinished_activation: this.engine.unfinished(),
      state_dir: this.config.stateDir,
    });
    this.link.start();
    this.worker = this.work();
  }

  async stop(): Promise<void> {
    if (this.stopping.signal.aborted) return this.worker?.then(() => undefined);
    this.log.info({ event: 'stopping', active: this.active ? `${this.active.deployment}@${this.active.revision}` : undefined });
    this.stopping.abort(new Error('agent stopping'));
    this.grantWaiter?.reject(new Error('agent stopping'));
    this.wakeWorker?.();
    await this.worker;
    if (this.stateTimer) clearInterval(this.stateTimer);
    const delivered = await this.link.drain(3_000);
    await this.link.stop();
    this.log.info({ event: 'stopped', reports_delivered: delivered, journal_phase: this.engine.journal()?.phase });
  }

  private hello(): HostAgentHello {
    const current = this.profile.current();
    const journal = this.engine.journal();
    return {
      nodeId: this.config.nodeId,
      bootId: this.host.bootId(),
      currentSystemPath: this.host.currentSystem() ?? '',
      bootedSystemPath: this.host.bootedSystem() ?? '',
      profileSystemPath: current?.systemPath ?? '',
      profileGeneration: BigInt(current?.generation ?? 0),
      agentVersion: NIX_AGENT_VERSION,
      ...(journal ? { journal } : {}),
      hostname: this.host.hostname(),
      systemState: this.host.systemState(),
    };
  }

  private report(report: ActivationReport): void {
    this.link.send({ $case: 'activationReport', value: report }).catch((err: unknown) => this.log.warn({ event: 'report.dropped', err }));
  }

  private onDesiredSystem(desired: DesiredSystem): void {
    const label = { deployment: desired.deployment, revision: String(desired.revision), system_path: desired.systemPath };
    if (this.rebooting) {
      this.log.info({ event: 'desired_system.deferred', reason: 'rebooting', ...label });
      return;
    }
    if (sameActivation(this.active, desired) || sameActivation(this.pending, desired)) {
      this.log.debug({ event: 'desired_system.repeated', ...label });
      return;
    }
    if (!this.active && sameActivation(this.engine.lastActivation(), desired) && !this.engine.unfinished()) {
      // Already finished: the controller missed the outcome; report it again.
      const journal = this.engine.journal();
      if (journal) this.report({ ...journal, occurredAt: journal.updatedAt });
      return;
    }
    this.log.info({ event: 'desired_system.received', ...label });
    this.pending = desired;
    if (this.grantWaiter && !sameActivation(this.grantWaiter.request, desired)) {
      this.grantWaiter.reject(new SupersededError(`superseded by ${desired.deployment} revision ${desired.revision} before the reboot`));
    }
    this.wakeWorker?.();
  }

  private awaitRebootGrant(request: RebootRequest, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal.aborted) {
        reject(signal.reason);
        return;
      }
      const done = () => {
        signal.removeEventListener('abort', onAbort);
        if (this.grantWaiter === waiter) this.grantWaiter = undefined;
      };
      const waiter: GrantWaiter = {
        request,
        resolve: () => {
          done();
          resolve();
        },
        reject: (err) => {
          done();
          reject(err);
        },
      };
      const onAbort = () => waiter.reject(signal.reason as Error);
      signal.addEventListener('abort', onAbort, { once: true });
      this.grantWaiter = waiter;
      this.sendRebootRequest(request);
    });
  }

  private sendRebootRequest(request: RebootRequest): void {
    this.log.info({ event: 'reboot.requested', deployment: request.deployment, revision: String(request.revision), generation: String(request.generation) });
    this.link.send({ $case: 'rebootRequest', value: request }).catch(() => undefined);
  }

  private onEstablished(): void {
    // The contract: repeat the reboot request on every new stream until granted.
    if (this.grantWaiter) this.sendRebootRequest(this.grantWaiter.request);
  }

  private onRebootGrant(grant: RebootGrant, clockOffsetMs: number): void {
    const waiter = this.grantWaiter;
    if (!waiter || !sameActivation(waiter.request, grant)) {
      this.log.warn({ event: 'reboot.grant_ignored', deployment: grant.deployment, revision: String(grant.revision), reason: 'no staged generation for it' });
      return;
    }
    if (grant.deadline && grant.deadline.getTime() < Date.now() + clockOffsetMs) {
      this.log.warn({ event: 'reboot.grant_expired', deadline: grant.deadline.toISOString() });
      this.sendRebootRequest(waiter.request);
      return;
    }
    this.log.info({ event: 'reboot.granted', deployment: grant.deployment, revision: String(grant.revision) });
    waiter.resolve();
  }

  private async work(): Promise<void> {
    const signal = this.stopping.signal;
    try {
      const resumed = await this.engine.resume(signal);
      if (resumed) this.settle(resumed);
    } catch (err) {
      this.log.error({ event: 'activation.resume_failed', err });
    }
    while (!signal.aborted) {
      const next = this.rebooting ? undefined : this.pending;
      if (!next) {
        await new Promise<void>((resolve) => {
          this.wakeWorker = resolve;
        });
        this.wakeWorker = undefined;
        continue;
      }
      this.pending = undefined;
      this.active = next;
      try {
        this.settle(await this.engine.activate(next, signal));
      } catch (err) {
        this.log.error({ event: 'activation.error', deployment: next.deployment, revision: String(next.revision), err });
      } finally {
        this.active = undefined;
      }
    }
  }

  private settle(outcome: ActivationOutcome): void {
    if (outcome.kind === 'duplicate') this.report(outcome.report);
    if (outcome.kind === 'rebooting') this.rebooting = true;
  }
}

export async function startNixAgent(config: NixAgentConfig, logger: Logger): Promise<RunningNixAgent> {
  const agent = new NixAgent(config, logger);
  await agent.start();
  return agent;
}
