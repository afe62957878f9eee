// Settings shared by every UltraCloud daemon. Each service adds its own on top.
import { accessSync, constants } from 'node:fs';
import { resolve } from 'node:path';
import {
  ConfigError,
  type ConfigSpec,
  type HostPort,
  isLoopbackHost,
  type LogLevel,
  parseDatabaseUrl,
  parseHostPort,
  parseLogLevel,
} from './settings.js';

/** Default listen ports: `up` runs all services together on 7000; separate daemons use 7001-7003. */
export const DEFAULT_PORTS = {
  up: 7000,
  deployer: 7001,
  'host-controller': 7002,
  'fleet-scheduler': 7003,
} as const;

export interface DaemonConfig {
  readonly listen: HostPort;
  readonly stateDir: string;
  /** Unset: embedded PGlite under `<stateDir>/pgdata`. */
  readonly databaseUrl: string | undefined;
  readonly logLevel: LogLevel;
  readonly tlsCertFile: string | undefined;
  readonly tlsKeyFile: string | undefined;
  readonly tlsCaFile: string | undefined;
}

export function parseReadableFile(raw: string): string {
  const path = resolve(raw);
  try {
    accessSync(path, constants.R_OK);
  } catch {
    throw new Error('file does not exist or is not readable');
  }
  return path;
}

export function daemonConfigSpec(defaultPort: number): ConfigSpec<DaemonConfig> {
  return {
    listen: {
      env: 'ULTRACLOUD_LISTEN',
      flag: 'listen',
      description: 'address to serve gRPC on, host:port',
      parse: parseHostPort,
      default: { host: '127.0.0.1', port: defaultPort },
    },
    stateDir: {
      env: 'ULTRACLOUD_STATE_DIR',
      flag: 'state-dir',
      description: 'directory for the embedded database, admin token and CA bundle',
      parse: (raw) => resolve(raw),
      default: () => resolve('.ultracloud'),
    },
    databaseUrl: {
      env: 'ULTRACLOUD_DATABASE_URL',
      flag: 'database-url',
      description: 'PostgreSQL URL; unset uses the embedded PGlite database in the state dir',
      parse: parseDatabaseUrl,
      optional: true,
    },
    logLevel: {
      env: 'ULTRACLOUD_LOG_LEVEL',
      flag: 'log-level',
      description: 'log level',
      parse: parseLogLevel,
      default: 'info',
    },
    tlsCertFile: {
      env: 'ULTRACLOUD_TLS_CERT',
      flag: 'tls-cert',
      description: 'PEM server certificate',
      parse: parseReadableFile,
      optional: true,
    },
    tlsKeyFile: {
      env: 'ULTRACLOUD_TLS_KEY',
      flag: 'tls-key',
      description: 'PEM private key of the server certificate',
      parse: parseReadableFile,
      optional: true,
    },
    tlsCaFile: {
      env: 'ULTRACLOUD_TLS_CA',
      flag: 'tls-ca',
      description: 'PEM CA bundle used to verify client certificates',
      parse: parseReadableFile,
      optional: true,
    },
  };
}

/**
 * Cross-setting checks: TLS certificate and key come together, and a daemon without TLS may
 * only listen on loopback, where nobody else can read its traffic.
 */
export function checkTransport(config: DaemonConfig): void {
  const problems: string[] = [];
  if (Boolean(config.tlsCertFile) !== Boolean(config.tlsKeyFile)) {
    problems.push('ULTRACLOUD_TLS_CERT (--tls-cert) and ULTRACLOUD_TLS_KEY (--tls-key): set both or neither');
  }
  if (!config.tlsCertFile && !isLoopbackHost(config.listen.host)) {
    problems.push(
      `ULTRACLOUD_LISTEN (--listen): plaintext gRPC is only allowed on loopback, got ${config.listen.host}; ` +
        'set ULTRACLOUD_TLS_CERT and ULTRACLOUD_TLS_KEY to listen on other addresses',
    );
  }
  if (problems.length > 0) throw new ConfigError(problems);
}
