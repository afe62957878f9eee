// One pino root logger per process. Components log events through child loggers carrying
// `component`, `rpc`, `machine_id`, `node_id`. Secrets are removed by field name wherever they sit
// in the first three levels of a log object (and at the top level of a child logger's bindings),
// so a request or document logged by mistake still never carries a token or private key.
import { pino, type Logger, type LoggerOptions } from 'pino';
import type { LogLevel } from './config/settings.js';

export type { Logger };

/** Field names (camelCase and snake_case) whose values are secrets. */
export const SECRET_FIELDS = [
  'authorization',
  'token',
  'secret',
  'password',
  'joinToken',
  'join_token',
  'sessionSecret',
  'session_secret',
  'installToken',
  'install_token',
  'adminToken',
  'admin_token',
  'privateKey',
  'private_key',
  'privateKeyPem',
  'private_key_pem',
  'keyPem',
  'key_pem',
  'tlsKeyPem',
  'tls_key_pem',
  'tlsPrivateKeyPem',
  'tls_private_key_pem',
  'sshHostEd25519PrivateKey',
  'ssh_host_ed25519_private_key',
  'sshHostPrivateKey',
  'ssh_host_private_key',
  'sshHostKeyPrivate',
  'ssh_host_key_private',
  'encryptionKey',
  'encryption_key',
  'secrets',
] as const;

const SECRET_KEYS: ReadonlySet<string> = new Set(SECRET_FIELDS);
const CENSOR = '[redacted]';
/** How deep secrets are looked for: a field of the log object (1), of a value in it (2), or one level further (3). */
const REDACT_DEPTH = 3;

function isWalkable(value: unknown): value is Record<string, unknown> | unknown[] {
  if (typeof value !== 'object' || value === null) return false;
  if (Array.isArray(value)) return true;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * `value` with every secret field (SECRET_FIELDS) in its first `depth` levels replaced by
 * `[redacted]`. Plain objects and arrays are walked; a part that holds no secret is returned as
 * it is (the caller's objects are never changed), so a log line without secrets costs one pass
 * over its keys. Pino's redaction with wildcard paths (`*.token`, `*.*.token`) cost about 0.2 ms
 * per line, forty times the rest of writing the line.
 */
export function redactSecrets<T>(value: T, depth = REDACT_DEPTH): T {
  if (depth <= 0 || !isWalkable(value)) return value;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const v = redactSecrets(value[i], depth - 1);
      if (v !== value[i]) (out ??= [...value])[i] = v;
    }
    return (out ?? value) as T;
  }
  let out: Record<string, unknown> | undefined;
  for (const key in value) {
    const v = value[key];
    const next = SECRET_KEYS.has(key) ? (v === undefined ? v : CENSOR) : redactSecrets(v, depth - 1);
    if (next !== v) (out ??= { ...value })[key] = next;
  }
  return (out ?? value) as T;
}

/**
 * Errors as pino serialises them, without the bound parameters some database drivers attach to
 * a failed query (`params`): those are the row's values, sealed keys and token hashes among them.
 */
function serializeError(err: Error): Record<string, unknown> {
  const out: Record<string, unknown> = { ...(pino.stdSerializers.err(err) as unknown as Record<string, unknown>) };
  if ('params' in out) out.params = CENSOR;
  return redactSecrets(out, REDACT_DEPTH - 1);
}

export interface LoggerSettings {
  readonly level?: LogLevel;
  /** Where log lines go; defaults to stdout. Tests pass a stream to capture them. */
  readonly destination?: NodeJS.WritableStream;
  readonly name?: string;
}

export function createLogger(settings: LoggerSettings = {}): Logger {
  const options: LoggerOptions = {
    level: settings.level ?? 'info',
    base: { pid: process.pid, ...(settings.name ? { name: settings.name } : {}) },
    // Top-level secret fields of log objects and of child loggers' bindings by pino's redaction
    // (exact paths: cheap); deeper levels of log objects by the log formatter.
    redact: { paths: [...SECRET_FIELDS], censor: CENSOR },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: {
      level: (label) => ({ level: label }),
      log: (object) => redactSecrets(object),
    },
    serializers: { err: serializeError },
  };
  return settings.destination ? pino(options, settings.destination as pino.DestinationStream) : pino(options);
}
