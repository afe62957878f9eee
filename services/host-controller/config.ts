// Host-controller settings beyond the common daemon ones, validated at start.
import { readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseReadableFile } from '../../lib/config/daemon.js';
import type { KexecImage } from '../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import { type ConfigSpec, formatHostPort, parseDurationMs, parseHostPort, parseIntInRange } from '../../lib/config/settings.js';
import { parseInstallerImage } from './domain/machine-commands.js';

/** A file holding one bearer token, read at start. Never logged. */
export interface TokenFile {
  readonly path: string;
  readonly token: string;
}

export interface HostControllerConfig {
  /** The deployer's `host:port`; unset only when the deployer runs in the same process (`up`). */
  readonly deployerAddress: string | undefined;
  /** CA bundle verifying the deployer; unset: plaintext (loopback only). */
  readonly deployerCaFile: string | undefined;
  /** Operator token for the deployer (viewer to watch machines, operator to activate them). */
  readonly deployerToken: TokenFile | undefined;
  /** The fleet-scheduler's `host:port`; unset: deployments with drain wait, saying why. */
  readonly schedulerAddress: string | undefined;
  readonly schedulerCaFile: string | undefined;
  /** Operator token for the scheduler; unset: the deployer token. */
  readonly schedulerToken: TokenFile | undefined;
  /** This replica's name in ListHostAgents, events and logs. */
  readonly instanceId: string;
  readonly heartbeatIntervalMs: number;
  readonly reconcileIntervalMs: number;
  readonly leaderRetryMs: number;
  readonly rebootGrantMs: number;
  /** How long an operator token the deployer vouched for is trusted before asking again (own daemon only). */
  readonly tokenCacheTtlMs: number;
  /** Activations written and delivered per transaction when one decision hands out more (large rollouts). */
  readonly activationBatch: number;
  /** The installer reinstall and rescue commands boot by kexec; unset: such requests are reported as not relayable. */
  readonly installerImage: KexecImage | undefined;
}

function positiveDuration(raw: string): number {
  const ms = parseDurationMs(raw);
  if (ms <= 0) throw new Error('must be longer than 0s');
  return ms;
}

function address(raw: string): string {
  return formatHostPort(parseHostPort(raw));
}

/** A token file: readable, not readable by group or others (it is a credential), not empty. */
export function parseTokenFile(raw: string): TokenFile {
  const path = parseReadableFile(raw);
  if ((statSync(path).mode & 0o077) !== 0) throw new Error('the file is readable or writable by group or others; it holds a credential: chmod 600 it');
  const token = readFileSync(path, 'utf8').trim();
  if (token === '') throw new Error('the file is empty');
  return { path, token };
}

function parseInstanceId(raw: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/.test(raw)) throw new Error('expected letters, digits, ".", "_", ":" or "-", at most 128 characters');
  return raw;
}

/** The installer image file: KexecImage as JSON (URLs the hosts fetch, SHA-256s, kernel command line). */
function parseInstallerImageFile(raw: string): KexecImage {
  const path = parseReadableFile(raw);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`not JSON: ${(err as Error).message}`);
  }
  return parseInstallerImage(json);
}

export const HOST_CONTROLLER_CONFIG_SPEC: ConfigSpec<HostControllerConfig> = {
  deployerAddress: { env: 'ULTRACLOUD_DEPLOYER', flag: 'deployer', description: 'the deployer to watch machines from, host:port', parse: address, optional: true },
  deployerCaFile: { env: 'ULTRACLOUD_DEPLOYER_CA', flag: 'deployer-ca', description: 'CA bundle verifying the deployer (unset: plaintext, loopback only)', parse: parseReadableFile, optional: true },
  deployerToken: { env: 'ULTRACLOUD_DEPLOYER_TOKEN_FILE', flag: 'deployer-token-file', description: 'file with an operator token for the deployer', parse: parseTokenFile, optional: true },
  schedulerAddress: { env: 'ULTRACLOUD_FLEET_SCHEDULER', flag: 'fleet-scheduler', description: 'the fleet-scheduler that drains nodes, host:port', parse: address, optional: true },
  schedulerCaFile: { env: 'ULTRACLOUD_FLEET_SCHEDULER_CA', flag: 'fleet-scheduler-ca', description: 'CA bundle verifying the fleet-scheduler', parse: parseReadableFile, optional: true },
  schedulerToken: { env: 'ULTRACLOUD_FLEET_SCHEDULER_TOKEN_FILE', flag: 'fleet-scheduler-token-file', description: 'file with an operator token for the fleet-scheduler', parse: parseTokenFile, optional: true },
  instanceId: { env: 'ULTRACLOUD_INSTANCE_ID', flag: 'instance-id', description: "this replica's name", parse: parseInstanceId, default: () => `${hostname()}-${process.pid}` },
  heartbeatIntervalMs: { env: 'ULTRACLOUD_HEARTBEAT_INTERVAL', flag: 'heartbeat-interval', description: 'how often agents send heartbeats; three missed ones make an agent stale', parse: positiveDuration, default: 10_000 },
  reconcileIntervalMs: { env: 'ULTRACLOUD_RECONCILE_INTERVAL', flag: 'reconcile-interval', description: 'how often the leader re-plans without a wake-up (timeouts, staleness)', parse: positiveDuration, default: 2_000 },
  leaderRetryMs: { env: 'ULTRACLOUD_LEADER_RETRY', flag: 'leader-retry', description: 'how often a follower tries to become the leader', parse: positiveDuration, default: 1_000 },
  rebootGrantMs: { env: 'ULTRACLOUD_REBOOT_GRANT_TTL', flag: 'reboot-grant-ttl', description: 'how long a reboot grant is valid', parse: positiveDuration, default: 120_000 },
  tokenCacheTtlMs: {
    env: 'ULTRACLOUD_TOKEN_CACHE_TTL',
    flag: 'token-cache-ttl',
    description: "how long an operator token the deployer vouched for is trusted before asking again (a revocation takes effect within it)",
    parse: positiveDuration,
    default: 10_000,
  },
  activationBatch: {
    env: 'ULTRACLOUD_ACTIVATION_BATCH',
    flag: 'activation-batch',
    description: 'when one decision hands out more activations than this, they are committed as intents, sent, then written out',
    parse: parseIntInRange(1, 100_000),
    default: 1_000,
  },
  installerImage: {
    env: 'ULTRACLOUD_INSTALLER_IMAGE',
    flag: 'installer-image',
    description: 'JSON file describing the installer kernel and initrd that reinstall and rescue boot by kexec',
    parse: parseInstallerImageFile,
    optional: true,
  },
};
