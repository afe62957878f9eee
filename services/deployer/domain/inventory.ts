// Validation, normalisation and fingerprinting of the hardware facts an installer reports in
// Discover. Pure functions over the generated MachineInventory type; the protobuf encoder is used
// only because the contract defines inventory_hash over the binary encoding.

import { createHash } from 'node:crypto';
import { MachineInventory, type Disk, type NetworkInterface } from '../../../gen/ts/ultracloud/inventory/v1/inventory.js';
import type { FieldViolation } from '../../../lib/errors.js';

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// Firmware placeholders that many machines share. Accepting one as an identity would merge
// different machines into one record, so the installer must send an empty system_uuid instead.
// 03000200-0400-0500-0006-000700080009 is the AMI BIOS default seen on many desktop boards.
const PLACEHOLDER_UUIDS = new Set([
  '00000000-0000-0000-0000-000000000000',
  'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '03000200-0400-0500-0006-000700080009',
]);

function macProblem(mac: string): string | undefined {
  if (!MAC.test(mac)) return `"${mac}" is not a MAC address of the form aa:bb:cc:dd:ee:ff`;
  const lower = mac.toLowerCase();
  if (lower === '00:00:00:00:00:00') return `"${mac}" is the all-zero placeholder, not a NIC address`;
  // The I/G bit set means a multicast/broadcast group address, which no NIC owns.
  if ((parseInt(lower.slice(0, 2), 16) & 1) === 1) return `"${mac}" is a multicast or broadcast address, not a NIC address`;
  return undefined;
}

/**
 * Every problem with the reported facts, each naming its field by proto path under `prefix`
 * (e.g. `inventory.nics[1].mac_address`). Empty when the inventory is acceptable. machine_id and
 * inventory_hash are set by the deployer and not checked. MACs are accepted in any case; store
 * the result of normaliseInventory.
 */
export function validateInventory(inv: MachineInventory, prefix = 'inventory'): FieldViolation[] {
  const violations: FieldViolation[] = [];
  const add = (field: string, description: string): void => {
    violations.push({ field: `${prefix}.${field}`, description });
  };

  const identity = inv.identity;
  const uuid = identity?.systemUuid.trim() ?? '';
  if (uuid !== '') {
    if (!UUID.test(uuid)) add('identity.system_uuid', `"${uuid}" is not a UUID of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`);
    else if (PLACEHOLDER_UUIDS.has(uuid.toLowerCase())) add('identity.system_uuid', `"${uuid}" is a firmware placeholder shared by many machines; send it empty`);
  }
  const identityMacs = new Map<string, number>();
  (identity?.macAddresses ?? []).forEach((mac, i) => {
    const problem = macProblem(mac.trim());
    if (problem) return add(`identity.mac_addresses[${i}]`, problem);
    const key = mac.trim().toLowerCase();
    const first = identityMacs.get(key);
    if (first !== undefined) add(`identity.mac_addresses[${i}]`, `duplicate of identity.mac_addresses[${first}] (${key})`);
    else identityMacs.set(key, i);
  });

  if (inv.memoryBytes <= 0n) add('memory_bytes', 'must be greater than 0');
  if (inv.cpu) {
    if (inv.cpu.cores === 0) add('cpu.cores', 'must be greater than 0');
    if (inv.cpu.threads === 0) add('cpu.threads', 'must be greater than 0');
  }

  if (inv.disks.length === 0) add('disks', 'at least one disk is required');
  const diskNames = new Map<string, number>();
  inv.disks.forEach((disk, i) => {
    const at = `disks[${i}]`;
    if (disk.name.trim() === '') add(`${at}.name`, 'is required');
    else if (disk.name.includes('/')) add(`${at}.name`, `"${disk.name}" must be a kernel name without /dev/, e.g. "sda"`);
    else if (diskNames.has(disk.name)) add(`${at}.name`, `duplicate of disks[${diskNames.get(disk.name)}] (${disk.name})`);
    else diskNames.set(disk.name, i);
    if (disk.sizeBytes <= 0n) add(`${at}.size_bytes`, 'must be greater than 0');
    disk.byIdLinks.forEach((link, j) => {
      if (!link.startsWith('/dev/disk/by-id/')) add(`${at}.by_id_links[${j}]`, `"${link}" is not under /dev/disk/by-id/`);
    });
    disk.byPathLinks.forEach((link, j) => {
      if (!link.startsWith('/dev/disk/by-path/')) add(`${at}.by_path_links[${j}]`, `"${link}" is not under /dev/disk/by-path/`);
    });
  });

  if (inv.nics.length === 0) add('nics', 'at least one network interface is required');
  const nicNames = new Map<string, number>();
  const nicMacs = new Map<string, string>();
  inv.nics.forEach((nic, i) => {
    const at = `nics[${i}]`;
    if (nic.name.trim() === '') add(`${at}.name`, 'is required');
    else if (nicNames.has(nic.name)) add(`${at}.name`, `duplicate of nics[${nicNames.get(nic.name)}] (${nic.name})`);
    else nicNames.set(nic.name, i);

    const current = nic.macAddress.trim();
    const permanent = nic.permanentMacAddress.trim();
    const currentProblem = current === '' ? 'is required' : macProblem(current);
    if (currentProblem) add(`${at}.mac_address`, currentProblem);
    const permanentProblem = permanent === '' ? undefined : macProblem(permanent);
    if (permanentProblem) add(`${at}.permanent_mac_address`, permanentProblem);

    // Duplicates are checked on the identifying address; current addresses may legitimately
    // repeat (bond members share one), permanent ones may not.
    const field = permanent !== '' ? `${at}.permanent_mac_address` : `${at}.mac_address`;
    const mac = (permanent !== '' ? permanent : current).toLowerCase();
    if (mac === '' || (permanent !== '' ? permanentProblem : currentProblem)) return;
    const first = nicMacs.get(mac);
    if (first !== undefined) add(field, `duplicate of ${first} (${mac})`);
    else nicMacs.set(mac, field);
  });

  const powerMac = inv.power?.macAddress.trim() ?? '';
  if (powerMac !== '') {
    const problem = macProblem(powerMac);
    if (problem) add('power.mac_address', problem);
  }

  if (uuid === '' && identityMacs.size === 0 && nicMacs.size === 0) {
    add('identity', 'needs a system_uuid or at least one valid MAC address to recognise the machine');
  }
  return violations;
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// Code-unit order, not localeCompare: the order (and so the hash) must not depend on the locale.
function sortedUnique(values: Iterable<string>): string[] {
  return [...new Set(values)].sort(compareText);
}

function normaliseDisk(d: Disk): Disk {
  return {
    ...d,
    name: d.name.trim(),
    byIdLinks: sortedUnique(d.byIdLinks.map((l) => l.trim())),
    byPathLinks: sortedUnique(d.byPathLinks.map((l) => l.trim())),
    model: d.model.trim(),
    vendor: d.vendor.trim(),
    serial: d.serial.trim(),
    wwn: d.wwn.trim(),
    wwnWithExtension: d.wwnWithExtension.trim(),
    wwnVendorExtension: d.wwnVendorExtension.trim(),
    hctl: d.hctl.trim(),
  };
}

function normaliseNic(n: NetworkInterface): NetworkInterface {
  return {
    ...n,
    name: n.name.trim(),
    macAddress: n.macAddress.trim().toLowerCase(),
    permanentMacAddress: n.permanentMacAddress.trim().toLowerCase(),
  };
}

// Name first; the remaining keys only make the order total when names collide in bad input.
function compareDisks(a: Disk, b: Disk): number {
  return compareText(a.name, b.name) || compareText(a.serial, b.serial) || compareText(a.wwn, b.wwn);
}

function compareNics(a: NetworkInterface, b: NetworkInterface): number {
  return compareText(a.name, b.name) || compareText(a.macAddress, b.macAddress);
}

/**
 * The canonical form the deployer stores: MACs and the system UUID lowercase, text facts
 * trimmed, link and MAC lists sorted without duplicates, disks and NICs sorted by name.
 * Returns a new object; the input is not modified.
 */
export function normaliseInventory(inv: MachineInventory): MachineInventory {
  return {
    ...inv,
    identity: inv.identity && {
      ...inv.identity,
      systemUuid: inv.identity.systemUuid.trim().toLowerCase(),
      serialNumber: inv.identity.serialNumber.trim(),
      macAddresses: sortedUnique(inv.identity.macAddresses.map((m) => m.trim().toLowerCase())),
    },
    disks: inv.disks.map(normaliseDisk).sort(compareDisks),
    nics: inv.nics.map(normaliseNic).sort(compareNics),
    power: inv.power && { ...inv.power, macAddress: inv.power.macAddress.trim().toLowerCase() },
  };
}

/**
 * inventory_hash as the proto defines it: lowercase hex SHA-256 of the binary encoding of a copy
 * holding only identity, cpu, memory_bytes, disks (sorted by name), nics (sorted by name, link_up
 * and speed_mbps cleared) and boot. Computed over the normalised inventory, so MAC case and list
 * order in the report do not count as hardware changes.
 */
export function inventoryHash(inv: MachineInventory): string {
  const n = normaliseInventory(inv);
  const stable: MachineInventory = {
    machineId: '',
    identity: n.identity,
    cpu: n.cpu,
    memoryBytes: n.memoryBytes,
    disks: n.disks,
    nics: n.nics.map((nic) => ({ ...nic, linkUp: false, speedMbps: 0 })),
    network: undefined,
    boot: n.boot,
    power: undefined,
    inventoryHash: '',
    collectedAt: undefined,
  };
  return createHash('sha256').update(MachineInventory.encode(stable).finish()).digest('hex');
}

/**
 * The MAC set that identifies a machine across boots: each NIC's permanent MAC (its current MAC
 * when the permanent one is unknown, as `ip -j link` omits permaddr when the two are equal),
 * together with identity.mac_addresses, which by contract holds the same addresses. Lowercase,
 * without duplicates, sorted.
 */
export function primaryMacSet(inv: MachineInventory): string[] {
  const fromNics = inv.nics.map((n) => (n.permanentMacAddress.trim() || n.macAddress.trim()).toLowerCase());
  const fromIdentity = (inv.identity?.macAddresses ?? []).map((m) => m.trim().toLowerCase());
  return sortedUnique([...fromNics, ...fromIdentity].filter((m) => m !== ''));
}
