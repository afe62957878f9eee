import { createHash } from 'node:crypto';
import test from 'ava';
import {
  BootFirmware,
  MachineInventory,
  PowerInterface,
  type NetworkInterface,
} from '../../gen/ts/ultracloud/inventory/v1/inventory.js';
import { inventoryHash, normaliseInventory, primaryMacSet, validateInventory } from '../../services/deployer/domain/inventory.js';
import { loadLsblkFixture } from '../helpers/lsblk-fixtures.js';

function nic(n: Partial<NetworkInterface> & { name: string; macAddress: string }): NetworkInterface {
  return { permanentMacAddress: '', driver: 'igc', speedMbps: 1000, linkUp: true, pciAddress: '', mtu: 1500, ...n };
}

// A valid inventory as an installer would send it: disks from the NVMe workstation capture.
function sample(): MachineInventory {
  return MachineInventory.fromPartial({
    identity: {
      systemUuid: '4C4C4544-0051-3510-8052-B4C04F4B4E32',
      serialNumber: 'B4KNQ52',
      vendor: 'Dell Inc.',
      productName: 'OptiPlex 7070',
      macAddresses: ['A4:BB:6D:12:34:56', '90:e2:ba:01:02:03'],
    },
    cpu: { model: 'Intel(R) Core(TM) i7-9700 CPU @ 3.00GHz', vendor: 'GenuineIntel', sockets: 1, cores: 8, threads: 8, architecture: 'x86_64' },
    memoryBytes: 34359738368n,
    disks: loadLsblkFixture('nvme-workstation'),
    nics: [
      nic({ name: 'enp3s0', macAddress: 'A4:BB:6D:12:34:56', pciAddress: '0000:03:00.0' }),
      nic({ name: 'enp1s0f0', macAddress: '90:e2:ba:01:02:03', permanentMacAddress: '90:E2:BA:01:02:03', driver: 'ixgbe', speedMbps: 10000 }),
    ],
    network: { defaultGateway: '192.0.2.1', defaultGatewayInterface: 'enp3s0', dnsServers: ['192.0.2.53'] },
    boot: { firmware: BootFirmware.BOOT_FIRMWARE_UEFI, secureBoot: false, firmwareVendor: 'Dell Inc.', firmwareVersion: '1.20.0' },
    power: { interface: PowerInterface.POWER_INTERFACE_NONE },
    collectedAt: new Date('2025-11-29T01:53:00Z'),
  });
}

test('a complete inventory from real lsblk output has no violations', (t) => {
  t.deepEqual(validateInventory(sample()), []);
});

const violationCases: [string, (inv: MachineInventory) => void, string, RegExp][] = [
  ['no disks', (inv) => { inv.disks = []; }, 'inventory.disks', /at least one disk/],
  ['no NICs', (inv) => { inv.nics = []; }, 'inventory.nics', /at least one network interface/],
  ['a malformed MAC', (inv) => { (inv.nics[1] as NetworkInterface).macAddress = '90-e2-ba-01-02-03'; }, 'inventory.nics[1].mac_address', /aa:bb:cc:dd:ee:ff/],
  ['a short MAC', (inv) => { (inv.nics[0] as NetworkInterface).macAddress = 'a4:bb:6d:12:34'; }, 'inventory.nics[0].mac_address', /not a MAC address/],
  ['a missing MAC', (inv) => { (inv.nics[0] as NetworkInterface).macAddress = ''; }, 'inventory.nics[0].mac_address', /is required/],
  ['a multicast MAC', (inv) => { (inv.nics[0] as NetworkInterface).macAddress = '01:00:5e:00:00:01'; }, 'inventory.nics[0].mac_address', /multicast/],
  ['an all-zero MAC', (inv) => { (inv.nics[0] as NetworkInterface).permanentMacAddress = '00:00:00:00:00:00'; }, 'inventory.nics[0].permanent_mac_address', /all-zero/],
  ['two NICs with one permanent MAC', (inv) => { (inv.nics[1] as NetworkInterface).permanentMacAddress = 'a4:bb:6d:12:34:56'; }, 'inventory.nics[1].permanent_mac_address', /duplicate of nics\[0\]\.mac_address/],
  ['two NICs with one name', (inv) => { (inv.nics[1] as NetworkInterface).name = 'enp3s0'; }, 'inventory.nics[1].name', /duplicate of nics\[0\]/],
  ['a bad identity MAC', (inv) => { inv.identity?.macAddresses.push('zz:bb:cc:dd:ee:ff'); }, 'inventory.identity.mac_addresses[2]', /not a MAC address/],
  ['a repeated identity MAC', (inv) => { inv.identity?.macAddresses.push('a4:bb:6d:12:34:56'); }, 'inventory.identity.mac_addresses[2]', /duplicate of identity\.mac_addresses\[0\]/],
  ['a malformed system UUID', (inv) => { if (inv.identity) inv.identity.systemUuid = '4c4c4544-0051-3510-8052'; }, 'inventory.identity.system_uuid', /not a UUID/],
  ['an all-zero system UUID', (inv) => { if (inv.identity) inv.identity.systemUuid = '00000000-0000-0000-0000-000000000000'; }, 'inventory.identity.system_uuid', /placeholder/],
  ['the AMI default system UUID', (inv) => { if (inv.identity) inv.identity.systemUuid = '03000200-0400-0500-0006-000700080009'; }, 'inventory.identity.system_uuid', /placeholder/],
  ['a zero-sized disk', (inv) => { (inv.disks[2] as MachineInventory['disks'][number]).sizeBytes = 0n; }, 'inventory.disks[2].size_bytes', /greater than 0/],
  ['a disk named by path', (inv) => { (inv.disks[0] as MachineInventory['disks'][number]).name = '/dev/sda'; }, 'inventory.disks[0].name', /without \/dev\//],
  ['two disks with one name', (inv) => { (inv.disks[2] as MachineInventory['disks'][number]).name = 'sda'; }, 'inventory.disks[2].name', /duplicate of disks\[0\]/],
  ['a by-id link outside /dev/disk/by-id', (inv) => { inv.disks[1]?.byIdLinks.push('/dev/sda'); }, 'inventory.disks[1].by_id_links[3]', /not under \/dev\/disk\/by-id\//],
  ['a by-path link outside /dev/disk/by-path', (inv) => { inv.disks[1]?.byPathLinks.push('pci-0000:01:00.0-nvme-1'); }, 'inventory.disks[1].by_path_links[1]', /not under \/dev\/disk\/by-path\//],
  ['no memory', (inv) => { inv.memoryBytes = 0n; }, 'inventory.memory_bytes', /greater than 0/],
  ['zero CPU cores', (inv) => { if (inv.cpu) inv.cpu.cores = 0; }, 'inventory.cpu.cores', /greater than 0/],
  ['a malformed BMC MAC', (inv) => { if (inv.power) inv.power.macAddress = 'bmc'; }, 'inventory.power.mac_address', /not a MAC address/],
  ['neither UUID nor MAC', (inv) => {
    inv.identity = undefined;
    for (const n of inv.nics) {
      n.macAddress = 'bad';
      n.permanentMacAddress = '';
    }
  }, 'inventory.identity', /needs a system_uuid or at least one valid MAC/],
];

for (const [what, mutate, field, description] of violationCases) {
  test(`validateInventory names ${field} for ${what}`, (t) => {
    const inv = sample();
    mutate(inv);
    const violations = validateInventory(inv);
    const hit = violations.find((v) => v.field === field);
    t.truthy(hit, JSON.stringify(violations));
    t.regex(hit?.description ?? '', description);
  });
}

test('a machine without DMI UUID is identified by its MACs alone', (t) => {
  const inv = sample();
  if (inv.identity) inv.identity.systemUuid = '';
  t.deepEqual(validateInventory(inv), []);
});

test('current MACs may repeat when permanent MACs differ (bond members)', (t) => {
  const inv = sample();
  inv.nics = [
    nic({ name: 'eno1', macAddress: '3c:ec:ef:00:00:01', permanentMacAddress: '3c:ec:ef:00:00:01' }),
    nic({ name: 'eno2', macAddress: '3c:ec:ef:00:00:01', permanentMacAddress: '3c:ec:ef:00:00:02' }),
  ];
  t.deepEqual(validateInventory(inv), []);
});

test('the field prefix is configurable for callers that nest the inventory', (t) => {
  const inv = sample();
  inv.disks = [];
  t.deepEqual(validateInventory(inv, 'request.inventory').map((v) => v.field), ['request.inventory.disks']);
});

test('normaliseInventory lowercases MACs and UUID and sorts disks, NICs and lists', (t) => {
  const inv = sample();
  const before = structuredClone(inv);
  const n = normaliseInventory(inv);
  t.deepEqual(inv, before, 'the input is not modified');
  t.is(n.identity?.systemUuid, '4c4c4544-0051-3510-8052-b4c04f4b4e32');
  t.deepEqual(n.identity?.macAddresses, ['90:e2:ba:01:02:03', 'a4:bb:6d:12:34:56']);
  t.deepEqual(n.nics.map((x) => [x.name, x.macAddress, x.permanentMacAddress]), [
    ['enp1s0f0', '90:e2:ba:01:02:03', '90:e2:ba:01:02:03'],
    ['enp3s0', 'a4:bb:6d:12:34:56', ''],
  ]);
  t.deepEqual(n.disks.map((d) => d.name), ['nvme0n1', 'nvme1n1', 'sda']);
  t.is(n.disks[2]?.vendor, 'SanDisk');
  t.deepEqual(normaliseInventory(n), n, 'normalising twice changes nothing');
});

test('primaryMacSet takes permanent MACs, falls back to current ones, sorted and unique', (t) => {
  const inv = sample();
  inv.nics.push(nic({ name: 'enx001', macAddress: '02:11:22:33:44:55', permanentMacAddress: '00:E0:4C:68:00:01' }));
  t.deepEqual(primaryMacSet(inv), ['00:e0:4c:68:00:01', '90:e2:ba:01:02:03', 'a4:bb:6d:12:34:56'].sort());
  t.deepEqual(primaryMacSet(MachineInventory.fromPartial({})), []);
});

test('inventoryHash is lowercase hex SHA-256 of the encoded stable facts', (t) => {
  const n = normaliseInventory(sample());
  const stable = MachineInventory.fromPartial({
    identity: n.identity,
    cpu: n.cpu,
    memoryBytes: n.memoryBytes,
    disks: n.disks,
    nics: n.nics.map((x) => ({ ...x, linkUp: false, speedMbps: 0 })),
    boot: n.boot,
  });
  const expected = createHash('sha256').update(MachineInventory.encode(stable).finish()).digest('hex');
  t.regex(inventoryHash(sample()), /^[0-9a-f]{64}$/);
  t.is(inventoryHash(sample()), expected);
});

test('inventoryHash is stable under reordering and MAC case', (t) => {
  const reordered = sample();
  reordered.disks.reverse();
  reordered.nics.reverse();
  reordered.identity?.macAddresses.reverse();
  for (const d of reordered.disks) d.byIdLinks.reverse();
  for (const n of reordered.nics) n.macAddress = n.macAddress.toUpperCase();
  t.is(inventoryHash(reordered), inventoryHash(sample()));
});

const excludedChanges: [string, (inv: MachineInventory) => void][] = [
  ['machine_id', (inv) => { inv.machineId = 'm-123'; }],
  ['inventory_hash', (inv) => { inv.inventoryHash = 'ff'.repeat(32); }],
  ['collected_at', (inv) => { inv.collectedAt = new Date('2030-01-01T00:00:00Z'); }],
  ['network', (inv) => { inv.network = { addresses: [], defaultGateway: '198.51.100.1', defaultGatewayInterface: 'enp1s0f0', dnsServers: [], searchDomains: ['lab'], deployerInterface: 'enp1s0f0', deployerSourceAddress: '198.51.100.7' }; }],
  ['power', (inv) => { inv.power = { interface: PowerInterface.POWER_INTERFACE_REDFISH, address: 'https://10.0.0.50', macAddress: 'a4:bb:6d:00:00:99' }; }],
  ['nics[].link_up', (inv) => { for (const n of inv.nics) n.linkUp = !n.linkUp; }],
  ['nics[].speed_mbps', (inv) => { for (const n of inv.nics) n.speedMbps = 0; }],
];

for (const [field, change] of excludedChanges) {
  test(`inventoryHash ignores ${field}`, (t) => {
    const inv = sample();
    change(inv);
    t.is(inventoryHash(inv), inventoryHash(sample()));
  });
}

const hardwareChanges: [string, (inv: MachineInventory) => void][] = [
  ['a disk replaced', (inv) => { if (inv.disks[1]) inv.disks[1].serial = 'S5GXNF0R999999X'; }],
  ['a disk removed', (inv) => { inv.disks.pop(); }],
  ['memory added', (inv) => { inv.memoryBytes *= 2n; }],
  ['a NIC driver changed', (inv) => { if (inv.nics[0]) inv.nics[0].driver = 'e1000e'; }],
  ['firmware updated', (inv) => { if (inv.boot) inv.boot.firmwareVersion = '1.21.0'; }],
  ['system UUID changed', (inv) => { if (inv.identity) inv.identity.systemUuid = '4c4c4544-0051-3510-8052-b4c04f4b4e33'; }],
];

for (const [what, change] of hardwareChanges) {
  test(`inventoryHash changes when ${what}`, (t) => {
    const inv = sample();
    change(inv);
    t.not(inventoryHash(inv), inventoryHash(sample()));
  });
}
