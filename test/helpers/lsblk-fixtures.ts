// TEST-ONLY: turns a captured `lsblk -J -O -b` document plus an `ls -l /dev/disk/by-id
// /dev/disk/by-path` listing into inventory Disk messages, so domain tests run on real output.
// Deliberately minimal; the installer's production parser (agents/installer) is the real one and
// must not import this. Simplifications made here, not decisions for the installer:
//  - only top-level `type: "disk"` devices, minus zram/ram/loop; partitions and CD-ROMs skipped;
//  - a disk holding an iso9660 filesystem (itself or a partition) is the installer's boot medium;
//  - links to a dm-mpath device (a child of type "mpath") belong to every path disk under it;
//  - lsblk's WWN is udev's ID_WWN_WITH_EXTENSION; a 32-hex-digit NAA value is split into the
//    16-digit WWN and the vendor extension the way udev's scsi_id reports them.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseLinkListing } from '../../agents/installer/facts/disks.js';
import { DiskTransport, type Disk } from '../../gen/ts/ultracloud/inventory/v1/inventory.js';

/** The subset of lsblk's JSON fields this converter reads. */
interface LsblkDevice {
  readonly name: string;
  readonly kname?: string;
  readonly type: string;
  readonly size: number | null;
  readonly model?: string | null;
  readonly vendor?: string | null;
  readonly serial?: string | null;
  readonly wwn?: string | null;
  readonly hctl?: string | null;
  readonly tran?: string | null;
  readonly subsystems?: string | null;
  readonly rota?: boolean;
  readonly rm?: boolean;
  readonly ro?: boolean;
  readonly fstype?: string | null;
  readonly 'log-sec'?: number | null;
  readonly 'phy-sec'?: number | null;
  readonly children?: readonly LsblkDevice[];
}

const FIXTURE_DIR = fileURLToPath(new URL('../fixtures/lsblk/', import.meta.url));

const TRANSPORTS: Record<string, DiskTransport> = {
  nvme: DiskTransport.DISK_TRANSPORT_NVME,
  sata: DiskTransport.DISK_TRANSPORT_SATA,
  sas: DiskTransport.DISK_TRANSPORT_SAS,
  usb: DiskTransport.DISK_TRANSPORT_USB,
  fc: DiskTransport.DISK_TRANSPORT_FC,
  iscsi: DiskTransport.DISK_TRANSPORT_ISCSI,
  ata: DiskTransport.DISK_TRANSPORT_ATA,
  spi: DiskTransport.DISK_TRANSPORT_SCSI,
  mmc: DiskTransport.DISK_TRANSPORT_MMC,
};

/** The production listing parser, split into the two directories this converter reads. */
function linksByDirectory(listing: string): { byId: Map<string, string>; byPath: Map<string, string> } {
  const byId = new Map<string, string>();
  const byPath = new Map<string, string>();
  for (const [path, target] of parseLinkListing(listing, '/dev/disk/by-id')) {
    if (path.startsWith('/dev/disk/by-path/')) byPath.set(path, target);
    else if (path.startsWith('/dev/disk/by-id/')) byId.set(path, target);
  }
  return { byId, byPath };
}

function descendants(dev: LsblkDevice): LsblkDevice[] {
  return (dev.children ?? []).flatMap((c) => [c, ...descendants(c)]);
}

function text(v: string | null | undefined): string {
  return (v ?? '').trim();
}

function splitWwn(raw: string): { wwn: string; withExtension: string; vendorExtension: string } {
  const m = /^(0x[0-9a-f]{16})([0-9a-f]{16})$/i.exec(raw);
  if (m?.[1] && m[2]) return { wwn: m[1], withExtension: raw, vendorExtension: `0x${m[2]}` };
  return { wwn: raw, withExtension: raw, vendorExtension: '' };
}

/** Converts lsblk JSON and the link listing into Disk messages, in lsblk order. */
export function disksFromLsblk(lsblkJson: string, linkListing: string): Disk[] {
  const doc = JSON.parse(lsblkJson) as { blockdevices: LsblkDevice[] };
  const { byId, byPath } = linksByDirectory(linkListing);
  const disks: Disk[] = [];
  for (const dev of doc.blockdevices) {
    if (dev.type !== 'disk' || /^(zram|ram|loop)\d/.test(dev.name)) continue;
    const kname = dev.kname ?? dev.name;
    const below = descendants(dev);
    const owned = new Set([kname, ...below.filter((c) => c.type === 'mpath').map((c) => c.kname ?? c.name)]);
    const linksTo = (links: Map<string, string>): string[] =>
      [...links].filter(([, target]) => owned.has(target)).map(([path]) => path).sort();
    const wwn = splitWwn(text(dev.wwn));
    disks.push({
      name: dev.name,
      byIdLinks: linksTo(byId),
      byPathLinks: linksTo(byPath),
      model: text(dev.model),
      vendor: text(dev.vendor),
      serial: text(dev.serial),
      wwn: wwn.wwn,
      wwnWithExtension: wwn.withExtension,
      wwnVendorExtension: wwn.vendorExtension,
      sizeBytes: BigInt(dev.size ?? 0),
      rotational: dev.rota ?? false,
      hctl: text(dev.hctl),
      transport: TRANSPORTS[text(dev.tran)] ?? (text(dev.subsystems).includes('virtio') ? DiskTransport.DISK_TRANSPORT_VIRTIO : DiskTransport.DISK_TRANSPORT_UNSPECIFIED),
      removable: dev.rm ?? false,
      readOnly: dev.ro ?? false,
      isBootMedium: [dev, ...below].some((d) => d.fstype === 'iso9660'),
      logicalSectorSizeBytes: dev['log-sec'] ?? 0,
      physicalSectorSizeBytes: dev['phy-sec'] ?? 0,
    });
  }
  return disks;
}

/** Loads test/fixtures/lsblk/<name>.json with its <name>.by-id.txt listing. */
export function loadLsblkFixture(name: string): Disk[] {
  return disksFromLsblk(readFileSync(`${FIXTURE_DIR}${name}.json`, 'utf8'), readFileSync(`${FIXTURE_DIR}${name}.by-id.txt`, 'utf8'));
}
