// The deployer's ClusterState document (proto/ultracloud/deployer/v1/cluster_state.proto):
// full validation, an object-level diff, a canonical form with its hash, and the removals that
// live assignments block. Pure functions over the generated message types; ApplyClusterState
// turns the results into INVALID_ARGUMENT / FAILED_PRECONDITION and the store persists them.
// Paths in messages use the document's proto3 JSON form (lowerCamelCase, map keys as segments,
// list items as `[i]`) so an operator can find the field in the JSON or the Nix source.
import { createHash } from 'node:crypto';
import {
  ClusterState,
  type AddressRange,
  type Cluster,
  type DiskPolicy,
  type EnrollmentRule,
  type FixedNode,
  type InstallProfile,
  type MachineSelector,
  type NodeClass,
  type Network,
  type Pool,
} from '../../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import {
  ChangeType,
  ClusterObjectKind,
  type ClusterObjectChange,
} from '../../../gen/ts/ultracloud/deployer/v1/cluster_service.js';
import {
  AddressMode,
  PartitionTableType,
  PartitionType,
  WipePolicy,
  addressModeToJSON,
  partitionTableTypeToJSON,
  partitionTypeToJSON,
  wipePolicyToJSON,
  type DiskLayout,
  type RootDeviceHints,
} from '../../../gen/ts/ultracloud/installplan/v1/installplan.js';
import { InvalidArgumentError, type FieldViolation } from '../../../lib/errors.js';
import { validateRootDeviceHints } from './root-device.js';

// ---------------------------------------------------------------------------------------------
// Names

/** Object names (map keys) and node_ids/hostnames: lowercase RFC 1123 labels. */
export const OBJECT_NAME_RULE = 'a lowercase RFC 1123 label ([a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters)';

export function isObjectName(name: string): boolean {
  return name.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name);
}

function isDnsName(name: string): boolean {
  return name.length <= 253 && name.split('.').every(isObjectName);
}

// Labels follow Kubernetes syntax, which is what operators of label-driven schedulers expect.
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  const nameOk = name.length <= 63 && LABEL_NAME.test(name);
  const prefixOk = prefix === undefined || isDnsName(prefix);
  if (nameOk && prefixOk) return undefined;
  return `label key "${key}" must be [prefix/]name: prefix a lowercase DNS name, name at most 63 characters of [A-Za-z0-9-_.] starting and ending with a letter or digit`;
}

function labelValueProblem(value: string): string | undefined {
  if (value === '' || (value.length <= 63 && LABEL_NAME.test(value))) return undefined;
  return `label value "${value}" must be empty or at most 63 characters of [A-Za-z0-9-_.] starting and ending with a letter or digit`;
}

// ---------------------------------------------------------------------------------------------
// Addresses

const MAC_ADDRESS = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

function macAddressProblem(mac: string): string | undefined {
  if (!MAC_ADDRESS.test(mac)) {
    return `"${mac}" is not a MAC address in lowercase colon-separated form (e.g. "52:54:00:12:34:56")`;
  }
  if (mac === '00:00:00:00:00:00') return `"${mac}" is the all-zero MAC address`;
  // A set low bit of the first octet marks a group address, which no NIC owns.
  if ((parseInt(mac.slice(0, 2), 16) & 1) === 1) return `"${mac}" is a multicast address, not a NIC's address`;
  return undefined;
}

function macPatternProblem(pattern: string): string | undefined {
  if (pattern === '') return 'empty pattern';
  if (!/^[0-9A-Fa-f:*?]+$/.test(pattern)) {
    return `"${pattern}" may only contain hex digits, ":", "*" and "?" (e.g. "52:54:00:*")`;
  }
  // A glob that cannot line up with xx:xx:xx:xx:xx:xx silently matches nothing: check that the
  // literal text before the first and after the last "*" fits the MAC shape.
  const fits = (c: string, i: number): boolean => c === '?' || (i % 3 === 2 ? c === ':' : /[0-9A-Fa-f]/.test(c));
  const never = `"${pattern}" can never match a MAC address (xx:xx:xx:xx:xx:xx)`;
  const firstStar = pattern.indexOf('*');
  if (firstStar < 0) return pattern.length === 17 && [...pattern].every(fits) ? undefined : never;
  const prefix = pattern.slice(0, firstStar);
  const suffix = pattern.slice(pattern.lastIndexOf('*') + 1);
  if (pattern.replace(/\*/g, '').length > 17) return never;
  if (![...prefix].every((c, i) => fits(c, i))) return never;
  if (![...suffix].every((c, j) => fits(c, 17 - suffix.length + j))) return never;
  return undefined;
}

interface IpAddress {
  readonly family: 4 | 6;
  readonly value: bigint;
}

interface IpPrefix {
  readonly family: 4 | 6;
  readonly base: bigint;
  readonly length: number;
  readonly text: string;
}

function parseIpv4(text: string): bigint | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) return undefined;
  let value = 0n;
  for (const part of m.slice(1)) {
    // Leading zeros are octal to some tools and decimal to others: refuse them.
    if (part.length > 1 && part.startsWith('0')) return undefined;
    const octet = Number(part);
    if (octet > 255) return undefined;
    value = (value << 8n) | BigInt(octet);
  }
  return value;
}

function parseIpv6(text: string): bigint | undefined {
  if (!/^[0-9A-Fa-f:.]+$/.test(text)) return undefined;
  let hex = text;
  let embeddedV4: bigint | undefined;
  if (text.includes('.')) {
    const lastColon = text.lastIndexOf(':');
    embeddedV4 = parseIpv4(text.slice(lastColon + 1));
    if (embeddedV4 === undefined) return undefined;
    hex = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const halves = hex.split('::');
  if (halves.length > 2) return undefined;
  const groupsOf = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const head = groupsOf(halves[0] ?? '');
  const tail = halves.length === 2 ? groupsOf(halves[1] ?? '') : [];
  if (![...head, ...tail].every((g) => /^[0-9A-Fa-f]{1,4}$/.test(g))) return undefined;
  if (halves.length === 1 ? head.length !== 8 : head.length + tail.length > 7) return undefined;
  const groups = [...head, ...Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  let value = groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
  if (embeddedV4 !== undefined) value = (value & ~0xffffffffn) | embeddedV4;
  return value;
}

function parseIp(text: string): IpAddress | undefined {
  const v4 = parseIpv4(text);
  if (v4 !== undefined) return { family: 4, value: v4 };
  const v6 = parseIpv6(text);
  return v6 === undefined ? undefined : { family: 6, value: v6 };
}

const bitsOf = (family: 4 | 6): number => (family === 4 ? 32 : 128);

function parseCidr(text: string): IpPrefix | string {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text);
  const address = m ? parseIp(m[1] ?? '') : undefined;
  const length = m ? Number(m[2]) : NaN;
  if (!address || length > bitsOf(address.family)) {
    return `"${text}" is not an IPv4 or IPv6 prefix in CIDR notation (e.g. "10.0.0.0/24")`;
  }
  const hostBits = BigInt(bitsOf(address.family) - length);
  const base = (address.value >> hostBits) << hostBits;
  if (base !== address.value) {
    return `"${text}" has host bits set; the prefix is ${formatIp(address.family, base)}/${length}`;
  }
  return { family: address.family, base, length, text };
}

function formatIp(family: 4 | 6, value: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 0xffn)).join('.');
  const groups = Array.from({ length: 8 }, (_, i) => ((value >> BigInt((7 - i) * 16)) & 0xffffn).toString(16));
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}

function prefixContains(prefix: IpPrefix, ip: IpAddress): boolean {
  if (prefix.family !== ip.family) return false;
  const hostBits = BigInt(bitsOf(ip.family) - prefix.length);
  return ip.value >> hostBits === prefix.base >> hostBits;
}

/** Why an address cannot be a host address in the prefix, if it cannot. */
function hostAddressProblem(prefix: IpPrefix, ip: IpAddress, text: string): string | undefined {
  if (!prefixContains(prefix, ip)) return `${text} is outside the network's cidr ${prefix.text}`;
  const hostBits = BigInt(bitsOf(ip.family) - prefix.length);
  if (hostBits >= 2n && ip.value === prefix.base) return `${text} is the network address of ${prefix.text}`;
  if (ip.family === 4 && hostBits >= 2n && ip.value === prefix.base + (1n << hostBits) - 1n) {
    return `${text} is the broadcast address of ${prefix.text}`;
  }
  return undefined;
}

function hostPortProblem(text: string): string | undefined {
  const m = /^(\[([^\]]+)\]|[^:[\]]+):(\d{1,5})$/.exec(text);
  const host = m?.[2] ?? m?.[1] ?? '';
  const port = m ? Number(m[3]) : 0;
  const hostOk = m?.[2] !== undefined ? parseIpv6(host) !== undefined : isDnsName(host.toLowerCase()) || parseIpv4(host) !== undefined;
  if (m && hostOk && port >= 1 && port <= 65535) return undefined;
  return `"${text}" is not "host:port" (e.g. "deployer.lab.example.org:7001" or "10.0.0.2:7001")`;
}

// ---------------------------------------------------------------------------------------------
// Root-device hints

const STRING_HINTS = [
  'name',
  'byPath',
  'wwn',
  'wwnWithExtension',
  'wwnVendorExtension',
  'serial',
  'model',
  'vendor',
  'hctl',
] as const satisfies readonly (keyof RootDeviceHints)[];

function hasAnyHint(h: RootDeviceHints | undefined): boolean {
  return h !== undefined && (h.size.trim() !== '' || h.rotational !== undefined || STRING_HINTS.some((f) => h[f].trim() !== ''));
}

// ---------------------------------------------------------------------------------------------
// Templates

const NAME_TEMPLATE_PLACEHOLDERS = ['index', 'pool', 'class', 'serial', 'mac', 'machine_id'] as const;
// Placeholders whose value differs between machines; without one, a template names every
// machine the same and the second enrollment collides.
const PER_MACHINE_PLACEHOLDERS = new Set(['index', 'serial', 'mac', 'machine_id']);
const FLAKE_ATTR_PLACEHOLDERS = ['node_id', 'hostname', 'class', 'pool'] as const;

interface ParsedTemplate {
  readonly placeholders: readonly string[];
  readonly problem?: string;
}

function parseTemplate(template: string, known: readonly string[]): ParsedTemplate {
  const placeholders = [...template.matchAll(/\{([^{}]*)\}/g)].map((m) => m[1] ?? '');
  if (/[{}]/.test(template.replace(/\{[^{}]*\}/g, ''))) return { placeholders, problem: `"${template}" has an unbalanced "{" or "}"` };
  const unknown = placeholders.find((p) => !known.includes(p));
  if (unknown !== undefined) {
    return { placeholders, problem: `unknown placeholder "{${unknown}}" (known: ${known.map((k) => `{${k}}`).join(', ')})` };
  }
  return { placeholders };
}

function renderTemplate(template: string, values: Readonly<Record<string, string>>): string {
  return template.replace(/\{([^{}]*)\}/g, (_, name: string) => values[name] ?? '');
}

// ---------------------------------------------------------------------------------------------
// Validation

type Add = (field: string, description: string) => void;

const join = (...parts: string[]): string => parts.filter((p) => p !== '').join('.');

function sortedEntries<T>(map: Readonly<Record<string, T>> | undefined): [string, T][] {
  return Object.entries(map ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function checkUint32(add: Add, path: string, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) add(path, `must be a non-negative integer, got ${value}`);
}

function checkUint64(add: Add, path: string, value: bigint): void {
  if (value < 0n || value > 0xffffffffffffffffn) add(path, `must be a non-negative integer, got ${value}`);
}

function checkEnum<E extends number>(add: Add, path: string, value: E, known: Record<string, string | number>, toJSON: (v: E) => string): void {
  const names = Object.entries(known).filter(([, v]) => typeof v === 'number' && v >= 0).map(([k]) => k);
  if (!names.map((n) => known[n]).includes(value)) add(path, `unrecognized value ${toJSON(value)} (expected one of ${names.join(', ')})`);
}

function checkLabels(add: Add, path: string, labels: Readonly<Record<string, string>>): void {
  for (const [key, value] of sortedEntries(labels)) {
    const problem = labelKeyProblem(key) ?? labelValueProblem(value);
    if (problem) add(join(path, key), problem);
  }
}

function checkReference(add: Add, path: string, name: string, kind: string, map: Readonly<Record<string, unknown>>, required: boolean): void {
  if (name === '') {
    if (required) add(path, `required: name of a ${kind}`);
  } else if (!Object.hasOwn(map, name)) {
    add(path, `unknown ${kind} "${name}"`);
  }
}

/**
 * Every problem of a ClusterState document, each with its lowerCamelCase JSON path, in document
 * order. An empty result means ApplyClusterState may apply it.
 */
export function validateClusterState(state: ClusterState): FieldViolation[] {
  const violations: FieldViolation[] = [];
  const add: Add = (field, description) => violations.push({ field, description });

  checkCluster(add, state);
  const prefixes = new Map<string, IpPrefix>();
  for (const [name, network] of sortedEntries(state.networks)) {
    checkObjectName(add, 'networks', name);
    const prefix = checkNetwork(add, join('networks', name), network);
    if (prefix) prefixes.set(name, prefix);
  }
  for (const [name, profile] of sortedEntries(state.installProfiles)) {
    checkObjectName(add, 'installProfiles', name);
    checkInstallProfile(add, join('installProfiles', name), profile, state);
  }
  for (const [name, policy] of sortedEntries(state.diskPolicies)) {
    checkObjectName(add, 'diskPolicies', name);
    checkDiskPolicy(add, join('diskPolicies', name), policy);
  }
  for (const [name, nodeClass] of sortedEntries(state.nodeClasses)) {
    checkObjectName(add, 'nodeClasses', name);
    checkNodeClass(add, join('nodeClasses', name), nodeClass, state);
  }
  for (const [name, pool] of sortedEntries(state.pools)) {
    checkObjectName(add, 'pools', name);
    checkPool(add, join('pools', name), pool);
  }
  for (const [name, rule] of sortedEntries(state.enrollmentRules)) {
    checkObjectName(add, 'enrollmentRules', name);
    checkEnrollmentRule(add, join('enrollmentRules', name), rule, state);
  }
  checkRuleReachability(add, state);
  for (const [nodeId, node] of sortedEntries(state.nodes)) {
    checkObjectName(add, 'nodes', nodeId);
    checkFixedNode(add, join('nodes', nodeId), node, state, prefixes);
  }
  checkFixedNodeUniqueness(add, state, prefixes);
  return violations;
}

/** Throws InvalidArgumentError listing every violation when the document is not valid. */
export function assertValidClusterState(state: ClusterState): void {
  const violations = validateClusterState(state);
  if (violations.length > 0) throw new InvalidArgumentError(violations);
}

function checkObjectName(add: Add, mapPath: string, name: string): void {
  if (!isObjectName(name)) add(join(mapPath, name), `name "${name}" must be ${OBJECT_NAME_RULE}`);
}

const AUTHORIZED_KEY = /(^|\s)(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)\s+[A-Za-z0-9+/]+={0,3}(\s|$)/;

function checkCluster(add: Add, state: ClusterState): void {
  const cluster: Cluster = state.cluster ?? {
    name: '',
    domain: '',
    deployerAddress: '',
    hostControllerAddress: '',
    fleetSchedulerAddress: '',
    rescueSshAuthorizedKeys: [],
  };
  if (cluster.name === '') add('cluster.name', 'required');
  else if (!isObjectName(cluster.name)) add('cluster.name', `"${cluster.name}" must be ${OBJECT_NAME_RULE}`);
  if (cluster.domain === '') add('cluster.domain', 'required');
  else if (!isDnsName(cluster.domain)) add('cluster.domain', `"${cluster.domain}" is not a lowercase DNS name`);
  for (const field of ['deployerAddress', 'hostControllerAddress', 'fleetSchedulerAddress'] as const) {
    const problem = cluster[field] === '' ? undefined : hostPortProblem(cluster[field]);
    if (problem) add(join('cluster', field), problem);
  }
  // Plans of node-agent classes carry this address; without it those agents cannot connect.
  const agentClass = sortedEntries(state.nodeClasses).find(([, c]) => c.runNodeAgent)?.[0];
  if (cluster.fleetSchedulerAddress === '' && agentClass !== undefined) {
    add('cluster.fleetSchedulerAddress', `required because node class "${agentClass}" runs the node-agent`);
  }
  cluster.rescueSshAuthorizedKeys.forEach((line, i) => {
    if (line.includes('\n') || !AUTHORIZED_KEY.test(line)) {
      add(`cluster.rescueSshAuthorizedKeys[${i}]`, 'not an OpenSSH authorized_keys line ("[options] <key type> <base64 key> [comment]")');
    }
  });
}

function checkNetwork(add: Add, path: string, network: Network): IpPrefix | undefined {
  let prefix: IpPrefix | undefined;
  if (network.cidr === '') {
    add(join(path, 'cidr'), 'required');
  } else {
    const parsed = parseCidr(network.cidr);
    if (typeof parsed === 'string') add(join(path, 'cidr'), parsed);
    else prefix = parsed;
  }
  let gateway: IpAddress | undefined;
  if (network.gateway !== '') {
    gateway = parseIp(network.gateway);
    const problem = !gateway
      ? `"${network.gateway}" is not an IP address`
      : prefix && hostAddressProblem(prefix, gateway, network.gateway);
    if (problem) add(join(path, 'gateway'), problem);
  }
  network.dnsServers.forEach((server, i) => {
    if (!parseIp(server)) add(`${join(path, 'dnsServers')}[${i}]`, `"${server}" is not an IP address`);
  });
  network.searchDomains.forEach((domain, i) => {
    if (!isDnsName(domain)) add(`${join(path, 'searchDomains')}[${i}]`, `"${domain}" is not a lowercase DNS name`);
  });
  network.ntpServers.forEach((server, i) => {
    if (!parseIp(server) && !isDnsName(server)) add(`${join(path, 'ntpServers')}[${i}]`, `"${server}" is neither an IP address nor a DNS name`);
  });
  checkEnum(add, join(path, 'addressMode'), network.addressMode, AddressMode, addressModeToJSON);
  if (network.addressMode === AddressMode.ADDRESS_MODE_STATIC && !network.addressPool) {
    add(join(path, 'addressPool'), 'required when addressMode is ADDRESS_MODE_STATIC');
  }
  if (network.addressPool) checkAddressRange(add, join(path, 'addressPool'), network.addressPool, prefix, gateway);
  checkUint32(add, join(path, 'mtu'), network.mtu);
  const minMtu = prefix?.family === 6 ? 1280 : 68;
  if (Number.isInteger(network.mtu) && network.mtu !== 0 && (network.mtu < minMtu || network.mtu > 65535)) {
    add(join(path, 'mtu'), `must be 0 (default) or between ${minMtu} and 65535, got ${network.mtu}`);
  }
  return prefix;
}

function checkAddressRange(add: Add, path: string, range: AddressRange, prefix: IpPrefix | undefined, gateway: IpAddress | undefined): void {
  const ends: (IpAddress | undefined)[] = [];
  for (const field of ['start', 'end'] as const) {
    const text = range[field];
    const ip = text === '' ? undefined : parseIp(text);
    const problem =
      text === '' ? 'required' : !ip ? `"${text}" is not an IP address` : prefix && hostAddressProblem(prefix, ip, text);
    if (problem) add(join(path, field), problem);
    ends.push(problem ? undefined : ip);
  }
  const [start, end] = ends;
  if (!start || !end) return;
  if (start.family !== end.family || start.value > end.value) {
    add(path, `start ${range.start} is after end ${range.end}`);
  } else if (gateway && gateway.family === start.family && gateway.value >= start.value && gateway.value <= end.value) {
    add(path, `contains the gateway ${formatIp(gateway.family, gateway.value)}`);
  }
}

function checkInstallProfile(add: Add, path: string, profile: InstallProfile, state: ClusterState): void {
  if (profile.flakeRef === '') add(join(path, 'flakeRef'), 'required');
  else if (/\s/.test(profile.flakeRef)) add(join(path, 'flakeRef'), `"${profile.flakeRef}" contains whitespace`);
  else if (profile.flakeRef.includes('#')) add(join(path, 'flakeRef'), `"${profile.flakeRef}" contains "#": put the attribute in flakeAttr`);

  if (profile.flakeAttr === '') {
    add(join(path, 'flakeAttr'), 'required');
  } else {
    const parsed = parseTemplate(profile.flakeAttr, FLAKE_ATTR_PLACEHOLDERS);
    const sample = renderTemplate(profile.flakeAttr, { node_id: 'n', hostname: 'h', class: 'c', pool: 'p' });
    const problem =
      parsed.problem ??
      (/[\s#]/.test(profile.flakeAttr) || sample.split('.').some((s) => s === '')
        ? `"${profile.flakeAttr}" is not a flake attribute path (e.g. "nixosConfigurations.{hostname}")`
        : undefined);
    if (problem) add(join(path, 'flakeAttr'), problem);
  }
  checkReference(add, join(path, 'diskPolicy'), profile.diskPolicy, 'disk policy', state.diskPolicies, true);
  checkReference(add, join(path, 'network'), profile.network, 'network', state.networks, true);

  if (profile.bundleUrl !== '' && !isHttpUrl(profile.bundleUrl)) {
    add(join(path, 'bundleUrl'), `"${profile.bundleUrl}" is not an absolute http(s) URL`);
  }
  if (profile.bundleSha256 === '') {
    if (profile.bundleUrl !== '') add(join(path, 'bundleSha256'), 'required when bundleUrl is set');
  } else if (!/^[0-9a-f]{64}$/.test(profile.bundleSha256)) {
    add(join(path, 'bundleSha256'), 'must be 64 lowercase hex digits (SHA-256)');
  } else if (profile.bundleUrl === '') {
    add(join(path, 'bundleSha256'), 'set without bundleUrl');
  }
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
  } catch {
    return false;
  }
}

function checkDiskPolicy(add: Add, path: string, policy: DiskPolicy): void {
  const hintsPath = join(path, 'rootDeviceHints');
  const hints = policy.rootDeviceHints;
  // The proto lets empty hints match "the only disk", but a policy shared by several machines
  // must not silently depend on each having one disk; the Nix schema rejects it too.
  if (!hasAnyHint(hints)) add(hintsPath, 'at least one root device hint is required (e.g. wwn, serial, model or size)');
  if (hints) {
    // Syntax comes from the resolver's own parser, so a policy accepted here is one the resolver
    // can evaluate at install time. It names fields in snake_case; paths here are lowerCamelCase.
    for (const v of validateRootDeviceHints(hints, hintsPath)) {
      const field = v.field.startsWith(`${hintsPath}.`)
        ? join(hintsPath, v.field.slice(hintsPath.length + 1).replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()))
        : v.field;
      add(field, v.description);
    }
  }
  if (!policy.layout) add(join(path, 'layout'), 'required: at least one partition with mountpoint "/"');
  else checkDiskLayout(add, join(path, 'layout'), policy.layout);
  checkEnum(add, join(path, 'wipePolicy'), policy.wipePolicy, WipePolicy, wipePolicyToJSON);
}

const FILESYSTEMS = new Set(['vfat', 'ext4', 'xfs', 'btrfs', 'swap']);
// mkfs refuses longer labels; catching it here beats a failed install.
const LABEL_LIMITS: Readonly<Record<string, number>> = { vfat: 11, ext4: 16, xfs: 12, btrfs: 255, swap: 15 };

function checkDiskLayout(add: Add, path: string, layout: DiskLayout): void {
  checkEnum(add, join(path, 'partitionTable'), layout.partitionTable, PartitionTableType, partitionTableTypeToJSON);
  const partitionsPath = join(path, 'partitions');
  const msdos = layout.partitionTable === PartitionTableType.PARTITION_TABLE_TYPE_MSDOS;
  const names = new Map<string, number>();
  const mountpoints = new Map<string, number>();
  const last = layout.partitions.length - 1;
  layout.partitions.forEach((part, i) => {
    const at = (field: string): string => `${partitionsPath}[${i}]${field === '' ? '' : `.${field}`}`;
    if (part.name === '') add(at('name'), 'required');
    else if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,35}$/.test(part.name)) add(at('name'), `"${part.name}" must be 1-36 characters of [A-Za-z0-9_-] starting with a letter or digit`);
    else if (names.has(part.name)) add(at('name'), `"${part.name}" is also the name of ${partitionsPath}[${names.get(part.name)}]`);
    else names.set(part.name, i);

    checkUint64(add, at('sizeBytes'), part.sizeBytes);
    if (part.sizeBytes === 0n && i !== last) add(at('sizeBytes'), '0 ("rest of the disk") is allowed only on the last partition');
    checkEnum(add, at('type'), part.type, PartitionType, partitionTypeToJSON);

    const fs = part.filesystem;
    if (fs !== '' && !FILESYSTEMS.has(fs)) add(at('filesystem'), `unknown filesystem "${fs}" (use vfat, ext4, xfs, btrfs or swap)`);
    if (part.type === PartitionType.PARTITION_TYPE_ESP && fs !== 'vfat') add(at('filesystem'), 'an ESP must be "vfat"');
    if (part.type === PartitionType.PARTITION_TYPE_SWAP && fs !== 'swap') add(at('filesystem'), 'a SWAP partition must be "swap"');
    if (part.type === PartitionType.PARTITION_TYPE_BIOS_BOOT) {
      if (fs !== '') add(at('filesystem'), 'a BIOS_BOOT partition has no filesystem');
      if (msdos) add(at('type'), 'PARTITION_TYPE_BIOS_BOOT needs a GPT partition table');
    }
    if (part.type === PartitionType.PARTITION_TYPE_ESP && msdos) add(at('type'), 'PARTITION_TYPE_ESP needs a GPT partition table (MSDOS is BIOS only)');

    const mp = part.mountpoint;
    if (mp !== '') {
      if (mp !== '/' && !/^(\/[^/\s]+)+$/.test(mp)) add(at('mountpoint'), `"${mp}" is not an absolute path without a trailing "/"`);
      else if (mp.split('/').some((s) => s === '.' || s === '..')) add(at('mountpoint'), `"${mp}" contains "." or ".."`);
      else if (mountpoints.has(mp)) add(at('mountpoint'), `"${mp}" is also the mountpoint of ${partitionsPath}[${mountpoints.get(mp)}]`);
      else mountpoints.set(mp, i);
      if (fs === '' || fs === 'swap') add(at('mountpoint'), fs === '' ? 'a mounted partition needs a filesystem' : 'swap is not mounted');
    }
    if (part.type === PartitionType.PARTITION_TYPE_ROOT && mp !== '/') add(at('mountpoint'), 'a ROOT partition is mounted at "/"');

    const limit = Object.hasOwn(LABEL_LIMITS, fs) ? LABEL_LIMITS[fs] : undefined;
    if (limit !== undefined && part.label.length > limit) add(at('label'), `"${part.label}" is longer than ${limit} characters, the ${fs} limit`);
    part.mountOptions.forEach((o, j) => {
      if (o === '' || /[\s,]/.test(o)) add(`${at('mountOptions')}[${j}]`, `"${o}" must be one non-empty option (list options separately)`);
    });
    part.formatOptions.forEach((o, j) => {
      if (o === '') add(`${at('formatOptions')}[${j}]`, 'empty argument');
    });
  });

  const types = layout.partitions.map((p) => p.type);
  const espCount = types.filter((t) => t === PartitionType.PARTITION_TYPE_ESP).length;
  if (!mountpoints.has('/')) add(partitionsPath, 'no partition is mounted at "/"');
  if (espCount > 1) add(partitionsPath, `${espCount} ESPs; a layout has at most one`);
  if (!msdos && espCount === 0 && !types.includes(PartitionType.PARTITION_TYPE_BIOS_BOOT)) {
    add(partitionsPath, 'a GPT layout needs a PARTITION_TYPE_ESP partition (UEFI) or a PARTITION_TYPE_BIOS_BOOT partition (BIOS) to boot');
  }
  if (msdos && layout.partitions.length > 4) add(partitionsPath, 'an MSDOS table holds at most 4 primary partitions');
}

function checkNodeClass(add: Add, path: string, nodeClass: NodeClass, state: ClusterState): void {
  checkReference(add, join(path, 'installProfile'), nodeClass.installProfile, 'install profile', state.installProfiles, true);
  checkLabels(add, join(path, 'defaultLabels'), nodeClass.defaultLabels);
  const seen = new Set<string>();
  nodeClass.runtimeCapabilities.forEach((capability, i) => {
    const at = `${join(path, 'runtimeCapabilities')}[${i}]`;
    if (!isObjectName(capability)) add(at, `"${capability}" must be ${OBJECT_NAME_RULE}`);
    else if (seen.has(capability)) add(at, `"${capability}" is listed twice`);
    seen.add(capability);
  });
  const hw = nodeClass.minimumHardware;
  if (hw) {
    const hwPath = join(path, 'minimumHardware');
    checkUint32(add, join(hwPath, 'cpuCores'), hw.cpuCores);
    checkUint64(add, join(hwPath, 'memoryBytes'), hw.memoryBytes);
    checkUint32(add, join(hwPath, 'diskCount'), hw.diskCount);
    checkUint64(add, join(hwPath, 'diskSizeBytes'), hw.diskSizeBytes);
    checkUint32(add, join(hwPath, 'nicCount'), hw.nicCount);
    checkUint32(add, join(hwPath, 'nicSpeedMbps'), hw.nicSpeedMbps);
  }
}

function checkPool(add: Add, path: string, pool: Pool): void {
  checkLabels(add, join(path, 'labels'), pool.labels);
}

function checkEnrollmentRule(add: Add, path: string, rule: EnrollmentRule, state: ClusterState): void {
  if (!Number.isInteger(rule.priority) || rule.priority < -0x80000000 || rule.priority > 0x7fffffff) {
    add(join(path, 'priority'), `must be a 32-bit integer, got ${rule.priority}`);
  }
  if (rule.selector) checkSelector(add, join(path, 'selector'), rule.selector);
  checkReference(add, join(path, 'nodeClass'), rule.nodeClass, 'node class', state.nodeClasses, true);
  checkReference(add, join(path, 'pool'), rule.pool, 'pool', state.pools, true);
  checkReference(add, join(path, 'installProfile'), rule.installProfile, 'install profile', state.installProfiles, false);
  checkLabels(add, join(path, 'labels'), rule.labels);

  const sample: Record<string, string> = {
    index: '1',
    pool: rule.pool || 'pool',
    class: rule.nodeClass || 'class',
    serial: 'abc123',
    mac: '525400123456',
    machine_id: 'm1',
  };
  for (const field of ['nodeIdTemplate', 'hostnameTemplate'] as const) {
    const template = rule[field];
    if (template === '') continue;
    const parsed = parseTemplate(template, NAME_TEMPLATE_PLACEHOLDERS);
    const rendered = renderTemplate(template, sample);
    if (parsed.problem) add(join(path, field), parsed.problem);
    else if (!parsed.placeholders.some((p) => PER_MACHINE_PLACEHOLDERS.has(p))) {
      add(join(path, field), `"${template}" yields the same name for every machine; use {index}, {serial}, {mac} or {machine_id}`);
    } else if (!isObjectName(rendered)) {
      add(join(path, field), `"${template}" yields names like "${rendered}", which must be ${OBJECT_NAME_RULE}`);
    }
  }
  if (rule.failureDomainLabel !== '') {
    const problem = labelKeyProblem(rule.failureDomainLabel);
    if (problem) add(join(path, 'failureDomainLabel'), problem);
  }
  if (rule.autoInstall && !rule.autoCommission) add(join(path, 'autoInstall'), 'requires autoCommission');
}

function checkSelector(add: Add, path: string, selector: MachineSelector): void {
  selector.machineIds.forEach((id, i) => {
    if (id.trim() === '') add(`${join(path, 'machineIds')}[${i}]`, 'empty machine_id');
  });
  selector.macAddresses.forEach((mac, i) => {
    const problem = macAddressProblem(mac);
    if (problem) add(`${join(path, 'macAddresses')}[${i}]`, problem);
  });
  selector.macPatterns.forEach((pattern, i) => {
    const problem = macPatternProblem(pattern);
    if (problem) add(`${join(path, 'macPatterns')}[${i}]`, problem);
  });
  for (const field of ['vendors', 'products', 'serialNumbers'] as const) {
    selector[field].forEach((pattern, i) => {
      if (pattern.trim() === '') add(`${join(path, field)}[${i}]`, 'empty pattern');
    });
  }
  if (selector.disks) {
    checkUint32(add, join(path, 'disks', 'minCount'), selector.disks.minCount);
    checkUint64(add, join(path, 'disks', 'minSizeBytes'), selector.disks.minSizeBytes);
  }
  if (selector.nics) {
    checkUint32(add, join(path, 'nics', 'minCount'), selector.nics.minCount);
    checkUint32(add, join(path, 'nics', 'minSpeedMbps'), selector.nics.minSpeedMbps);
  }
  checkUint32(add, join(path, 'minCpuCores'), selector.minCpuCores);
  checkUint64(add, join(path, 'minMemoryBytes'), selector.minMemoryBytes);
}

function isCatchAll(selector: MachineSelector | undefined): boolean {
  if (!selector) return true;
  const lists = [selector.machineIds, selector.macAddresses, selector.macPatterns, selector.vendors, selector.products, selector.serialNumbers];
  // A present (even empty) disks/nics message still demands at least one disk/NIC.
  return lists.every((l) => l.length === 0) && !selector.disks && !selector.nics && selector.minCpuCores === 0 && selector.minMemoryBytes === 0n;
}

/** Rules ordered after a catch-all (by priority, then name) can never match. */
function checkRuleReachability(add: Add, state: ClusterState): void {
  const ordered = sortedEntries(state.enrollmentRules).sort(([, a], [, b]) => a.priority - b.priority);
  const catchAll = ordered.findIndex(([, rule]) => isCatchAll(rule.selector));
  if (catchAll < 0) return;
  const [catchAllName, catchAllRule] = ordered[catchAll] ?? ['', undefined];
  for (const [name] of ordered.slice(catchAll + 1)) {
    add(
      join('enrollmentRules', name, 'priority'),
      `never matches: catch-all rule enrollmentRules.${catchAllName} (empty selector, priority ${catchAllRule?.priority ?? 0}) is tried first`,
    );
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// Values cheap firmware ships on every board; matching on them would grab the wrong machine.
const PLACEHOLDER_UUIDS = new Set([
  '00000000-0000-0000-0000-000000000000',
  'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '03000200-0400-0500-0006-000700080009',
]);
const PLACEHOLDER_SERIALS = new Set(['to be filled by o.e.m.', 'default string', 'system serial number', 'not specified', 'n/a', 'none', '0', '0123456789']);

function checkFixedNode(add: Add, path: string, node: FixedNode, state: ClusterState, prefixes: ReadonlyMap<string, IpPrefix>): void {
  if (node.hostname !== '' && !isObjectName(node.hostname)) add(join(path, 'hostname'), `"${node.hostname}" must be ${OBJECT_NAME_RULE}`);
  checkReference(add, join(path, 'nodeClass'), node.nodeClass, 'node class', state.nodeClasses, true);
  checkReference(add, join(path, 'pool'), node.pool, 'pool', state.pools, true);
  checkReference(add, join(path, 'installProfile'), node.installProfile, 'install profile', state.installProfiles, false);
  checkLabels(add, join(path, 'labels'), node.labels);
  const fdProblem = labelValueProblem(node.failureDomain);
  if (fdProblem) add(join(path, 'failureDomain'), fdProblem);

  const match = node.match;
  const matchPath = join(path, 'match');
  if (!match || (match.macAddresses.length === 0 && match.systemUuid === '' && match.serialNumber === '')) {
    add(matchPath, 'required: at least one of macAddresses, systemUuid or serialNumber');
  } else {
    match.macAddresses.forEach((mac, i) => {
      const problem = macAddressProblem(mac);
      if (problem) add(`${join(matchPath, 'macAddresses')}[${i}]`, problem);
    });
    if (match.systemUuid !== '') {
      if (!UUID.test(match.systemUuid)) add(join(matchPath, 'systemUuid'), `"${match.systemUuid}" is not a UUID in lowercase canonical form`);
      else if (PLACEHOLDER_UUIDS.has(match.systemUuid)) add(join(matchPath, 'systemUuid'), `"${match.systemUuid}" is a firmware placeholder shared by many machines; match by MAC instead`);
    }
    if (match.serialNumber !== '' && PLACEHOLDER_SERIALS.has(match.serialNumber.trim().toLowerCase())) {
      add(join(matchPath, 'serialNumber'), `"${match.serialNumber}" is a firmware placeholder shared by many machines; match by MAC instead`);
    }
  }

  node.staticAddresses.forEach((sa, i) => {
    const at = `${join(path, 'staticAddresses')}[${i}]`;
    const macProblem = macAddressProblem(sa.macAddress);
    if (macProblem) add(join(at, 'macAddress'), macProblem);
    checkReference(add, join(at, 'network'), sa.network, 'network', state.networks, true);
    const ip = sa.address === '' ? undefined : parseIp(sa.address);
    const network = state.networks[sa.network];
    const prefix = prefixes.get(sa.network);
    let problem = sa.address === '' ? 'required' : !ip ? `"${sa.address}" is not an IP address` : undefined;
    if (!problem && ip && network && prefix) {
      problem = hostAddressProblem(prefix, ip, sa.address);
      const gateway = network.gateway === '' ? undefined : parseIp(network.gateway);
      if (!problem && gateway && gateway.family === ip.family && gateway.value === ip.value) problem = `${sa.address} is the gateway of networks.${sa.network}`;
      const pool = network.addressPool;
      const start = pool ? parseIp(pool.start) : undefined;
      const end = pool ? parseIp(pool.end) : undefined;
      if (!problem && pool && start && end && start.family === ip.family && ip.value >= start.value && ip.value <= end.value) {
        problem = `${sa.address} lies inside networks.${sa.network}.addressPool (${pool.start}-${pool.end}), which the deployer allocates from`;
      }
    }
    if (problem) add(join(at, 'address'), problem);
  });
  if (node.autoInstall && !node.autoCommission) add(join(path, 'autoInstall'), 'requires autoCommission');
}

/** Reports, on every claimant, a value that more than one fixed node claims. */
function reportShared(add: Add, claims: Map<string, { path: string; nodeId: string }[]>, describe: (value: string, other: string) => string): void {
  for (const [value, claimants] of claims) {
    const nodes = new Set(claimants.map((c) => c.nodeId));
    if (nodes.size < 2) continue;
    for (const claimant of claimants) {
      const others = claimants.filter((c) => c.nodeId !== claimant.nodeId).map((c) => `nodes.${c.nodeId}`);
      add(claimant.path, describe(value, [...new Set(others)].join(', ')));
    }
  }
}

function checkFixedNodeUniqueness(add: Add, state: ClusterState, prefixes: ReadonlyMap<string, IpPrefix>): void {
  const hostnames = new Map<string, { path: string; nodeId: string }[]>();
  const macs = new Map<string, { path: string; nodeId: string }[]>();
  const uuids = new Map<string, { path: string; nodeId: string }[]>();
  const serials = new Map<string, { path: string; nodeId: string }[]>();
  const addresses = new Map<string, { path: string; nodeId: string; text: string }[]>();
  const claim = <T extends { path: string; nodeId: string }>(map: Map<string, T[]>, key: string, entry: T): void => {
    map.set(key, [...(map.get(key) ?? []), entry]);
  };

  for (const [nodeId, node] of sortedEntries(state.nodes)) {
    const path = join('nodes', nodeId);
    claim(hostnames, node.hostname || nodeId, { path: join(path, 'hostname'), nodeId });
    const match = node.match;
    // Each MAC is one NIC, so it may appear in one node only (its match and static addresses).
    new Set(match?.macAddresses ?? []).forEach((mac) => {
      const i = match?.macAddresses.indexOf(mac) ?? 0;
      if (MAC_ADDRESS.test(mac)) claim(macs, mac, { path: `${join(path, 'match', 'macAddresses')}[${i}]`, nodeId });
    });
    if (match && match.systemUuid !== '') claim(uuids, match.systemUuid, { path: join(path, 'match', 'systemUuid'), nodeId });
    if (match && match.serialNumber !== '') claim(serials, match.serialNumber, { path: join(path, 'match', 'serialNumber'), nodeId });
    node.staticAddresses.forEach((sa, i) => {
      const at = `${join(path, 'staticAddresses')}[${i}]`;
      if (MAC_ADDRESS.test(sa.macAddress) && !(match?.macAddresses ?? []).includes(sa.macAddress)) {
        claim(macs, sa.macAddress, { path: join(at, 'macAddress'), nodeId });
      }
      const ip = parseIp(sa.address);
      if (ip && prefixes.has(sa.network)) claim(addresses, `${ip.family}/${ip.value}`, { path: join(at, 'address'), nodeId: `${nodeId}#${i}`, text: sa.address });
    });
  }

  for (const [hostname, claimants] of hostnames) {
    if (claimants.length < 2) continue;
    for (const c of claimants) {
      const others = claimants.filter((o) => o !== c).map((o) => `nodes.${o.nodeId}`).join(', ');
      add(c.path, `"${hostname}" is also the hostname of ${others}`);
    }
  }
  reportShared(add, macs, (mac, others) => `"${mac}" is also claimed by ${others}`);
  reportShared(add, uuids, (uuid, others) => `"${uuid}" is also claimed by ${others}`);
  reportShared(add, serials, (serial, others) => `"${serial}" is also claimed by ${others}`);
  // Static addresses are claimed per list entry, so the same IP twice on one node is caught too.
  for (const claimants of addresses.values()) {
    if (claimants.length < 2) continue;
    for (const c of claimants) {
      const others = claimants.filter((o) => o !== c).map((o) => o.path.replace(/\.address$/, '')).join(', ');
      add(c.path, `${c.text} is also assigned to ${others}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Canonical form, hash, diff

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function isJsonObject(value: Json | undefined): value is { [key: string]: Json } {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function sortKeys(value: Json): Json {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (!isJsonObject(value)) return value;
  const out: { [key: string]: Json } = {};
  for (const key of Object.keys(value).sort()) out[key] = sortKeys(value[key] ?? null);
  return out;
}

function stableStringify(value: Json | undefined): string {
  return value === undefined ? 'undefined' : JSON.stringify(sortKeys(value));
}

function toJson(state: ClusterState): { [key: string]: Json } {
  // The generated toJSON yields plain proto3 JSON with default values omitted, so documents that
  // differ only in defaults, map key order or 64-bit number spelling compare equal.
  return ClusterState.toJSON(state) as { [key: string]: Json };
}

/** Stable proto3 JSON text of the document: default values omitted, object keys sorted. */
export function canonicalClusterState(state: ClusterState): string {
  return stableStringify(toJson(state));
}

/** Lowercase hex SHA-256 of canonicalClusterState: equal hashes mean applying is a no-op. */
export function clusterStateHash(state: ClusterState): string {
  return createHash('sha256').update(canonicalClusterState(state)).digest('hex');
}

const MAP_KINDS: readonly { kind: ClusterObjectKind; field: Exclude<keyof ClusterState, 'cluster'> }[] = [
  { kind: ClusterObjectKind.CLUSTER_OBJECT_KIND_NETWORK, field: 'networks' },
  { kind: ClusterObjectKind.CLUSTER_OBJECT_KIND_INSTALL_PROFILE, field: 'installProfiles' },
  { kind: ClusterObjectKind.CLUSTER_OBJECT_KIND_DISK_POLICY, field: 'diskPolicies' },
  { kind: ClusterObjectKind.CLUSTER_OBJECT_KIND_NODE_CLASS, field: 'nodeClasses' },
  { kind: ClusterObjectKind.CLUSTER_OBJECT_KIND_POOL, field: 'pools' },
  { kind: ClusterObjectKind.CLUSTER_OBJECT_KIND_ENROLLMENT_RULE, field: 'enrollmentRules' },
  { kind: ClusterObjectKind.CLUSTER_OBJECT_KIND_NODE, field: 'nodes' },
];

/**
 * Paths of the fields that differ, descending through messages and maps; lists are compared
 * whole (their order matters). A sub-message present on one side only but empty on both is
 * reported at its own path, since presence itself has meaning (e.g. selector.disks).
 */
function changedPaths(a: Json | undefined, b: Json | undefined, path: string, out: string[]): void {
  if (stableStringify(a) === stableStringify(b)) return;
  const aObj = a === undefined || isJsonObject(a);
  const bObj = b === undefined || isJsonObject(b);
  if (aObj && bObj) {
    const before = out.length;
    const left = isJsonObject(a) ? a : {};
    const right = isJsonObject(b) ? b : {};
    for (const key of new Set([...Object.keys(left), ...Object.keys(right)])) changedPaths(left[key], right[key], join(path, key), out);
    if (out.length === before && path !== '') out.push(path);
    return;
  }
  out.push(path);
}

function objectChange(kind: ClusterObjectKind, name: string, before: Json | undefined, after: Json | undefined): ClusterObjectChange | undefined {
  if (before === undefined && after === undefined) return undefined;
  if (before === undefined) return { kind, name, change: ChangeType.CHANGE_TYPE_ADDED, changedFields: [] };
  if (after === undefined) return { kind, name, change: ChangeType.CHANGE_TYPE_REMOVED, changedFields: [] };
  const fields: string[] = [];
  changedPaths(before, after, '', fields);
  if (fields.length === 0) return undefined;
  return { kind, name, change: ChangeType.CHANGE_TYPE_CHANGED, changedFields: [...new Set(fields)].sort() };
}

/**
 * Object-level differences from current (undefined before the first apply) to next, sorted by
 * kind then name. The cluster settings are one object named by the next (or, when removed, the
 * current) cluster name; a rename shows as CHANGED with "name" among its fields.
 */
export function diffClusterState(current: ClusterState | undefined, next: ClusterState): ClusterObjectChange[] {
  const before = current ? toJson(current) : {};
  const after = toJson(next);
  const changes: ClusterObjectChange[] = [];

  const clusterBefore = current?.cluster ? (before['cluster'] ?? {}) : undefined;
  const clusterAfter = next.cluster ? (after['cluster'] ?? {}) : undefined;
  const clusterName = next.cluster?.name ?? current?.cluster?.name ?? '';
  const clusterChange = objectChange(ClusterObjectKind.CLUSTER_OBJECT_KIND_CLUSTER, clusterName, clusterBefore, clusterAfter);
  if (clusterChange) changes.push(clusterChange);

  for (const { kind, field } of MAP_KINDS) {
    const left = isJsonObject(before[field]) ? before[field] : {};
    const right = isJsonObject(after[field]) ? after[field] : {};
    const names = [...new Set([...Object.keys(left), ...Object.keys(right)])].sort();
    for (const name of names) {
      const change = objectChange(kind, name, left[name], right[name]);
      if (change) changes.push(change);
    }
  }
  return changes;
}

// ---------------------------------------------------------------------------------------------
// Removals blocked by assignments

/** Names that current machine assignments use; the store collects them. */
export interface ClusterObjectsInUse {
  readonly nodeClasses: ReadonlySet<string>;
  readonly pools: ReadonlySet<string>;
  readonly installProfiles: ReadonlySet<string>;
  readonly nodeIds: ReadonlySet<string>;
}

const REMOVAL_GUARDS: readonly {
  kind: ClusterObjectKind;
  path: string;
  noun: string;
  inUse: (u: ClusterObjectsInUse) => ReadonlySet<string>;
}[] = [
  { kind: ClusterObjectKind.CLUSTER_OBJECT_KIND_INSTALL_PROFILE, path: 'installProfiles', noun: 'install profile', inUse: (u) => u.installProfiles },
  { kind: ClusterObjectKind.CLUSTER_OBJECT_KIND_NODE_CLASS, path: 'nodeClasses', noun: 'node class', inUse: (u) => u.nodeClasses },
  { kind: ClusterObjectKind.CLUSTER_OBJECT_KIND_POOL, path: 'pools', noun: 'pool', inUse: (u) => u.pools },
  { kind: ClusterObjectKind.CLUSTER_OBJECT_KIND_NODE, path: 'nodes', noun: 'fixed node', inUse: (u) => u.nodeIds },
];

/**
 * One `<path>: <problem>` line per removal that an existing assignment still depends on, in
 * diff order; ApplyClusterState refuses the apply with FAILED_PRECONDITION when any remain.
 */
export function blockedRemovals(diff: readonly ClusterObjectChange[], inUse: ClusterObjectsInUse): string[] {
  const blocked: string[] = [];
  for (const change of diff) {
    if (change.change !== ChangeType.CHANGE_TYPE_REMOVED) continue;
    const guard = REMOVAL_GUARDS.find((g) => g.kind === change.kind);
    if (!guard || !guard.inUse(inUse).has(change.name)) continue;
    const remedy =
      guard.kind === ClusterObjectKind.CLUSTER_OBJECT_KIND_NODE
        ? 'a machine is assigned to this node; release the machine first'
        : `a machine's assignment still uses ${guard.noun} "${change.name}"; release or reassign those machines first`;
    blocked.push(`${guard.path}.${change.name}: cannot be removed: ${remedy}`);
  }
  return blocked;
}
