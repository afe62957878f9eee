// Collects a MachineInventory from a FactsSource: the live machine (files under a root, commands
// through a replaceable runner) or a directory of captured outputs (tests, `--commands-from`).
// The parsers are pure; this file only decides what to read and run, and in which order.

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { access, readFile, readdir, readlink } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join, posix } from 'node:path';
import type { MachineInventory } from '../../../gen/ts/ultracloud/inventory/v1/inventory.js';
import { bootInfo, SECURE_BOOT_EFIVAR } from './boot.js';
import { parseCpuinfo } from './cpu.js';
import { DMI_SYSFS_FILES, dmiFromDmidecode, dmiFromSysfs, mergeDmi } from './dmi.js';
import { bootLabelFromCmdline, disksFromLsblk, linkMapFromEntries, parseLinkListing, parseLsblk } from './disks.js';
import { memoryBytes } from './memory.js';
import { isPhysicalLink, nicFromLink, observedNetwork, parseIpAddr, parseIpLink, parseIpRoute, parseSysClassNetListing, type IpRoute } from './nics.js';

/** Runs a command and resolves with its stdout; rejects when it is missing, fails or times out. */
export type CommandRunner = (command: string, args: readonly string[]) => Promise<string>;

/** Where facts come from. Every method answers undefined/false instead of throwing for "absent". */
export interface FactsSource {
  /** Bytes of a file at an absolute machine path (e.g. "/proc/cpuinfo"); undefined when unreadable. */
  readFile(path: string): Promise<Buffer | undefined>;
  /** Whether an absolute machine path exists. */
  exists(path: string): Promise<boolean>;
  /** The symlinks in a directory as entry name → link target; undefined when the directory is absent. */
  listLinks(dir: string): Promise<ReadonlyMap<string, string> | undefined>;
  /** The target of one symlink; undefined when it is not one. */
  readLink(path: string): Promise<string | undefined>;
  /** A command's stdout; undefined when it is not installed, fails, or was not captured. */
  run(command: string, args: readonly string[]): Promise<string | undefined>;
}

export interface LiveFactsSourceOptions {
  /** Directory the machine paths are read under ("/" on the installer; a fake tree in tests). */
  readonly root?: string;
  /** Runs commands; defaults to execFile with a 30 s timeout. The installer passes its logging runner. */
  readonly run?: CommandRunner;
}

/** Default runner: no shell, 30 s timeout, output capped at 64 MiB. */
export const execFileRunner: CommandRunner = (command, args) =>
  new Promise((resolve, reject) => {
    execFile(command, [...args], { timeout: 30_000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (error, stdout) => {
      if (error) reject(error);
      else resolve(stdout);
    });
  });

/** Facts of the running machine: files under `root`, commands through `run`. */
export function liveFactsSource(options: LiveFactsSourceOptions = {}): FactsSource {
  const root = options.root ?? '/';
  const run = options.run ?? execFileRunner;
  const at = (path: string): string => join(root, path);
  return {
    readFile: (path) => readFile(at(path)).catch(() => undefined),
    exists: (path) => access(at(path)).then(() => true, () => false),
    readLink: (path) => readlink(at(path)).catch(() => undefined),
    async listLinks(dir) {
      const names = await readdir(at(dir)).catch(() => undefined);
      if (!names) return undefined;
      const links = new Map<string, string>();
      for (const name of names.sort()) {
        const target = await readlink(at(posix.join(dir, name))).catch(() => undefined);
        if (target !== undefined) links.set(name, target);
      }
      return links;
    },
    run: (command, args) => run(command, args).catch(() => undefined),
  };
}

/**
 * Directory listings a captured directory holds as `ls -l <dir>` output, by machine directory.
 * A listing that is only ls's "No such file or directory" means the directory was absent.
 */
export const CAPTURED_LISTINGS: Readonly<Record<string, string>> = {
  '/dev/disk/by-id': 'by-id.txt',
  '/dev/disk/by-path': 'by-path.txt',
  '/sys/class/net': 'sys-class-net.txt',
};

/**
 * The file holding a command's captured stdout, or undefined for a command that is never
 * captured. Absent file = the command failed or is not installed on that machine.
 */
export function capturedFileName(command: string, args: readonly string[]): string | undefined {
  const line = [command, ...args].join(' ');
  const fixed: Record<string, string> = {
    'lsblk -J -O -b': 'lsblk.json',
    'ip -j -d link': 'ip-link.json',
    'ip -j link': 'ip-link.json',
    'ip -j addr': 'ip-addr.json',
    'ip -j route': 'ip-route.json',
    'ip -j -6 route': 'ip-route6.json',
    'uname -m': 'uname-m.txt',
    efibootmgr: 'efibootmgr.txt',
  };
  if (fixed[line]) return fixed[line];
  const iface = args[args.length - 1] ?? '';
  if (!/^[\w.:@-]+$/.test(iface)) return undefined;
  if (command === 'ethtool' && args.length === 1) return `ethtool-${iface}.txt`;
  if (command === 'ethtool' && args.length === 2 && (args[0] === '-i' || args[0] === '-P')) return `ethtool${args[0]}-${iface}.txt`;
  if (command === 'dmidecode' && args.length === 2 && args[0] === '-t') return `dmidecode-${iface}.txt`;
  if (line.startsWith('ip -j route get ') && args.length === 4) return 'ip-route-get.json';
  return undefined;
}

/**
 * Facts captured earlier into `dir` (layout in docs/installer.md): command outputs under the
 * names of capturedFileName, directory listings as in CAPTURED_LISTINGS, and plain files at
 * their machine path under `dir/root/` (e.g. `root/proc/cpuinfo`, `root/sys/class/dmi/id/…`).
 */
export function capturedFactsSource(dir: string): FactsSource {
  const file = (name: string): Promise<string | undefined> => readFile(join(dir, name), 'utf8').catch(() => undefined);
  const listing = async (machineDir: string): Promise<ReadonlyMap<string, string> | undefined> => {
    const name = CAPTURED_LISTINGS[machineDir];
    const text = name === undefined ? undefined : await file(name);
    if (text === undefined || /No such file or directory/.test(text)) return undefined;
    const links = new Map<string, string>();
    if (machineDir === '/sys/class/net') return parseSysClassNetListing(text);
    for (const [path, target] of parseLinkListing(text, machineDir)) {
      if (posix.dirname(path) === machineDir) links.set(posix.basename(path), target);
    }
    return links;
  };
  return {
    readFile: (path) => readFile(join(dir, 'root', path)).catch(() => undefined),
    exists: (path) => Promise.resolve(existsSync(join(dir, 'root', path))),
    listLinks: listing,
    readLink: async (path) => (await listing(posix.dirname(path)))?.get(posix.basename(path)),
    run: async (command, args) => {
      const name = capturedFileName(command, args);
      return name === undefined ? undefined : file(name);
    },
  };
}

export interface CollectOptions {
  /** `--boot-device`: the installer's boot medium when it cannot be detected (path or kernel name). */
  readonly bootDevice?: string;
  /** The deployer's IP address, to record which interface and source address reach it. */
  readonly deployerIp?: string;
  /** Collection time; defaults to now. */
  readonly now?: Date;
}

/** A required fact source is missing: the inventory would be useless without it. */
export class FactsUnavailableError extends Error {
  constructor(what: string) {
    super(`cannot collect hardware facts: ${what}`);
    this.name = 'FactsUnavailableError';
  }
}

async function text(source: FactsSource, path: string): Promise<string | undefined> {
  return (await source.readFile(path))?.toString('utf8');
}

async function collectDmi(source: FactsSource) {
  const files: Record<string, string | undefined> = {};
  await Promise.all(Object.values(DMI_SYSFS_FILES).map(async (f) => (files[f] = await text(source, `/sys/class/dmi/id/${f}`))));
  const dmidecode = await Promise.all(['system', 'baseboard', 'bios'].map((t) => source.run('dmidecode', ['-t', t])));
  return mergeDmi(dmiFromSysfs(files), dmiFromDmidecode(dmidecode.filter((d) => d !== undefined).join('\n')));
}

async function collectDisks(source: FactsSource, bootDevice: string | undefined) {
  const [lsblk, byId, byPath, cmdline] = await Promise.all([
    source.run('lsblk', ['-J', '-O', '-b']),
    source.listLinks('/dev/disk/by-id'),
    source.listLinks('/dev/disk/by-path'),
    text(source, '/proc/cmdline'),
  ]);
  if (lsblk === undefined) throw new FactsUnavailableError('`lsblk -J -O -b` gave no output');
  const label = cmdline === undefined ? undefined : bootLabelFromCmdline(cmdline);
  return disksFromLsblk(
    parseLsblk(lsblk),
    linkMapFromEntries('/dev/disk/by-id', byId ?? []),
    linkMapFromEntries('/dev/disk/by-path', byPath ?? []),
    { ...(bootDevice ? { bootDevice } : {}), ...(label ? { label } : {}) },
  );
}

async function collectNics(source: FactsSource) {
  const linkJson = (await source.run('ip', ['-j', '-d', 'link'])) ?? (await source.run('ip', ['-j', 'link']));
  if (linkJson === undefined) throw new FactsUnavailableError('`ip -j link` gave no output');
  const sysNet = await source.listLinks('/sys/class/net');
  const physical = parseIpLink(linkJson).filter((l) => isPhysicalLink(l, sysNet?.get(l.ifname)));
  return Promise.all(
    physical.map(async (link) => {
      const sys = `/sys/class/net/${link.ifname}`;
      const [ethtool, ethtoolDriverInfo, ethtoolPermanentAddress, addrAssignType, sysfsSpeed, sysfsDriverLink] = await Promise.all([
        source.run('ethtool', [link.ifname]),
        source.run('ethtool', ['-i', link.ifname]),
        source.run('ethtool', ['-P', link.ifname]),
        text(source, `${sys}/addr_assign_type`),
        text(source, `${sys}/speed`),
        source.readLink(`${sys}/device/driver`),
      ]);
      return nicFromLink(link, { sysfsDevicePath: sysNet?.get(link.ifname), ethtool, ethtoolDriverInfo, ethtoolPermanentAddress, addrAssignType, sysfsSpeed, sysfsDriverLink });
    }),
  );
}

async function collectNetwork(source: FactsSource, physical: ReadonlySet<string>, deployerIp: string | undefined) {
  const [addr, route4, route6, resolved, resolvConf, toDeployer] = await Promise.all([
    source.run('ip', ['-j', 'addr']),
    source.run('ip', ['-j', 'route']),
    source.run('ip', ['-j', '-6', 'route']),
    // systemd-resolved's upstream list; /etc/resolv.conf then only names its 127.0.0.53 stub.
    text(source, '/run/systemd/resolve/resolv.conf'),
    text(source, '/etc/resolv.conf'),
    deployerIp && isIP(deployerIp) ? source.run('ip', ['-j', 'route', 'get', deployerIp]) : Promise.resolve(undefined),
  ]);
  const routes = (json: string | undefined): IpRoute[] => (json === undefined ? [] : parseIpRoute(json));
  return observedNetwork({
    addr: addr === undefined ? [] : parseIpAddr(addr),
    physical,
    routes: [routes(route4), routes(route6)],
    ...(resolved ?? resolvConf ? { resolvConf: resolved ?? resolvConf } : {}),
    ...(toDeployer ? { routeToDeployer: routes(toDeployer) } : {}),
  });
}

/**
 * Everything the installer reports in Discover. machine_id and inventory_hash stay empty (the
 * deployer sets them); power stays unset (unknown: BMC detection is not done here).
 */
export async function collectInventory(source: FactsSource, options: CollectOptions = {}): Promise<MachineInventory> {
  const [dmi, cpuinfo, uname, meminfo, dmiMemory, disks, nics, efi] = await Promise.all([
    collectDmi(source),
    text(source, '/proc/cpuinfo'),
    source.run('uname', ['-m']),
    text(source, '/proc/meminfo'),
    source.run('dmidecode', ['-t', 'memory']),
    collectDisks(source, options.bootDevice),
    collectNics(source),
    source.exists('/sys/firmware/efi'),
  ]);
  const [network, secureBootEfivar, efibootmgr] = await Promise.all([
    collectNetwork(source, new Set(nics.map((n) => n.name)), options.deployerIp),
    efi ? source.readFile(SECURE_BOOT_EFIVAR) : Promise.resolve(undefined),
    efi ? source.run('efibootmgr', []) : Promise.resolve(undefined),
  ]);
  const macs = [...new Set(nics.map((n) => n.permanentMacAddress || n.macAddress).filter((m) => m !== ''))].sort();
  return {
    machineId: '',
    identity: {
      systemUuid: dmi.systemUuid,
      serialNumber: dmi.serialNumber,
      vendor: dmi.vendor,
      productName: dmi.productName,
      boardSerial: dmi.boardSerial,
      boardVendor: dmi.boardVendor,
      boardProduct: dmi.boardProduct,
      macAddresses: macs,
    },
    cpu: parseCpuinfo(cpuinfo ?? '', uname),
    memoryBytes: memoryBytes(meminfo, dmiMemory),
    disks,
    nics,
    network,
    boot: bootInfo({ efi, secureBootEfivar, efibootmgr, firmwareVendor: dmi.biosVendor, firmwareVersion: dmi.biosVersion }),
    power: undefined,
    inventoryHash: '',
    collectedAt: options.now ?? new Date(),
  };
}
