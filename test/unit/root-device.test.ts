import test from 'ava';
import { DiskTransport, type Disk } from '../../gen/ts/ultracloud/inventory/v1/inventory.js';
import { RootDeviceHints } from '../../gen/ts/ultracloud/installplan/v1/installplan.js';
import { FailedPreconditionError, InvalidArgumentError } from '../../lib/errors.js';
import {
  RootDeviceResolutionError,
  matchRootDeviceCandidates,
  preferredByIdLink,
  resolveRootDevice,
  validateRootDeviceHints,
  type RootDeviceFailure,
} from '../../services/deployer/domain/root-device.js';
import { loadLsblkFixture } from '../helpers/lsblk-fixtures.js';

const GIB = 1n << 30n;

function hints(h: Partial<RootDeviceHints>): RootDeviceHints {
  return RootDeviceHints.fromPartial(h);
}

function disk(d: Partial<Disk> & { name: string }): Disk {
  return {
    byIdLinks: [`/dev/disk/by-id/ata-MODEL_${d.name}`],
    byPathLinks: [],
    model: '',
    vendor: '',
    serial: '',
    wwn: '',
    wwnWithExtension: '',
    wwnVendorExtension: '',
    sizeBytes: 100n * GIB,
    rotational: false,
    hctl: '',
    transport: DiskTransport.DISK_TRANSPORT_SATA,
    removable: false,
    readOnly: false,
    isBootMedium: false,
    logicalSectorSizeBytes: 512,
    physicalSectorSizeBytes: 4096,
    ...d,
  };
}

// Three synthetic disks that every operator can tell apart.
const trio: Disk[] = [
  disk({
    name: 'sda', model: 'Alpha One', vendor: 'ATA', serial: 'S-100', wwn: '0x5000000000000001', hctl: '0:0:0:0',
    sizeBytes: 100n * GIB, rotational: false, byPathLinks: ['/dev/disk/by-path/pci-0000:00:17.0-ata-1'],
  }),
  disk({
    name: 'sdb', model: 'Bravo Two', vendor: 'ATA', serial: 'S-200', wwn: '0x5000000000000002', hctl: '1:0:0:0',
    sizeBytes: 200n * GIB + (9n * GIB) / 10n, rotational: true, byPathLinks: ['/dev/disk/by-path/pci-0000:00:17.0-ata-2'],
  }),
  disk({
    name: 'sdc', model: 'Charlie', vendor: '', serial: 'S-300', wwn: '0x6000000000000003', hctl: '2:0:0:0',
    wwnWithExtension: '0x6000000000000003abcdef0000000001', wwnVendorExtension: '0xabcdef0000000001',
    sizeBytes: 300n * GIB, rotational: true, byPathLinks: ['/dev/disk/by-path/pci-0000:00:17.0-ata-3'],
  }),
];

const operatorCases: [Partial<RootDeviceHints>, string[]][] = [
  // plain strings: case-insensitive equality
  [{ model: 'alpha one' }, ['sda']],
  [{ model: 'ALPHA ONE' }, ['sda']],
  [{ model: '  Bravo Two  ' }, ['sdb']],
  // string operators, with and without a space after the operator
  [{ model: 's== Bravo Two' }, ['sdb']],
  [{ model: 's==bravo two' }, ['sdb']],
  [{ model: 'S== BRAVO TWO' }, ['sdb']],
  [{ model: 's!= Charlie' }, ['sda', 'sdb']],
  [{ model: 's< bravo' }, ['sda']],
  [{ model: 's<= bravo two' }, ['sda', 'sdb']],
  [{ model: 's> bravo two' }, ['sdc']],
  [{ model: 's>= bravo two' }, ['sdb', 'sdc']],
  [{ model: '<in> HA' }, ['sda', 'sdc']],
  [{ model: '<or> charlie <or> ALPHA ONE' }, ['sda', 'sdc']],
  [{ model: '<or> model 5 <or> foomodel <or> bravo two <or>' }, ['sdb']],
  [{ model: '<or> nothing' }, []],
  // an empty disk attribute never matches, not even s!=
  [{ vendor: 's!= foo' }, ['sda', 'sdb']],
  [{ vendor: 'ata' }, ['sda', 'sdb']],
  // name: /dev/<name>, bare kernel name, or a by-path link; s!= must hold for every value
  [{ name: '/dev/sdb' }, ['sdb']],
  [{ name: 'sdb' }, ['sdb']],
  [{ name: '/dev/disk/by-path/pci-0000:00:17.0-ata-1' }, ['sda']],
  [{ name: 's!= sda' }, ['sdb', 'sdc']],
  [{ name: '<or> sda <or> /dev/sdc' }, ['sda', 'sdc']],
  [{ name: '<in> sd' }, ['sda', 'sdb', 'sdc']],
  [{ name: '/dev/sdz' }, []],
  // by_path: full link or bare link name
  [{ byPath: 'pci-0000:00:17.0-ata-2' }, ['sdb']],
  [{ byPath: '/dev/disk/by-path/pci-0000:00:17.0-ata-3' }, ['sdc']],
  [{ byPath: '<in> ata-' }, ['sda', 'sdb', 'sdc']],
  // the remaining string fields
  [{ wwn: '0x5000000000000002' }, ['sdb']],
  [{ wwnWithExtension: '0x6000000000000003ABCDEF0000000001' }, ['sdc']],
  [{ wwnVendorExtension: '0xabcdef0000000001' }, ['sdc']],
  [{ serial: 's-300' }, ['sdc']],
  [{ hctl: '1:0:0:0' }, ['sdb']],
  [{ hctl: '<in> :0:0:0' }, ['sda', 'sdb', 'sdc']],
  // rotational
  [{ rotational: true }, ['sdb', 'sdc']],
  [{ rotational: false }, ['sda']],
  // size in GiB, disk sizes rounded down (sdb is 200.9 GiB)
  [{ size: '100' }, ['sda']],
  [{ size: '200' }, ['sdb']],
  [{ size: '== 200' }, ['sdb']],
  [{ size: '== 201' }, []],
  [{ size: '!= 200' }, ['sda', 'sdc']],
  [{ size: '>= 200' }, ['sdb', 'sdc']],
  [{ size: '>=200' }, ['sdb', 'sdc']],
  [{ size: '> 200' }, ['sdc']],
  [{ size: '<= 200' }, ['sda', 'sdb']],
  [{ size: '< 200' }, ['sda']],
  [{ size: '<or> 100 <or> 300' }, ['sda', 'sdc']],
  [{ size: '<range-in> [100 200]' }, ['sda', 'sdb']],
  [{ size: '<range-in> (100 300)' }, ['sdb']],
  [{ size: '<range-in> [100 300)' }, ['sda', 'sdb']],
  [{ size: '<range-in> ( 100 300 ]' }, ['sdb', 'sdc']],
  // several hints are ANDed
  [{ rotational: true, size: '>= 250' }, ['sdc']],
  [{ rotational: true, model: '<in> two', serial: 'S-200' }, ['sdb']],
  [{ rotational: false, size: '>= 250' }, []],
  // no hints: every eligible disk
  [{}, ['sda', 'sdb', 'sdc']],
];

for (const [h, expected] of operatorCases) {
  test(`hints ${JSON.stringify(h)} match ${expected.join(', ') || 'no disk'}`, (t) => {
    const names = matchRootDeviceCandidates(trio, hints(h)).flatMap((c) => c.names);
    t.deepEqual(names, expected);
  });
}

test('disk sizes are rounded down to whole GiB before comparing', (t) => {
  const disks = [disk({ name: 'sda', sizeBytes: 240057409536n }), disk({ name: 'sdb', sizeBytes: 100n * GIB - 1n })];
  const names = (size: string): string[] => matchRootDeviceCandidates(disks, hints({ size })).flatMap((c) => c.names);
  t.deepEqual(names('223'), ['sda']);
  t.deepEqual(names('224'), []);
  t.deepEqual(names('> 223'), []);
  t.deepEqual(names('99'), ['sdb']);
  t.deepEqual(names('100'), []);
});

const invalidCases: [Partial<RootDeviceHints>, string, RegExp][] = [
  [{ size: 'abc' }, 'root_device_hints.size', /not a positive whole number/],
  [{ size: '0' }, 'root_device_hints.size', /not a positive whole number/],
  [{ size: '>= 1.5' }, 'root_device_hints.size', /not a positive whole number/],
  [{ size: '= 100' }, 'root_device_hints.size', /ambiguous/],
  [{ size: 's== 100' }, 'root_device_hints.size', /not valid for size/],
  [{ size: '<in> 10' }, 'root_device_hints.size', /not valid for size/],
  [{ size: '<all-in> 10 20' }, 'root_device_hints.size', /not valid for size/],
  [{ size: '<range-in> [300 100]' }, 'root_device_hints.size', /lower bound 300 is above upper bound 100/],
  [{ size: '<range-in> 100 200' }, 'root_device_hints.size', /expects "\[low high\]"/],
  [{ size: '<or>' }, 'root_device_hints.size', /needs a value/],
  [{ model: '== foo' }, 'root_device_hints.model', /not valid for a string hint/],
  [{ model: '>= 5' }, 'root_device_hints.model', /not valid for a string hint/],
  [{ vendor: '<all-in> a b' }, 'root_device_hints.vendor', /not valid for a string hint/],
  [{ serial: 's==' }, 'root_device_hints.serial', /needs a value/],
  [{ hctl: '= 0:0:0:0' }, 'root_device_hints.hctl', /ambiguous/],
];

for (const [h, field, description] of invalidCases) {
  test(`hint ${JSON.stringify(h)} is rejected as invalid, naming ${field}`, (t) => {
    const violations = validateRootDeviceHints(hints(h));
    t.is(violations.length, 1);
    t.is(violations[0]?.field, field);
    t.regex(violations[0]?.description ?? '', description);
    const err = t.throws(() => resolveRootDevice(trio, hints(h)), { instanceOf: InvalidArgumentError });
    t.regex(err?.message ?? '', new RegExp(`^${field.replace('.', '\\.')}: `));
  });
}

test('validateRootDeviceHints reports every bad field under the given path', (t) => {
  const violations = validateRootDeviceHints(hints({ size: 'big', model: '== x' }), 'disk_policies[0].root_device_hints');
  t.deepEqual(violations.map((v) => v.field), ['disk_policies[0].root_device_hints.model', 'disk_policies[0].root_device_hints.size']);
  t.deepEqual(validateRootDeviceHints(hints({ size: '>= 100', model: '<in> ssd', rotational: false })), []);
});

// Resolution on real lsblk output (see test/fixtures/README.md).
const fixtureCases: [string, Partial<RootDeviceHints>, string, string, string[]][] = [
  ['sata-server', { wwn: '0x5002538E40A1B2C4' }, '/dev/disk/by-id/wwn-0x5002538e40a1b2c4', 'sdb', ['wwn']],
  ['sata-server', { serial: 'zc1a2b3d' }, '/dev/disk/by-id/wwn-0x5000c500a1b2c3e5', 'sdd', ['serial']],
  ['sata-server', { rotational: false, hctl: '0:0:0:0' }, '/dev/disk/by-id/wwn-0x5002538e40a1b2c3', 'sda', ['rotational', 'hctl']],
  ['sata-server', { name: 'sdc' }, '/dev/disk/by-id/wwn-0x5000c500a1b2c3d4', 'sdc', ['name']],
  ['sata-server', { name: '/dev/disk/by-path/pci-0000:00:17.0-ata-2.0' }, '/dev/disk/by-id/wwn-0x5002538e40a1b2c4', 'sdb', ['name']],
  ['sata-server', { byPath: '/dev/disk/by-path/pci-0000:00:17.0-ata-4.0' }, '/dev/disk/by-id/wwn-0x5000c500a1b2c3e5', 'sdd', ['by_path']],
  ['sata-server', { hctl: '3:0:0:0', model: '<in> st4000', size: '>= 3000' }, '/dev/disk/by-id/wwn-0x5000c500a1b2c3e5', 'sdd', ['model', 'size', 'hctl']],
  ['nvme-workstation', { model: '<in> 980 pro' }, '/dev/disk/by-id/nvme-eui.002538b221b3c4d5', 'nvme0n1', ['model']],
  ['nvme-workstation', { size: '== 1863' }, '/dev/disk/by-id/nvme-eui.e8238fa6bf530001001b448b4a1b2c3d', 'nvme1n1', ['size']],
  ['nvme-workstation', { wwn: 'eui.002538b221b3c4d5' }, '/dev/disk/by-id/nvme-eui.002538b221b3c4d5', 'nvme0n1', ['wwn']],
  ['nvme-workstation', { size: '<range-in> [900 1000]' }, '/dev/disk/by-id/nvme-eui.002538b221b3c4d5', 'nvme0n1', ['size']],
  ['multipath-san', { vendor: 'pure' }, '/dev/disk/by-id/wwn-0x624a9370c1d2e3f4a5b6c7d800011234', 'sdb', ['vendor']],
  ['multipath-san', { wwnWithExtension: '0x624a9370c1d2e3f4a5b6c7d800011234' }, '/dev/disk/by-id/wwn-0x624a9370c1d2e3f4a5b6c7d800011234', 'sdb', ['wwn_with_extension']],
  ['multipath-san', { wwnVendorExtension: '0xa5b6c7d800011234' }, '/dev/disk/by-id/wwn-0x624a9370c1d2e3f4a5b6c7d800011234', 'sdb', ['wwn_vendor_extension']],
  ['multipath-san', { hctl: '2:0:0:1' }, '/dev/disk/by-id/wwn-0x624a9370c1d2e3f4a5b6c7d800011234', 'sdc', ['hctl']],
  ['multipath-san', { size: '223' }, '/dev/disk/by-id/wwn-0x55cd2e415a1b2c3d', 'sda', ['size']],
  ['virtio-vm', { serial: 'uc-data-01' }, '/dev/disk/by-id/virtio-uc-data-01', 'vdb', ['serial']],
];

for (const [fixture, h, byIdPath, name, matched] of fixtureCases) {
  test(`${fixture}: ${JSON.stringify(h)} resolves to ${byIdPath}`, (t) => {
    const disks = loadLsblkFixture(fixture);
    const result = resolveRootDevice(disks, hints(h));
    const source = disks.find((d) => d.name === name);
    if (!source) return t.fail(`fixture ${fixture} has no disk ${name}`);
    t.is(result.byIdPath, byIdPath);
    t.is(result.name, name);
    t.deepEqual(result.matchedHints, matched);
    t.is(result.sizeBytes, source.sizeBytes);
    t.is(result.serial, source.serial);
    t.is(result.wwn, source.wwn);
    t.deepEqual(result.hints, hints(h));
  });
}

function failure(fn: () => unknown, kind: RootDeviceFailure): RootDeviceResolutionError {
  try {
    fn();
  } catch (err) {
    if (err instanceof RootDeviceResolutionError && err.failure === kind) return err;
    throw err;
  }
  throw new Error(`expected a ${kind} failure`);
}

test('several matches name the hints and every candidate by its by-id path', (t) => {
  const err = failure(() => resolveRootDevice(loadLsblkFixture('sata-server'), hints({ size: '>= 400', rotational: false })), 'ambiguous');
  t.true(err instanceof FailedPreconditionError);
  t.is(err.kind, 'failed-precondition');
  t.is(
    err.message,
    'root device hints matched 2 disks (size=">= 400", rotational=false): ' +
      '/dev/disk/by-id/wwn-0x5002538e40a1b2c3 (sda, 447 GiB), /dev/disk/by-id/wwn-0x5002538e40a1b2c4 (sdb, 447 GiB); ' +
      'add a hint that tells them apart, e.g. wwn or serial',
  );
  t.deepEqual(err.candidates.map((c) => c.names), [['sda'], ['sdb']]);
});

test('without hints, several eligible disks are ambiguous too', (t) => {
  const err = failure(() => resolveRootDevice(loadLsblkFixture('nvme-workstation'), hints({})), 'ambiguous');
  t.regex(err.message, /^no root device hints are set and 2 disks are eligible: \/dev\/disk\/by-id\/nvme-eui\.002538b221b3c4d5 \(nvme0n1, 931 GiB\), \/dev\/disk\/by-id\/nvme-eui\.e8238fa6bf530001001b448b4a1b2c3d \(nvme1n1, 1863 GiB\)/);
});

test('no match says which hint eliminated which disks', (t) => {
  const err = failure(() => resolveRootDevice(loadLsblkFixture('sata-server'), hints({ size: '>= 1000', rotational: false })), 'no-match');
  t.is(
    err.message,
    'root device hints matched no disk (size=">= 1000", rotational=false): ' +
      'size=">= 1000" eliminated sda (447 GiB), sdb (447 GiB); rotational=false eliminated sdc (rotational), sdd (rotational)',
  );
});

test('the USB stick the installer booted from is never a candidate', (t) => {
  const disks = loadLsblkFixture('nvme-workstation');
  t.true(disks.find((d) => d.name === 'sda')?.isBootMedium);
  const err = failure(() => resolveRootDevice(disks, hints({ model: '<in> Ultra Fit' })), 'no-match');
  t.is(
    err.message,
    'root device hints matched no disk (model="<in> Ultra Fit"): model="<in> Ultra Fit" eliminated ' +
      'nvme0n1 (model "Samsung SSD 980 PRO 1TB"), nvme1n1 (model "WD_BLACK SN850X 2000GB"); not eligible: sda (boot medium)',
  );
  const only = failure(() => resolveRootDevice(disks.filter((d) => d.name === 'sda'), hints({})), 'no-eligible-disk');
  t.is(only.message, 'no disk is eligible as root device: sda (boot medium)');
});

const ineligibleCases: [Partial<Disk>, string][] = [
  [{ isBootMedium: true }, 'boot medium'],
  [{ removable: true, transport: DiskTransport.DISK_TRANSPORT_USB }, 'removable media'],
  [{ readOnly: true }, 'read-only'],
  [{ sizeBytes: 0n }, 'no capacity'],
];

for (const [flags, reason] of ineligibleCases) {
  test(`an ineligible disk (${reason}) is skipped even when the hints name it`, (t) => {
    const disks = [disk({ name: 'sda', ...flags }), disk({ name: 'sdb', sizeBytes: 50n * GIB })];
    t.deepEqual(matchRootDeviceCandidates(disks, hints({ name: 'sda' })), []);
    const err = failure(() => resolveRootDevice(disks, hints({ name: 'sda' })), 'no-match');
    t.true(err.message.endsWith(`; not eligible: sda (${reason})`));
    t.is(resolveRootDevice(disks, hints({})).name, 'sdb');
  });
}

test('an empty inventory has no eligible disk', (t) => {
  const err = failure(() => resolveRootDevice([], hints({ size: '>= 1' })), 'no-eligible-disk');
  t.is(err.message, 'no disk is eligible as root device: the inventory reports no disks');
});

test('a virtio disk without serial has no by-id link and cannot be chosen', (t) => {
  const err = failure(() => resolveRootDevice(loadLsblkFixture('virtio-vm'), hints({ name: 'vda' })), 'no-by-id-link');
  t.is(
    err.message,
    'root device hints (name="vda") matched vda (100 GiB), but it has no /dev/disk/by-id link, so the installer cannot ' +
      'address it stably; give the disk a serial number or WWN (e.g. a virtio serial)',
  );
});

test('this machine: its only disk has no by-id link (no udev), so resolution fails clearly', (t) => {
  const disks = loadLsblkFixture('this-machine');
  t.deepEqual(disks.map((d) => d.name), ['vda']);
  const err = failure(() => resolveRootDevice(disks, hints({})), 'no-by-id-link');
  t.regex(err.message, /^the only eligible disk is vda \(256 GiB\), but it has no \/dev\/disk\/by-id link/);
});

test('a disk without by-id still counts when deciding whether the hints are ambiguous', (t) => {
  const err = failure(() => resolveRootDevice(loadLsblkFixture('virtio-vm'), hints({ size: '>= 10' })), 'ambiguous');
  t.regex(err.message, /\/dev\/vda \(no by-id link\) \(vda, 100 GiB\), \/dev\/disk\/by-id\/virtio-uc-data-01 \(vdb, 50 GiB\)/);
});

test('multipath: two paths with the same WWN are one candidate addressed by its wwn- link', (t) => {
  const disks = loadLsblkFixture('multipath-san');
  t.is(disks.length, 3);
  const candidates = matchRootDeviceCandidates(disks, hints({}));
  t.deepEqual(candidates.map((c) => c.names), [['sda'], ['sdb', 'sdc']]);
  const err = failure(() => resolveRootDevice(disks, hints({})), 'ambiguous');
  t.regex(err.message, /2 disks are eligible: \/dev\/disk\/by-id\/wwn-0x55cd2e415a1b2c3d \(sda, 223 GiB\), \/dev\/disk\/by-id\/wwn-0x624a9370c1d2e3f4a5b6c7d800011234 \(sdb, sdc, 1024 GiB\)/);
  const lun = resolveRootDevice(disks, hints({ size: '>= 1000' }));
  t.is(lun.byIdPath, '/dev/disk/by-id/wwn-0x624a9370c1d2e3f4a5b6c7d800011234');
  t.is(lun.wwn, '0x624a9370c1d2e3f4');
  t.is(lun.serial, 'C1D2E3F4A5B6C7D800011234');
});

test('disks sharing a WWN but not a size, or sharing an all-zero WWN, stay separate', (t) => {
  const sameWwn = [
    disk({ name: 'sda', wwn: '0x5000000000000abc', sizeBytes: 100n * GIB }),
    disk({ name: 'sdb', wwn: '0x5000000000000ABC', sizeBytes: 200n * GIB }),
    disk({ name: 'sdc', wwn: '0x5000000000000abc', sizeBytes: 100n * GIB }),
  ];
  t.deepEqual(matchRootDeviceCandidates(sameWwn, hints({})).map((c) => c.names), [['sda', 'sdc'], ['sdb']]);
  const zero = [disk({ name: 'sda', wwn: '0x0000000000000000' }), disk({ name: 'sdb', wwn: '0x0000000000000000' })];
  t.is(matchRootDeviceCandidates(zero, hints({})).length, 2);
});

const preferenceCases: [string[], string | undefined][] = [
  [['ata-SAMSUNG_X_S1', 'wwn-0x5002538e40a1b2c3'], 'wwn-0x5002538e40a1b2c3'],
  [['nvme-Samsung_X_S1', 'nvme-Samsung_X_S1_1', 'nvme-eui.002538b221b3c4d5'], 'nvme-eui.002538b221b3c4d5'],
  [['nvme-Samsung_X_S1_1', 'nvme-Samsung_X_S1'], 'nvme-Samsung_X_S1'],
  [['scsi-SATA_X_S1', 'ata-X_S1', 'usb-X'], 'ata-X_S1'],
  [['usb-Generic_Flash_1234-0:0', 'scsi-3600508b1001c1234'], 'scsi-3600508b1001c1234'],
  [['dm-name-mpatha', 'dm-uuid-mpath-3600508b1001c1234'], 'dm-uuid-mpath-3600508b1001c1234'],
  [['virtio-uc-data-01'], 'virtio-uc-data-01'],
  [['wwn-0x5002538e40a1b2c3-part1'], undefined],
  [[], undefined],
];

for (const [links, expected] of preferenceCases) {
  test(`by-id preference: [${links.join(' ')}] -> ${expected ?? 'none'}`, (t) => {
    const paths = links.map((l) => `/dev/disk/by-id/${l}`);
    const want = expected === undefined ? undefined : `/dev/disk/by-id/${expected}`;
    t.is(preferredByIdLink({ byIdLinks: paths }), want);
    t.is(preferredByIdLink({ byIdLinks: [...paths].reverse() }), want);
  });
}

test('with no hints the only eligible disk wins and no hint is reported as matched', (t) => {
  const result = resolveRootDevice(loadLsblkFixture('nvme-workstation').filter((d) => d.name !== 'nvme1n1'), hints({}));
  t.is(result.byIdPath, '/dev/disk/by-id/nvme-eui.002538b221b3c4d5');
  t.deepEqual(result.matchedHints, []);
});
