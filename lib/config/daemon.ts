// Settings shared by every UltraCloud daemon. Each service adds its own on top.
import { accessSync, constants } from 'node:fs';
import { resolve } from 'node:path';
import {
  ConfigError,
  type ConfigSpec,
  type HostPort,
  isLoopbackHost,
  type LogLevel,
  parseBoolean,
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
  /** Serve plaintext gRPC (loopback only) instead of TLS. */
  readonly insecureLoopback: boolean;
  /** Where Prometheus scrapes `/metrics` over HTTP; undefined: metrics are not served. */
  readonly metricsListen: HostPort | undefined;
}

/** Per-command defaults: `ultracloud up` serves metrics unless told not to, separate daemons do not. */
export interface DaemonDefaults {
  readonly metricsListen?: HostPort;
}

/** `host:port`, or `off` for "not served". */
export function parseOptionalHostPort(raw: string): HostPort | undefined {
  return raw.trim().toLowerCase() === 'off' ? undefined : parseHostPort(raw);
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

export function daemonConfigSpec(defaultPort: number, defaults: DaemonDefaults = {}): ConfigSpec<DaemonConfig> {
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
    insecureLoopback: {
      env: 'ULTRACLOUD_INSECURE_LOOPBACK',
      flag: 'insecure-loopback',
      description: 'serve plaintext gRPC; only allowed on a loopback address',
      parse: parseBoolean,
      default: false,
    },
    metricsListen: {
      env: 'ULTRACLOUD_METRICS_LISTEN',
      flag: 'metrics-listen',
      description: 'address to serve Prometheus /metrics on over HTTP, host:port, or off',
      parse: parseOptionalHostPort,
      ...(defaults.metricsListen ? { default: defaults.metricsListen } : { optional: true }),
    },
  };
}

/** How a server protects its gRPC port. */
export type ServerTransport =
  /** Certificate and key from files; the optional CA bundle verifies client certificates. */
  | { readonly kind: 'tls-files'; readonly certFile: string; readonly keyFile: string; readonly clientCaFile: string | undefined }
  /**
   * A certificate the process issues itself from the cluster CA it holds, kept in the state dir;
   * client certificates are verified against the cluster CA, or the given bundle.
   */
  | { readonly kind: 'cluster-ca'; readonly clientCaFile: string | undefined }
  | { readonly kind: 'plaintext' };

export interface TransportOptions {
  /**
   * The process holds the cluster CA (`ultracloud up`): without certificate files it serves TLS
   * with a certificate it issues itself, and plaintext only when asked for.
   */
  readonly selfIssued?: boolean;
}

const PLAINTEXT_SETTING = 'ULTRACLOUD_INSECURE_LOOPBACK (--insecure-loopback)';

/**
 * Cross-setting checks, returning the transport they settle on: TLS certificate and key come
 * together, plaintext is never combined with them, and plaintext is only allowed on loopback,
 * where nobody else can read the traffic.
 */
export function checkTransport(config: DaemonConfig, options: TransportOptions = {}): ServerTransport {
  const problems: string[] = [];
  if (Boolean(config.tlsCertFile) !== Boolean(config.tlsKeyFile)) {
    problems.push('ULTRACLOUD_TLS_CERT (--tls-cert) and ULTRACLOUD_TLS_KEY (--tls-key): set both or neither');
  }
  if (config.insecureLoopback && (config.tlsCertFile || config.tlsKeyFile)) {
    problems.push(`${PLAINTEXT_SETTING}: plaintext and ULTRACLOUD_TLS_CERT/ULTRACLOUD_TLS_KEY exclude each other; set one or the other`);
  }
  const plaintext = config.insecureLoopback || (!config.tlsCertFile && !options.selfIssued);
  if (plaintext && !isLoopbackHost(config.listen.host)) {
    problems.push(
      `ULTRACLOUD_LISTEN (--listen): plaintext gRPC is only allowed on loopback, got ${config.listen.host}; ` +
        (options.selfIssued
          ? `drop ${PLAINTEXT_SETTING} to serve TLS with a certificate from the cluster CA, or listen on 127.0.0.1`
          : 'set ULTRACLOUD_TLS_CERT and ULTRACLOUD_TLS_KEY to listen on other addresses'),
    );
  }
  if (problems.length > 0) throw new ConfigError(problems);
  if (config.tlsCertFile && config.tlsKeyFile) {
    return { kind: 'tls-files', certFile: config.tlsCertFile, keyFile: config.tlsKeyFile, clientCaFile: config.tlsCaFile };
  }
  return plaintext ? { kind: 'plaintext' } : { kind: 'cluster-ca', clientCaFile: config.tlsCaFile };
}
