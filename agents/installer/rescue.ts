// Rescue mode (PLAN_MODE_RESCUE): touch no disk; let the operators' SSH keys log in as root on
// the installer's live system, start sshd, and report RESCUE_READY as a heartbeat until the
// deployer says REBOOT (ExitRescue) or REDISCOVER (Reinstall, Delete, ...).
import { join } from 'node:path';
import type { FetchPlanResponse } from '../../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import { InstallerAction } from '../../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import { sleep } from '../../lib/backoff.js';
import type { Logger } from '../../lib/log.js';
import { InvalidPlanError } from './disko.js';
import type { FileSink } from './files.js';
import { type CommandRunner, runChecked } from './runner.js';

export interface RescueReport {
  readonly action: InstallerAction;
  readonly retryAfterMs: number | undefined;
}

export interface RescueSettings {
  readonly runner: CommandRunner;
  readonly files: FileSink;
  readonly logger: Logger;
  /** Root of the live system whose /root/.ssh/authorized_keys sshd reads ("/" on the ISO). */
  readonly liveRoot: string;
  /** argv that starts sshd on the live system. */
  readonly sshdCommand: readonly string[];
  /** Sends one RESCUE_READY report; CONTINUE alone when nothing should be reported (dry-run). */
  readonly report: (message: string) => Promise<RescueReport | InstallerAction>;
  readonly defaultRetryAfterMs: number;
  /** Return after the first report (tests, dry-run). */
  readonly once: boolean;
  readonly signal?: AbortSignal;
}

export const DEFAULT_SSHD_COMMAND = ['systemctl', 'start', 'sshd.service'] as const;

/** Authorized keys lines: one key per line, no blank or multi-line entries. */
export function authorizedKeysFile(keys: readonly string[]): string {
  const lines = keys.map((k) => k.trim()).filter((k) => k !== '');
  for (const [i, line] of lines.entries()) {
    if (line.includes('\n') || line.includes('\r')) throw new InvalidPlanError(`plan.rescue.ssh_authorized_keys[${i}]: one key per entry`);
  }
  if (lines.length === 0) throw new InvalidPlanError('plan.rescue.ssh_authorized_keys: no operator key, nobody could log in');
  return `${lines.join('\n')}\n`;
}

/** Opens the rescue environment and keeps it reported; returns the deployer's final action. */
export async function runRescue(fetched: FetchPlanResponse, settings: RescueSettings): Promise<InstallerAction> {
  const keys = authorizedKeysFile(fetched.plan?.rescue?.sshAuthorizedKeys ?? []);
  await settings.files.writeFile(join(settings.liveRoot, 'root/.ssh/authorized_keys'), keys, 0o600, 0o700);
  await runChecked(settings.runner, { argv: settings.sshdCommand, timeoutMs: 60_000 }, settings.signal);
  const count = keys.trim().split('\n').length;
  settings.logger.info({ event: 'rescue.ready', operator_keys: count });
  for (;;) {
    const answer = await settings.report(`rescue: sshd is running with ${count} operator key(s)`);
    const { action, retryAfterMs } = typeof answer === 'object' ? answer : { action: answer, retryAfterMs: undefined };
    if (action === InstallerAction.INSTALLER_ACTION_REBOOT || action === InstallerAction.INSTALLER_ACTION_REDISCOVER) return action;
    if (settings.once) return action;
    // Report again well before the deadline the deployer gave.
    await sleep(Math.max(1_000, Math.floor((retryAfterMs ?? settings.defaultRetryAfterMs) / 2)), settings.signal);
  }
}
