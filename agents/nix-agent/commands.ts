// How the nix-agent runs nix-store, nix-env, switch-to-configuration, health probes, reboot and
// kexec: as argv (never a shell string), each in its own process group so a timeout kills the
// whole tree (switch-to-configuration starts systemctl and friends), with the process group id
// handed to the caller before the command runs (the activation journal records it, so a
// restarted agent can stop a switch its predecessor left running), and a bounded tail of output
// for reports.
import { spawn } from 'node:child_process';
import type { Logger } from '../../lib/log.js';

export interface CommandSpec {
  readonly argv: readonly string[];
  /** Added to the agent's environment. */
  readonly env?: Readonly<Record<string, string>>;
  /** SIGTERM to the process group after this long, SIGKILL `killGraceMs` later. */
  readonly timeoutMs: number;
  /** Called with the pid (= process group id) as soon as the process exists. */
  readonly onStart?: (pid: number) => void;
  /** Kills the process group when aborted (only for commands safe to interrupt). */
  readonly signal?: AbortSignal;
}

export interface CommandResult {
  readonly argv: readonly string[];
  /** null when killed by a signal or never started. */
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly timedOut: boolean;
  readonly aborted: boolean;
  /** The last STDOUT_LIMIT characters of standard output (nix prints store paths here). */
  readonly stdout: string;
  /** The last TAIL_LIMIT characters of standard output and error together, for reports. */
  readonly tail: string;
  readonly durationMs: number;
}

export interface CommandRunner {
  run(spec: CommandSpec): Promise<CommandResult>;
}

const STDOUT_LIMIT = 256 * 1024;
/** Enough of switch-to-configuration's output to see which unit failed; reports stay small. */
export const TAIL_LIMIT = 4 * 1024;

function keepLast(text: string, limit: number): string {
  return text.length > limit ? text.slice(text.length - limit) : text;
}

/** "exited with status 3", "timed out after 240000 ms", "was killed by SIGKILL". */
export function describeResult(r: CommandResult): string {
  if (r.timedOut) return `timed out after ${r.durationMs} ms`;
  if (r.aborted) return 'was stopped';
  if (r.signal) return `was killed by ${r.signal}`;
  return `exited with status ${r.exitCode}`;
}

/** `<argv0> exited with status 1: <last lines of output>`. */
export function failureMessage(r: CommandResult, lines = 5): string {
  const last = r.tail.trim().split('\n').slice(-lines).join('\n');
  return `${r.argv.join(' ')} ${describeResult(r)}${last ? `:\n${last}` : ''}`;
}

/** Sends `sig` to the process group `pgid`; false when no such group exists any more. */
export function signalProcessGroup(pgid: number, sig: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, sig);
    return true;
  } catch {
    return false;
  }
}

/** Terminates a process group: SIGTERM, then SIGKILL after `graceMs` if anything is left. */
export async function killProcessGroup(pgid: number, graceMs: number): Promise<void> {
  if (!signalProcessGroup(pgid, 'SIGTERM')) return;
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    if (!signalProcessGroup(pgid, 0)) return;
  }
  signalProcessGroup(pgid, 'SIGKILL');
}

export interface RunnerSettings {
  readonly logger: Logger;
  /** Between SIGTERM and SIGKILL of a timed-out command. Default 5 s. */
  readonly killGraceMs?: number;
}

/** Runs commands as real child processes. */
export function processRunner(settings: RunnerSettings): CommandRunner {
  const killGraceMs = settings.killGraceMs ?? 5_000;
  const logger = settings.logger;
  return {
    run(spec) {
      const [command, ...args] = spec.argv;
      const started = Date.now();
      if (!command) return Promise.reject(new Error('empty argv'));
      logger.debug({ event: 'command.start', argv: spec.argv, timeout_ms: spec.timeoutMs });
      return new Promise<CommandResult>((resolve) => {
        let stdout = '';
        let tail = '';
        let timedOut = false;
        let aborted = false;
        let killTimer: NodeJS.Timeout | undefined;
        const child = spawn(command, args, { env: { ...process.env, ...spec.env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
        const terminate = () => {
          if (child.pid === undefined) return;
          signalProcessGroup(child.pid, 'SIGTERM');
          killTimer ??= setTimeout(() => child.pid !== undefined && signalProcessGroup(child.pid, 'SIGKILL'), killGraceMs);
        };
        const timer = setTimeout(() => {
          timedOut = true;
          terminate();
        }, spec.timeoutMs);
        const onAbort = () => {
          aborted = true;
          terminate();
        };
        if (child.pid !== undefined) spec.onStart?.(child.pid);
        if (spec.signal?.aborted) onAbort();
        else spec.signal?.addEventListener('abort', onAbort, { once: true });
        child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
          stdout = keepLast(stdout + chunk, STDOUT_LIMIT);
          tail = keepLast(tail + chunk, TAIL_LIMIT);
        });
        child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
          tail = keepLast(tail + chunk, TAIL_LIMIT);
        });
        let finished = false;
        const finish = (exitCode: number | null, sig: string | null) => {
          if (finished) return;
          finished = true;
          clearTimeout(timer);
          if (killTimer) clearTimeout(killTimer);
          spec.signal?.removeEventListener('abort', onAbort);
          const result: CommandResult = { argv: spec.argv, exitCode, signal: sig, timedOut, aborted, stdout, tail, durationMs: Date.now() - started };
          const fields = { event: 'command.end', argv: spec.argv, exit_code: exitCode, signal: sig, timed_out: timedOut, duration_ms: result.durationMs };
          if (exitCode === 0) logger.debug(fields);
          else logger.warn(fields);
          resolve(result);
        };
        child.on('error', (err) => {
          tail = keepLast(`${tail}${err.message}\n`, TAIL_LIMIT);
          finish(127, null);
        });
        child.on('close', (code, sig) => finish(code, sig));
        // A background process started by the command may hold its output open; the command's own
        // exit is what counts.
        child.on('exit', (code, sig) => setTimeout(() => finish(code, sig), 5_000).unref());
      });
    },
  };
}

/** Thrown by callers that need a command to succeed. */
export class CommandFailedError extends Error {
  constructor(readonly result: CommandResult) {
    super(failureMessage(result));
    this.name = 'CommandFailedError';
  }
}

export async function runChecked(runner: CommandRunner, spec: CommandSpec): Promise<CommandResult> {
  const result = await runner.run(spec);
  if (result.exitCode !== 0) throw new CommandFailedError(result);
  return result;
}
