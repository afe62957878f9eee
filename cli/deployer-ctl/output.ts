// Plain-text tables for people, JSON for scripts. Colour only on a TTY.

export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers.map((h) => h.toUpperCase())), ...rows.map(line)].join('\n');
}

const COLOURS = { green: 32, red: 31, yellow: 33, dim: 2 } as const;

export function colour(text: string, name: keyof typeof COLOURS, stream: NodeJS.WriteStream = process.stdout): string {
  return stream.isTTY && !process.env.NO_COLOR ? `\x1b[${COLOURS[name]}m${text}\x1b[0m` : text;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`);
}

/** Exit codes scripts can rely on. */
export const EXIT = {
  ok: 0,
  /** The command ran and found a problem (e.g. a service is not serving). */
  unhealthy: 1,
  /** Bad flags or arguments. */
  usage: 2,
  /** The server could not be reached. */
  unavailable: 3,
  /** The server refused: bad input, wrong state, not allowed. */
  rejected: 4,
} as const;

/** Bad flags or arguments noticed after parsing (exit code 2). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
