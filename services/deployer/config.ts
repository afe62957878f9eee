// Deployer settings beyond the common daemon ones, validated at start.
import { parseReadableFile } from '../../lib/config/daemon.js';
import { type ConfigSpec, parseDurationMs } from '../../lib/config/settings.js';

export interface DeployerConfig {
  /** File holding the ISO join token; unset: `<state dir>/join.token`, created on first start. */
  readonly joinTokenFile: string | undefined;
  /** File holding the 32-byte key that seals private keys; unset: `<state dir>/secrets.key`. */
  readonly secretsKeyFile: string | undefined;
  readonly installTimeoutMs: number;
  readonly installTokenTtlMs: number;
  readonly discoverRetryAfterMs: number;
  readonly progressIntervalMs: number;
}

function positiveDuration(raw: string): number {
  const ms = parseDurationMs(raw);
  if (ms <= 0) throw new Error('must be longer than 0s');
  return ms;
}

export const DEPLOYER_CONFIG_SPEC: ConfigSpec<DeployerConfig> = {
  joinTokenFile: { env: 'ULTRACLOUD_JOIN_TOKEN_FILE', flag: 'join-token-file', description: 'file with the installer join token', parse: parseReadableFile, optional: true },
  secretsKeyFile: { env: 'ULTRACLOUD_SECRETS_KEY_FILE', flag: 'secrets-key-file', description: 'file with the base64 32-byte key sealing private keys at rest', parse: parseReadableFile, optional: true },
  installTimeoutMs: { env: 'ULTRACLOUD_INSTALL_TIMEOUT', flag: 'install-timeout', description: 'an install silent this long fails', parse: positiveDuration, default: 60 * 60_000 },
  installTokenTtlMs: { env: 'ULTRACLOUD_INSTALL_TOKEN_TTL', flag: 'install-token-ttl', description: 'lifetime of install tokens', parse: positiveDuration, default: 6 * 60 * 60_000 },
  discoverRetryAfterMs: { env: 'ULTRACLOUD_DISCOVER_RETRY_AFTER', flag: 'discover-retry-after', description: 'how long installers wait between Discovers', parse: positiveDuration, default: 30_000 },
  progressIntervalMs: { env: 'ULTRACLOUD_PROGRESS_INTERVAL', flag: 'progress-interval', description: 'how often installers report progress', parse: positiveDuration, default: 60_000 },
};
