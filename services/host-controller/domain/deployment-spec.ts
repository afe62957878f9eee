// A HostDeployment as applied: which fields are valid, the form it is stored in (output-only
// fields dropped), what changed between two versions and whether that change starts a new
// rollout revision. Pure functions over the generated message types.
import type { Duration } from '../../../gen/ts/google/protobuf/duration.js';
import {
  ActivationStrategy,
  FailureDomainOrdering,
  type HealthCheck,
  HostDeployment,
  type HostSelector,
  type HostDeploymentTarget,
  type MaxUnavailable,
  type RollbackPolicy,
} from '../../../gen/ts/ultracloud/system/v1/system.js';
import { type FieldViolation, InvalidArgumentError } from '../../../lib/errors.js';

/** Deployment names and node ids: a lowercase RFC 1123 label. */
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const STORE_PATH = /^\/nix\/store\/[0-9a-z]{32}-[^/\s]+$/;
/** The longest timeout a deployment may set: a day. */
const MAX_DURATION_SECONDS = 86_400n;
const MAX_RETRIES = 100;

/** Top-level fields whose change alters a node's DesiredSystem, and so starts a new revision. */
export const REVISION_FIELDS = ['target', 'activationStrategy', 'healthCheck', 'rollbackPolicy', 'substituters'] as const;

export const DEFAULT_FLAKE_ATTR = 'nixosConfigurations.{hostname}.config.system.build.toplevel';

export function isNodeId(value: string): boolean {
  return LABEL.test(value);
}

function enumValid(enumObject: Record<string, string | number>, value: number): boolean {
  return value >= 0 && typeof enumObject[value] === 'string';
}

function durationProblem(d: Duration | undefined): string | undefined {
  if (!d) return undefined;
  if (d.seconds < 0n || d.nanos < 0 || d.nanos > 999_999_999) return 'must be a positive duration';
  if (d.seconds === 0n && d.nanos === 0) return 'must be longer than 0s';
  if (d.seconds > MAX_DURATION_SECONDS) return 'must be at most 24h';
  return undefined;
}

function checkDuration(out: FieldViolation[], field: string, d: Duration | undefined): void {
  const problem = durationProblem(d);
  if (problem) out.push({ field, description: problem });
}

function checkSelector(out: FieldViolation[], at: string, s: HostSelector | undefined): void {
  if (!s) {
    out.push({ field: `${at}.selector`, description: 'required: which nodes this deployment targets' });
    return;
  }
  const empty = s.nodeIds.length === 0 && s.nodeClasses.length === 0 && s.pools.length === 0 && Object.keys(s.matchLabels).length === 0;
  if (empty && !s.allNodes) out.push({ field: `${at}.selector`, description: 'matches nothing as written; name node_ids, node_classes, pools or match_labels, or set all_nodes to target every node' });
  s.nodeIds.forEach((id, i) => {
    if (!isNodeId(id)) out.push({ field: `${at}.selector.node_ids[${i}]`, description: `"${id}" is not a node id (lowercase letters, digits and '-')` });
  });
  s.nodeClasses.forEach((c, i) => {
    if (c === '') out.push({ field: `${at}.selector.node_classes[${i}]`, description: 'must not be empty' });
  });
  s.pools.forEach((p, i) => {
    if (p === '') out.push({ field: `${at}.selector.pools[${i}]`, description: 'must not be empty' });
  });
  for (const key of Object.keys(s.matchLabels)) {
    if (key === '') out.push({ field: `${at}.selector.match_labels`, description: 'a label key must not be empty' });
  }
}

function checkTarget(out: FieldViolation[], at: string, t: HostDeploymentTarget | undefined): void {
  if (!t) {
    out.push({ field: `${at}.target`, description: 'required: set system_path, node_system_paths or flake_ref' });
    return;
  }
  if (t.systemPath === '' && Object.keys(t.nodeSystemPaths).length === 0 && t.flakeRef === '') {
    out.push({ field: `${at}.target`, description: 'set system_path, node_system_paths or flake_ref' });
  }
  if (t.systemPath !== '' && !STORE_PATH.test(t.systemPath)) {
    out.push({ field: `${at}.target.system_path`, description: `"${t.systemPath}" is not a Nix store path (/nix/store/<hash>-<name>)` });
  }
  for (const [node, path] of Object.entries(t.nodeSystemPaths)) {
    if (!isNodeId(node)) out.push({ field: `${at}.target.node_system_paths`, description: `key "${node}" is not a node id` });
    if (!STORE_PATH.test(path)) out.push({ field: `${at}.target.node_system_paths.${node}`, description: `"${path}" is not a Nix store path (/nix/store/<hash>-<name>)` });
  }
  if (t.flakeAttr !== '' && t.flakeRef === '') {
    out.push({ field: `${at}.target.flake_attr`, description: 'set flake_ref too: an attribute names nothing without its flake' });
  }
}

function checkHealthCheck(out: FieldViolation[], at: string, h: HealthCheck | undefined): void {
  if (!h) return;
  const f = `${at}.health_check`;
  if (!h.probe) out.push({ field: f, description: 'set exactly one of command or http' });
  else if (h.probe.$case === 'command') {
    const c = h.probe.value;
    if (c.argv.length === 0 || c.argv[0] === '') out.push({ field: `${f}.command.argv`, description: 'required: the program to run and its arguments' });
    checkDuration(out, `${f}.command.timeout`, c.timeout);
  } else {
    const http = h.probe.value;
    let url: URL | undefined;
    try {
      url = new URL(http.url);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      out.push({ field: `${f}.http.url`, description: `"${http.url}" is not an absolute http:// or https:// URL` });
    }
    if (http.expectedStatus !== 0 && (http.expectedStatus < 100 || http.expectedStatus > 599)) {
      out.push({ field: `${f}.http.expected_status`, description: `${http.expectedStatus} is not an HTTP status code (100-599, or 0 for any 2xx)` });
    }
    checkDuration(out, `${f}.http.timeout`, http.timeout);
  }
  checkDuration(out, `${f}.interval`, h.interval);
  if (h.retries !== undefined && h.retries > MAX_RETRIES) out.push({ field: `${f}.retries`, description: `must be at most ${MAX_RETRIES}` });
}

function checkRollbackPolicy(out: FieldViolation[], at: string, p: RollbackPolicy | undefined): void {
  if (!p) return;
  checkDuration(out, `${at}.rollback_policy.activation_timeout`, p.activationTimeout);
  checkDuration(out, `${at}.rollback_policy.confirm_timeout`, p.confirmTimeout);
  checkDuration(out, `${at}.rollback_policy.reboot_timeout`, p.rebootTimeout);
}

function checkMaxUnavailable(out: FieldViolation[], at: string, m: MaxUnavailable | undefined): void {
  if (!m) return;
  const f = `${at}.max_unavailable`;
  if (!m.value) out.push({ field: f, description: 'set count or percent (omit max_unavailable for one node at a time)' });
  else if (m.value.$case === 'count' && m.value.value < 1) out.push({ field: `${f}.count`, description: 'must be at least 1' });
  else if (m.value.$case === 'percent' && (m.value.value < 1 || m.value.value > 100)) out.push({ field: `${f}.percent`, description: 'must be between 1 and 100' });
}

/** Every problem of one deployment, its fields prefixed with `at` (e.g. `host_deployments[1]`). */
export function hostDeploymentViolations(d: HostDeployment, at: string): FieldViolation[] {
  const out: FieldViolation[] = [];
  if (d.name === '') out.push({ field: `${at}.name`, description: 'required' });
  else if (!LABEL.test(d.name)) {
    out.push({ field: `${at}.name`, description: `"${d.name}" is not a deployment name: lowercase letters, digits and '-', 1-63 characters, starting and ending with a letter or digit` });
  }
  checkSelector(out, at, d.selector);
  checkTarget(out, at, d.target);
  if (!enumValid(ActivationStrategy, d.activationStrategy)) out.push({ field: `${at}.activation_strategy`, description: `unknown strategy ${d.activationStrategy}` });
  checkHealthCheck(out, at, d.healthCheck);
  checkRollbackPolicy(out, at, d.rollbackPolicy);
  checkMaxUnavailable(out, at, d.maxUnavailable);
  if (d.drainTimeout && !d.drain) out.push({ field: `${at}.drain_timeout`, description: 'only meaningful with drain: true' });
  checkDuration(out, `${at}.drain_timeout`, d.drainTimeout);
  if (d.rolloutOrder) {
    if (!enumValid(FailureDomainOrdering, d.rolloutOrder.byFailureDomain)) {
      out.push({ field: `${at}.rollout_order.by_failure_domain`, description: `unknown ordering ${d.rolloutOrder.byFailureDomain}` });
    }
    const seen = new Set<string>();
    d.rolloutOrder.failureDomains.forEach((domain, i) => {
      if (domain === '') out.push({ field: `${at}.rollout_order.failure_domains[${i}]`, description: 'must not be empty' });
      else if (seen.has(domain)) out.push({ field: `${at}.rollout_order.failure_domains[${i}]`, description: `"${domain}" is listed twice` });
      seen.add(domain);
    });
  }
  d.substituters.forEach((s, i) => {
    let ok = false;
    try {
      ok = ['http:', 'https:', 's3:', 'ssh:', 'ssh-ng:', 'file:'].includes(new URL(s).protocol);
    } catch {
      ok = false;
    }
    if (!ok) out.push({ field: `${at}.substituters[${i}]`, description: `"${s}" is not a binary cache URL` });
  });
  return out;
}

/**
 * Validates a batch: every deployment, and that no name repeats. Throws one InvalidArgumentError
 * listing every problem, so nothing of a bad batch is applied.
 */
export function validateHostDeployments(batch: readonly HostDeployment[], field = 'host_deployments'): void {
  const out: FieldViolation[] = [];
  const firstIndex = new Map<string, number>();
  batch.forEach((d, i) => {
    out.push(...hostDeploymentViolations(d, `${field}[${i}]`));
    const first = firstIndex.get(d.name);
    if (d.name !== '' && first !== undefined) out.push({ field: `${field}[${i}].name`, description: `"${d.name}" repeats ${field}[${first}]` });
    else firstIndex.set(d.name, i);
  });
  if (out.length > 0) throw new InvalidArgumentError(out);
}

/** The stored form: the deployment without its output-only fields. */
export function normalizeSpec(d: HostDeployment): HostDeployment {
  return HostDeployment.fromPartial({ ...d, revision: 0n, resourceVersion: 0n, createdAt: undefined, updatedAt: undefined });
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function collectChanges(before: unknown, after: unknown, path: string, out: string[]): void {
  if (isPlainObject(before) && isPlainObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    for (const k of keys) collectChanges(before[k], after[k], path ? `${path}.${k}` : k, out);
    return;
  }
  if (JSON.stringify(before) !== JSON.stringify(after)) out.push(path);
}

/**
 * Changed fields between two specs given as their proto3 JSON, as lowerCamelCase JSON paths
 * ("maxUnavailable.count", "target.nodeSystemPaths.node01", "rollbackPolicy.confirmTimeout").
 */
export function changedFields(before: Readonly<Record<string, unknown>>, after: Readonly<Record<string, unknown>>): string[] {
  const out: string[] = [];
  collectChanges(before, after, '', out);
  return out;
}

/** Whether changing these fields changes what nodes run, i.e. starts a new rollout revision. */
export function startsRevision(changed: readonly string[]): boolean {
  return changed.some((path) => (REVISION_FIELDS as readonly string[]).includes(path.split('.')[0] as string));
}

/** max_unavailable as a node count for `selected` nodes: percent rounds down, never below one. */
export function resolveMaxUnavailable(m: MaxUnavailable | undefined, selected: number): number {
  if (!m?.value) return 1;
  if (m.value.$case === 'count') return Math.max(1, m.value.value);
  return Math.max(1, Math.floor((selected * m.value.value) / 100));
}

const SECOND_MS = 1000;

export function durationMs(d: Duration | undefined, fallbackMs: number): number {
  if (!d) return fallbackMs;
  return Number(d.seconds) * SECOND_MS + Math.floor(d.nanos / 1e6);
}

export function durationOfMs(ms: number): Duration {
  return { seconds: BigInt(Math.floor(ms / SECOND_MS)), nanos: (ms % SECOND_MS) * 1e6 };
}

export const DEFAULT_DRAIN_TIMEOUT_MS = 300_000;
export const DEFAULT_REBOOT_TIMEOUT_MS = 600_000;

export function drainTimeoutMs(d: HostDeployment): number {
  return durationMs(d.drainTimeout, DEFAULT_DRAIN_TIMEOUT_MS);
}

export function rebootTimeoutMs(d: HostDeployment): number {
  return durationMs(d.rollbackPolicy?.rebootTimeout, DEFAULT_REBOOT_TIMEOUT_MS);
}

/** The strategy the controller resolves UNSPECIFIED to. */
export function effectiveStrategy(d: HostDeployment): ActivationStrategy {
  return d.activationStrategy === ActivationStrategy.ACTIVATION_STRATEGY_UNSPECIFIED ? ActivationStrategy.ACTIVATION_STRATEGY_SWITCH : d.activationStrategy;
}
