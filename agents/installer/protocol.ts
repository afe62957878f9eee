// The installer's conversation with the deployer, as the BootstrapService contract describes it:
// Discover (join token) with exponential backoff and jitter while the deployer is unreachable and
// retry_after while no plan is ready; FetchPlan (session secret); then the plan, with a progress
// report per phase (install token). A failure is reported as FAILED with the reason and the log
// tail, and the installer goes back to Discover: it never exits on its own, so an operator can
// Retry, Rescue or Reinstall without touching the machine.
import { ClientError, Metadata, Status } from 'nice-grpc';
import {
  BootstrapServiceDefinition,
  type FetchPlanResponse,
  InstallerAction,
  type ReportInstallProgressResponse,
} from '../../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import type { Duration } from '../../gen/ts/google/protobuf/duration.js';
import { PlanMode } from '../../gen/ts/ultracloud/installplan/v1/installplan.js';
import type { MachineInventory } from '../../gen/ts/ultracloud/inventory/v1/inventory.js';
import { InstallOutcome, InstallPhase, MachineState } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { backoffDelayMs, type BackoffPolicy, DEFAULT_BACKOFF, sleep } from '../../lib/backoff.js';
import type { ServiceClient } from '../../lib/grpc/client.js';
import type { Logger } from '../../lib/log.js';
import type { FileSink } from './files.js';
import { executeInstallPlan, type PhaseReporter, type PlanSettings } from './plan.js';
import { runRescue, type RescueSettings } from './rescue.js';
import { type CommandRunner, runChecked } from './runner.js';

export type BootstrapClient = ServiceClient<typeof BootstrapServiceDefinition>;

/** How one pass through Discover → FetchPlan → plan ended. */
export type AttemptOutcome =
  | { readonly kind: 'installed'; readonly nextAction: InstallerAction }
  | { readonly kind: 'failed'; readonly phase: InstallPhase; readonly reason: string }
  | { readonly kind: 'rescue'; readonly nextAction: InstallerAction }
  /** The deployer changed the machine's state meanwhile, or revoked the install token. */
  | { readonly kind: 'rediscover'; readonly reason: string }
  | { readonly kind: 'dry-run'; readonly plan: FetchPlanResponse };

export interface InstallerSettings {
  readonly client: BootstrapClient;
  /** The ISO's join token; undefined when the deployer requires none. */
  readonly joinToken: string | undefined;
  /** Collects this machine's facts; called before every Discover (disks may change). */
  readonly collectInventory: () => Promise<MachineInventory>;
  readonly bootId: string;
  readonly installerVersion: string;
  readonly runner: CommandRunner;
  readonly files: FileSink;
  readonly plan: Omit<PlanSettings, 'runner' | 'files' | 'inventory' | 'logger' | 'signal' | 'dryRun'>;
  readonly rescue: Omit<RescueSettings, 'runner' | 'files' | 'logger' | 'report' | 'signal' | 'defaultRetryAfterMs' | 'once'>;
  /** argv run after a successful install when the deployer says REBOOT. */
  readonly rebootCommand: readonly string[];
  readonly logger: Logger;
  /** Record instead of executing, print via onDryRun, and stop after one plan. */
  readonly dryRun?: boolean;
  /** Stop after one install or rescue attempt (tests). */
  readonly once?: boolean;
  readonly backoff?: BackoffPolicy;
  /** Wait between Discovers when the deployer gives no retry_after. */
  readonly defaultRetryAfterMs?: number;
  /** Upper bound on any retry_after, so a wrong deployer value cannot park a machine for days. */
  readonly maxRetryAfterMs?: number;
}

/** What the reports of one attempt told the installer. */
interface ReportState {
  /** The latest retry_after: for REDISCOVER, the pause before the next Discover. */
  lastRetryAfterMs?: number;
}

/** Stop the current attempt and go back to Discover. */
class Rediscover extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'Rediscover';
  }
}

function bearer(token: string | undefined): { metadata: Metadata } {
  const metadata = Metadata();
  if (token) metadata.set('authorization', `Bearer ${token}`);
  return { metadata };
}

export function durationMs(d: Duration | undefined): number | undefined {
  if (!d) return undefined;
  return Number(d.seconds) * 1000 + Math.round(d.nanos / 1e6);
}

function describe(err: unknown): string {
  if (err instanceof ClientError) return `${Status[err.code]}: ${err.details}`;
  return err instanceof Error ? err.message : String(err);
}

function retryable(err: unknown): boolean {
  if (!(err instanceof ClientError)) return true;
  return [Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED, Status.RESOURCE_EXHAUSTED, Status.ABORTED, Status.INTERNAL, Status.UNKNOWN, Status.CANCELLED].includes(err.code);
}

/** Runs the installer until `signal` aborts (or after one attempt with `once`/`dryRun`). */
export async function runInstaller(settings: InstallerSettings, signal: AbortSignal): Promise<AttemptOutcome | undefined> {
  const { logger } = settings;
  const policy = settings.backoff ?? DEFAULT_BACKOFF;
  const defaultRetryMs = settings.defaultRetryAfterMs ?? 15_000;
  const clampRetry = (ms: number | undefined) => Math.min(ms ?? defaultRetryMs, settings.maxRetryAfterMs ?? 600_000);
  let failures = 0;
  const backoff = async (what: string, err: unknown) => {
    const delay = backoffDelayMs(failures++, policy);
    logger.warn({ event: `${what}.failed`, error: describe(err), retry_in_ms: delay, attempt: failures });
    await sleep(delay, signal);
  };
  try {
    for (;;) {
      signal.throwIfAborted();
      let discovered;
      try {
        const inventory = await settings.collectInventory();
        const response = await settings.client.discover(
          { inventory, bootId: settings.bootId, installerVersion: settings.installerVersion },
          { ...bearer(settings.joinToken), signal },
        );
        discovered = { inventory, response };
        failures = 0;
      } catch (err) {
        if (signal.aborted) throw err;
        await backoff('discover', err);
        continue;
      }
      const { inventory, response } = discovered;
      const log = logger.child({ machine_id: response.machineId });
      log.info({ event: 'discover.ok', state: MachineState[response.state], plan_ready: response.planReady, message: response.message });
      if (!response.planReady) {
        await sleep(clampRetry(durationMs(response.retryAfter)), signal);
        continue;
      }
      let fetched: FetchPlanResponse;
      try {
        fetched = await settings.client.fetchPlan({ machineId: response.machineId }, { ...bearer(response.sessionSecret), signal });
      } catch (err) {
        if (signal.aborted) throw err;
        // FAILED_PRECONDITION: the plan went away (already fetched, operator action); Discover again.
        await backoff('fetch_plan', err);
        continue;
      }
      const reports: ReportState = {};
      const outcome = await runAttempt(settings, response.machineId, fetched, inventory, log, signal, reports);
      log.info({ event: 'attempt.end', outcome: outcome.kind, ...('reason' in outcome ? { reason: outcome.reason } : {}) });
      if (outcome.kind === 'installed' && outcome.nextAction === InstallerAction.INSTALLER_ACTION_REBOOT) {
        await runChecked(settings.runner, { argv: settings.rebootCommand, timeoutMs: 120_000 }, signal).catch((err: unknown) =>
          log.error({ event: 'reboot.failed', error: describe(err) }),
        );
      }
      if (outcome.kind === 'rescue' && outcome.nextAction === InstallerAction.INSTALLER_ACTION_REBOOT) {
        await runChecked(settings.runner, { argv: settings.rebootCommand, timeoutMs: 120_000 }, signal).catch((err: unknown) =>
          log.error({ event: 'reboot.failed', error: describe(err) }),
        );
      }
      if (settings.once || settings.dryRun) return outcome;
      const wait = outcome.kind === 'installed' || outcome.kind === 'rescue' ? defaultRetryMs : clampRetry(reports.lastRetryAfterMs);
      await sleep(wait, signal);
    }
  } catch (err) {
    if (signal.aborted) {
      logger.info({ event: 'installer.stopped' });
      return undefined;
    }
    throw err;
  }
}

async function runAttempt(
  settings: InstallerSettings,
  machineId: string,
  fetched: FetchPlanResponse,
  inventory: MachineInventory,
  log: Logger,
  signal: AbortSignal,
  state: ReportState,
): Promise<AttemptOutcome> {
  const installToken = fetched.secrets?.installToken ?? '';
  const secrets = fetched.secrets;
  // Known secret values: refused in any argv and blanked in the log tail.
  settings.runner.tail.addSecrets(
    [secrets?.installToken, secrets?.sshHostEd25519PrivateKey, secrets?.tlsPrivateKeyPem, settings.joinToken].filter((v): v is string => !!v),
  );
  const policy = settings.backoff ?? DEFAULT_BACKOFF;

  const report = async (phase: InstallPhase, percent: number, message: string, outcome: InstallOutcome, logTail = ''): Promise<ReportInstallProgressResponse> => {
    for (let attempt = 0; ; attempt++) {
      try {
        const response = await settings.client.reportInstallProgress(
          { machineId, phase, percent, message, logTail, outcome },
          { ...bearer(installToken), signal },
        );
        state.lastRetryAfterMs = durationMs(response.retryAfter);
        log.info({ event: 'report.ok', phase: InstallPhase[phase], percent, outcome: InstallOutcome[outcome], next_action: InstallerAction[response.nextAction] });
        return response;
      } catch (err) {
        if (signal.aborted) throw err;
        if (err instanceof ClientError && (err.code === Status.UNAUTHENTICATED || err.code === Status.PERMISSION_DENIED)) {
          throw new Rediscover(`install token no longer accepted (${describe(err)})`);
        }
        if (!retryable(err) || attempt >= 8) throw err;
        const delay = backoffDelayMs(attempt, policy);
        log.warn({ event: 'report.failed', error: describe(err), retry_in_ms: delay });
        await sleep(delay, signal);
      }
    }
  };

  const plan = fetched.plan;
  if (plan?.mode === PlanMode.PLAN_MODE_RESCUE) {
    try {
      const nextAction = await runRescue(fetched, {
        ...settings.rescue,
        runner: settings.runner,
        files: settings.files,
        logger: log,
        signal,
        once: !!settings.once || !!settings.dryRun,
        defaultRetryAfterMs: settings.defaultRetryAfterMs ?? 15_000,
        report: async (message) => {
          if (settings.dryRun) return InstallerAction.INSTALLER_ACTION_CONTINUE;
          const r = await report(InstallPhase.INSTALL_PHASE_RESCUE, 100, message, InstallOutcome.INSTALL_OUTCOME_RESCUE_READY);
          return { action: r.nextAction, retryAfterMs: durationMs(r.retryAfter) };
        },
      });
      if (settings.dryRun) return { kind: 'dry-run', plan: fetched };
      return { kind: 'rescue', nextAction };
    } catch (err) {
      if (signal.aborted) throw err;
      if (err instanceof Rediscover) return { kind: 'rediscover', reason: err.message };
      return failed(InstallPhase.INSTALL_PHASE_RESCUE, err);
    }
  }

  let phase = InstallPhase.INSTALL_PHASE_FETCH_BUNDLE;
  const reportPhase: PhaseReporter = async (next, percent, message) => {
    phase = next;
    if (settings.dryRun) return;
    const r = await report(next, percent, message, InstallOutcome.INSTALL_OUTCOME_IN_PROGRESS);
    if (r.nextAction === InstallerAction.INSTALLER_ACTION_REDISCOVER) {
      throw new Rediscover(`the deployer stopped the install (machine is ${MachineState[r.state]})`);
    }
  };

  async function failed(at: InstallPhase, err: unknown): Promise<AttemptOutcome> {
    const reason = `${settings.dryRun ? 'dry run: ' : ''}${describe(err)}`;
    log.error({ event: 'install.failed', phase: InstallPhase[at], error: reason });
    try {
      await report(at, 0, reason, InstallOutcome.INSTALL_OUTCOME_FAILED, settings.runner.tail.text());
    } catch (reportErr) {
      if (signal.aborted) throw reportErr;
      log.error({ event: 'report.failed', error: describe(reportErr) });
    }
    return { kind: 'failed', phase: at, reason };
  }

  try {
    await executeInstallPlan(
      fetched,
      { ...settings.plan, runner: settings.runner, files: settings.files, inventory, logger: log, dryRun: !!settings.dryRun, signal },
      reportPhase,
    );
  } catch (err) {
    if (signal.aborted) throw err;
    if (err instanceof Rediscover) return { kind: 'rediscover', reason: err.message };
    return failed(phase, err);
  }
  if (settings.dryRun) {
    // FetchPlan moved the machine to INSTALLING; left alone it would sit there until the install
    // timeout. Saying so now lets an operator Retry at once.
    await report(InstallPhase.INSTALL_PHASE_FETCH_BUNDLE, 0, 'dry run: the plan was printed, nothing was installed; Retry to install', InstallOutcome.INSTALL_OUTCOME_FAILED).catch(
      (err: unknown) => log.warn({ event: 'report.failed', error: describe(err) }),
    );
    return { kind: 'dry-run', plan: fetched };
  }
  try {
    const done = await report(InstallPhase.INSTALL_PHASE_FINALIZE, 100, `installed ${plan?.nodeId ?? ''}`, InstallOutcome.INSTALL_OUTCOME_SUCCEEDED);
    return { kind: 'installed', nextAction: done.nextAction };
  } catch (err) {
    if (signal.aborted) throw err;
    if (err instanceof Rediscover) return { kind: 'rediscover', reason: err.message };
    return failed(InstallPhase.INSTALL_PHASE_FINALIZE, err);
  }
}
