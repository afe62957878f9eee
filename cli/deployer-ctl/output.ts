// Plain-text tables for people, JSON for scripts, one error printer and exit codes scripts can
// rely on. Colour only on a TTY and never with NO_COLOR; progress only on a TTY.
import { CommanderError } from 'commander';
import { ClientError, Status } from 'nice-grpc';

export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => visibleLength(r[i] ?? ''))));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat(Math.max(0, (widths[i] ?? 0) - visibleLength(c)))))
      .join('  ')
      .trimEnd();
  return [line(headers.map((h) => h.toUpperCase())), ...rows.map(line)].join('\n');
}

const ANSI = /\x1b\[[0-9;]*m/g;

/** Length as shown on a terminal: colour codes take no room. */
function visibleLength(text: string): number {
  return text.replace(ANSI, '').length;
}

const COLOURS = { green: 32, red: 31, yellow: 33, dim: 2 } as const;

/** https://no-color.org: any non-empty NO_COLOR turns colour off. */
export function colourEnabled(stream: NodeJS.WriteStream = process.stdout, env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(stream.isTTY) && !env.NO_COLOR && env.TERM !== 'dumb';
}

export function colour(text: string, name: keyof typeof COLOURS, stream: NodeJS.WriteStream = process.stdout): string {
  return colourEnabled(stream) ? `\x1b[${COLOURS[name]}m${text}\x1b[0m` : text;
}

/**
 * A one-line progress note on stderr, rewritten in place, only when stderr is a terminal (never
 * in pipes, files or CI logs). `done()` erases it.
 */
export function progress(stream: NodeJS.WriteStream = process.stderr): { update(text: string): void; done(): void } {
  const enabled = Boolean(stream.isTTY) && process.env.TERM !== 'dumb';
  let width = 0;
  const write = (text: string) => {
    stream.write(`\r${text}${' '.repeat(Math.max(0, width - text.length))}\r`);
    width = text.length;
  };
  return {
    update: (text) => {
      if (enabled) write(text);
    },
    done: () => {
      if (enabled && width > 0) write('');
    },
  };
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`);
}

/**
 * Exit codes scripts can rely on. Every failure also prints one line on stderr,
 * `deployer-ctl: <gRPC code name>: <the server's message>` when the server answered.
 */
export const EXIT = {
  ok: 0,
  /**
   * The server failed or did not let the caller (UNAUTHENTICATED, PERMISSION_DENIED, INTERNAL,
   * UNIMPLEMENTED, …), or the command ran and found a problem (a service not serving, a part of
   * `apply --strict` not applied, a Deploy that left the machine failed).
   */
  failed: 1,
  /** Bad flags, arguments or configuration, noticed before anything was sent. */
  usage: 2,
  /** No such machine (NOT_FOUND). */
  notFound: 3,
  /**
   * Refused as asked: wrong lifecycle state (FAILED_PRECONDITION, naming the current state), a
   * stale --expect-version (ABORTED), invalid input (INVALID_ARGUMENT), already exists, or a
   * document refused by `apply`. The same request will be refused again until something changes.
   */
  rejected: 4,
  /** The server could not be reached or did not answer in time (UNAVAILABLE, DEADLINE_EXCEEDED): retry later. */
  unavailable: 5,
  /** Same as `failed`: a check found a problem. */
  unhealthy: 1,
} as const;

/** The `deployer-ctl --help` epilog and docs/operators.md say the same. */
export const EXIT_CODES_HELP = `Exit codes:
  0  success
  1  the server failed or did not let you (UNAUTHENTICATED, PERMISSION_DENIED, INTERNAL, ...),
     or the command found a problem (a service not serving, apply --strict not applied)
  2  usage or configuration error: bad flags or arguments, nothing was sent
  3  not found: no machine with that id, hostname or node id
  4  refused as asked: wrong state (FAILED_PRECONDITION names the current one), stale
     --expect-version (ABORTED), invalid input (INVALID_ARGUMENT), already exists
  5  server unreachable or too slow (UNAVAILABLE, DEADLINE_EXCEEDED): try again later
On failure stderr has one line: "deployer-ctl: <gRPC code name>: <message>".`;

/** The exit code for a call the server answered (or could not be reached for) with `code`. */
export function exitCodeFor(code: Status): number {
  switch (code) {
    case Status.OK:
      return EXIT.ok;
    case Status.NOT_FOUND:
      return EXIT.notFound;
    case Status.FAILED_PRECONDITION:
    case Status.ABORTED:
    case Status.INVALID_ARGUMENT:
    case Status.ALREADY_EXISTS:
    case Status.OUT_OF_RANGE:
      return EXIT.rejected;
    case Status.UNAVAILABLE:
    case Status.DEADLINE_EXCEEDED:
      return EXIT.unavailable;
    default:
      return EXIT.failed;
  }
}

/** Bad flags or arguments noticed after parsing (exit code 2). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

const CONFIG_ERRNO = new Set(['ENOENT', 'EACCES', 'EISDIR', 'ENOTDIR', 'EPERM']);

/**
 * The one error printer: one line on stderr, and the exit code for it. Commander's own usage
 * errors are already printed by commander; pass them here for their exit code only.
 */
export function reportError(err: unknown, stderr: NodeJS.WritableStream = process.stderr): number {
  const say = (text: string) => stderr.write(`deployer-ctl: ${text}\n`);
  if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  if (err instanceof ClientError) {
    say(`${Status[err.code]}: ${err.details}`);
    return exitCodeFor(err.code);
  }
  if (err instanceof UsageError) {
    say(err.message);
    return EXIT.usage;
  }
  const errno = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof errno === 'string' && CONFIG_ERRNO.has(errno)) {
    say((err as Error).message);
    return EXIT.usage;
  }
  say(err instanceof Error ? err.message : String(err));
  return EXIT.failed;
}
