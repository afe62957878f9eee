// The installer's hardware-fact parsers on captured outputs (test/fixtures/installer/<machine>,
// origins in test/fixtures/README.md): every parser on every machine, placeholder handling, the
// boot medium never becoming a root disk, and whole inventories the deployer accepts.
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { BootFirmware, DiskTransport, type MachineInventory } from '../../gen/ts/ultracloud/inventory/v1/inventory.js';
import { RootDeviceHints } from '../../gen/ts/ultracloud/installplan/v1/installplan.js';
import { capturedFactsSource, capturedFileName, collectInventory, liveFactsSource, type CommandRunner } from '../../agents/installer/facts/collect.js';
import { parseCpuinfo } from '../../agents/installer/facts/cpu.js';
import { bootLabelFromCmdline, disksFromLsblk, parseLinkListing, parseLsblk, splitWwn } from '../../agents/installer/facts/disks.js';
import { dmiFromDmidecode, dmiFromSysfs, normaliseDmiString, normaliseSystemUuid } from '../../agents/installer/facts/dmi.js';
import { parseDmidecodeMemoryTotal, parseMeminfoTotal } from '../../agents/installer/facts/memory.js';
import { isPhysicalLink, parseEthtoolPermanentAddress, parseEthtoolSettings, parseResolvConf } from '../../agents/installer/facts/nics.js';
import { validateInventory } from '../../services/deployer/domain/inventory.js';
import { resolveRootDevice, RootDeviceResolutionError } from '../../services/deployer/domain/root-device.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/installer/', import.meta.url));
const MACHINES = ['this-machine', 'nvme-workstation', 'sata-server', 'virtio-vm', 'multipath-san'] as const;
type Machine = (typeof MACHINES)[number];

const collected = new Map<Machine, Promise<MachineInventory>>();
function inventoryOf(machine: Machine): Promise<MachineInventory> {
  let inv = collected.get(machine);
  if (!inv) {
    inv = collectInventory(capturedFactsSource(join(FIXTURES, machine)), { now: new Date('2026-01-01T00:00:00Z'), deployerIp: '10.0.0.5' });
    collected.set(machine, inv);
  }
  return inv;
}

const fixture = (machine: Machine, file: string): string => readFileSync(join(FIXTURES, machine, file), 'utf8');
const hints = (h: Partial<RootDeviceHints>): RootDeviceHints => RootDeviceHints.fromPartial(h);

interface Expected {
  readonly uuid: string;
  readonly serial: string;
  readonly product: string;
  readonly cpu: { model: string; sockets: number; cores: number; threads: number };
  readonly memoryBytes: bigint;
  /** Disk name → is_boot_medium, in report order. */
  readonly disks: Readonly<Record<string, boolean>>;
  readonly nics: readonly string[];
  readonly firmware: BootFirmware;
  readonly secureBoot: boolean;
  readonly gateway: string;
}

const EXPECTED: Record<Machine, Expected> = {
  'this-machine': {
    uuid: '',
    serial: '',
    product: '',
    cpu: { model: 'AMD EPYC', sockets: 1, cores: 2, threads: 2 },
    memoryBytes: 24683620n * 1024n,
    disks: { vda: false },
    nics: ['eth0'],
    firmware: BootFirmware.BOOT_FIRMWARE_BIOS,
    secureBoot: false,
    gateway: '192.0.2.1',
  },
  'nvme-workstation': {
    uuid: '7d3f1c2a-9b8e-4f61-a0c4-2e5b8d9f1a37',
    serial: '',
    product: '',
    cpu: { model: 'Intel(R) Core(TM) i7-9700 CPU @ 3.00GHz', sockets: 1, cores: 8, threads: 8 },
    memoryBytes: 32n << 30n,
    disks: { sda: true, nvme0n1: false, nvme1n1: false },
    nics: ['enp5s0', 'wlp4s0'],
    firmware: BootFirmware.BOOT_FIRMWARE_UEFI,
    secureBoot: false,
    gateway: '192.168.1.1',
  },
  'sata-server': {
    uuid: '00000000-0000-0000-0000-ac1f6b4c2d8e',
    serial: 'S292837X9A21473',
    product: 'SYS-1029P-WTR',
    cpu: { model: 'Intel(R) Xeon(R) Silver 4210 CPU @ 2.20GHz', sockets: 2, cores: 20, threads: 40 },
    memoryBytes: 196474260n * 1024n,
    disks: { sda: false, sdb: false, sdc: false, sdd: false },
    nics: ['eno1', 'eno2'],
    firmware: BootFirmware.BOOT_FIRMWARE_BIOS,
    secureBoot: false,
    gateway: '10.20.0.1',
  },
  'virtio-vm': {
    uuid: '5c0e7e46-8b2a-4f1d-9c3b-6a4d2e1f0b9c',
    serial: '',
    product: 'Standard PC (Q35 + ICH9, 2009)',
    cpu: { model: 'Intel Xeon Processor (Icelake)', sockets: 1, cores: 4, threads: 4 },
    memoryBytes: 8131548n * 1024n,
    disks: { vda: false, vdb: false },
    nics: ['enp1s0'],
    firmware: BootFirmware.BOOT_FIRMWARE_UEFI,
    secureBoot: true,
    gateway: '10.0.2.2',
  },
  'multipath-san': {
    uuid: '37383638-3330-5a43-3231-333630344b52',
    serial: 'CZ2136004K',
    product: 'ProLiant DL380 Gen10',
    cpu: { model: 'Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz', sockets: 2, cores: 40, threads: 80 },
    memoryBytes: 395961612n * 1024n,
    disks: { sda: false, 'dm-0': false },
    nics: ['eno5', 'ens1f0np0', 'ens1f1np1'],
    firmware: BootFirmware.BOOT_FIRMWARE_UEFI,
    secureBoot: false,
    gateway: '172.16.4.1',
  },
};

for (const machine of MACHINES) {
  const want = EXPECTED[machine];

  test(`${machine}: collected facts match the captured outputs`, async (t) => {
    const inv = await inventoryOf(machine);
    t.is(inv.identity?.systemUuid, want.uuid);
    t.is(inv.identity?.serialNumber, want.serial);
    t.is(inv.identity?.productName, want.product);
    t.like(inv.cpu, { ...want.cpu, architecture: 'x86_64' });
    t.is(inv.memoryBytes, want.memoryBytes);
    t.deepEqual(Object.fromEntries(inv.disks.map((d) => [d.name, d.isBootMedium])), want.disks);
    t.deepEqual(Object.keys(Object.fromEntries(inv.disks.map((d) => [d.name, 0]))), Object.keys(want.disks), 'lsblk order');
    t.deepEqual(inv.nics.map((n) => n.name), want.nics);
    t.deepEqual(inv.identity?.macAddresses, inv.nics.map((n) => n.permanentMacAddress || n.macAddress).sort());
    t.is(inv.boot?.firmware, want.firmware);
    t.is(inv.boot?.secureBoot, want.secureBoot);
    t.is(inv.network?.defaultGateway, want.gateway);
    t.is(inv.machineId, '');
    t.is(inv.inventoryHash, '');
  });

  test(`${machine}: the deployer's validateInventory finds nothing wrong`, async (t) => {
    t.deepEqual(validateInventory(await inventoryOf(machine)), []);
  });
}

test('this machine: collect on its capture gives the real values', async (t) => {
  const inv = await inventoryOf('this-machine');
  const [vda] = inv.disks;
  t.like(vda, { name: 'vda', sizeBytes: 274877906944n, transport: DiskTransport.DISK_TRANSPORT_VIRTIO, byIdLinks: [], isBootMedium: false, logicalSectorSizeBytes: 512 });
  t.deepEqual(inv.nics, [
    { name: 'eth0', macAddress: '02:fc:00:00:00:01', permanentMacAddress: '02:fc:00:00:00:01', driver: 'virtio_net', speedMbps: 0, linkUp: true, pciAddress: '0000:00:03.0', mtu: 1400 },
  ]);
  t.deepEqual(inv.network?.addresses, [
    { interface: 'eth0', address: '192.0.2.2/24', dynamic: false },
    { interface: 'eth0', address: 'fd00::2/64', dynamic: false },
  ]);
  t.is(inv.network?.defaultGatewayInterface, 'eth0');
  t.deepEqual(inv.network?.dnsServers, ['10.255.255.53']);
});

test('software interfaces are not NICs: ifb (ip -d linkinfo), docker0 (sysfs virtual), virbr0 (name, no -d)', async (t) => {
  t.deepEqual((await inventoryOf('this-machine')).nics.map((n) => n.name), ['eth0']);
  t.deepEqual((await inventoryOf('virtio-vm')).nics.map((n) => n.name), ['enp1s0']);
  t.deepEqual((await inventoryOf('sata-server')).nics.map((n) => n.name), ['eno1', 'eno2']);
  t.false(isPhysicalLink({ ifname: 'bond0', link_type: 'ether', linkinfo: { info_kind: 'bond' } }));
  t.true(isPhysicalLink({ ifname: 'eno1', link_type: 'ether', linkinfo: { info_slave_kind: 'bond' } }), 'a bond member is still a NIC');
});

test('a NIC with its link down reports no speed; the other reports ethtool speed, driver and PCI address', async (t) => {
  const [eno1, eno2] = (await inventoryOf('sata-server')).nics;
  t.like(eno1, { linkUp: true, speedMbps: 1000, driver: 'igb', pciAddress: '0000:18:00.0', permanentMacAddress: 'ac:1f:6b:4c:2d:8e' });
  t.like(eno2, { linkUp: false, speedMbps: 0, driver: 'igb', pciAddress: '0000:18:00.1' });
});

test('without ethtool -P the permanent MAC comes from sysfs addr_assign_type', async (t) => {
  const [nic] = (await inventoryOf('virtio-vm')).nics;
  t.like(nic, { macAddress: '52:54:00:12:34:56', permanentMacAddress: '52:54:00:12:34:56', driver: 'virtio_net', pciAddress: '0000:01:00.0', speedMbps: 0 });
});

test('observed network: link-local IPv6 and virtual interfaces excluded, resolved upstream servers, route to the deployer', async (t) => {
  const ws = await inventoryOf('nvme-workstation');
  t.deepEqual(ws.network?.addresses.map((a) => a.address), ['192.168.1.57/24', '2001:db8:1:0:264b:feff:fe5a:1b2c/64']);
  t.like(ws.network, { deployerInterface: 'enp5s0', deployerSourceAddress: '192.168.1.57', searchDomains: ['lab.example.net'] });
  t.deepEqual(ws.network?.dnsServers, ['192.168.1.1', '2001:db8:1::1']);
  const vm = await inventoryOf('virtio-vm');
  t.deepEqual(vm.network?.dnsServers, ['10.0.2.3'], 'systemd-resolved upstream, not the 127.0.0.53 stub');
  t.deepEqual(vm.network?.searchDomains, []);
  t.deepEqual((await inventoryOf('sata-server')).network?.addresses.map((a) => a.interface), ['eno1']);
});

test('DMI placeholders are normalised to empty', (t) => {
  for (const placeholder of ['To Be Filled By O.E.M.', 'To be filled by O.E.M.', 'Default string', 'System Serial Number', 'System Product Name', 'Not Specified', '0123456789', '   ', '........', '']) {
    t.is(normaliseDmiString(placeholder), '', placeholder);
  }
  t.is(normaliseDmiString('  OptiPlex 7070 \n'), 'OptiPlex 7070');
  for (const uuid of ['00000000-0000-0000-0000-000000000000', 'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF', '03000200-0400-0500-0006-000700080009', 'Not Settable', '1234']) {
    t.is(normaliseSystemUuid(uuid), '', uuid);
  }
  t.is(normaliseSystemUuid('4C4C4544-0042-4810-8056-B4C04F4D4E32\n'), '4c4c4544-0042-4810-8056-b4c04f4d4e32');
  t.deepEqual(
    dmiFromSysfs({ product_uuid: '00000000-0000-0000-0000-000000000000', product_serial: 'Default string', sys_vendor: 'ASUS', board_name: 'To Be Filled By O.E.M.' }),
    { systemUuid: '', serialNumber: '', vendor: 'ASUS', productName: '', boardSerial: '', boardVendor: '', boardProduct: '', biosVendor: '', biosVersion: '' },
  );
});

test('dmidecode output gives the same facts as sysfs, placeholders included', (t) => {
  const dmi = dmiFromDmidecode(fixture('sata-server', 'dmidecode-system.txt') + fixture('sata-server', 'dmidecode-baseboard.txt'));
  t.like(dmi, { systemUuid: '00000000-0000-0000-0000-ac1f6b4c2d8e', serialNumber: 'S292837X9A21473', vendor: 'Supermicro', boardProduct: 'X11DDW-NT', boardSerial: 'OM19AS012345' });
  t.is(dmiFromDmidecode('Handle 0x0001, DMI type 1, 27 bytes\nSystem Information\n\tSerial Number: To Be Filled By O.E.M.\n\tUUID: 03000200-0400-0500-0006-000700080009\n').serialNumber, '');
});

test('memory: DMI modules preferred over MemTotal, binary units', (t) => {
  t.is(parseDmidecodeMemoryTotal(fixture('nvme-workstation', 'dmidecode-memory.txt')), 32n << 30n);
  t.is(parseDmidecodeMemoryTotal('Handle 0x1, DMI type 17, 92 bytes\nMemory Device\n\tSize: 2048 MB\n\tVolatile Size: 2 GB\n'), 2n << 30n);
  t.is(parseMeminfoTotal(fixture('this-machine', 'root/proc/meminfo')), 24683620n * 1024n);
});

test('cpuinfo without topology (arm64) counts logical CPUs as cores on one socket', (t) => {
  const arm = 'processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU architecture: 8\n\nprocessor\t: 1\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU architecture: 8\n';
  t.like(parseCpuinfo(arm), { vendor: 'ARM', sockets: 1, cores: 2, threads: 2, architecture: 'aarch64' });
});

test('the boot USB stick is flagged and never chosen as root, even by a hint that matches only it', async (t) => {
  const { disks } = await inventoryOf('nvme-workstation');
  t.like(disks.find((d) => d.name === 'sda'), { isBootMedium: true, transport: DiskTransport.DISK_TRANSPORT_USB, removable: true });
  for (const h of [{ name: 'sda' }, { model: 'Ultra Fit' }, { size: '<= 100' }]) {
    t.throws(() => resolveRootDevice(disks, hints(h)), { instanceOf: RootDeviceResolutionError }, JSON.stringify(h));
  }
  t.is(resolveRootDevice(disks, hints({ model: 'Samsung SSD 980 PRO 1TB' })).byIdPath, '/dev/disk/by-id/nvme-eui.002538b221b3c4d5');
});

test('--boot-device flags a disk with no other boot-medium signal, by kernel name or by-id link', async (t) => {
  const dir = join(FIXTURES, 'sata-server');
  for (const bootDevice of ['/dev/sdd', 'sdd', '/dev/disk/by-id/wwn-0x5000c500a1b2c3e5']) {
    const inv = await collectInventory(capturedFactsSource(dir), { bootDevice });
    t.deepEqual(inv.disks.filter((d) => d.isBootMedium).map((d) => d.name), ['sdd'], bootDevice);
    t.is(resolveRootDevice(inv.disks, hints({ size: '>= 3000' })).byIdPath, '/dev/disk/by-id/wwn-0x5000c500a1b2c3d4');
  }
});

test('the live medium is found by the label of root=LABEL= when it is not mounted where ISOs mount', (t) => {
  const stick = { name: 'sdb', type: 'disk', size: 16e9, tran: 'usb', children: [{ name: 'sdb1', type: 'part', size: 1e9, fstype: 'vfat', label: 'UC-INSTALL' }] };
  const disk = { name: 'sda', type: 'disk', size: 5e11, tran: 'sata' };
  const label = bootLabelFromCmdline('init=/nix/store/x/init root=LABEL=UC-INSTALL quiet');
  t.is(label, 'UC-INSTALL');
  const result = disksFromLsblk([disk, stick], new Map(), new Map(), label === undefined ? {} : { label });
  t.deepEqual(result.map((d) => [d.name, d.isBootMedium]), [['sda', false], ['sdb', true]]);
});

test('multipath: the dm device is reported once with the LUN identity, its paths are hidden', async (t) => {
  const { disks } = await inventoryOf('multipath-san');
  t.deepEqual(disks.map((d) => d.name), ['sda', 'dm-0']);
  const dm = disks[1];
  t.like(dm, {
    wwn: '0x624a9370c1d2e3f4',
    wwnWithExtension: '0x624a9370c1d2e3f4a5b6c7d800011234',
    wwnVendorExtension: '0xa5b6c7d800011234',
    sizeBytes: 1099511627776n,
    transport: DiskTransport.DISK_TRANSPORT_FC,
    hctl: '',
    vendor: 'PURE',
  });
  t.true(dm?.byIdLinks.includes('/dev/disk/by-id/wwn-0x624a9370c1d2e3f4a5b6c7d800011234'));
  t.is(dm?.byPathLinks.length, 2);
  t.is(resolveRootDevice(disks, hints({ vendor: 'pure' })).byIdPath, '/dev/disk/by-id/wwn-0x624a9370c1d2e3f4a5b6c7d800011234');
});

test('disk parser: skips zram, loop and CD-ROMs; accepts pre-2.33 lsblk strings; splits only NAA-6 WWNs', (t) => {
  const devices = parseLsblk(
    JSON.stringify({
      blockdevices: [
        { name: 'loop0', type: 'loop', size: '1000' },
        { name: 'zram0', type: 'disk', size: '1000' },
        { name: 'sr0', type: 'rom', size: '1000' },
        { name: 'sda', type: 'disk', size: '500107862016', rota: '1', rm: '0', ro: '0', tran: 'sata', 'log-sec': '512', 'phy-sec': '4096' },
      ],
    }),
  );
  const disks = disksFromLsblk(devices, parseLinkListing('lrwxrwxrwx 1 root root 9 Jan  1 00:00 ata-X_Y -> ../../sda\n', '/dev/disk/by-id'), new Map());
  t.is(disks.length, 1);
  t.like(disks[0], { name: 'sda', sizeBytes: 500107862016n, rotational: true, removable: false, physicalSectorSizeBytes: 4096, byIdLinks: ['/dev/disk/by-id/ata-X_Y'] });
  t.deepEqual(splitWwn('0x5000c500a1b2c3d4'), { wwn: '0x5000c500a1b2c3d4', wwnWithExtension: '0x5000c500a1b2c3d4', wwnVendorExtension: '' });
  t.is(splitWwn('eui.e8238fa6bf530001001b448b4a1b2c3d').wwnVendorExtension, '');
});

test('ethtool and resolv.conf parsers', (t) => {
  t.is(parseEthtoolPermanentAddress('Permanent address: 00:00:00:00:00:00\n'), '', 'all-zero means unknown');
  t.is(parseEthtoolPermanentAddress(fixture('this-machine', 'ethtool-P-eth0.txt')), '02:fc:00:00:00:01');
  t.deepEqual(parseEthtoolSettings(fixture('this-machine', 'ethtool-eth0.txt')), { speedMbps: 0, linkDetected: true });
  t.deepEqual(parseResolvConf('domain a.example\nsearch b.example c.example # x\nnameserver 192.0.2.53\n'), { dnsServers: ['192.0.2.53'], searchDomains: ['b.example', 'c.example'] });
});

test('captured file names for the commands the collector runs', (t) => {
  t.is(capturedFileName('lsblk', ['-J', '-O', '-b']), 'lsblk.json');
  t.is(capturedFileName('ethtool', ['-P', 'eno1']), 'ethtool-P-eno1.txt');
  t.is(capturedFileName('ethtool', ['-i', 'eno1']), 'ethtool-i-eno1.txt');
  t.is(capturedFileName('ethtool', ['eno1']), 'ethtool-eno1.txt');
  t.is(capturedFileName('dmidecode', ['-t', 'system']), 'dmidecode-system.txt');
  t.is(capturedFileName('ethtool', ['-P', '../../etc/passwd']), undefined, 'no path traversal through an interface name');
});

test('live source reads files and readdir/readlink links under a root, commands through the given runner', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'uc-facts-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const src = join(FIXTURES, 'nvme-workstation');
  await mkdir(join(root, 'dev/disk/by-id'), { recursive: true });
  await mkdir(join(root, 'proc'), { recursive: true });
  await mkdir(join(root, 'sys/firmware/efi'), { recursive: true });
  await symlink('../../nvme0n1', join(root, 'dev/disk/by-id/nvme-eui.002538b221b3c4d5'));
  await symlink('../../sda', join(root, 'dev/disk/by-id/usb-SanDisk_Ultra_Fit_4C530001230517117335-0:0'));
  await writeFile(join(root, 'proc/cpuinfo'), readFileSync(join(src, 'root/proc/cpuinfo')));
  await writeFile(join(root, 'proc/meminfo'), readFileSync(join(src, 'root/proc/meminfo')));
  const calls: string[] = [];
  const captured = capturedFactsSource(src);
  const run: CommandRunner = async (command, args) => {
    calls.push([command, ...args].join(' '));
    const out = await captured.run(command, args);
    if (out === undefined) throw new Error(`${command}: not found`);
    return out;
  };
  const inv = await collectInventory(liveFactsSource({ root, run }));
  t.deepEqual(inv.disks.find((d) => d.name === 'nvme0n1')?.byIdLinks, ['/dev/disk/by-id/nvme-eui.002538b221b3c4d5']);
  t.true(inv.disks.find((d) => d.name === 'sda')?.isBootMedium);
  t.is(inv.boot?.firmware, BootFirmware.BOOT_FIRMWARE_UEFI);
  t.is(inv.cpu?.threads, 8);
  t.true(calls.includes('lsblk -J -O -b'));
  t.true(calls.includes('ethtool -P enp5s0'));
  t.deepEqual(validateInventory(inv), []);
});
