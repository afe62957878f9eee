import test from 'ava';
import { readFileSync } from 'node:fs';
import { ChangeType, ClusterObjectKind, type ClusterObjectChange } from '../../gen/ts/ultracloud/deployer/v1/cluster_service.js';
import { ClusterState, EnrollmentRule, NodeClass } from '../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import { PartitionType, WipePolicy } from '../../gen/ts/ultracloud/installplan/v1/installplan.js';
import { InvalidArgumentError } from '../../lib/errors.js';
import {
  assertValidClusterState,
  blockedRemovals,
  canonicalClusterState,
  clusterStateHash,
  diffClusterState,
  validateClusterState,
} from '../../services/deployer/domain/cluster-state.js';

const labJson: unknown = JSON.parse(readFileSync(new URL('../fixtures/cluster-state/lab6.json', import.meta.url), 'utf8'));

/** A fresh, independently mutable copy of the lab document. */
function lab(): ClusterState {
  return ClusterState.fromJSON(labJson);
}

function must<T>(value: T | undefined): T {
  if (value === undefined) throw new Error('fixture lacks an expected object');
  return value;
}

const rule = (s: ClusterState): EnrollmentRule => must(s.enrollmentRules['optiplex-workers']);
const node = (s: ClusterState, id: string) => must(s.nodes[id]);
const policy = (s: ClusterState) => must(s.diskPolicies['system-ssd']);
const partitions = (s: ClusterState) => must(policy(s).layout).partitions;
const network = (s: ClusterState) => must(s.networks['lab']);

function problems(state: ClusterState): string[] {
  return validateClusterState(state).map((v) => `${v.field}: ${v.description}`);
}

function mutated(mutate: (s: ClusterState) => void): ClusterState {
  const s = lab();
  mutate(s);
  return s;
}

test('the lab6 fixture is a valid cluster state', (t) => {
  t.deepEqual(problems(lab()), []);
  t.notThrows(() => assertValidClusterState(lab()));
});

test('the lab6 fixture uses only contract fields and no explicit defaults', (t) => {
  // fromJSON drops unknown keys, so a misspelt field would vanish in this round trip.
  t.is(canonicalClusterState(lab()), JSON.stringify(sortKeys(labJson)));
});

const NAME_RULE = 'a lowercase RFC 1123 label ([a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters)';
const RULE = 'enrollmentRules.optiplex-workers';
const PARTS = 'diskPolicies.system-ssd.layout.partitions';

const brokenDocuments: { title: string; mutate: (s: ClusterState) => void; expected: string[] }[] = [
  {
    title: 'cluster name missing',
    mutate: (s) => (must(s.cluster).name = ''),
    expected: ['cluster.name: required'],
  },
  {
    title: 'no cluster settings at all',
    mutate: (s) => (s.cluster = undefined),
    expected: [
      'cluster.name: required',
      'cluster.domain: required',
      'cluster.fleetSchedulerAddress: required because node class "worker" runs the node-agent',
    ],
  },
  {
    title: 'deployer address without a port',
    mutate: (s) => (must(s.cluster).deployerAddress = '10.44.0.2'),
    expected: ['cluster.deployerAddress: "10.44.0.2" is not "host:port" (e.g. "deployer.lab.example.org:7001" or "10.0.0.2:7001")'],
  },
  {
    title: 'object name that is not an RFC 1123 label',
    mutate: (s) => (s.pools['Rack_A'] = { labels: {}, description: '' }),
    expected: [`pools.Rack_A: name "Rack_A" must be ${NAME_RULE}`],
  },
  {
    title: 'rule names an unknown node class',
    mutate: (s) => (rule(s).nodeClass = 'wrker'),
    expected: [`${RULE}.nodeClass: unknown node class "wrker"`],
  },
  {
    title: 'rule without a pool and with an unknown install profile',
    mutate: (s) => {
      rule(s).pool = '';
      rule(s).installProfile = 'gpu';
    },
    expected: [`${RULE}.pool: required: name of a pool`, `${RULE}.installProfile: unknown install profile "gpu"`],
  },
  {
    title: 'class names an unknown install profile',
    mutate: (s) => (must(s.nodeClasses['worker']).installProfile = 'wrker'),
    expected: ['nodeClasses.worker.installProfile: unknown install profile "wrker"'],
  },
  {
    title: 'profile names an unknown disk policy and network',
    mutate: (s) => {
      const profile = must(s.installProfiles['worker']);
      profile.diskPolicy = 'nvme';
      profile.network = 'storage';
    },
    expected: [
      'installProfiles.worker.diskPolicy: unknown disk policy "nvme"',
      'installProfiles.worker.network: unknown network "storage"',
    ],
  },
  {
    title: 'fixed node names an unknown class, pool and profile',
    mutate: (s) => Object.assign(node(s, 'cp-3'), { nodeClass: 'cp', pool: 'ctrl', installProfile: 'cp' }),
    expected: [
      'nodes.cp-3.nodeClass: unknown node class "cp"',
      'nodes.cp-3.pool: unknown pool "ctrl"',
      'nodes.cp-3.installProfile: unknown install profile "cp"',
    ],
  },
  {
    title: 'two fixed nodes with the same hostname',
    mutate: (s) => (node(s, 'cp-2').hostname = 'cp-1'),
    expected: ['nodes.cp-1.hostname: "cp-1" is also the hostname of nodes.cp-2', 'nodes.cp-2.hostname: "cp-1" is also the hostname of nodes.cp-1'],
  },
  {
    title: 'hostname that is not a label',
    mutate: (s) => (node(s, 'cp-1').hostname = 'cp-1.lab6.internal'),
    expected: [`nodes.cp-1.hostname: "cp-1.lab6.internal" must be ${NAME_RULE}`],
  },
  {
    title: 'fixed node without identity',
    mutate: (s) => (node(s, 'cp-1').match = undefined),
    expected: ['nodes.cp-1.match: required: at least one of macAddresses, systemUuid or serialNumber'],
  },
  {
    title: 'two fixed nodes claiming the same MAC',
    mutate: (s) => (must(node(s, 'cp-2').match).macAddresses = ['d8:9e:f3:3a:61:0b']),
    expected: [
      'nodes.cp-1.match.macAddresses[0]: "d8:9e:f3:3a:61:0b" is also claimed by nodes.cp-2',
      'nodes.cp-2.match.macAddresses[0]: "d8:9e:f3:3a:61:0b" is also claimed by nodes.cp-1',
    ],
  },
  {
    title: 'MAC in the wrong syntax and a multicast MAC',
    mutate: (s) => {
      must(node(s, 'cp-1').match).macAddresses = ['D8-9E-F3-3A-61-0B'];
      must(node(s, 'cp-2').staticAddresses[0]).macAddress = '01:00:5e:00:00:01';
    },
    expected: [
      'nodes.cp-1.match.macAddresses[0]: "D8-9E-F3-3A-61-0B" is not a MAC address in lowercase colon-separated form (e.g. "52:54:00:12:34:56")',
      'nodes.cp-2.staticAddresses[0].macAddress: "01:00:5e:00:00:01" is a multicast address, not a NIC\'s address',
    ],
  },
  {
    title: 'two fixed nodes claiming the same DMI UUID, one of them a firmware placeholder',
    mutate: (s) => {
      must(node(s, 'cp-1').match).systemUuid = '4c4c4544-0042-3510-8051-b4c04f4e3732';
      must(node(s, 'cp-2').match).systemUuid = '4c4c4544-0042-3510-8051-b4c04f4e3732';
      must(node(s, 'cp-3').match).systemUuid = '03000200-0400-0500-0006-000700080009';
    },
    expected: [
      'nodes.cp-3.match.systemUuid: "03000200-0400-0500-0006-000700080009" is a firmware placeholder shared by many machines; match by MAC instead',
      'nodes.cp-1.match.systemUuid: "4c4c4544-0042-3510-8051-b4c04f4e3732" is also claimed by nodes.cp-2',
      'nodes.cp-2.match.systemUuid: "4c4c4544-0042-3510-8051-b4c04f4e3732" is also claimed by nodes.cp-1',
    ],
  },
  {
    title: 'MAC patterns that can never match',
    mutate: (s) => (must(rule(s).selector).macPatterns = ['52-54-00-*', '52:54:0:*', 'd8:9e:f3:*']),
    expected: [
      `${RULE}.selector.macPatterns[0]: "52-54-00-*" may only contain hex digits, ":", "*" and "?" (e.g. "52:54:00:*")`,
      `${RULE}.selector.macPatterns[1]: "52:54:0:*" can never match a MAC address (xx:xx:xx:xx:xx:xx)`,
    ],
  },
  {
    title: 'negative selector numbers',
    mutate: (s) => {
      const selector = must(rule(s).selector);
      selector.minCpuCores = -1;
      must(selector.disks).minSizeBytes = -5n;
    },
    expected: [
      `${RULE}.selector.disks.minSizeBytes: must be a non-negative integer, got -5`,
      `${RULE}.selector.minCpuCores: must be a non-negative integer, got -1`,
    ],
  },
  {
    title: 'name templates: constant, unknown placeholder, invalid result',
    mutate: (s) => {
      rule(s).nodeIdTemplate = 'worker';
      rule(s).hostnameTemplate = 'w-{idx}';
      const second = EnrollmentRule.fromPartial({ ...rule(s), priority: 50, nodeIdTemplate: 'Worker_{index}', hostnameTemplate: '{pool}-{serial' });
      s.enrollmentRules['fast-workers'] = second;
    },
    expected: [
      'enrollmentRules.fast-workers.nodeIdTemplate: "Worker_{index}" yields names like "Worker_1", which must be ' + NAME_RULE,
      'enrollmentRules.fast-workers.hostnameTemplate: "{pool}-{serial" has an unbalanced "{" or "}"',
      `${RULE}.nodeIdTemplate: "worker" yields the same name for every machine; use {index}, {serial}, {mac} or {machine_id}`,
      `${RULE}.hostnameTemplate: unknown placeholder "{idx}" (known: {index}, {pool}, {class}, {serial}, {mac}, {machine_id})`,
    ],
  },
  {
    title: 'rules behind a catch-all never match',
    mutate: (s) => (s.enrollmentRules['anything'] = EnrollmentRule.fromPartial({ priority: 10, nodeClass: 'worker', pool: 'workers', nodeIdTemplate: 'node-{index}' })),
    expected: [`${RULE}.priority: never matches: catch-all rule enrollmentRules.anything (empty selector, priority 10) is tried first`],
  },
  {
    title: 'auto-install without auto-commission',
    mutate: (s) => {
      rule(s).autoCommission = false;
      node(s, 'cp-1').autoCommission = false;
    },
    expected: [`${RULE}.autoInstall: requires autoCommission`, 'nodes.cp-1.autoInstall: requires autoCommission'],
  },
  {
    title: 'bad label keys and values',
    mutate: (s) => {
      must(s.pools['control']).labels['ultracloud.io/'] = 'x';
      must(s.nodeClasses['worker']).defaultLabels['tier'] = 'not ok';
    },
    expected: [
      'nodeClasses.worker.defaultLabels.tier: label value "not ok" must be empty or at most 63 characters of [A-Za-z0-9-_.] starting and ending with a letter or digit',
      'pools.control.labels.ultracloud.io/: label key "ultracloud.io/" must be [prefix/]name: prefix a lowercase DNS name, name at most 63 characters of [A-Za-z0-9-_.] starting and ending with a letter or digit',
    ],
  },
  {
    title: 'disk policy without root device hints',
    mutate: (s) => (policy(s).rootDeviceHints = undefined),
    expected: ['diskPolicies.system-ssd.rootDeviceHints: at least one root device hint is required (e.g. wwn, serial, model or size)'],
  },
  {
    title: 'hint operators that do not parse',
    mutate: (s) => Object.assign(must(policy(s).rootDeviceHints), { size: '=> 100', wwn: '== 0x5002538', wwnWithExtension: 's==', model: '<range-in> (1 2)' }),
    expected: [
      'diskPolicies.system-ssd.rootDeviceHints.wwn: operator "==" is not valid for a string hint; use one of s==, s!=, s<, s<=, s>, s>=, <in>, <or>',
      'diskPolicies.system-ssd.rootDeviceHints.wwnWithExtension: operator "s==" needs a value',
      'diskPolicies.system-ssd.rootDeviceHints.model: operator "<range-in>" is not valid for a string hint; use one of s==, s!=, s<, s<=, s>, s>=, <in>, <or>',
      'diskPolicies.system-ssd.rootDeviceHints.size: operator "=" is ambiguous (oslo specs_matcher reads it as ">="); use == or >=',
    ],
  },
  {
    title: 'a size range upside down',
    mutate: (s) => (must(policy(s).rootDeviceHints).size = '<range-in> (600 200)'),
    expected: ['diskPolicies.system-ssd.rootDeviceHints.size: "<range-in>" lower bound 600 is above upper bound 200'],
  },
  {
    title: 'rest-of-disk partition that is not the last',
    mutate: (s) => partitions(s).push({ name: 'data', sizeBytes: 0n, type: PartitionType.PARTITION_TYPE_LINUX, filesystem: 'xfs', mountpoint: '/var/lib', mountOptions: [], formatOptions: [], label: 'data' }),
    expected: [`${PARTS}[1].sizeBytes: 0 ("rest of the disk") is allowed only on the last partition`],
  },
  {
    title: 'no root filesystem',
    mutate: (s) => Object.assign(must(partitions(s)[1]), { type: PartitionType.PARTITION_TYPE_LINUX, mountpoint: '/nix' }),
    expected: [`${PARTS}: no partition is mounted at "/"`],
  },
  {
    title: 'duplicate mountpoints and a non-vfat ESP',
    mutate: (s) => Object.assign(must(partitions(s)[0]), { mountpoint: '/', filesystem: 'ext4' }),
    expected: [`${PARTS}[0].filesystem: an ESP must be "vfat"`, `${PARTS}[1].mountpoint: "/" is also the mountpoint of ${PARTS}[0]`],
  },
  {
    title: 'GPT layout with nothing to boot from',
    mutate: (s) => partitions(s).shift(),
    expected: [`${PARTS}: a GPT layout needs a PARTITION_TYPE_ESP partition (UEFI) or a PARTITION_TYPE_BIOS_BOOT partition (BIOS) to boot`],
  },
  {
    title: 'unrecognized enum value',
    mutate: (s) => (policy(s).wipePolicy = WipePolicy.UNRECOGNIZED),
    expected: [
      'diskPolicies.system-ssd.wipePolicy: unrecognized value UNRECOGNIZED (expected one of WIPE_POLICY_UNSPECIFIED, WIPE_POLICY_METADATA, WIPE_POLICY_DISCARD, WIPE_POLICY_ZERO, WIPE_POLICY_REQUIRE_EMPTY)',
    ],
  },
  {
    title: 'CIDR with host bits and a gateway elsewhere',
    mutate: (s) => Object.assign(network(s), { cidr: '10.44.0.5/24', gateway: '10.45.0.1' }),
    // With no usable prefix the address checks that need it are skipped rather than repeated.
    expected: ['networks.lab.cidr: "10.44.0.5/24" has host bits set; the prefix is 10.44.0.0/24'],
  },
  {
    title: 'gateway outside the CIDR and an address pool leaving it',
    mutate: (s) => Object.assign(network(s), { gateway: '10.45.0.1', addressPool: { start: '10.44.0.21', end: '10.44.1.10' } }),
    expected: ['networks.lab.gateway: 10.45.0.1 is outside the network\'s cidr 10.44.0.0/24', "networks.lab.addressPool.end: 10.44.1.10 is outside the network's cidr 10.44.0.0/24"],
  },
  {
    title: 'an IPv6 network with a gateway elsewhere and a too-small MTU',
    mutate: (s) => (s.networks['lab-v6'] = { ...network(s), cidr: 'fd44::/64', gateway: 'fd45::1', dnsServers: ['fd44::1'], addressPool: undefined, addressMode: 0, mtu: 1000 }),
    expected: ["networks.lab-v6.gateway: fd45::1 is outside the network's cidr fd44::/64", 'networks.lab-v6.mtu: must be 0 (default) or between 1280 and 65535, got 1000'],
  },
  {
    title: 'address pool backwards and containing the gateway',
    mutate: (s) => {
      network(s).addressPool = { start: '10.44.0.99', end: '10.44.0.21' };
      const other = { ...network(s), addressPool: { start: '10.44.0.1', end: '10.44.0.9' } };
      s.networks['lab-b'] = other;
    },
    expected: ['networks.lab.addressPool: start 10.44.0.99 is after end 10.44.0.21', 'networks.lab-b.addressPool: contains the gateway 10.44.0.1'].sort(),
  },
  {
    title: 'static addresses outside the CIDR, in the pool, and duplicated',
    mutate: (s) => {
      must(node(s, 'cp-1').staticAddresses[0]).address = '10.45.0.11';
      must(node(s, 'cp-2').staticAddresses[0]).address = '10.44.0.50';
      must(node(s, 'cp-3').staticAddresses[0]).address = '10.44.0.50';
    },
    expected: [
      "nodes.cp-1.staticAddresses[0].address: 10.45.0.11 is outside the network's cidr 10.44.0.0/24",
      'nodes.cp-2.staticAddresses[0].address: 10.44.0.50 lies inside networks.lab.addressPool (10.44.0.21-10.44.0.99), which the deployer allocates from',
      'nodes.cp-3.staticAddresses[0].address: 10.44.0.50 lies inside networks.lab.addressPool (10.44.0.21-10.44.0.99), which the deployer allocates from',
      'nodes.cp-2.staticAddresses[0].address: 10.44.0.50 is also assigned to nodes.cp-3.staticAddresses[0]',
      'nodes.cp-3.staticAddresses[0].address: 10.44.0.50 is also assigned to nodes.cp-2.staticAddresses[0]',
    ],
  },
  {
    title: 'static address on an unknown network',
    mutate: (s) => (must(node(s, 'cp-1').staticAddresses[0]).network = 'lan'),
    expected: ['nodes.cp-1.staticAddresses[0].network: unknown network "lan"'],
  },
  {
    title: 'bundle URL without its hash',
    mutate: (s) => (must(s.installProfiles['worker']).bundleUrl = 'http://10.44.0.2:7000/bundles/lab6.tar.zst'),
    expected: ['installProfiles.worker.bundleSha256: required when bundleUrl is set'],
  },
  {
    title: 'flake attribute with an unknown placeholder',
    mutate: (s) => (must(s.installProfiles['control-plane']).flakeAttr = 'nixosConfigurations.{host}'),
    expected: ['installProfiles.control-plane.flakeAttr: unknown placeholder "{host}" (known: {node_id}, {hostname}, {class}, {pool})'],
  },
  {
    title: 'node-agent class while the fleet-scheduler address is missing',
    mutate: (s) => (must(s.cluster).fleetSchedulerAddress = ''),
    expected: ['cluster.fleetSchedulerAddress: required because node class "worker" runs the node-agent'],
  },
];

for (const { title, mutate, expected } of brokenDocuments) {
  test(`rejects a document with ${title}`, (t) => {
    const got = problems(mutated(mutate));
    // Order is deterministic but follows the validator's walk; the set of lines is the contract.
    t.deepEqual([...got].sort(), [...expected].sort());
  });
}

test('a document with several problems reports every one of them, in a stable order', (t) => {
  const broken = mutated((s) => {
    must(s.cluster).name = '';
    rule(s).nodeClass = 'wrker';
    node(s, 'cp-2').hostname = 'cp-1';
    policy(s).rootDeviceHints = undefined;
    must(node(s, 'cp-3').staticAddresses[0]).address = '10.45.0.13';
  });
  t.deepEqual(problems(broken), [
    'cluster.name: required',
    'diskPolicies.system-ssd.rootDeviceHints: at least one root device hint is required (e.g. wwn, serial, model or size)',
    `${RULE}.nodeClass: unknown node class "wrker"`,
    "nodes.cp-3.staticAddresses[0].address: 10.45.0.13 is outside the network's cidr 10.44.0.0/24",
    'nodes.cp-1.hostname: "cp-1" is also the hostname of nodes.cp-2',
    'nodes.cp-2.hostname: "cp-1" is also the hostname of nodes.cp-1',
  ]);
  const error = t.throws(() => assertValidClusterState(broken), { instanceOf: InvalidArgumentError });
  t.is(error?.violations.length, 6);
});

// ---------------------------------------------------------------------------------------------
// diff, canonical form, hash

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]));
}

function reverseKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reverseKeys);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(Object.keys(value).reverse().map((k) => [k, reverseKeys((value as Record<string, unknown>)[k])]));
}

const K = ClusterObjectKind;
const C = ChangeType;
const change = (kind: ClusterObjectKind, name: string, type: ChangeType, changedFields: string[] = []): ClusterObjectChange => ({ kind, name, change: type, changedFields });

test('the first apply lists every object as added, sorted by kind then name', (t) => {
  t.deepEqual(diffClusterState(undefined, lab()), [
    change(K.CLUSTER_OBJECT_KIND_CLUSTER, 'lab6', C.CHANGE_TYPE_ADDED),
    change(K.CLUSTER_OBJECT_KIND_NETWORK, 'lab', C.CHANGE_TYPE_ADDED),
    change(K.CLUSTER_OBJECT_KIND_INSTALL_PROFILE, 'control-plane', C.CHANGE_TYPE_ADDED),
    change(K.CLUSTER_OBJECT_KIND_INSTALL_PROFILE, 'worker', C.CHANGE_TYPE_ADDED),
    change(K.CLUSTER_OBJECT_KIND_DISK_POLICY, 'system-ssd', C.CHANGE_TYPE_ADDED),
    change(K.CLUSTER_OBJECT_KIND_NODE_CLASS, 'control-plane', C.CHANGE_TYPE_ADDED),
    change(K.CLUSTER_OBJECT_KIND_NODE_CLASS, 'worker', C.CHANGE_TYPE_ADDED),
    change(K.CLUSTER_OBJECT_KIND_POOL, 'control', C.CHANGE_TYPE_ADDED),
    change(K.CLUSTER_OBJECT_KIND_POOL, 'workers', C.CHANGE_TYPE_ADDED),
    change(K.CLUSTER_OBJECT_KIND_ENROLLMENT_RULE, 'optiplex-workers', C.CHANGE_TYPE_ADDED),
    change(K.CLUSTER_OBJECT_KIND_NODE, 'cp-1', C.CHANGE_TYPE_ADDED),
    change(K.CLUSTER_OBJECT_KIND_NODE, 'cp-2', C.CHANGE_TYPE_ADDED),
    change(K.CLUSTER_OBJECT_KIND_NODE, 'cp-3', C.CHANGE_TYPE_ADDED),
  ]);
  t.deepEqual(diffClusterState(ClusterState.fromPartial({}), ClusterState.fromPartial({})), []);
});

test('the same document with reordered keys and spelled-out defaults is no change', (t) => {
  const reordered = ClusterState.fromJSON(reverseKeys(labJson));
  const spelledOut = structuredClone(labJson) as {
    networks: Record<string, Record<string, unknown>>;
    nodes: Record<string, Record<string, unknown>>;
    nodeClasses: Record<string, { minimumHardware: Record<string, unknown> }>;
    enrollmentRules: Record<string, Record<string, unknown>>;
  };
  Object.assign(must(spelledOut.networks['lab']), { mtu: 0, searchDomains: [] });
  Object.assign(must(spelledOut.nodes['cp-1']), { labels: {}, installProfile: '' });
  // proto3 JSON allows 64-bit integers as numbers or strings.
  must(spelledOut.nodeClasses['worker']).minimumHardware['memoryBytes'] = 8589934592;
  Object.assign(must(spelledOut.enrollmentRules['optiplex-workers']), { priority: '100', hostnameTemplate: '' });
  for (const same of [reordered, ClusterState.fromJSON(spelledOut)]) {
    t.deepEqual(diffClusterState(lab(), same), []);
    t.is(canonicalClusterState(same), canonicalClusterState(lab()));
    t.is(clusterStateHash(same), clusterStateHash(lab()));
  }
});

test('the diff reports additions, changes with sorted field paths, and removals in order', (t) => {
  const next = mutated((s) => {
    const selector = must(rule(s).selector);
    selector.macPatterns = ['d8:9e:f3:*'];
    selector.disks = { ...must(selector.disks), minCount: 2 };
    selector.nics = { minCount: 0, minSpeedMbps: 0, driver: '' };
    rule(s).labels['topology.ultracloud.io/rack'] = 'a';
    rule(s).priority = 90;
    network(s).dnsServers = ['10.44.0.1', '9.9.9.9'];
    must(partitions(s)[1]).label = 'root';
    must(s.cluster).name = 'lab7';
    delete s.nodes['cp-3'];
    s.pools['gpu'] = { labels: {}, description: 'Machines with a GPU.' };
    s.nodeClasses['gpu'] = NodeClass.fromPartial({ installProfile: 'worker' });
  });
  t.deepEqual(diffClusterState(lab(), next), [
    change(K.CLUSTER_OBJECT_KIND_CLUSTER, 'lab7', C.CHANGE_TYPE_CHANGED, ['name']),
    change(K.CLUSTER_OBJECT_KIND_NETWORK, 'lab', C.CHANGE_TYPE_CHANGED, ['dnsServers']),
    change(K.CLUSTER_OBJECT_KIND_DISK_POLICY, 'system-ssd', C.CHANGE_TYPE_CHANGED, ['layout.partitions']),
    change(K.CLUSTER_OBJECT_KIND_NODE_CLASS, 'gpu', C.CHANGE_TYPE_ADDED),
    change(K.CLUSTER_OBJECT_KIND_POOL, 'gpu', C.CHANGE_TYPE_ADDED),
    change(K.CLUSTER_OBJECT_KIND_ENROLLMENT_RULE, 'optiplex-workers', C.CHANGE_TYPE_CHANGED, [
      'labels.topology.ultracloud.io/rack',
      'priority',
      'selector.disks.minCount',
      'selector.macPatterns',
      'selector.nics',
    ]),
    change(K.CLUSTER_OBJECT_KIND_NODE, 'cp-3', C.CHANGE_TYPE_REMOVED),
  ]);
  t.not(clusterStateHash(next), clusterStateHash(lab()));
});

test('the hash is lowercase hex SHA-256 of the canonical form and ignores map order', (t) => {
  const hash = clusterStateHash(lab());
  t.regex(hash, /^[0-9a-f]{64}$/);
  t.is(clusterStateHash(ClusterState.fromJSON(reverseKeys(labJson))), hash);
  t.is(clusterStateHash(lab()), hash);
  const canonical = canonicalClusterState(lab());
  t.true(canonical.indexOf('"cluster"') < canonical.indexOf('"diskPolicies"'));
  t.true(canonical.includes('"memoryBytes":"17179869184"'));
});

test('removals of objects that assignments still use are blocked, others pass', (t) => {
  const next = mutated((s) => {
    delete s.nodes['cp-3'];
    delete s.nodes['cp-2'];
    delete s.pools['workers'];
    delete s.nodeClasses['worker'];
    delete s.installProfiles['worker'];
    delete s.enrollmentRules['optiplex-workers'];
  });
  const diff = diffClusterState(lab(), next);
  const inUse = {
    nodeClasses: new Set(['worker', 'control-plane']),
    pools: new Set(['control']),
    installProfiles: new Set(['worker']),
    nodeIds: new Set(['cp-3', 'worker-1']),
  };
  t.deepEqual(blockedRemovals(diff, inUse), [
    'installProfiles.worker: cannot be removed: a machine\'s assignment still uses install profile "worker"; release or reassign those machines first',
    'nodeClasses.worker: cannot be removed: a machine\'s assignment still uses node class "worker"; release or reassign those machines first',
    'nodes.cp-3: cannot be removed: a machine is assigned to this node; release the machine first',
  ]);
  const nothingInUse = { nodeClasses: new Set<string>(), pools: new Set<string>(), installProfiles: new Set<string>(), nodeIds: new Set<string>() };
  t.deepEqual(blockedRemovals(diff, nothingInUse), []);
  // A change (not a removal) of an object in use is never blocked.
  t.deepEqual(blockedRemovals(diffClusterState(lab(), mutated((s) => (rule(s).priority = 5))), inUse), []);
});
