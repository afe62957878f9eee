// The daemon configuration the benchmarks serve their components with.
import type { DaemonConfig } from '../lib/config/daemon.js';

/**
 * A daemon's configuration as the benchmarks serve it: loopback on a free port, logging at info
 * (to the given logger's file), no metrics; TLS from files when given, plaintext loopback when
 * `insecureLoopback`, else what the components provide (the cluster CA).
 */
export function benchDaemonConfig(input: { stateDir: string; databaseUrl: string; insecureLoopback?: boolean; tls?: { certFile: string; keyFile: string; caFile: string } }): DaemonConfig {
  return {
    listen: { host: '127.0.0.1', port: 0 },
    stateDir: input.stateDir,
    databaseUrl: input.databaseUrl,
    logLevel: 'info',
    tlsCertFile: input.tls?.certFile,
    tlsKeyFile: input.tls?.keyFile,
    tlsCaFile: input.tls?.caFile,
    insecureLoopback: input.insecureLoopback ?? false,
    metricsListen: undefined,
  };
}
