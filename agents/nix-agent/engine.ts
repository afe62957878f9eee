// The activation engine: deploy-rs semantics on the host's Nix system profile.
//
//   realise -> set profile -> switch-to-configuration <action> (activation timeout)
//           -> health check AND controller confirmation (confirm timeout) -> confirmed
//   any failure after the host changed -> profile back to the previous generation, that
//           generation's switch-to-configuration, the failed generation deleted -> rolled back
//
// `test` never touches the profile; `boot` stages the generation, waits for a reboot grant,
// reboots, and confirms after the boot. Every step is written to the activation journal before
// it runs; `resume` finishes whatever a previous agent process left unfinished: an unconfirmed
// generation is confirmed (health + controller) or rolled back, never left in place.
//
// The engine knows nothing of gRPC: the daemon supplies the controller side as hooks.
import { ActivationPhase, type ActivationJournal, type ActivationReport, type RebootRequest } from '../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import { ActivationFailureReason, type DesiredSystem } from '../../gen/ts/ultracloud/system/v1/system.js';
import type { Logger } from '../../lib/log.js';
import { type CommandRunner, type CommandResult, failureMessage, killProcessGroup } from './commands.js';
import { runHealthCheck } from './health.js';
import { CorruptJournalError, isTerminalPhase, type JournalFile, type JournalRecord } from './journal.js';
import { buildFlakeSystem, realiseSystem, type SystemProfile } from './nix.js';
import { type ActivationPlan, InvalidDesiredSystemError, resolveActivationPlan, type SwitchAction } from './policy.js';

/** What the engine reads about the running host. */
export interface HostView {
  /** /proc/sys/kernel/random/boot_id (or the configured one). */
  bootId(): string;
  /** Store path /run/current-system points to; undefined when unreadable. */
  currentSystem(): string | undefined;
  /** Store path /run/booted-system points to; undefined when unreadable. */
  bootedSystem(): string | undefined;
}

export interface ConfirmTarget {
  readonly deployment: string;
  readonly revision: bigint;
  readonly systemPath: string;
  readonly generation: bigint;
}

/** The controller side of an activation, supplied by the daemon. */
export interface ActivationHooks {
  /** A phase was reached; the daemon delivers the report (kept until acknowledged). */
  report(report: ActivationReport): void;
  /**
   * Resolves once a controller stream opened after activation (a new connection: the new
   * system must not have broken connectivity) has acknowledged the agent's hello with the new
   * generation. May stay pending; the engine stops waiting when `signal` aborts.
   */
  confirm(target: ConfirmTarget, signal: AbortSignal): Promise<void>;
  /**
   * Boot strategy: resolves when the controller grants a reboot for this staged generation.
   * Rejects with SupersededError when a newer desired system replaces the staged one.
   */
  awaitRebootGrant(request: RebootRequest, signal: AbortSignal): Promise<void>;
}

/** A staged (boot strategy) activation that a newer DesiredSystem replaces. */
export class SupersededError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SupersededError';
  }
}

export interface EngineSettings {
  readonly profile: SystemProfile;
  readonly journal: JournalFile;
  readonly runner: CommandRunner;
  readonly host: HostView;
  readonly logger: Logger;
  /** Run when the controller grants a reboot (boot strategy), e.g. ["systemctl", "reboot"]. */
  readonly rebootCommand: readonly string[];
  /** Run before `nix-store --realise` with the store path appended. */
  readonly copyCommand?: readonly string[];
  /** GC root symlink held on the target while it is realised. */
  readonly gcRoot: string;
  /** Refuse desired systems for other nodes. */
  readonly nodeId?: string;
  /** Realise or build time limit. Default 1 h. */
  readonly realiseTimeoutMs?: number;
  /** SIGTERM to SIGKILL grace for a timed-out or leftover switch-to-configuration. Default 5 s. */
  readonly killGraceMs?: number;
  readonly now?: () => Date;
}

export type ActivationOutcome =
  /** CONFIRMED, ROLLED_BACK or FAILED: the report says which. */
  | { readonly kind: 'finished'; readonly report: ActivationReport }
  /** Boot strategy: the reboot command ran; the host is going down. */
  | { readonly kind: 'rebooting'; readonly report: ActivationReport }
  /** The agent is stopping; the journal holds the phase to resume from. */
  | { readonly kind: 'interrupted'; readonly phase: ActivationPhase }
  /** The same (deployment, revision) was already activated: its last report, sent again. */
  | { readonly kind: 'duplicate'; readonly report: ActivationReport };

/** Mutable state of the activation in progress, written through to the journal. */
interface Activation {
  readonly desired: DesiredSystem;
  readonly plan: ActivationPlan;
  readonly journal: ActivationJournal;
  rollbackAction: SwitchAction;
  switchProcessGroup?: number;
  rebootStarted?: boolean;
}

const REBOOT_COMMAND_TIMEOUT_MS = 120_000;

function reportOf(j: ActivationJournal): ActivationReport {
  return {
    deployment: j.deployment,
    revision: j.revision,
    phase: j.phase,
    systemPath: j.systemPath,
    generation: j.generation,
    failureReason: j.failureReason,
    message: j.message,
    bootId: j.bootId,
    startedAt: j.startedAt,
    occurredAt: j.updatedAt,
  };
}

/** Resolves never; rejects when `signal` aborts. */
function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

export class ActivationEngine {
  private readonly log: Logger;
  private readonly now: () => Date;
  private last: JournalRecord | undefined;

  constructor(
    private readonly settings: EngineSettings,
    private readonly hooks: ActivationHooks,
  ) {
    this.log = settings.logger.child({ component: 'nix-agent.engine' });
    this.now = settings.now ?? (() => new Date());
    try {
      this.last = settings.journal.read();
    } catch (err) {
      if (!(err instanceof CorruptJournalError)) throw err;
      // Written atomically, so only a damaged disk gets here; starting is better than not.
      this.log.error({ event: 'journal.corrupt', path: err.path, moved_to: err.movedTo, err });
    }
  }

  /** The last journal entry, as sent in the hello. */
  journal(): ActivationJournal | undefined {
    return this.last?.journal;
  }

  /** True when the journal holds an activation that has not ended. */
  unfinished(): boolean {
    return this.last !== undefined && !isTerminalPhase(this.last.journal.phase);
  }

  /** (deployment, revision) of the journal's last entry. */
  lastActivation(): { deployment: string; revision: bigint } | undefined {
    return this.last ? { deployment: this.last.journal.deployment, revision: this.last.journal.revision } : undefined;
  }

  /**
   * Activates `desired`. `signal` is the agent stopping: waits end at once, commands that change
   * the host run to completion, and the journal keeps the phase for `resume`.
   */
  async activate(desired: DesiredSystem, signal: AbortSignal): Promise<ActivationOutcome> {
    const last = this.last;
    if (last && last.journal.deployment === desired.deployment && last.journal.revision === desired.revision) {
      return { kind: 'duplicate', report: reportOf(last.journal) };
    }
    if (last && !isTerminalPhase(last.journal.phase)) {
      throw new Error(`activation of ${last.journal.deployment} revision ${last.journal.revision} is unfinished; resume it first`);
    }
    return this.start(desired, signal);
  }

  /** Finishes the activation a previous agent process left unfinished, if any. */
  async resume(signal: AbortSignal): Promise<ActivationOutcome | undefined> {
    const record = this.last;
    if (!record || isTerminalPhase(record.journal.phase)) return undefined;
    const j = record.journal;
    const sameBoot = j.bootId === this.settings.host.bootId();
    this.log.warn({ event: 'activation.resume', deployment: j.deployment, revision: String(j.revision), phase: ActivationPhase[j.phase], same_boot: sameBoot });
    if (record.switchProcessGroup !== undefined && sameBoot) {
      // The previous agent died while switch-to-configuration ran; it must not keep changing the
      // host while this one rolls back.
      this.log.warn({ event: 'activation.kill_leftover_switch', pgid: record.switchProcessGroup });
      await killProcessGroup(record.switchProcessGroup, this.settings.killGraceMs ?? 5_000);
    }
    let plan: ActivationPlan;
    try {
      plan = resolveActivationPlan(record.desiredSystem);
    } catch (err) {
      // Cannot happen for a journal this agent wrote (it validates before the first entry).
      return this.finishUnplanned(record.desiredSystem, { ...j }, ActivationPhase.ACTIVATION_PHASE_FAILED, `the journal's desired system is invalid: ${(err as Error).message}`);
    }
    const a = this.activationFrom(record, plan);
    a.switchProcessGroup = undefined;
    const restarted = ActivationFailureReason.ACTIVATION_FAILURE_REASON_AGENT_RESTARTED;
    switch (j.phase) {
      case ActivationPhase.ACTIVATION_PHASE_REALISING:
        // Nothing on the host changed yet: start over.
        return this.start(record.desiredSystem, signal);
      case ActivationPhase.ACTIVATION_PHASE_ACTIVATING:
        return this.rollBack(a, restarted, 'the agent restarted while the new generation was being activated');
      case ActivationPhase.ACTIVATION_PHASE_CONFIRMING:
        if (!sameBoot) return this.rollBack(a, restarted, 'the host rebooted before the new generation was confirmed');
        return this.confirm(a, ActivationPhase.ACTIVATION_PHASE_CONFIRMING, signal);
      case ActivationPhase.ACTIVATION_PHASE_AWAITING_REBOOT:
        return sameBoot ? this.awaitReboot(a, signal) : this.afterReboot(a, signal);
      case ActivationPhase.ACTIVATION_PHASE_REBOOTED:
        return this.afterReboot(a, signal);
      case ActivationPhase.ACTIVATION_PHASE_ROLLING_BACK:
        return this.rollBack(a, j.failureReason, j.message);
      default:
        return this.rollBack(a, restarted, `the journal holds an unknown phase ${j.phase}`);
    }
  }

  private activationFrom(record: JournalRecord, plan: ActivationPlan): Activation {
    return {
      desired: record.desiredSystem,
      plan,
      journal: { ...record.journal },
      rollbackAction: record.rollbackAction ?? (plan.strategy === 'switch' ? 'switch' : plan.strategy),
      ...(record.switchProcessGroup !== undefined ? { switchProcessGroup: record.switchProcessGroup } : {}),
      ...(record.rebootStarted ? { rebootStarted: true } : {}),
    };
  }

  private async start(desired: DesiredSystem, signal: AbortSignal): Promise<ActivationOutcome> {
    const now = this.now();
    const previous = this.settings.profile.current();
    const journal: ActivationJournal = {
      deployment: desired.deployment,
      revision: desired.revision,
      phase: ActivationPhase.ACTIVATION_PHASE_REALISING,
      systemPath: desired.systemPath,
      generation: 0n,
      previousSystemPath: previous?.systemPath ?? '',
      previousGeneration: BigInt(previous?.generation ?? 0),
      bootId: this.settings.host.bootId(),
      failureReason: ActivationFailureReason.ACTIVATION_FAILURE_REASON_UNSPECIFIED,
      message: '',
      startedAt: now,
      updatedAt: now,
    };
    let plan: ActivationPlan;
    try {
      plan = resolveActivationPlan(desired, this.settings.nodeId);
    } catch (err) {
      if (!(err instanceof InvalidDesiredSystemError)) throw err;
      // Nothing was changed: the host stays on its generation, reported with the reason.
      return this.finishUnplanned(desired, journal, ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK, `invalid desired system: ${err.message}`);
    }
    const a: Activation = { desired, plan, journal, rollbackAction: plan.strategy === 'test' ? 'test' : plan.strategy };
    this.record(a, ActivationPhase.ACTIVATION_PHASE_REALISING, plan.systemPath ? `realising ${plan.systemPath}` : `building ${plan.flakeRef}#${plan.flakeAttr}`);

    let systemPath = plan.systemPath;
    try {
      const options = {
        timeoutMs: this.settings.realiseTimeoutMs ?? 3_600_000,
        substituters: plan.substituters,
        gcRoot: this.settings.gcRoot,
        signal,
        ...(this.settings.copyCommand ? { copyCommand: this.settings.copyCommand } : {}),
      };
      if (systemPath) await realiseSystem(this.settings.runner, systemPath, options);
      else systemPath = await buildFlakeSystem(this.settings.runner, plan.flakeRef, plan.flakeAttr, options);
    } catch (err) {
      if (signal.aborted) return { kind: 'interrupted', phase: a.journal.phase };
      a.journal.failureReason = ActivationFailureReason.ACTIVATION_FAILURE_REASON_REALISE_FAILED;
      return this.finish(a, ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK, `realising the system failed; nothing was changed: ${(err as Error).message}`);
    }
    a.journal.systemPath = systemPath;
    if (signal.aborted) {
      this.write(a);
      return { kind: 'interrupted', phase: a.journal.phase };
    }

    if (this.alreadyActive(plan.strategy, systemPath, previous?.systemPath)) {
      a.journal.generation = plan.strategy === 'test' ? 0n : BigInt(previous?.generation ?? 0);
      return this.finish(a, ActivationPhase.ACTIVATION_PHASE_CONFIRMED, `${systemPath} is already active`);
    }

    // Journal first: a crash between here and the profile change is detected by comparing the
    // profile's generation with previous_generation on resume.
    this.record(a, ActivationPhase.ACTIVATION_PHASE_ACTIVATING, plan.strategy === 'test' ? 'activating without touching the profile' : `setting ${this.settings.profile.path}`, false);
    if (plan.strategy !== 'test') {
      try {
        a.journal.generation = BigInt(await this.settings.profile.set(systemPath));
      } catch (err) {
        a.journal.generation = BigInt(this.settings.profile.current()?.generation ?? 0);
        return this.rollBack(a, ActivationFailureReason.ACTIVATION_FAILURE_REASON_PROFILE_FAILED, `setting the system profile failed: ${(err as Error).message}`);
      }
    }
    this.record(a, ActivationPhase.ACTIVATION_PHASE_ACTIVATING, `running switch-to-configuration ${plan.strategy}`);
    const result = await this.runSwitch(a, systemPath, plan.strategy);
    if (result.exitCode !== 0) {
      const reason = result.timedOut ? ActivationFailureReason.ACTIVATION_FAILURE_REASON_ACTIVATION_TIMEOUT : ActivationFailureReason.ACTIVATION_FAILURE_REASON_SWITCH_FAILED;
      return this.rollBack(a, reason, failureMessage(result));
    }
    if (plan.strategy === 'boot') return this.awaitReboot(a, signal);
    return this.confirm(a, ActivationPhase.ACTIVATION_PHASE_CONFIRMING, signal);
  }

  private alreadyActive(strategy: SwitchAction, target: string, profilePath: string | undefined): boolean {
    const host = this.settings.host;
    if (strategy === 'test') return host.currentSystem() === target;
    if (strategy === 'boot') return profilePath === target && host.bootedSystem() === target;
    return profilePath === target && host.currentSystem() === target;
  }

  /** Runs `<system>/bin/switch-to-configuration <action>` with its process group journaled. */
  private async runSwitch(a: Activation, systemPath: string, action: SwitchAction): Promise<CommandResult> {
    const result = await this.settings.runner.run({
      argv: [`${systemPath}/bin/switch-to-configuration`, action],
      timeoutMs: a.plan.activationTimeoutMs,
      onStart: (pid) => {
        a.switchProcessGroup = pid;
        this.write(a);
      },
    });
    a.switchProcessGroup = undefined;
    this.write(a);
    this.log.info({ event: 'activation.switch', system_path: systemPath, action, exit_code: result.exitCode, timed_out: result.timedOut, duration_ms: result.durationMs });
    return result;
  }

  /** Health check and controller confirmation, both within the confirm timeout. */
  private async confirm(a: Activation, phase: ActivationPhase, signal: AbortSignal): Promise<ActivationOutcome> {
    const { plan } = a;
    const check = plan.healthCheck;
    this.record(a, phase, `waiting up to ${plan.confirmTimeoutMs} ms for ${check ? 'the health check and ' : ''}the controller to confirm`);
    const window = new AbortController();
    const timer = setTimeout(() => window.abort(new Error('confirm timeout')), plan.confirmTimeoutMs);
    const onStop = () => window.abort(new Error('agent stopping'));
    signal.addEventListener('abort', onStop, { once: true });
    let healthPassed = check === undefined;
    let healthError = '';
    let controllerConfirmed = false;
    const target: ConfirmTarget = { deployment: plan.deployment, revision: plan.revision, systemPath: a.journal.systemPath, generation: a.journal.generation };
    try {
      await Promise.all([
        check
          ? runHealthCheck(check, a.journal.systemPath, this.settings.runner, window.signal).then((outcome) => {
              healthPassed = outcome.passed;
              healthError = outcome.lastError;
              // No point waiting for the controller once the system failed its check.
              if (!outcome.passed) window.abort(new Error('health check failed'));
            })
          : Promise.resolve(),
        Promise.race([this.hooks.confirm(target, window.signal), aborted(window.signal)]).then(
          () => {
            controllerConfirmed = true;
          },
          () => undefined,
        ),
      ]);
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onStop);
    }
    if (healthPassed && controllerConfirmed) return this.finish(a, ActivationPhase.ACTIVATION_PHASE_CONFIRMED, `confirmed ${a.journal.systemPath}`);
    if (signal.aborted) return { kind: 'interrupted', phase: a.journal.phase };
    if (!healthPassed) {
      return this.rollBack(a, ActivationFailureReason.ACTIVATION_FAILURE_REASON_HEALTH_CHECK_FAILED, `health check failed: ${healthError}`);
    }
    return this.rollBack(a, ActivationFailureReason.ACTIVATION_FAILURE_REASON_CONTROLLER_UNREACHABLE, `no controller stream confirmed generation ${a.journal.generation} within ${plan.confirmTimeoutMs} ms`);
  }

  /** Boot strategy: the generation is the boot default; wait for the grant, then reboot. */
  private async awaitReboot(a: Activation, signal: AbortSignal): Promise<ActivationOutcome> {
    a.rebootStarted = false;
    this.record(a, ActivationPhase.ACTIVATION_PHASE_AWAITING_REBOOT, `generation ${a.journal.generation} is staged; waiting for a reboot grant`);
    const request: RebootRequest = { deployment: a.plan.deployment, revision: a.plan.revision, generation: a.journal.generation, reason: 'boot strategy: the staged generation takes effect after a reboot' };
    try {
      await Promise.race([this.hooks.awaitRebootGrant(request, signal), aborted(signal)]);
    } catch (err) {
      if (signal.aborted) return { kind: 'interrupted', phase: a.journal.phase };
      return this.rollBack(a, ActivationFailureReason.ACTIVATION_FAILURE_REASON_UNSPECIFIED, err instanceof SupersededError ? err.message : `waiting for a reboot grant failed: ${(err as Error).message}`);
    }
    a.rebootStarted = true;
    this.record(a, ActivationPhase.ACTIVATION_PHASE_AWAITING_REBOOT, 'reboot granted; rebooting', false);
    const result = await this.settings.runner.run({ argv: this.settings.rebootCommand, timeoutMs: REBOOT_COMMAND_TIMEOUT_MS });
    if (result.exitCode !== 0) {
      return this.rollBack(a, ActivationFailureReason.ACTIVATION_FAILURE_REASON_REBOOT_FAILED, `the reboot command failed: ${failureMessage(result)}`);
    }
    this.log.info({ event: 'activation.rebooting', deployment: a.plan.deployment, revision: String(a.plan.revision) });
    return { kind: 'rebooting', report: reportOf(a.journal) };
  }

  /** Boot strategy, first start after the reboot: the staged system must be the booted one. */
  private async afterReboot(a: Activation, signal: AbortSignal): Promise<ActivationOutcome> {
    const booted = this.settings.host.bootedSystem();
    if (booted !== a.journal.systemPath) {
      // The bootloader fell back (or the host was rebooted some other way): the previous
      // system is running; make it the boot default again.
      a.rollbackAction = 'boot';
      this.record(a, ActivationPhase.ACTIVATION_PHASE_REBOOTED, `booted ${booted ?? 'an unknown system'}`, false);
      return this.rollBack(a, ActivationFailureReason.ACTIVATION_FAILURE_REASON_REBOOT_FAILED, `the host booted ${booted ?? 'an unknown system'} instead of the staged ${a.journal.systemPath}`);
    }
    // From here a rollback must re-activate the previous system now, not only at the next boot.
    a.rollbackAction = 'switch';
    return this.confirm(a, ActivationPhase.ACTIVATION_PHASE_REBOOTED, signal);
  }

  /** Restores the previous generation (unless auto_rollback is off) and ends the activation. */
  private async rollBack(a: Activation, reason: ActivationFailureReason, message: string): Promise<ActivationOutcome> {
    a.journal.failureReason = reason;
    if (!a.plan.autoRollback) return this.finish(a, ActivationPhase.ACTIVATION_PHASE_FAILED, `${message}\n(auto rollback is off: the generation stays in place)`);
    this.record(a, ActivationPhase.ACTIVATION_PHASE_ROLLING_BACK, message);
    try {
      await this.restorePrevious(a);
    } catch (err) {
      a.journal.failureReason = ActivationFailureReason.ACTIVATION_FAILURE_REASON_ROLLBACK_FAILED;
      this.log.error({ event: 'activation.rollback_failed', deployment: a.plan.deployment, err });
      return this.finish(a, ActivationPhase.ACTIVATION_PHASE_FAILED, `${message}\nrollback failed: ${(err as Error).message}`);
    }
    return this.finish(a, ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK, message);
  }

  private async restorePrevious(a: Activation): Promise<void> {
    const { profile } = this.settings;
    const previousGeneration = Number(a.journal.previousGeneration);
    const previousPath = a.journal.previousSystemPath;
    if (!previousPath) throw new Error('the profile had no generation before this activation; there is nothing to return to');
    if (a.plan.strategy !== 'test') {
      if (profile.current()?.generation !== previousGeneration) await profile.switchGeneration(previousGeneration);
    }
    const result = await this.runSwitch(a, previousPath, a.rollbackAction);
    if (result.exitCode !== 0) throw new Error(failureMessage(result));
    const failed = Number(a.journal.generation);
    if (a.plan.strategy !== 'test' && failed > 0 && failed !== previousGeneration) {
      // As deploy-rs does: the failed generation leaves the profile (and the boot menu).
      try {
        await profile.deleteGeneration(failed);
      } catch (err) {
        this.log.warn({ event: 'activation.delete_generation_failed', generation: failed, err });
      }
    }
  }

  /** Ends an activation that never got a plan (the desired system was invalid). */
  private finishUnplanned(desired: DesiredSystem, journal: ActivationJournal, phase: ActivationPhase, message: string): ActivationOutcome {
    Object.assign(journal, { phase, message, bootId: this.settings.host.bootId(), updatedAt: this.now() });
    const record: JournalRecord = { journal, desiredSystem: desired };
    this.settings.journal.write(record);
    this.last = record;
    this.log.warn({ event: 'activation.refused', deployment: journal.deployment, revision: String(journal.revision), message });
    const report = reportOf(journal);
    this.hooks.report(report);
    return { kind: 'finished', report };
  }

  private finish(a: Activation, phase: ActivationPhase, message: string): ActivationOutcome {
    if (phase === ActivationPhase.ACTIVATION_PHASE_CONFIRMED) a.journal.failureReason = ActivationFailureReason.ACTIVATION_FAILURE_REASON_UNSPECIFIED;
    const report = this.record(a, phase, message);
    this.log.info({
      event: 'activation.finished',
      deployment: a.journal.deployment,
      revision: String(a.journal.revision),
      phase: ActivationPhase[phase],
      failure_reason: ActivationFailureReason[a.journal.failureReason],
      system_path: a.journal.systemPath,
      generation: String(a.journal.generation),
    });
    return { kind: 'finished', report };
  }

  /** Journals `phase` and, unless `report` is false, reports it. */
  private record(a: Activation, phase: ActivationPhase, message: string, report = true): ActivationReport {
    a.journal.phase = phase;
    a.journal.message = message;
    a.journal.bootId = this.settings.host.bootId();
    a.journal.updatedAt = this.now();
    this.write(a);
    const r = reportOf(a.journal);
    this.log.info({ event: 'activation.phase', deployment: a.journal.deployment, revision: String(a.journal.revision), phase: ActivationPhase[phase], message });
    if (report) this.hooks.report(r);
    return r;
  }

  private write(a: Activation): void {
    const record: JournalRecord = {
      journal: { ...a.journal },
      desiredSystem: a.desired,
      rollbackAction: a.rollbackAction,
      ...(a.switchProcessGroup !== undefined ? { switchProcessGroup: a.switchProcessGroup } : {}),
      ...(a.rebootStarted ? { rebootStarted: true } : {}),
    };
    this.settings.journal.write(record);
    this.last = record;
  }
}
