// Enrollment: which node a discovered machine becomes. Fixed nodes (explicit identity) are tried
// first, then enrollment rules in ascending priority (ties by name); the first match decides
// class, pool, labels, install profile, node_id and hostname. Semantics are those of the
// comments in proto/ultracloud/deployer/v1/cluster_state.proto.
import { FailedPreconditionError } from '../../../lib/errors.js';
import { AssignmentSource } from '../../../gen/ts/ultracloud/assignment/v1/assignment.js';
import type { NodeAssignment } from '../../../gen/ts/ultracloud/assignment/v1/assignment.js';
import type {
  ClusterState,
  DiskTraits,
  EnrollmentRule,
  FixedNode,
  IdentityMatch,
  MachineSelector,
  MinimumHardware,
  NicTraits,
  NodeClass,
  StaticAddress,
} from '../../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import type { Disk, MachineInventory, NetworkInterface } from '../../../gen/ts/ultracloud/inventory/v1/inventory.js';

/** The parts of the cluster state enrollment reads. */
export type EnrollmentCluster = Pick<ClusterState, 'enrollmentRules' | 'nodes' | 'nodeClasses' | 'pools'>;

/**
 * Names already used in the cluster. The caller leaves out the names of the machine being
 * matched, so re-matching an assigned machine can give it its own names back.
 */
/** What enrollment asks of a set of names (a Set is one). */
export interface NameSet {
  has(name: string): boolean;
  /** At least the number of names in the set (an upper bound for a union). */
  readonly size: number;
}

export interface TakenNames {
  readonly nodeIds: NameSet;
  readonly hostnames: NameSet;
  /**
   * Where to start looking for a free `{index}`, per rendered template pair: every index below
   * the one recorded is known to be taken. Enrolment reads and advances it, so machines enrolled
   * one after another do not scan the whole fleet's names each; its owner clears it whenever a
   * name may have become free. Without it, every scan starts at 1.
   */
  readonly scanFrom?: Map<string, number>;
}

/** NodeAssignment as enrollment decides it; the caller adds assigned_at and cluster_generation. */
export type EnrolledAssignment = Omit<NodeAssignment, 'assignedAt' | 'clusterGeneration'>;

/** One minimum-hardware requirement the machine does not meet. */
export interface UnmetRequirement {
  /** MinimumHardware field (proto name), e.g. "memory_bytes". */
  readonly trait: HardwareTrait;
  /** For operators, e.g. "memory 8 GiB < 16 GiB". */
  readonly message: string;
}

export interface EnrollmentResult {
  readonly assignment: EnrolledAssignment;
  /** Commission without an operator (INSPECTED -> COMMISSIONED). */
  readonly autoCommission: boolean;
  /** Also Deploy without an operator; never true without autoCommission. */
  readonly autoInstall: boolean;
  /** Fixed nodes only: static addresses by MAC; empty for rules. */
  readonly staticAddresses: readonly StaticAddress[];
  /** Unmet minimum hardware of the assigned class; non-empty means do not commission. */
  readonly belowMinimum: readonly UnmetRequirement[];
  /**
   * Name pairs free in `taken`, in preference order; the first is the assignment's. A rule whose
   * templates use {index} lists up to NAME_CANDIDATES of them (the lowest free indexes), so
   * concurrent enrolments can each claim a different one without a cluster-wide lock.
   */
  readonly nameCandidates: readonly { readonly nodeId: string; readonly hostname: string }[];
}

/** How many free {index} name pairs matchEnrollment offers (see EnrollmentResult.nameCandidates). */
export const NAME_CANDIDATES = 16;

/** The MinimumHardware fields, by proto name. */
export type HardwareTrait = 'cpu_cores' | 'memory_bytes' | 'disk_count' | 'disk_size_bytes' | 'nic_count' | 'nic_speed_mbps';

/** Placeholders a node_id/hostname template may use. */
export const NAME_TEMPLATE_PLACEHOLDERS = ['index', 'pool', 'class', 'serial', 'mac', 'machine_id'] as const;
export type NameTemplatePlaceholder = (typeof NAME_TEMPLATE_PLACEHOLDERS)[number];

/** node_id template used when a rule sets neither template. */
export const DEFAULT_NODE_ID_TEMPLATE = '{class}-{index}';

const RFC1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const PLACEHOLDER = /\{([^{}]*)\}/g;

/** True for a lowercase RFC 1123 label: [a-z0-9-], no leading/trailing '-', at most 63 chars. */
export function isRfc1123Label(name: string): boolean {
  return RFC1123_LABEL.test(name);
}

/** Problems with a name template (unknown placeholders, stray braces), for cluster validation. */
export function checkNameTemplate(template: string): string[] {
  const problems: string[] = [];
  for (const m of template.matchAll(PLACEHOLDER)) {
    if (!(NAME_TEMPLATE_PLACEHOLDERS as readonly string[]).includes(m[1] ?? '')) {
      problems.push(`unknown placeholder {${m[1] ?? ''}} (known: ${NAME_TEMPLATE_PLACEHOLDERS.map((p) => `{${p}}`).join(', ')})`);
    }
  }
  if (/[{}]/.test(template.replace(PLACEHOLDER, ''))) problems.push('unbalanced "{" or "}"');
  return problems;
}

/**
 * Makes an identity fact usable inside a name: lowercase, then every character outside
 * [a-z0-9-] becomes "-" (the {serial} rule of cluster_state.proto, applied to {machine_id} too).
 * Nothing is trimmed or collapsed, so the mapping stays predictable for operators; a result
 * that is still not a valid label (e.g. trailing "-", too long) is reported, not guessed at.
 */
export function sanitizeNamePart(value: string): string {
  return value.toLowerCase().replace(/[^a-z0-9-]/g, '-');
}

/** Shell-style glob (`*`, `?`; everything else literal) matched case-insensitively. */
export function globMatches(pattern: string, value: string): boolean {
  const source = pattern.replace(/[.+^${}()|[\]\\*?]/g, (c) => (c === '*' ? '.*' : c === '?' ? '.' : `\\${c}`));
  return new RegExp(`^${source}$`, 'is').test(value);
}

// MACs compare in canonical form (lowercase, colon-separated) whatever the operator typed.
function normalizeMac(mac: string): string {
  return mac.trim().toLowerCase().replace(/-/g, ':');
}

/** Every MAC of the machine: identity's permanent MACs and each NIC's current and permanent MAC. */
function machineMacs(inventory: MachineInventory): string[] {
  const macs = new Set<string>();
  for (const mac of inventory.identity?.macAddresses ?? []) macs.add(normalizeMac(mac));
  for (const nic of inventory.nics) {
    macs.add(normalizeMac(nic.macAddress));
    macs.add(normalizeMac(nic.permanentMacAddress));
  }
  macs.delete('');
  return [...macs].sort();
}

/** Lowest permanent MAC (identity list, else NIC permanent-or-current MACs), without colons. */
function lowestPermanentMac(inventory: MachineInventory): string {
  const identity = (inventory.identity?.macAddresses ?? []).map(normalizeMac).filter((m) => m !== '');
  const macs = identity.length > 0
    ? identity
    : inventory.nics.map((n) => normalizeMac(n.permanentMacAddress || n.macAddress)).filter((m) => m !== '');
  const lowest = macs.sort()[0] ?? '';
  return lowest.replace(/[^0-9a-f]/g, '');
}

function installedDisks(inventory: MachineInventory): Disk[] {
  return inventory.disks.filter((d) => !d.isBootMedium);
}

function anyGlob(patterns: readonly string[], value: string): boolean {
  return patterns.some((p) => globMatches(p, value));
}

function diskTraitsMatch(traits: DiskTraits, disks: readonly Disk[]): boolean {
  const matching = disks.filter(
    (d) =>
      (traits.minSizeBytes === 0n || d.sizeBytes >= traits.minSizeBytes) &&
      (traits.rotational === undefined || d.rotational === traits.rotational) &&
      (traits.model === '' || globMatches(traits.model, d.model)),
  );
  return matching.length >= Math.max(traits.minCount, 1);
}

function nicTraitsMatch(traits: NicTraits, nics: readonly NetworkInterface[]): boolean {
  const matching = nics.filter(
    (n) =>
      (traits.minSpeedMbps === 0 || n.speedMbps >= traits.minSpeedMbps) &&
      (traits.driver === '' || globMatches(traits.driver, n.driver)),
  );
  return matching.length >= Math.max(traits.minCount, 1);
}

/** True when every set field of the selector matches (AND; any entry of a list may match). */
export function selectorMatches(selector: MachineSelector | undefined, inventory: MachineInventory): boolean {
  if (selector === undefined) return true;
  const identity = inventory.identity;
  const macs = machineMacs(inventory);
  const wantedMacs = new Set(selector.macAddresses.map(normalizeMac));
  return (
    (selector.machineIds.length === 0 || selector.machineIds.includes(inventory.machineId)) &&
    (wantedMacs.size === 0 || macs.some((m) => wantedMacs.has(m))) &&
    (selector.macPatterns.length === 0 || macs.some((m) => anyGlob(selector.macPatterns, m))) &&
    (selector.vendors.length === 0 || anyGlob(selector.vendors, identity?.vendor ?? '')) &&
    (selector.products.length === 0 || anyGlob(selector.products, identity?.productName ?? '')) &&
    (selector.serialNumbers.length === 0 || anyGlob(selector.serialNumbers, identity?.serialNumber ?? '')) &&
    (selector.disks === undefined || diskTraitsMatch(selector.disks, installedDisks(inventory))) &&
    (selector.nics === undefined || nicTraitsMatch(selector.nics, inventory.nics)) &&
    (selector.minCpuCores === 0 || (inventory.cpu?.cores ?? 0) >= selector.minCpuCores) &&
    (selector.minMemoryBytes === 0n || inventory.memoryBytes >= selector.minMemoryBytes)
  );
}

/** True when any set field of the identity match matches (OR). Empty fields never match. */
export function identityMatches(match: IdentityMatch | undefined, inventory: MachineInventory): boolean {
  if (match === undefined) return false;
  const macs = new Set(machineMacs(inventory));
  const uuid = (inventory.identity?.systemUuid ?? '').toLowerCase();
  const serial = (inventory.identity?.serialNumber ?? '').trim();
  return (
    match.macAddresses.some((m) => macs.has(normalizeMac(m))) ||
    (match.systemUuid !== '' && match.systemUuid.toLowerCase() === uuid) ||
    (match.serialNumber !== '' && match.serialNumber.trim() === serial)
  );
}

function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Rules in evaluation order: ascending priority, ties by name (code-point order). */
export function orderedRules(rules: { readonly [name: string]: EnrollmentRule }): [string, EnrollmentRule][] {
  return Object.entries(rules).sort(([an, a], [bn, b]) => a.priority - b.priority || byName(an, bn));
}

function gib(bytes: bigint): string {
  const value = Number(bytes) / 2 ** 30;
  return `${Number.isInteger(value) ? value : value.toFixed(1)} GiB`;
}

/**
 * The minimum-hardware requirements of a class the machine does not meet (zero fields are not
 * checked). Disks exclude the installer's boot medium; NIC speed is the negotiated link speed.
 */
export function checkMinimumHardware(
  inventory: MachineInventory,
  minimum: MinimumHardware | undefined,
): UnmetRequirement[] {
  if (minimum === undefined) return [];
  const unmet: UnmetRequirement[] = [];
  const cores = inventory.cpu?.cores ?? 0;
  if (minimum.cpuCores > 0 && cores < minimum.cpuCores) {
    unmet.push({ trait: 'cpu_cores', message: `cpu cores ${cores} < ${minimum.cpuCores}` });
  }
  if (minimum.memoryBytes > 0n && inventory.memoryBytes < minimum.memoryBytes) {
    unmet.push({ trait: 'memory_bytes', message: `memory ${gib(inventory.memoryBytes)} < ${gib(minimum.memoryBytes)}` });
  }
  if (minimum.diskCount > 0 || minimum.diskSizeBytes > 0n) {
    const disks = installedDisks(inventory);
    const bigEnough = disks.filter((d) => d.sizeBytes >= minimum.diskSizeBytes).length;
    const needed = Math.max(minimum.diskCount, 1);
    if (bigEnough < needed) {
      const trait = minimum.diskCount > 0 ? 'disk_count' : 'disk_size_bytes';
      const sized = minimum.diskSizeBytes > 0n ? ` of at least ${gib(minimum.diskSizeBytes)}` : '';
      const largest = disks.reduce((max, d) => (d.sizeBytes > max ? d.sizeBytes : max), 0n);
      unmet.push({
        trait,
        message: `disks${sized} ${bigEnough} < ${needed}` + (sized !== '' ? ` (largest ${gib(largest)})` : ''),
      });
    }
  }
  if (minimum.nicCount > 0 && inventory.nics.length < minimum.nicCount) {
    unmet.push({ trait: 'nic_count', message: `nics ${inventory.nics.length} < ${minimum.nicCount}` });
  }
  if (minimum.nicSpeedMbps > 0) {
    const fastest = inventory.nics.reduce((max, n) => Math.max(max, n.speedMbps), 0);
    if (fastest < minimum.nicSpeedMbps) {
      unmet.push({ trait: 'nic_speed_mbps', message: `nic speed ${fastest} Mb/s < ${minimum.nicSpeedMbps} Mb/s` });
    }
  }
  return unmet;
}

interface NameFacts {
  readonly pool: string;
  readonly nodeClass: string;
  readonly inventory: MachineInventory;
}

/** Substitutes every placeholder; {index} only when index is given. */
export function renderNameTemplate(template: string, facts: NameFacts, index?: number): string {
  return template.replace(PLACEHOLDER, (whole, name: string) => {
    switch (name as NameTemplatePlaceholder) {
      case 'index': return index === undefined ? whole : String(index);
      case 'pool': return facts.pool;
      case 'class': return facts.nodeClass;
      case 'serial': return sanitizeNamePart(facts.inventory.identity?.serialNumber ?? '');
      case 'mac': return lowestPermanentMac(facts.inventory);
      case 'machine_id': return sanitizeNamePart(facts.inventory.machineId);
      default: return whole;
    }
  });
}

function mergeLabels(...layers: ({ readonly [key: string]: string } | undefined)[]): { [key: string]: string } {
  const merged: { [key: string]: string } = {};
  for (const layer of layers) Object.assign(merged, layer ?? {});
  return merged;
}

function requireValidName(what: string, source: string, kind: 'node_id' | 'hostname', name: string): void {
  if (!isRfc1123Label(name)) {
    throw new FailedPreconditionError(
      `${what} ${source} renders ${kind} "${name}", which is not a lowercase RFC 1123 label ([a-z0-9-], at most 63 characters, no leading or trailing "-")`,
    );
  }
}

/**
 * Names of fixed nodes are reserved even before their machine appears, so a rule never hands
 * out "cp-1" to a stranger while the fixed node cp-1 is still powered off.
 */
const fixedNamesOf = new WeakMap<EnrollmentCluster, { nodeIds: Set<string>; hostnames: Set<string> }>();

/** Both sets at once, without copying either (the cluster's assigned names can be thousands). */
export function unionOfNames(a: NameSet, b: NameSet): NameSet {
  return { has: (name) => a.has(name) || b.has(name), size: a.size + b.size };
}

/** Names taken by machines plus those the cluster's fixed nodes reserve (computed once per cluster document). */
function reservedNames(cluster: EnrollmentCluster, taken: TakenNames): TakenNames {
  let fixed = fixedNamesOf.get(cluster);
  if (!fixed) {
    fixed = { nodeIds: new Set(), hostnames: new Set() };
    for (const [nodeId, node] of Object.entries(cluster.nodes)) {
      fixed.nodeIds.add(nodeId);
      fixed.hostnames.add(node.hostname || nodeId);
    }
    fixedNamesOf.set(cluster, fixed);
  }
  return { nodeIds: unionOfNames(taken.nodeIds, fixed.nodeIds), hostnames: unionOfNames(taken.hostnames, fixed.hostnames), ...(taken.scanFrom ? { scanFrom: taken.scanFrom } : {}) };
}

function classOf(cluster: EnrollmentCluster, what: string, source: string, nodeClass: string): NodeClass {
  const found = cluster.nodeClasses[nodeClass];
  if (found === undefined) {
    throw new FailedPreconditionError(`${what} ${source} names unknown node class "${nodeClass}"`);
  }
  return found;
}

function enrollFixed(
  inventory: MachineInventory,
  cluster: EnrollmentCluster,
  taken: TakenNames,
  nodeId: string,
  node: FixedNode,
): EnrollmentResult {
  const what = 'fixed node';
  const nodeClass = classOf(cluster, what, nodeId, node.nodeClass);
  const hostname = node.hostname || nodeId;
  requireValidName(what, nodeId, 'node_id', nodeId);
  requireValidName(what, nodeId, 'hostname', hostname);
  if (taken.nodeIds.has(nodeId)) {
    throw new FailedPreconditionError(`fixed node ${nodeId} matches this machine but node_id "${nodeId}" is already assigned to another machine`);
  }
  if (taken.hostnames.has(hostname)) {
    throw new FailedPreconditionError(`fixed node ${nodeId} matches this machine but hostname "${hostname}" is already assigned to another machine`);
  }
  return {
    assignment: {
      nodeId,
      hostname,
      nodeClass: node.nodeClass,
      pool: node.pool,
      labels: mergeLabels(nodeClass.defaultLabels, cluster.pools[node.pool]?.labels, node.labels),
      failureDomain: node.failureDomain,
      installProfile: node.installProfile || nodeClass.installProfile,
      source: AssignmentSource.ASSIGNMENT_SOURCE_FIXED_NODE,
      sourceName: nodeId,
    },
    autoCommission: node.autoCommission,
    autoInstall: node.autoCommission && node.autoInstall,
    staticAddresses: node.staticAddresses,
    belowMinimum: checkMinimumHardware(inventory, nodeClass.minimumHardware),
    nameCandidates: [{ nodeId, hostname }],
  };
}

/**
 * Renders node_id and hostname with the smallest positive {index} for which both are free in
 * `taken`, followed by the next free ones (up to NAME_CANDIDATES pairs in all). Both templates share
 * one index so worker-3 is also host worker-3. The deployer claims the first candidate no
 * concurrent enrolment is claiming, so under concurrency a machine may get a free index that is
 * not the lowest one; enrolled one after another, machines still get 1, 2, 3, ...
 */
function allocateNames(ruleName: string, rule: EnrollmentRule, facts: NameFacts, taken: TakenNames): { nodeId: string; hostname: string }[] {
  const nodeIdTemplate = rule.nodeIdTemplate || rule.hostnameTemplate || DEFAULT_NODE_ID_TEMPLATE;
  const usesIndex = /\{index\}/.test(nodeIdTemplate) || /\{index\}/.test(rule.hostnameTemplate);
  const wanted = usesIndex ? NAME_CANDIDATES : 1;
  const found: { nodeId: string; hostname: string }[] = [];
  let conflict = '';
  // Every placeholder but {index} renders the same for each index: render those once.
  const nodeIdRendered = renderNameTemplate(nodeIdTemplate, facts);
  const hostnameRendered = rule.hostnameTemplate ? renderNameTemplate(rule.hostnameTemplate, facts) : undefined;
  const nodeIdParts = nodeIdRendered.split('{index}');
  const hostnameParts = hostnameRendered?.split('{index}');
  const hintKey = `${nodeIdRendered}\n${hostnameRendered ?? ''}`;
  const firstIndex = usesIndex ? (taken.scanFrom?.get(hintKey) ?? 1) : 1;
  // Each taken name blocks at most one index, so `wanted` free ones exist within this bound.
  const lastIndex = usesIndex ? firstIndex - 1 + taken.nodeIds.size + taken.hostnames.size + wanted : 1;
  for (let index = firstIndex; index <= lastIndex && found.length < wanted; index++) {
    const nodeId = nodeIdParts.join(String(index));
    const hostname = hostnameParts ? hostnameParts.join(String(index)) : nodeId;
    if (found.length > 0 && (!isRfc1123Label(nodeId) || !isRfc1123Label(hostname))) break; // a longer index outgrew the label
    requireValidName('enrollment rule', ruleName, 'node_id', nodeId);
    requireValidName('enrollment rule', ruleName, 'hostname', hostname);
    if (taken.nodeIds.has(nodeId)) conflict = `node_id "${nodeId}"`;
    else if (taken.hostnames.has(hostname)) conflict = `hostname "${hostname}"`;
    else {
      // Every index from firstIndex up to here was taken.
      if (found.length === 0 && usesIndex) taken.scanFrom?.set(hintKey, index);
      found.push({ nodeId, hostname });
    }
  }
  if (found.length === 0) throw new FailedPreconditionError(`enrollment rule ${ruleName} renders ${conflict}, which is already taken in the cluster`);
  return found;
}

function enrollByRule(
  inventory: MachineInventory,
  cluster: EnrollmentCluster,
  taken: TakenNames,
  ruleName: string,
  rule: EnrollmentRule,
): EnrollmentResult {
  const nodeClass = classOf(cluster, 'enrollment rule', ruleName, rule.nodeClass);
  const labels = mergeLabels(nodeClass.defaultLabels, cluster.pools[rule.pool]?.labels, rule.labels);
  const candidates = allocateNames(ruleName, rule, { pool: rule.pool, nodeClass: rule.nodeClass, inventory }, taken);
  return {
    assignment: {
      ...(candidates[0] as { nodeId: string; hostname: string }),
      nodeClass: rule.nodeClass,
      pool: rule.pool,
      labels,
      failureDomain: rule.failureDomainLabel ? (labels[rule.failureDomainLabel] ?? '') : '',
      installProfile: rule.installProfile || nodeClass.installProfile,
      source: AssignmentSource.ASSIGNMENT_SOURCE_ENROLLMENT_RULE,
      sourceName: ruleName,
    },
    autoCommission: rule.autoCommission,
    autoInstall: rule.autoCommission && rule.autoInstall,
    staticAddresses: [],
    belowMinimum: checkMinimumHardware(inventory, nodeClass.minimumHardware),
    nameCandidates: candidates,
  };
}

/**
 * Decides the assignment of a machine, or undefined when no fixed node and no rule matches (the
 * machine stays INSPECTED). Fixed nodes win over every rule; several matching fixed nodes (a
 * cluster-state mistake) resolve to the first by node_id. Labels merge class default labels,
 * then pool labels, then rule/fixed-node labels, later wins; the failure domain is the merged
 * label named by the rule's failure_domain_label. Throws FailedPreconditionError when the match
 * renders an invalid or already-taken name, or names an unknown class.
 */
export function matchEnrollment(
  inventory: MachineInventory,
  cluster: EnrollmentCluster,
  taken: TakenNames,
): EnrollmentResult | undefined {
  const fixed = Object.entries(cluster.nodes)
    .sort(([a], [b]) => byName(a, b))
    .find(([, node]) => identityMatches(node.match, inventory));
  if (fixed !== undefined) {
    const [nodeId, node] = fixed;
    return enrollFixed(inventory, cluster, taken, nodeId, node);
  }
  const rule = orderedRules(cluster.enrollmentRules).find(([, r]) => selectorMatches(r.selector, inventory));
  if (rule === undefined) return undefined;
  const [ruleName, r] = rule;
  return enrollByRule(inventory, cluster, reservedNames(cluster, taken), ruleName, r);
}
