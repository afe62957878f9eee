import test from 'ava';
import { FailedPreconditionError } from '../../lib/errors.js';
import { AssignmentSource } from '../../gen/ts/ultracloud/assignment/v1/assignment.js';
import { ClusterState, IdentityMatch, MachineSelector, MinimumHardware } from '../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import type { EnrollmentRule } from '../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import { MachineInventory } from '../../gen/ts/ultracloud/inventory/v1/inventory.js';
import {
  checkMinimumHardware,
  checkNameTemplate,
  globMatches,
  matchEnrollment,
  orderedRules,
  sanitizeNamePart,
  selectorMatches,
} from '../../services/deployer/domain/enrollment.js';
import type { TakenNames } from '../../services/deployer/domain/enrollment.js';

const GiB = 2n ** 30n;
const NONE: TakenNames = { nodeIds: new Set(), hostnames: new Set() };

type DeepPartialInventory = Parameters<typeof MachineInventory.fromPartial>[0];
type DeepPartialCluster = Parameters<typeof ClusterState.fromPartial>[0];
type DeepPartialSelector = Parameters<typeof MachineSelector.fromPartial>[0];

// An OptiPlex-like lab PC: QEMU-prefixed MACs, one NVMe, one HDD, a USB boot stick.
const BASE_INVENTORY: DeepPartialInventory = {
  machineId: 'm-0a1b2c',
  identity: {
    systemUuid: '4c4c4544-0042-3510-8047-b4c04f4e4d32',
    serialNumber: '5BQ2NM2',
    vendor: 'Dell Inc.',
    productName: 'OptiPlex 7070',
    macAddresses: ['52:54:00:12:34:56', 'a0:36:9f:00:00:01'],
  },
  cpu: { cores: 8, threads: 16, sockets: 1 },
  memoryBytes: 32n * GiB,
  disks: [
    { name: 'nvme0n1', sizeBytes: 512n * GiB, rotational: false, model: 'Samsung SSD 970 EVO Plus 500GB' },
    { name: 'sda', sizeBytes: 2000n * GiB, rotational: true, model: 'ST2000DM008-2FR102' },
    { name: 'sdb', sizeBytes: 16n * GiB, rotational: false, model: 'Ultra USB 3.0', isBootMedium: true },
  ],
  nics: [
    { name: 'enp1s0', macAddress: '52:54:00:12:34:56', permanentMacAddress: '52:54:00:12:34:56', driver: 'e1000e', speedMbps: 1000, linkUp: true },
    { name: 'enp3s0f0', macAddress: 'a0:36:9f:00:00:01', permanentMacAddress: 'a0:36:9f:00:00:01', driver: 'ixgbe', speedMbps: 10000, linkUp: true },
  ],
};

function inventory(overrides: DeepPartialInventory = {}): MachineInventory {
  return MachineInventory.fromPartial({ ...BASE_INVENTORY, ...overrides });
}

function cluster(doc: DeepPartialCluster): ClusterState {
  return ClusterState.fromPartial({
    nodeClasses: {
      worker: { installProfile: 'worker-std', defaultLabels: { tier: 'class', 'ultracloud.io/class': 'worker' } },
      storage: { installProfile: 'storage-std', defaultLabels: { tier: 'class' } },
      'control-plane': { installProfile: 'cp-std' },
    },
    pools: {
      'rack-a': { labels: { tier: 'pool', 'topology.ultracloud.io/rack': 'a' } },
      lab: { labels: {} },
    },
    ...doc,
  });
}

function rule(r: Omit<Partial<EnrollmentRule>, 'selector'> & { selector?: DeepPartialSelector }): EnrollmentRule {
  return { nodeClass: 'worker', pool: 'lab', priority: 100, labels: {}, installProfile: '', nodeIdTemplate: '', hostnameTemplate: '',
    failureDomainLabel: '', autoCommission: false, autoInstall: false, description: '', ...r,
    selector: r.selector === undefined ? undefined : MachineSelector.fromPartial(r.selector) };
}

test('a fixed node wins over a higher-priority rule', (t) => {
  const c = cluster({
    enrollmentRules: { first: rule({ priority: -1000 }) },
    nodes: { 'cp-1': { nodeClass: 'control-plane', pool: 'lab', match: { macAddresses: ['A0:36:9F:00:00:01'] }, failureDomain: 'room-1', autoCommission: true, autoInstall: true } },
  });
  const result = matchEnrollment(inventory(), c, NONE);
  t.is(result?.assignment.source, AssignmentSource.ASSIGNMENT_SOURCE_FIXED_NODE);
  t.is(result?.assignment.sourceName, 'cp-1');
  t.is(result?.assignment.nodeId, 'cp-1');
  t.is(result?.assignment.hostname, 'cp-1');
  t.is(result?.assignment.installProfile, 'cp-std');
  t.is(result?.assignment.failureDomain, 'room-1');
  t.true(result?.autoCommission);
  t.true(result?.autoInstall);
});

const identityCases: { name: string; match: Parameters<typeof IdentityMatch.fromPartial>[0]; matches: boolean }[] = [
  { name: 'DMI UUID (any case)', match: { systemUuid: '4C4C4544-0042-3510-8047-B4C04F4E4D32' }, matches: true },
  { name: 'DMI serial, exact', match: { serialNumber: '5BQ2NM2' }, matches: true },
  { name: 'DMI serial, other case', match: { serialNumber: '5bq2nm2' }, matches: false },
  { name: 'one of several MACs', match: { macAddresses: ['00:00:00:00:00:01', '52:54:00:12:34:56'] }, matches: true },
  { name: 'another machine', match: { macAddresses: ['00:00:00:00:00:01'], systemUuid: '00000000-0000-0000-0000-000000000001', serialNumber: 'X' }, matches: false },
  { name: 'no identity at all', match: {}, matches: false },
];
for (const c of identityCases) {
  test(`fixed node identity match: ${c.name}`, (t) => {
    const result = matchEnrollment(inventory(), cluster({ nodes: { gw: { nodeClass: 'worker', pool: 'lab', match: c.match } } }), NONE);
    t.is(result?.assignment.sourceName, c.matches ? 'gw' : undefined);
  });
}

test('rules are tried in ascending priority, ties broken by name', (t) => {
  const c = cluster({
    enrollmentRules: {
      zeta: rule({ priority: 10, nodeIdTemplate: 'zeta-{index}' }),
      alpha: rule({ priority: 10, nodeIdTemplate: 'alpha-{index}' }),
      late: rule({ priority: 50 }),
      early: rule({ priority: 5, selector: { vendors: ['HPE'] } }),
    },
  });
  t.deepEqual(orderedRules(c.enrollmentRules).map(([n]) => n), ['early', 'alpha', 'zeta', 'late']);
  const result = matchEnrollment(inventory(), c, NONE);
  t.is(result?.assignment.sourceName, 'alpha');
  t.is(result?.assignment.source, AssignmentSource.ASSIGNMENT_SOURCE_ENROLLMENT_RULE);
  t.is(result?.assignment.nodeId, 'alpha-1');
});

test('no matching rule and no fixed node gives undefined', (t) => {
  const c = cluster({ enrollmentRules: { dell: rule({ selector: { vendors: ['HPE'] } }) } });
  t.is(matchEnrollment(inventory(), c, NONE), undefined);
  t.is(matchEnrollment(inventory(), cluster({}), NONE), undefined);
});

const selectorCases: { name: string; selector: DeepPartialSelector | undefined; matches: boolean }[] = [
  { name: 'absent selector is a catch-all', selector: undefined, matches: true },
  { name: 'empty selector is a catch-all', selector: {}, matches: true },
  { name: 'machine id exact', selector: { machineIds: ['m-0a1b2c'] }, matches: true },
  { name: 'machine id other', selector: { machineIds: ['m-0a1b2'] }, matches: false },
  { name: 'MAC exact', selector: { macAddresses: ['a0:36:9f:00:00:01'] }, matches: true },
  { name: 'MAC exact, uppercase', selector: { macAddresses: ['A0:36:9F:00:00:01'] }, matches: true },
  { name: 'MAC exact, other', selector: { macAddresses: ['a0:36:9f:00:00:02'] }, matches: false },
  { name: 'MAC glob vendor prefix', selector: { macPatterns: ['52:54:00:*'] }, matches: true },
  { name: 'MAC glob, uppercase', selector: { macPatterns: ['A0:36:9F:*'] }, matches: true },
  { name: 'MAC glob other prefix', selector: { macPatterns: ['52:54:01:*'] }, matches: false },
  { name: 'MAC glob with ?', selector: { macPatterns: ['52:54:00:12:34:5?'] }, matches: true },
  { name: 'vendor glob', selector: { vendors: ['dell*'] }, matches: true },
  { name: 'vendor: any of a list', selector: { vendors: ['HPE', 'Dell Inc.'] }, matches: true },
  { name: 'vendor other', selector: { vendors: ['Lenovo'] }, matches: false },
  { name: 'product with ?', selector: { products: ['OptiPlex 70?0'] }, matches: true },
  { name: 'product other', selector: { products: ['OptiPlex 30?0'] }, matches: false },
  { name: 'serial glob', selector: { serialNumbers: ['5bq*'] }, matches: true },
  { name: 'serial other', selector: { serialNumbers: ['CZC*'] }, matches: false },
  { name: 'disk min size met', selector: { disks: { minSizeBytes: 1000n * GiB } }, matches: true },
  { name: 'disk min size unmet', selector: { disks: { minSizeBytes: 4000n * GiB } }, matches: false },
  { name: 'disk count: boot medium excluded', selector: { disks: { minCount: 3 } }, matches: false },
  { name: 'disk count 2', selector: { disks: { minCount: 2 } }, matches: true },
  { name: 'rotational disk present', selector: { disks: { rotational: true } }, matches: true },
  { name: 'two SSDs (boot stick does not count)', selector: { disks: { rotational: false, minCount: 2 } }, matches: false },
  { name: 'every per-disk condition on the same disk', selector: { disks: { rotational: false, minSizeBytes: 1000n * GiB } }, matches: false },
  { name: 'disk model glob', selector: { disks: { model: 'samsung ssd 970*' } }, matches: true },
  { name: 'disk model other', selector: { disks: { model: 'INTEL*' } }, matches: false },
  { name: 'NIC speed met', selector: { nics: { minSpeedMbps: 10000 } }, matches: true },
  { name: 'NIC speed unmet', selector: { nics: { minSpeedMbps: 25000 } }, matches: false },
  { name: 'NIC count', selector: { nics: { minCount: 2 } }, matches: true },
  { name: 'NIC count unmet', selector: { nics: { minCount: 3 } }, matches: false },
  { name: 'NIC driver', selector: { nics: { driver: 'IXGBE' } }, matches: true },
  { name: 'NIC driver glob other', selector: { nics: { driver: 'mlx5_*' } }, matches: false },
  { name: 'NIC speed and driver on the same NIC', selector: { nics: { driver: 'e1000e', minSpeedMbps: 10000 } }, matches: false },
  { name: 'CPU cores met', selector: { minCpuCores: 8 }, matches: true },
  { name: 'CPU cores unmet', selector: { minCpuCores: 9 }, matches: false },
  { name: 'memory met', selector: { minMemoryBytes: 32n * GiB }, matches: true },
  { name: 'memory unmet', selector: { minMemoryBytes: 32n * GiB + 1n }, matches: false },
  { name: 'AND across fields', selector: { vendors: ['Dell*'], minCpuCores: 64 }, matches: false },
];
for (const c of selectorCases) {
  test(`selector: ${c.name}`, (t) => {
    const selector = c.selector === undefined ? undefined : MachineSelector.fromPartial(c.selector);
    t.is(selectorMatches(selector, inventory()), c.matches);
    const result = matchEnrollment(inventory(), cluster({ enrollmentRules: { r: rule({ selector: c.selector }) } }), NONE);
    t.is(result !== undefined, c.matches);
  });
}

test('globs treat regex characters literally and match the whole value', (t) => {
  t.true(globMatches('Dell Inc.', 'dell inc.'));
  t.false(globMatches('Dell Inc.', 'Dell Inc!'));
  t.false(globMatches('Dell', 'Dell Inc.'));
  t.true(globMatches('a+b(c)[d]', 'A+B(C)[D]'));
  t.true(globMatches('*', ''));
});

const templateCases: { name: string; rule: Omit<Partial<EnrollmentRule>, 'selector'>; taken?: TakenNames; inventory?: DeepPartialInventory; nodeId: string; hostname: string }[] = [
  { name: 'default is {class}-{index}', rule: {}, nodeId: 'worker-1', hostname: 'worker-1' },
  { name: '{index} skips taken node_ids', rule: { nodeIdTemplate: 'worker-{index}' },
    taken: { nodeIds: new Set(['worker-1', 'worker-2', 'worker-4']), hostnames: new Set() }, nodeId: 'worker-3', hostname: 'worker-3' },
  { name: '{index} skips taken hostnames too', rule: { nodeIdTemplate: 'n{index}', hostnameTemplate: 'worker-{index}' },
    taken: { nodeIds: new Set(['n1']), hostnames: new Set(['worker-2']) }, nodeId: 'n3', hostname: 'worker-3' },
  { name: 'hostname template alone names both', rule: { hostnameTemplate: '{pool}-{index}' }, nodeId: 'lab-1', hostname: 'lab-1' },
  { name: '{pool}-{serial}', rule: { nodeIdTemplate: '{pool}-{serial}' }, nodeId: 'lab-5bq2nm2', hostname: 'lab-5bq2nm2' },
  { name: 'serial is lowercased and sanitised', rule: { nodeIdTemplate: 'pc-{serial}' },
    inventory: { identity: { serialNumber: 'CZC 12/34_AB.c' } }, nodeId: 'pc-czc-12-34-ab-c', hostname: 'pc-czc-12-34-ab-c' },
  { name: '{mac} is the lowest permanent MAC without colons', rule: { nodeIdTemplate: 'm-{mac}' }, nodeId: 'm-525400123456', hostname: 'm-525400123456' },
  { name: '{class} and {machine_id}', rule: { nodeIdTemplate: '{class}-{machine_id}', hostnameTemplate: 'h-{index}' }, nodeId: 'worker-m-0a1b2c', hostname: 'h-1' },
  { name: 'fixed node names are reserved', rule: { nodeIdTemplate: 'cp-{index}' }, nodeId: 'cp-2', hostname: 'cp-2' },
];
for (const c of templateCases) {
  test(`template: ${c.name}`, (t) => {
    const doc = cluster({
      enrollmentRules: { r: rule(c.rule) },
      nodes: { 'cp-1': { nodeClass: 'control-plane', pool: 'lab', match: { serialNumber: 'SOMEONE-ELSE' } } },
    });
    const inv = c.inventory ? inventory({ ...c.inventory, identity: { ...BASE_INVENTORY.identity, ...c.inventory.identity } }) : inventory();
    const result = matchEnrollment(inv, doc, c.taken ?? NONE);
    t.is(result?.assignment.nodeId, c.nodeId);
    t.is(result?.assignment.hostname, c.hostname);
  });
}

test('{index} scans start where the previous enrolment found its name, per template', (t) => {
  const doc = cluster({ enrollmentRules: { r: rule({ nodeIdTemplate: 'worker-{index}' }) } });
  const nodeIds = new Set(['worker-1', 'worker-2', 'worker-3']);
  const scanFrom = new Map<string, number>();
  const taken: TakenNames = { nodeIds, hostnames: new Set(), scanFrom };
  t.is(matchEnrollment(inventory(), doc, taken)?.assignment.nodeId, 'worker-4');
  t.deepEqual([...scanFrom.values()], [4]);
  nodeIds.add('worker-4');
  t.is(matchEnrollment(inventory(), doc, taken)?.assignment.nodeId, 'worker-5');
  t.deepEqual([...scanFrom.values()], [5]);
  // The hint is trusted: a name freed below it is found again once its owner clears the hints.
  nodeIds.delete('worker-2');
  t.is(matchEnrollment(inventory(), doc, taken)?.assignment.nodeId, 'worker-5');
  scanFrom.clear();
  t.is(matchEnrollment(inventory(), doc, taken)?.assignment.nodeId, 'worker-2');
  // A taken name at or above the hint is still skipped: the hint never hands out a taken name.
  scanFrom.set([...scanFrom.keys()][0] as string, 4);
  t.is(matchEnrollment(inventory(), doc, taken)?.assignment.nodeId, 'worker-5');
});

test('a template without {index} that renders a taken name is refused, naming the rule and the name', (t) => {
  const doc = cluster({ enrollmentRules: { bySerial: rule({ nodeIdTemplate: '{pool}-{serial}' }) } });
  const err = t.throws(() => matchEnrollment(inventory(), doc, { nodeIds: new Set(['lab-5bq2nm2']), hostnames: new Set() }), {
    instanceOf: FailedPreconditionError,
  });
  t.regex(err?.message ?? '', /enrollment rule bySerial renders node_id "lab-5bq2nm2", which is already taken/);
});

test('a rendered name that is not an RFC 1123 label is refused', (t) => {
  const long = inventory({ identity: { ...BASE_INVENTORY.identity, serialNumber: 'VMware-56 4d 8e 1a 2b 3c 4d 5e-6f 7a 8b 9c 0d 1e 2f 3a' } });
  const doc = cluster({ enrollmentRules: { r: rule({ nodeIdTemplate: 'worker-pool-{serial}' }) } });
  t.throws(() => matchEnrollment(long, doc, NONE), { instanceOf: FailedPreconditionError, message: /not a lowercase RFC 1123 label/ });
  const noSerial = inventory({ identity: { ...BASE_INVENTORY.identity, serialNumber: '' } });
  t.throws(() => matchEnrollment(noSerial, doc, NONE), { instanceOf: FailedPreconditionError, message: /"worker-pool-"/ });
});

test('sanitising keeps [a-z0-9-] and replaces everything else with "-"', (t) => {
  t.is(sanitizeNamePart('ABC-123'), 'abc-123');
  t.is(sanitizeNamePart('S/N: 42.x'), 's-n--42-x');
  t.is(sanitizeNamePart('Ünï'), '-n-');
});

test('name templates with unknown placeholders are reported', (t) => {
  t.deepEqual(checkNameTemplate('worker-{index}'), []);
  t.deepEqual(checkNameTemplate('{pool}-{serial}-{mac}-{machine_id}-{class}'), []);
  t.is(checkNameTemplate('{rack}-{index}').length, 1);
  t.is(checkNameTemplate('worker-{index').length, 1);
});

test('labels: class defaults, then pool, then rule; later wins', (t) => {
  const doc = cluster({
    enrollmentRules: { r: rule({ pool: 'rack-a', labels: { tier: 'rule', role: 'compute' } }) },
  });
  const result = matchEnrollment(inventory(), doc, NONE);
  t.deepEqual(result?.assignment.labels, {
    tier: 'rule',
    role: 'compute',
    'ultracloud.io/class': 'worker',
    'topology.ultracloud.io/rack': 'a',
  });
  const noRuleLabel = matchEnrollment(inventory(), cluster({ enrollmentRules: { r: rule({ pool: 'rack-a' }) } }), NONE);
  t.is(noRuleLabel?.assignment.labels.tier, 'pool');
  const classOnly = matchEnrollment(inventory(), cluster({ enrollmentRules: { r: rule({ pool: 'lab' }) } }), NONE);
  t.is(classOnly?.assignment.labels.tier, 'class');
});

test('fixed node labels override class and pool labels', (t) => {
  const doc = cluster({
    nodes: { gw: { nodeClass: 'worker', pool: 'rack-a', labels: { tier: 'fixed' }, match: { serialNumber: '5BQ2NM2' } } },
  });
  t.is(matchEnrollment(inventory(), doc, NONE)?.assignment.labels.tier, 'fixed');
});

test('failure domain comes from the label the rule names', (t) => {
  const byRack = cluster({ enrollmentRules: { r: rule({ pool: 'rack-a', failureDomainLabel: 'topology.ultracloud.io/rack' }) } });
  t.is(matchEnrollment(inventory(), byRack, NONE)?.assignment.failureDomain, 'a');
  const byRuleLabel = cluster({ enrollmentRules: { r: rule({ pool: 'rack-a', labels: { 'topology.ultracloud.io/rack': 'b' }, failureDomainLabel: 'topology.ultracloud.io/rack' }) } });
  t.is(matchEnrollment(inventory(), byRuleLabel, NONE)?.assignment.failureDomain, 'b');
  const missing = cluster({ enrollmentRules: { r: rule({ pool: 'lab', failureDomainLabel: 'topology.ultracloud.io/rack' }) } });
  t.is(matchEnrollment(inventory(), missing, NONE)?.assignment.failureDomain, '');
  const none = cluster({ enrollmentRules: { r: rule({ pool: 'rack-a' }) } });
  t.is(matchEnrollment(inventory(), none, NONE)?.assignment.failureDomain, '');
});

test('install profile: rule override, else the class default', (t) => {
  t.is(matchEnrollment(inventory(), cluster({ enrollmentRules: { r: rule({}) } }), NONE)?.assignment.installProfile, 'worker-std');
  t.is(matchEnrollment(inventory(), cluster({ enrollmentRules: { r: rule({ installProfile: 'worker-gpu' }) } }), NONE)?.assignment.installProfile, 'worker-gpu');
});

test('auto_install only counts together with auto_commission', (t) => {
  const both = matchEnrollment(inventory(), cluster({ enrollmentRules: { r: rule({ autoCommission: true, autoInstall: true }) } }), NONE);
  t.deepEqual([both?.autoCommission, both?.autoInstall], [true, true]);
  const installOnly = matchEnrollment(inventory(), cluster({ enrollmentRules: { r: rule({ autoInstall: true }) } }), NONE);
  t.deepEqual([installOnly?.autoCommission, installOnly?.autoInstall], [false, false]);
});

const minimumCases: { name: string; minimum: Parameters<typeof MinimumHardware.fromPartial>[0]; unmet: string[] }[] = [
  { name: 'nothing required', minimum: {}, unmet: [] },
  { name: 'everything met', minimum: { cpuCores: 8, memoryBytes: 32n * GiB, diskCount: 2, diskSizeBytes: 500n * GiB, nicCount: 2, nicSpeedMbps: 10000 }, unmet: [] },
  { name: 'cores', minimum: { cpuCores: 16 }, unmet: ['cpu cores 8 < 16'] },
  { name: 'memory', minimum: { memoryBytes: 64n * GiB }, unmet: ['memory 32 GiB < 64 GiB'] },
  { name: 'disk size without count needs one such disk', minimum: { diskSizeBytes: 4000n * GiB }, unmet: ['disks of at least 4000 GiB 0 < 1 (largest 2000 GiB)'] },
  { name: 'disk count excludes the boot medium', minimum: { diskCount: 3 }, unmet: ['disks 2 < 3'] },
  { name: 'nic count', minimum: { nicCount: 4 }, unmet: ['nics 2 < 4'] },
  { name: 'nic speed', minimum: { nicSpeedMbps: 25000 }, unmet: ['nic speed 10000 Mb/s < 25000 Mb/s'] },
];
for (const c of minimumCases) {
  test(`minimum hardware: ${c.name}`, (t) => {
    const minimum = cluster({ nodeClasses: { x: { installProfile: 'p', minimumHardware: c.minimum } } }).nodeClasses.x?.minimumHardware;
    t.deepEqual(checkMinimumHardware(inventory(), minimum).map((u) => u.message), c.unmet);
  });
}

test('the match reports the class minimum hardware it misses', (t) => {
  const doc = cluster({
    nodeClasses: { big: { installProfile: 'p', minimumHardware: { memoryBytes: 64n * GiB } } },
    enrollmentRules: { r: rule({ nodeClass: 'big' }) },
  });
  const result = matchEnrollment(inventory(), doc, NONE);
  t.deepEqual(result?.belowMinimum, [{ trait: 'memory_bytes', message: 'memory 32 GiB < 64 GiB' }]);
});
