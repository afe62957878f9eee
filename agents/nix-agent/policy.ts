// A DesiredSystem with every default of the contract filled in (system.proto: RollbackPolicy,
// HealthCheck), checked once before anything on the host changes.
import type { Duration } from '../../gen/ts/google/protobuf/duration.js';
import { ActivationStrategy, type DesiredSystem, type HealthCheck } from '../../gen/ts/ultracloud/system/v1/system.js';
import { isStorePath } from './nix.js';

export const DEFAULT_ACTIVATION_TIMEOUT_MS = 240_000;
export const DEFAULT_CONFIRM_TIMEOUT_MS = 30_000;
export const DEFAULT_HEALTH_INTERVAL_MS = 2_000;
export const DEFAULT_HEALTH_RETRIES = 3;
export const DEFAULT_PROBE_TIMEOUT_MS = 10_000;

export type SwitchAction = 'switch' | 'boot' | 'test';

export type ResolvedProbe =
  | { readonly kind: 'command'; readonly argv: readonly string[]; readonly env: Readonly<Record<string, string>>; readonly timeoutMs: number }
  | { readonly kind: 'http'; readonly url: string; readonly expectedStatus: number; readonly timeoutMs: number };

export interface ResolvedHealthCheck {
  readonly probe: ResolvedProbe;
  readonly intervalMs: number;
  readonly retries: number;
}

export interface ActivationPlan {
  readonly deployment: string;
  readonly revision: bigint;
  readonly strategy: SwitchAction;
  /** Empty when the system is built locally from flakeRef#flakeAttr. */
  readonly systemPath: string;
  readonly flakeRef: string;
  readonly flakeAttr: string;
  readonly substituters: readonly string[];
  readonly activationTimeoutMs: number;
  readonly confirmTimeoutMs: number;
  readonly autoRollback: boolean;
  readonly healthCheck: ResolvedHealthCheck | undefined;
}

/** A DesiredSystem the agent cannot act on; the message names the field. */
export class InvalidDesiredSystemError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidDesiredSystemError';
  }
}

export function durationMs(d: Duration | undefined, fallback: number): number {
  if (!d) return fallback;
  const ms = Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
  return ms > 0 ? ms : fallback;
}

function strategyAction(s: ActivationStrategy): SwitchAction {
  switch (s) {
    case ActivationStrategy.ACTIVATION_STRATEGY_BOOT:
      return 'boot';
    case ActivationStrategy.ACTIVATION_STRATEGY_TEST:
      return 'test';
    case ActivationStrategy.ACTIVATION_STRATEGY_SWITCH:
    case ActivationStrategy.ACTIVATION_STRATEGY_UNSPECIFIED:
      return 'switch';
    default:
      throw new InvalidDesiredSystemError(`activation_strategy: unknown value ${String(s)}`);
  }
}

function resolveHealthCheck(check: HealthCheck | undefined): ResolvedHealthCheck | undefined {
  if (!check) return undefined;
  const intervalMs = durationMs(check.interval, DEFAULT_HEALTH_INTERVAL_MS);
  const retries = check.retries ?? DEFAULT_HEALTH_RETRIES;
  const probe = check.probe;
  if (!probe) throw new InvalidDesiredSystemError('health_check.probe: one of command or http must be set');
  if (probe.$case === 'command') {
    if (probe.value.argv.length === 0 || probe.value.argv[0] === '') throw new InvalidDesiredSystemError('health_check.command.argv: required');
    return { intervalMs, retries, probe: { kind: 'command', argv: probe.value.argv, env: probe.value.env, timeoutMs: durationMs(probe.value.timeout, DEFAULT_PROBE_TIMEOUT_MS) } };
  }
  let url: URL;
  try {
    url = new URL(probe.value.url);
  } catch {
    throw new InvalidDesiredSystemError(`health_check.http.url: not an absolute URL: ${JSON.stringify(probe.value.url)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidDesiredSystemError('health_check.http.url: must be http:// or https://');
  return { intervalMs, retries, probe: { kind: 'http', url: url.toString(), expectedStatus: probe.value.expectedStatus, timeoutMs: durationMs(probe.value.timeout, DEFAULT_PROBE_TIMEOUT_MS) } };
}

/** Validates `desired` for this node and fills in the contract's defaults. */
export function resolveActivationPlan(desired: DesiredSystem, nodeId?: string): ActivationPlan {
  if (nodeId !== undefined && desired.nodeId !== '' && desired.nodeId !== nodeId) {
    throw new InvalidDesiredSystemError(`node_id: this agent is node ${nodeId}, the desired system is for ${desired.nodeId}`);
  }
  if (desired.deployment === '') throw new InvalidDesiredSystemError('deployment: required');
  if (desired.systemPath === '' && desired.flakeRef === '') throw new InvalidDesiredSystemError('system_path: required unless flake_ref is set');
  if (desired.systemPath !== '' && !isStorePath(desired.systemPath)) throw new InvalidDesiredSystemError(`system_path: not a store path: ${JSON.stringify(desired.systemPath)}`);
  if (desired.systemPath === '' && desired.flakeAttr === '') throw new InvalidDesiredSystemError('flake_attr: required to build flake_ref locally');
  const policy = desired.rollbackPolicy;
  return {
    deployment: desired.deployment,
    revision: desired.revision,
    strategy: strategyAction(desired.activationStrategy),
    systemPath: desired.systemPath,
    flakeRef: desired.flakeRef,
    flakeAttr: desired.flakeAttr,
    substituters: desired.substituters,
    activationTimeoutMs: durationMs(policy?.activationTimeout, DEFAULT_ACTIVATION_TIMEOUT_MS),
    confirmTimeoutMs: durationMs(policy?.confirmTimeout, DEFAULT_CONFIRM_TIMEOUT_MS),
    autoRollback: policy?.autoRollback ?? true,
    healthCheck: resolveHealthCheck(desired.healthCheck),
  };
}
