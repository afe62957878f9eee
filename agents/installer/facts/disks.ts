// Whole disks from `lsblk -J -O -b` plus the /dev/disk/by-id and /dev/disk/by-path symlinks.
// Pure functions: the caller runs lsblk and lists the link directories.
//
// Decisions (docs/installer.md, "Hardware facts"):
//  - Reported: lsblk `type: "disk"` devices except zram, ram and loop, and each dm-multipath
//    device once. Partitions, CD-ROMs (`rom`, e.g. sr0), md and LVM children are not disks.
//  - dm-multipath: the paths (sdb, sdc, …) are hidden and the dm device (`dm-0`) is reported once,
//    because writing to one path behind multipathd corrupts the LUN and the install must target
//    the dm device, which owns the `wwn-`/`dm-uuid-mpath-` links. Model, vendor, serial, WWN and
//    transport come from its first path; HCTL is empty (each path has its own); by_path_links
//    are the paths' links, so a by_path hint naming one path still selects the LUN. The deployer
//    additionally merges disks with one WWN and size, so path-level reports stay safe too.
//  - The installer's boot medium is flagged (see findBootMedium) and never a root candidate.

import { DiskTransport, type Disk } from '../../../gen/ts/ultracloud/inventory/v1/inventory.js';

/**
 * The lsblk JSON fields read here. util-linux ≥ 2.33 prints numbers and booleans; older versions
 * print strings ("1", "0"), so both are accepted.
 */
export interface LsblkDevice {
  readonly name: string;
  readonly kname?: string;
  readonly type: string;
  readonly size?: number | string | null;
  readonly model?: string | null;
  readonly vendor?: string | null;
  readonly serial?: string | null;
  readonly wwn?: string | null;
  readonly hctl?: string | null;
  readonly tran?: string | null;
  readonly subsystems?: string | null;
  readonly rota?: boolean | string | null;
  readonly rm?: boolean | string | null;
  readonly ro?: boolean | string | null;
  readonly fstype?: string | null;
  readonly label?: string | null;
  readonly mountpoint?: string | null;
  readonly mountpoints?: readonly (string | null)[] | null;
  readonly 'log-sec'?: number | string | null;
  readonly 'phy-sec'?: number | string | null;
  readonly children?: readonly LsblkDevice[];
}

/** Parses `lsblk -J -O -b` output; throws when it is not lsblk JSON. */
export function parseLsblk(json: string): LsblkDevice[] {
  const doc = JSON.parse(json) as { blockdevices?: unknown };
  if (!Array.isArray(doc.blockdevices)) throw new Error('lsblk output has no "blockdevices" array');
  return doc.blockdevices as LsblkDevice[];
}

/** Symlink path (absolute) → kernel name of its target, e.g. "/dev/disk/by-id/wwn-0x5…" → "sda". */
export type LinkMap = ReadonlyMap<string, string>;

/** A link map from directory entries and their readlink targets (`../../sda` → `sda`). */
export function linkMapFromEntries(dir: string, entries: Iterable<readonly [name: string, target: string]>): LinkMap {
  const map = new Map<string, string>();
  for (const [name, target] of entries) map.set(`${dir}/${name}`, target.slice(target.lastIndexOf('/') + 1));
  return map;
}

/**
 * Parses `ls -l <dir>` output (one or several directories; `ls` prints a `<dir>:` header before
 * each when given several) into a link map. `defaultDir` applies until the first header. Lines
 * that are not symlinks (`total 0`, "No such file or directory") are ignored.
 */
export function parseLinkListing(listing: string, defaultDir: string): LinkMap {
  const entries = new Map<string, string>();
  let dir = defaultDir.replace(/\/$/, '');
  for (const raw of listing.split('\n')) {
    const line = raw.trim();
    const header = /^(\/\S+):$/.exec(line);
    if (header?.[1]) {
      dir = header[1].replace(/\/$/, '');
      continue;
    }
    // `ls -l` prints "<perms> <n> <user> <group> <size> <date…> <name> -> <target>"; names in
    // /dev/disk have no spaces or " -> ", so the last "<word> -> <word>" pair is the link.
    const link = /^l\S*\s.*\s(\S+) -> (\S+)$/.exec(line);
    if (!link?.[1] || !link[2]) continue;
    entries.set(`${dir}/${link[1]}`, link[2].slice(link[2].lastIndexOf('/') + 1));
  }
  return entries;
}

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
  virtio: DiskTransport.DISK_TRANSPORT_VIRTIO,
};

function text(v: string | null | undefined): string {
  return (v ?? '').trim();
}

function flag(v: boolean | string | null | undefined): boolean {
  return v === true || v === '1' || v === 'true';
}

function integer(v: number | string | null | undefined): bigint {
  if (typeof v === 'number') return Number.isFinite(v) && v > 0 ? BigInt(Math.trunc(v)) : 0n;
  return typeof v === 'string' && /^\d+$/.test(v.trim()) ? BigInt(v.trim()) : 0n;
}

function kernelName(dev: LsblkDevice): string {
  return dev.kname ?? dev.name;
}

function descendants(dev: LsblkDevice): LsblkDevice[] {
  return (dev.children ?? []).flatMap((c) => [c, ...descendants(c)]);
}

function mountpoints(dev: LsblkDevice): string[] {
  return [dev.mountpoint, ...(dev.mountpoints ?? [])].filter((m): m is string => typeof m === 'string' && m !== '');
}

/** Transport from lsblk TRAN, falling back to SUBSYSTEMS and the kernel name. */
export function diskTransport(dev: LsblkDevice): DiskTransport {
  const tran = TRANSPORTS[text(dev.tran).toLowerCase()];
  if (tran !== undefined) return tran;
  const subsystems = text(dev.subsystems).split(':');
  if (subsystems.includes('virtio')) return DiskTransport.DISK_TRANSPORT_VIRTIO;
  if (subsystems.includes('nvme') || /^nvme/.test(kernelName(dev))) return DiskTransport.DISK_TRANSPORT_NVME;
  if (subsystems.includes('mmc') || /^mmcblk/.test(kernelName(dev))) return DiskTransport.DISK_TRANSPORT_MMC;
  return DiskTransport.DISK_TRANSPORT_UNSPECIFIED;
}

/**
 * lsblk's WWN is udev's ID_WWN_WITH_EXTENSION. A NAA-6 (registered extended) identifier has 32
 * hex digits: udev's ID_WWN is the first 16, ID_WWN_VENDOR_EXTENSION the last 16. Other forms
 * (NAA-5, NVMe `eui.`/`nvme.`) have no extension.
 */
export function splitWwn(raw: string): { wwn: string; wwnWithExtension: string; wwnVendorExtension: string } {
  const m = /^(0x6[0-9a-f]{15})([0-9a-f]{16})$/i.exec(raw);
  if (m?.[1] && m[2]) return { wwn: m[1], wwnWithExtension: raw, wwnVendorExtension: `0x${m[2]}` };
  return { wwn: raw, wwnWithExtension: raw, wwnVendorExtension: '' };
}

/** Where live ISOs mount their medium: NixOS (/iso), dracut (/run/initramfs/live), others. */
export const BOOT_MEDIUM_MOUNTPOINTS = ['/iso', '/run/initramfs/live', '/run/archiso/bootmnt', '/cdrom', '/lib/live/mount/medium'];

export interface BootMediumHints {
  /** Operator-given boot device (`--boot-device`): "/dev/sda", "sda" or a /dev/disk/by-* link. */
  readonly bootDevice?: string;
  /** Filesystem label of the live medium, e.g. from `root=LABEL=…` on the kernel command line. */
  readonly label?: string;
}

/** The label in `root=LABEL=<label>` (or `root=live:LABEL=…`) of a kernel command line. */
export function bootLabelFromCmdline(cmdline: string): string | undefined {
  const m = /(?:^|\s)root=(?:live:)?LABEL=(\S+)/.exec(cmdline);
  return m?.[1] ? m[1].replace(/\\x20/g, ' ') : undefined;
}

/**
 * Whether a top-level lsblk device holds the installer's boot medium: it (or a partition) is the
 * given boot device, is mounted where live ISOs mount their medium, carries the live medium's
 * label, or holds an iso9660 filesystem. Flagging one disk too many only protects it from being
 * chosen as root; missing the stick could wipe it, so every signal counts.
 */
export function isBootMedium(dev: LsblkDevice, hints: BootMediumHints, links: LinkMap): boolean {
  const all = [dev, ...descendants(dev)];
  const given = hints.bootDevice?.trim();
  if (given) {
    const target = links.get(given) ?? given.replace(/^\/dev\//, '');
    if (all.some((d) => kernelName(d) === target || d.name === target)) return true;
  }
  return all.some(
    (d) =>
      mountpoints(d).some((m) => BOOT_MEDIUM_MOUNTPOINTS.includes(m)) ||
      (hints.label !== undefined && text(d.label) === hints.label) ||
      text(d.fstype) === 'iso9660',
  );
}

function isReportableDisk(dev: LsblkDevice): boolean {
  return dev.type === 'disk' && !/^(zram|ram|loop)\d/.test(kernelName(dev));
}

/** Converts lsblk devices and the by-id / by-path link maps into Disk messages, in lsblk order. */
export function disksFromLsblk(devices: readonly LsblkDevice[], byId: LinkMap, byPath: LinkMap, hints: BootMediumHints = {}): Disk[] {
  const allLinks = new Map([...byId, ...byPath]);
  const linksTo = (links: LinkMap, targets: readonly string[]): string[] =>
    [...links].filter(([, target]) => targets.includes(target)).map(([path]) => path).sort();

  // A multipath device appears under each of its paths; it is reported where its first path is.
  const order: { readonly own: LsblkDevice; readonly paths: LsblkDevice[] }[] = [];
  const multipath = new Map<string, { readonly own: LsblkDevice; readonly paths: LsblkDevice[] }>();
  for (const dev of devices) {
    if (!isReportableDisk(dev)) continue;
    const mpath = (dev.children ?? []).find((c) => c.type === 'mpath');
    if (!mpath) {
      order.push({ own: dev, paths: [dev] });
      continue;
    }
    const known = multipath.get(kernelName(mpath));
    if (known) known.paths.push(dev);
    else {
      const entry = { own: mpath, paths: [dev] };
      multipath.set(kernelName(mpath), entry);
      order.push(entry);
    }
  }
  return order.map(({ own, paths }) => {
    const first = paths[0] ?? own;
    const isMultipath = own !== first;
    const disk = diskFrom(own, first, paths.some((p) => isBootMedium(p, hints, allLinks)));
    disk.byIdLinks = linksTo(byId, [kernelName(own)]);
    disk.byPathLinks = linksTo(byPath, isMultipath ? paths.map(kernelName) : [kernelName(own)]);
    if (isMultipath) disk.hctl = '';
    return disk;
  });
}

// `own` gives the block device's own properties (size, sectors, read-only); `identity` the
// hardware strings, which for a dm-multipath device are those of its first path.
function diskFrom(own: LsblkDevice, identity: LsblkDevice, isBootMediumFlag: boolean): Disk {
  return {
    name: kernelName(own),
    byIdLinks: [],
    byPathLinks: [],
    model: text(identity.model),
    vendor: text(identity.vendor),
    serial: text(identity.serial),
    ...splitWwn(text(identity.wwn)),
    sizeBytes: integer(own.size),
    rotational: flag(own.rota ?? identity.rota),
    hctl: text(identity.hctl),
    transport: diskTransport(identity),
    removable: flag(identity.rm),
    readOnly: flag(own.ro),
    isBootMedium: isBootMediumFlag,
    logicalSectorSizeBytes: Number(integer(own['log-sec'])),
    physicalSectorSizeBytes: Number(integer(own['phy-sec'])),
  };
}
