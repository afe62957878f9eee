// One pino root logger per process. Components log events through child loggers carrying
// `component`, `rpc`, `machine_id`, `node_id`. Secrets are removed by field name wherever they sit
// in the first three levels of a log object, so a request or document logged by mistake still
// never carries a token or private key.
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

export function redactPaths(fields: readonly string[] = SECRET_FIELDS): string[] {
  const paths: string[] = [];
  for (const f of fields) paths.push(f, `*.${f}`, `*.*.${f}`);
  return paths;
}

/**
 * Errors as pino serialises them, without the bound parameters some database drivers attach to
 * a failed query (`params`): those are the row's values, sealed keys and token hashes among them.
 */
function serializeError(err: Error): Record<string, unknown> {
  const out = pino.stdSerializers.err(err) as unknown as Record<string, unknown>;
  if ('params' in out) out.params = '[redacted]';
  return out;
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
    redact: { paths: redactPaths(), censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    serializers: { err: serializeError },
  };
  return settings.destination ? pino(options, settings.destination as pino.DestinationStream) : pino(options);
}
