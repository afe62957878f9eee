// Deployer settings beyond the common daemon ones, validated at start.
import { readFileSync, statSync } from 'node:fs';
import { parseReadableFile } from '../../lib/config/daemon.js';
import { type ConfigSpec, parseDurationMs } from '../../lib/config/settings.js';
import { InvalidArgumentError } from '../../lib/errors.js';
import { type FileToken, parseOperatorTokensFile } from './domain/operator-tokens.js';

/** The operator tokens file, read and checked at start. */
export interface OperatorTokensFile {
  readonly path: string;
  readonly tokens: readonly FileToken[];
}

export interface DeployerConfig {
  /** File holding the ISO join token; unset: `<state dir>/join.token`, created on first start. */
  readonly joinTokenFile: string | undefined;
  /** File holding the 32-byte key that seals private keys; unset: `<state dir>/secrets.key`. */
  readonly secretsKeyFile: string | undefined;
  /** Operator tokens given as `<role> <sha256> <name>` lines; unset: none. */
  readonly operatorTokens: OperatorTokensFile | undefined;
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

/** Reads and validates the operator tokens file; whoever can write it can grant admin. */
function parseOperatorTokens(raw: string): OperatorTokensFile {
  const path = parseReadableFile(raw);
  if ((statSync(path).mode & 0o022) !== 0) throw new Error('the file is writable by group or others (anyone who can write it can grant admin); chmod go-w it');
  try {
    return { path, tokens: parseOperatorTokensFile(readFileSync(path, 'utf8')) };
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw new Error(err.violations.map((v) => `${v.field}: ${v.description}`).join('; '));
    throw err;
  }
}

export const DEPLOYER_CONFIG_SPEC: ConfigSpec<DeployerConfig> = {
  joinTokenFile: { env: 'ULTRACLOUD_JOIN_TOKEN_FILE', flag: 'join-token-file', description: 'file with the installer join token', parse: parseReadableFile, optional: true },
  secretsKeyFile: { env: 'ULTRACLOUD_SECRETS_KEY_FILE', flag: 'secrets-key-file', description: 'file with the base64 32-byte key sealing private keys at rest', parse: parseReadableFile, optional: true },
  operatorTokens: {
    env: 'ULTRACLOUD_OPERATOR_TOKENS_FILE',
    flag: 'operator-tokens-file',
    description: 'file of operator tokens, one "<role> <sha256 hex of the token> <name>" a line',
    parse: parseOperatorTokens,
    optional: true,
  },
  installTimeoutMs: { env: 'ULTRACLOUD_INSTALL_TIMEOUT', flag: 'install-timeout', description: 'an install silent this long fails', parse: positiveDuration, default: 60 * 60_000 },
  installTokenTtlMs: { env: 'ULTRACLOUD_INSTALL_TOKEN_TTL', flag: 'install-token-ttl', description: 'lifetime of install tokens', parse: positiveDuration, default: 6 * 60 * 60_000 },
  discoverRetryAfterMs: { env: 'ULTRACLOUD_DISCOVER_RETRY_AFTER', flag: 'discover-retry-after', description: 'how long installers wait between Discovers', parse: positiveDuration, default: 30_000 },
  progressIntervalMs: { env: 'ULTRACLOUD_PROGRESS_INTERVAL', flag: 'progress-interval', description: 'how often installers report progress', parse: positiveDuration, default: 60_000 },
};
