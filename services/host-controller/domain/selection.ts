// Which nodes a HostDeployment selects and in what order a rollout visits them. Pure functions
// over the node facts the deployer reports (assignment and lifecycle state).
import { FailureDomainOrdering, type HostSelector, type RolloutOrder } from '../../../gen/ts/ultracloud/system/v1/system.js';

/** One node as the deployer describes it: its assignment and its machine's lifecycle state. */
export interface NodeFacts {
  readonly nodeId: string;
  readonly hostname: string;
  readonly machineId: string;
  /** Lifecycle state name as in docs/lifecycle.md (`installed`, `active`, `reprovisioning`, …). */
  readonly machineState: string;
  /** Machine.resource_version, for Activate's optimistic concurrency. */
  readonly resourceVersion: bigint;
  readonly nodeClass: string;
  readonly pool: string;
  readonly labels: Readonly<Record<string, string>>;
  /** "" when the node has none. */
  readonly failureDomain: string;
  /** When the machine entered its state (identifies a reinstall or rescue request). */
  readonly stateChangedAt?: Date | undefined;
  /** The deployer's status message (an operator transition's reason). */
  readonly statusMessage?: string;
}

/** Machine states whose nodes are rolled out; others are listed as SKIPPED. */
export const ROLLOUT_STATES: ReadonlySet<string> = new Set(['installed', 'active']);

type SelectableNode = Pick<NodeFacts, 'nodeId' | 'nodeClass' | 'pool' | 'labels'>;

/** A node is selected when it matches every non-empty criterion (any element within a list). */
export function selects(selector: HostSelector | undefined, node: SelectableNode): boolean {
  return selectorOf(selector)(node);
}

const NOTHING = (): boolean => false;
const EVERYTHING = (): boolean => true;

/** `selects` for many nodes: the selector's criteria are looked at once. */
export function selectorOf(selector: HostSelector | undefined): (node: SelectableNode) => boolean {
  if (!selector) return NOTHING;
  const labels = Object.entries(selector.matchLabels);
  const { nodeIds, nodeClasses, pools } = selector;
  const criteria = nodeIds.length + nodeClasses.length + pools.length + labels.length;
  if (criteria === 0) return selector.allNodes ? EVERYTHING : NOTHING;
  const ids = nodeIds.length > 0 ? new Set(nodeIds) : undefined;
  return (node) => {
    if (ids && !ids.has(node.nodeId)) return false;
    if (nodeClasses.length > 0 && !nodeClasses.includes(node.nodeClass)) return false;
    if (pools.length > 0 && !pools.includes(node.pool)) return false;
    for (const [key, value] of labels) if (node.labels[key] !== value) return false;
    return true;
  };
}

export function effectiveOrdering(order: RolloutOrder | undefined): FailureDomainOrdering {
  const o = order?.byFailureDomain ?? FailureDomainOrdering.FAILURE_DOMAIN_ORDERING_UNSPECIFIED;
  return o === FailureDomainOrdering.FAILURE_DOMAIN_ORDERING_UNSPECIFIED ? FailureDomainOrdering.FAILURE_DOMAIN_ORDERING_SEQUENTIAL : o;
}

/**
 * The order failure domains are visited in: those listed in the rollout order first, as listed,
 * then the others in lexical order; nodes without a failure domain ("") come last.
 */
export function domainOrder(domains: Iterable<string>, order: RolloutOrder | undefined): string[] {
  const present = new Set(domains);
  const listed = (order?.failureDomains ?? []).filter((d) => present.has(d));
  const rest = [...present].filter((d) => d !== '' && !listed.includes(d)).sort();
  return [...listed, ...rest, ...(present.has('') ? [''] : [])];
}

const byNodeId = <T extends { nodeId: string }>(a: T, b: T) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0);

/**
 * Nodes in the order a rollout visits them. SEQUENTIAL: domain by domain, node ids within each.
 * INTERLEAVED: round-robin over the domains (the first node of each, then the second, …).
 * NONE: node id order.
 */
export function rolloutSequence<T extends { nodeId: string; failureDomain: string }>(nodes: readonly T[], order: RolloutOrder | undefined): T[] {
  const ordering = effectiveOrdering(order);
  if (ordering === FailureDomainOrdering.FAILURE_DOMAIN_ORDERING_NONE) return [...nodes].sort(byNodeId);
  const groups = new Map<string, T[]>();
  for (const n of nodes) {
    const g = groups.get(n.failureDomain);
    if (g) g.push(n);
    else groups.set(n.failureDomain, [n]);
  }
  const domains = domainOrder(groups.keys(), order);
  const sorted = domains.map((d) => (groups.get(d) ?? []).sort(byNodeId));
  if (ordering === FailureDomainOrdering.FAILURE_DOMAIN_ORDERING_SEQUENTIAL) return sorted.flat();
  const out: T[] = [];
  for (let i = 0; out.length < nodes.length; i++) {
    for (const group of sorted) {
      const n = group[i];
      if (n) out.push(n);
    }
  }
  return out;
}
