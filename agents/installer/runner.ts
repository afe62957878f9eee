// The one way the installer runs external commands (blockdev, wipefs, disko, nixos-install,
// sshd, kexec, reboot). Every command is an argv (never a shell string), has a timeout that kills
// its whole process group, is logged as an event with its duration and exit status, and feeds a
// bounded tail of output that failure reports carry to the deployer. Secrets reach commands only
// through files: a runner refuses an argv that contains a registered secret value.
import { spawn } from 'node:child_process';
import type { Logger } from '../../lib/log.js';

export interface CommandSpec {
  readonly argv: readonly string[];
  /** Added to the installer's environment. Never secrets: environments leak into /proc. */
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  /** Kill the process group after this long; default: the runner's default timeout. */
  readonly timeoutMs?: number;
}

export interface CommandResult {
  readonly argv: readonly string[];
  /** null when the process was killed by a signal. */
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly timedOut: boolean;
  /** The last CAPTURE_LIMIT_BYTES of each stream. */
  readonly stdout: string;
  readonly stderr: string;
  readonly durationMs: number;
}

export interface CommandRunner {
  run(spec: CommandSpec, signal?: AbortSignal): Promise<CommandResult>;
  /** Recent output of every command run so far, for failure reports. */
  readonly tail: OutputTail;
}

/** A command that exited non-zero, timed out or was killed. */
export class CommandFailedError extends Error {
  constructor(readonly result: CommandResult) {
    super(`${result.argv[0] ?? 'command'} ${describeExit(result)}${lastLine(result.stderr) ? `: ${lastLine(result.stderr)}` : ''}`);
    this.name = 'CommandFailedError';
  }
}

function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return (lines[lines.length - 1] ?? '').slice(0, 300);
}

function describeExit(r: CommandResult): string {
  if (r.timedOut) return 'timed out';
  if (r.signal) return `was killed by ${r.signal}`;
  return `exited with status ${r.exitCode}`;
}

/** Runs `spec` and throws CommandFailedError unless it exits 0. */
export async function runChecked(runner: CommandRunner, spec: CommandSpec, signal?: AbortSignal): Promise<CommandResult> {
  const result = await runner.run(spec, signal);
  if (result.exitCode !== 0) throw new CommandFailedError(result);
  return result;
}

export const CAPTURE_LIMIT_BYTES = 1 << 20;
export const DEFAULT_TAIL_LINES = 200;
/** The deployer keeps at most 64 KiB of a log tail; sending more only to be truncated is waste. */
export const TAIL_LIMIT_BYTES = 64 * 1024;

/**
 * The last lines of everything the commands printed (plus one line per command started and
 * ended), newest last, with known secret values replaced. Bounded in lines and bytes.
 */
export class OutputTail {
  private readonly lines: string[] = [];
  private partial = '';
  private readonly secrets = new Set<string>();

  constructor(private readonly maxLines = DEFAULT_TAIL_LINES) {}

  /** Values that must never appear in the tail (nor in an argv). */
  addSecrets(values: readonly string[]): void {
    for (const v of values) if (v.length >= 8) this.secrets.add(v);
  }

  isSecret(text: string): boolean {
    for (const s of this.secrets) if (text.includes(s)) return true;
    return false;
  }

  append(chunk: string): void {
    const parts = (this.partial + chunk).split('\n');
    this.partial = parts.pop() ?? '';
    for (const line of parts) this.push(line);
  }

  note(line: string): void {
    this.flush();
    this.push(line);
  }

  private flush(): void {
    if (this.partial !== '') {
      this.push(this.partial);
      this.partial = '';
    }
  }

  private push(line: string): void {
    this.lines.push(this.redact(line));
    if (this.lines.length > this.maxLines) this.lines.splice(0, this.lines.length - this.maxLines);
  }

  private redact(line: string): string {
    let out = line;
    for (const s of this.secrets) out = out.split(s).join('[redacted]');
    return out;
  }

  text(): string {
    const all = [...this.lines, ...(this.partial ? [this.redact(this.partial)] : [])].join('\n');
    return all.length > TAIL_LIMIT_BYTES ? all.slice(all.length - TAIL_LIMIT_BYTES) : all;
  }
}

function keepTail(current: string, chunk: string): string {
  const next = current + chunk;
  return next.length > CAPTURE_LIMIT_BYTES ? next.slice(next.length - CAPTURE_LIMIT_BYTES) : next;
}

export interface RunnerSettings {
  readonly logger: Logger;
  readonly defaultTimeoutMs?: number;
  /** After SIGTERM to the group, SIGKILL after this long. */
  readonly killGraceMs?: number;
  readonly tail?: OutputTail;
}

function refuseSecrets(tail: OutputTail, argv: readonly string[]): void {
  if (argv.some((a) => tail.isSecret(a))) {
    // The argument itself is not logged: it holds the secret.
    throw new Error(`refusing to run ${argv[0] ?? 'a command'}: its arguments contain a secret (secrets go through files)`);
  }
}

/** Runs commands for real with child_process.spawn, each in its own process group. */
export function spawnRunner(settings: RunnerSettings): CommandRunner {
  const tail = settings.tail ?? new OutputTail();
  const defaultTimeoutMs = settings.defaultTimeoutMs ?? 60 * 60_000;
  const killGraceMs = settings.killGraceMs ?? 5_000;
  const logger = settings.logger;
  return {
    tail,
    run(spec, signal) {
      try {
        refuseSecrets(tail, spec.argv);
      } catch (err) {
        return Promise.reject(err);
      }
      const [command, ...args] = spec.argv;
      if (!command) return Promise.reject(new Error('empty argv'));
      const started = Date.now();
      const timeoutMs = spec.timeoutMs ?? defaultTimeoutMs;
      logger.info({ event: 'command.start', argv: spec.argv, cwd: spec.cwd, timeout_ms: timeoutMs });
      tail.note(`$ ${spec.argv.join(' ')}`);
      return new Promise<CommandResult>((resolve) => {
        let stdout = '';
        let stderr = '';
        let timedOut = false;
        let killTimer: NodeJS.Timeout | undefined;
        const child = spawn(command, args, {
          cwd: spec.cwd,
          env: { ...process.env, ...spec.env },
          stdio: ['ignore', 'pipe', 'pipe'],
          // Its own process group, so a timeout kills nixos-install and every nix build under it.
          detached: true,
        });
        const killGroup = (sig: NodeJS.Signals) => {
          try {
            if (child.pid !== undefined) process.kill(-child.pid, sig);
          } catch {
            // The group is already gone.
          }
        };
        const terminate = () => {
          killGroup('SIGTERM');
          killTimer ??= setTimeout(() => killGroup('SIGKILL'), killGraceMs);
        };
        const timer = setTimeout(() => {
          timedOut = true;
          terminate();
        }, timeoutMs);
        const onAbort = () => terminate();
        signal?.addEventListener('abort', onAbort, { once: true });
        child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
          stdout = keepTail(stdout, chunk);
          tail.append(chunk);
        });
        child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
          stderr = keepTail(stderr, chunk);
          tail.append(chunk);
        });
        const finish = (exitCode: number | null, sig: string | null) => {
          clearTimeout(timer);
          if (killTimer) clearTimeout(killTimer);
          signal?.removeEventListener('abort', onAbort);
          const result: CommandResult = { argv: spec.argv, exitCode, signal: sig, timedOut, stdout, stderr, durationMs: Date.now() - started };
          logEnd(logger, tail, result);
          resolve(result);
        };
        child.on('error', (err) => {
          stderr = keepTail(stderr, `${err.message}\n`);
          tail.append(`${err.message}\n`);
          finish(127, null);
        });
        child.on('close', (code, sig) => finish(code, sig));
      });
    },
  };
}

function logEnd(logger: Logger, tail: OutputTail, result: CommandResult): void {
  const fields = { event: 'command.end', argv: result.argv, exit_code: result.exitCode, signal: result.signal, timed_out: result.timedOut, duration_ms: result.durationMs };
  if (result.exitCode === 0) logger.info(fields);
  else logger.warn(fields);
  tail.note(`[${result.argv[0] ?? ''} ${describeExit(result)} after ${result.durationMs} ms]`);
}

/** A scripted answer for commands whose argv matches. */
export interface ScriptedCommand {
  /** Matches when every element equals the argv's element at the same position (a prefix). */
  readonly match: readonly string[] | ((argv: readonly string[]) => boolean);
  readonly exitCode?: number;
  readonly stdout?: string;
  readonly stderr?: string;
}

/**
 * Records commands instead of running them (tests and --dry-run) and answers with the first
 * matching scripted result, else success with no output.
 */
export class RecordingRunner implements CommandRunner {
  readonly commands: CommandSpec[] = [];
  readonly tail: OutputTail;

  constructor(
    private readonly script: readonly ScriptedCommand[] = [],
    private readonly logger?: Logger,
    tail?: OutputTail,
  ) {
    this.tail = tail ?? new OutputTail();
  }

  /** Each recorded argv joined with spaces, for exact assertions. */
  get commandLines(): string[] {
    return this.commands.map((c) => c.argv.join(' '));
  }

  async run(spec: CommandSpec): Promise<CommandResult> {
    refuseSecrets(this.tail, spec.argv);
    this.commands.push(spec);
    this.logger?.info({ event: 'command.start', argv: spec.argv, recorded: true });
    this.tail.note(`$ ${spec.argv.join(' ')}`);
    const scripted = this.script.find((s) => (typeof s.match === 'function' ? s.match(spec.argv) : s.match.every((m, i) => spec.argv[i] === m)));
    const stdout = scripted?.stdout ?? '';
    const stderr = scripted?.stderr ?? '';
    if (stdout) this.tail.append(stdout.endsWith('\n') ? stdout : `${stdout}\n`);
    if (stderr) this.tail.append(stderr.endsWith('\n') ? stderr : `${stderr}\n`);
    const result: CommandResult = { argv: spec.argv, exitCode: scripted?.exitCode ?? 0, signal: null, timedOut: false, stdout, stderr, durationMs: 0 };
    if (this.logger) logEnd(this.logger, this.tail, result);
    else this.tail.note(`[${spec.argv[0] ?? ''} ${describeExit(result)} after 0 ms]`);
    return result;
  }
}
