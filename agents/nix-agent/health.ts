// The health gate of a freshly activated system (system.proto HealthCheck): wait `interval`,
// probe, and again up to `retries` more times; the first passing attempt passes the check.
// A command probe runs with the new system's `sw/bin` first on PATH, so a check shipped in the
// new system is what runs.
import { sleep } from '../../lib/backoff.js';
import { type CommandRunner, describeResult } from './commands.js';
import type { ResolvedHealthCheck, ResolvedProbe } from './policy.js';

export interface HealthCheckOutcome {
  readonly passed: boolean;
  readonly attempts: number;
  /** Why the last attempt failed; empty when it passed. */
  readonly lastError: string;
}

async function probeOnce(probe: ResolvedProbe, systemPath: string, runner: CommandRunner, signal: AbortSignal): Promise<string | undefined> {
  if (probe.kind === 'command') {
    const path = `${systemPath}/sw/bin:${process.env.PATH ?? '/usr/bin:/bin'}`;
    const result = await runner.run({ argv: probe.argv, env: { ...probe.env, PATH: path }, timeoutMs: probe.timeoutMs, signal });
    if (result.exitCode === 0) return undefined;
    const last = result.tail.trim().split('\n').at(-1) ?? '';
    return `${probe.argv.join(' ')} ${describeResult(result)}${last ? `: ${last}` : ''}`;
  }
  try {
    const response = await fetch(probe.url, { signal: AbortSignal.any([signal, AbortSignal.timeout(probe.timeoutMs)]), redirect: 'manual' });
    await response.arrayBuffer();
    const ok = probe.expectedStatus === 0 ? response.status >= 200 && response.status < 300 : response.status === probe.expectedStatus;
    return ok ? undefined : `GET ${probe.url}: status ${response.status}${probe.expectedStatus ? `, expected ${probe.expectedStatus}` : ''}`;
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    return `GET ${probe.url}: ${cause?.code ?? cause?.message ?? (err as Error).message}`;
  }
}

/**
 * Runs the check against `systemPath` until it passes, its attempts are used up, or `signal`
 * aborts (the confirm timeout); an abort ends it as not passed with the last error seen.
 */
export async function runHealthCheck(check: ResolvedHealthCheck, systemPath: string, runner: CommandRunner, signal: AbortSignal): Promise<HealthCheckOutcome> {
  let lastError = 'the health check did not run before the confirm timeout';
  let attempts = 0;
  for (let i = 0; i <= check.retries; i++) {
    try {
      await sleep(check.intervalMs, signal);
    } catch {
      return { passed: false, attempts, lastError };
    }
    attempts++;
    const error = await probeOnce(check.probe, systemPath, runner, signal);
    if (error === undefined) return { passed: true, attempts, lastError: '' };
    lastError = error;
    if (signal.aborted) break;
  }
  return { passed: false, attempts, lastError };
}
