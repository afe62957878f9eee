// The DesiredSystem one node receives from a HostDeployment: its target (per-node store path,
// shared store path, or a local flake build), the activation strategy, and the health check and
// rollback policy with every default filled in, so the agent applies no defaults of its own.
import type { DesiredSystem, HealthCheck, HostDeployment, RollbackPolicy } from '../../../gen/ts/ultracloud/system/v1/system.js';
import { DEFAULT_FLAKE_ATTR, DEFAULT_REBOOT_TIMEOUT_MS, durationOfMs, effectiveStrategy } from './deployment-spec.js';

export const DEFAULT_ACTIVATION_TIMEOUT_MS = 240_000;
export const DEFAULT_CONFIRM_TIMEOUT_MS = 30_000;
export const DEFAULT_HEALTH_INTERVAL_MS = 2_000;
export const DEFAULT_HEALTH_RETRIES = 3;
export const DEFAULT_PROBE_TIMEOUT_MS = 10_000;

/** What one node is moved to: a store path, or a flake attribute it builds itself. */
export interface NodeTarget {
  readonly systemPath: string;
  readonly flakeRef: string;
  readonly flakeAttr: string;
}

/**
 * The first that applies: node_system_paths[node_id], system_path, then flake_ref#flake_attr
 * with {node_id} and {hostname} replaced. Undefined when the deployment has none for this node.
 */
export function nodeTarget(d: HostDeployment, node: { nodeId: string; hostname: string }): NodeTarget | undefined {
  const t = d.target;
  if (!t) return undefined;
  // Own entries only: a node id such as "constructor" must not find Object.prototype's.
  const systemPath = (Object.hasOwn(t.nodeSystemPaths, node.nodeId) ? t.nodeSystemPaths[node.nodeId] : undefined) ?? t.systemPath;
  const flakeAttr = t.flakeRef === '' ? '' : (t.flakeAttr || DEFAULT_FLAKE_ATTR).replaceAll('{node_id}', node.nodeId).replaceAll('{hostname}', node.hostname);
  if (systemPath === '' && t.flakeRef === '') return undefined;
  return { systemPath, flakeRef: t.flakeRef, flakeAttr };
}

/**
 * nodeTarget for many nodes of one deployment: a node without a node_system_paths entry, in a
 * deployment without a flake, gets the same (shared, not to be modified) target as the others.
 */
export function nodeTargets(d: HostDeployment): (node: { nodeId: string; hostname: string }) => NodeTarget | undefined {
  const t = d.target;
  if (!t || t.flakeRef !== '') return (node) => nodeTarget(d, node);
  const shared: NodeTarget | undefined = t.systemPath === '' ? undefined : { systemPath: t.systemPath, flakeRef: '', flakeAttr: '' };
  const perNode = t.nodeSystemPaths;
  if (Object.keys(perNode).length === 0) return () => shared;
  return (node) => (Object.hasOwn(perNode, node.nodeId) ? nodeTarget(d, node) : shared);
}

function filledHealthCheck(h: HealthCheck | undefined): HealthCheck | undefined {
  if (!h?.probe) return undefined;
  const probe =
    h.probe.$case === 'command'
      ? { $case: 'command' as const, value: { ...h.probe.value, timeout: h.probe.value.timeout ?? durationOfMs(DEFAULT_PROBE_TIMEOUT_MS) } }
      : { $case: 'http' as const, value: { ...h.probe.value, timeout: h.probe.value.timeout ?? durationOfMs(DEFAULT_PROBE_TIMEOUT_MS) } };
  return { probe, interval: h.interval ?? durationOfMs(DEFAULT_HEALTH_INTERVAL_MS), retries: h.retries ?? DEFAULT_HEALTH_RETRIES };
}

function filledRollbackPolicy(p: RollbackPolicy | undefined): RollbackPolicy {
  return {
    activationTimeout: p?.activationTimeout ?? durationOfMs(DEFAULT_ACTIVATION_TIMEOUT_MS),
    confirmTimeout: p?.confirmTimeout ?? durationOfMs(DEFAULT_CONFIRM_TIMEOUT_MS),
    autoRollback: p?.autoRollback ?? true,
    rebootTimeout: p?.rebootTimeout ?? durationOfMs(DEFAULT_REBOOT_TIMEOUT_MS),
  };
}

export function desiredSystem(d: HostDeployment, revision: bigint, nodeId: string, target: NodeTarget, now: Date): DesiredSystem {
  return desiredSystems(d, now)(revision, nodeId, target);
}

/**
 * desiredSystem for many nodes of one deployment decided at one instant: what they share (the
 * filled-in health check and rollback policy, strategy, substituters) is built once and shared
 * by the returned messages, which must therefore not be modified.
 */
export function desiredSystems(d: HostDeployment, now: Date): (revision: bigint, nodeId: string, target: NodeTarget) => DesiredSystem {
  const deployment = d.name;
  const activationStrategy = effectiveStrategy(d);
  const healthCheck = filledHealthCheck(d.healthCheck);
  const rollbackPolicy = filledRollbackPolicy(d.rollbackPolicy);
  const substituters = [...d.substituters];
  // One literal per node (plus the health check when there is one): spreading a shared object
  // per node costs microseconds a node, which a decision for thousands of nodes notices.
  return (revision, nodeId, target) => {
    const desired: DesiredSystem = {
      nodeId,
      deployment,
      revision,
      systemPath: target.systemPath,
      flakeRef: target.flakeRef,
      flakeAttr: target.flakeAttr,
      activationStrategy,
      rollbackPolicy,
      substituters,
      createdAt: now,
    };
    if (healthCheck) desired.healthCheck = healthCheck;
    return desired;
  };
}

/**
 * Whether two desired systems share everything but the node's id and target: the same
 * deployment revision and creation time, and the same nested messages — compared by identity, as
 * `desiredSystems` builds them for one decision (so two built separately never share).
 */
export function sameTemplate(a: DesiredSystem, b: DesiredSystem): boolean {
  return (
    a.deployment === b.deployment &&
    a.revision === b.revision &&
    a.flakeRef === b.flakeRef &&
    a.activationStrategy === b.activationStrategy &&
    a.healthCheck === b.healthCheck &&
    a.rollbackPolicy === b.rollbackPolicy &&
    a.substituters === b.substituters &&
    a.createdAt?.getTime() === b.createdAt?.getTime()
  );
}
