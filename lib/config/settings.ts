// Configuration comes from flags and ULTRACLOUD_* environment variables (a flag wins), and is
// validated once at start: every bad setting is reported together, each named by its variable
// and flag, so a daemon never runs half-configured.
import { isIP } from 'node:net';

/** How one setting is read and checked. `parse` throws an Error whose message says what is wrong. */
export interface Setting<V> {
  readonly env: string;
  readonly flag?: string;
  readonly description: string;
  readonly parse: (raw: string) => V;
  /** Value when neither flag nor variable is set; omit for a required setting. */
  readonly default?: V | (() => V);
  /** True when an absent value is allowed and yields undefined. */
  readonly optional?: boolean;
}

export type ConfigSpec<T> = { readonly [K in keyof T]: Setting<T[K]> };

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export interface ConfigSources {
  readonly env?: NodeJS.ProcessEnv;
  /** Flag values keyed by flag name without dashes (`listen`, `state-dir`). */
  readonly flags?: Readonly<Record<string, string | undefined>>;
}

function settingName(s: Setting<unknown>): string {
  return s.flag ? `${s.env} (--${s.flag})` : s.env;
}

export function loadConfig<T>(spec: ConfigSpec<T>, sources: ConfigSources = {}): T {
  const env = sources.env ?? process.env;
  const flags = sources.flags ?? {};
  const out: Partial<T> = {};
  const problems: string[] = [];
  for (const key of Object.keys(spec) as (keyof T)[]) {
    const setting = spec[key] as Setting<T[typeof key]>;
    const fromFlag = setting.flag ? flags[setting.flag] : undefined;
    const raw = fromFlag ?? env[setting.env];
    if (raw === undefined || raw === '') {
      if (setting.default !== undefined) {
        const d = setting.default;
        out[key] = typeof d === 'function' ? (d as () => T[typeof key])() : d;
      } else if (!setting.optional) {
        problems.push(`${settingName(setting)}: required (${setting.description})`);
      }
      continue;
    }
    try {
      out[key] = setting.parse(raw);
    } catch (err) {
      problems.push(`${settingName(setting)}: ${(err as Error).message}, got ${JSON.stringify(raw)}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return out as T;
}

// ---- parsers ---------------------------------------------------------------------------------

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** `host:port` or `[v6]:port`; port 0 asks the kernel for a free port. */
export function parseHostPort(raw: string): HostPort {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(raw.trim());
  if (!m) throw new Error('expected host:port');
  const host = (m[1] ?? m[2]) as string;
  const port = Number(m[3]);
  if (port > 65535) throw new Error('port must be 0-65535');
  return { host, port };
}

export function formatHostPort({ host, port }: HostPort): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Loopback addresses are the only ones where plaintext gRPC is allowed. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

export function parseDatabaseUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error('expected a postgres:// URL');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new Error('expected a postgres:// or postgresql:// URL');
  }
  return raw;
}

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function parseLogLevel(raw: string): LogLevel {
  const v = raw.trim().toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(v)) throw new Error(`expected one of ${LOG_LEVELS.join(', ')}`);
  return v as LogLevel;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `250ms`, `30s`, `5m`, `1h`, or `1m30s`; returns milliseconds. */
export function parseDurationMs(raw: string): number {
  const v = raw.trim();
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  let total = 0;
  let consumed = 0;
  for (let m = re.exec(v); m; m = re.exec(v)) {
    total += Number(m[1]) * (DURATION_UNITS[m[2] as string] as number);
    consumed = re.lastIndex;
  }
  if (v.length === 0 || consumed !== v.length) throw new Error('expected a duration such as 30s, 5m or 1h');
  return total;
}

export function parseIntInRange(min: number, max: number): (raw: string) => number {
  return (raw) => {
    if (!/^-?\d+$/.test(raw.trim())) throw new Error('expected a whole number');
    const n = Number(raw);
    if (n < min || n > max) throw new Error(`must be between ${min} and ${max}`);
    return n;
  };
}

export function parseBoolean(raw: string): boolean {
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new Error('expected true or false');
}

export function parseNonEmpty(raw: string): string {
  if (raw.trim() === '') throw new Error('must not be empty');
  return raw;
}
