// The last check before anything destructive: the plan's /dev/disk/by-id path must exist on this
// machine and lead to the disk the deployer chose - same serial, WWN and size as reported at
// Discover - and never to the installer's own boot medium. The by-id links are resolved under a
// configurable /dev root so tests use a fake tree of symlinks.
import { lstat, realpath } from 'node:fs/promises';
import { basename, join, relative, sep } from 'node:path';
import type { ResolvedDisk } from '../../gen/ts/ultracloud/installplan/v1/installplan.js';
import type { MachineInventory } from '../../gen/ts/ultracloud/inventory/v1/inventory.js';
import { type CommandRunner, runChecked } from './runner.js';

/** The disk on this machine is not the one the plan names; nothing was touched. */
export class DiskMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DiskMismatchError';
  }
}

export interface VerifiedDisk {
  /** The plan's by-id path (what disko and every command use). */
  readonly byIdPath: string;
  /** Kernel device it resolves to, e.g. /dev/nvme0n1. */
  readonly device: string;
  readonly sizeBytes: bigint;
}

export interface DiskCheckSettings {
  readonly runner: CommandRunner;
  /** Root under which /dev is looked up; "/" on a real machine. */
  readonly devRoot: string;
  readonly inventory: MachineInventory;
  /** Take the size from the inventory instead of running blockdev (dry-run runs nothing). */
  readonly sizeFromInventory?: boolean;
  readonly signal?: AbortSignal;
}

export async function verifyPlanDisk(disk: ResolvedDisk, settings: DiskCheckSettings): Promise<VerifiedDisk> {
  const byIdPath = disk.byIdPath;
  if (!byIdPath.startsWith('/dev/disk/by-id/')) throw new DiskMismatchError(`plan.disk.by_id_path "${byIdPath}" is not a /dev/disk/by-id path`);
  const link = join(settings.devRoot, byIdPath);
  try {
    await lstat(link);
  } catch {
    throw new DiskMismatchError(`${byIdPath} does not exist on this machine; refusing to partition anything`);
  }
  let target: string;
  try {
    target = await realpath(link);
  } catch {
    throw new DiskMismatchError(`${byIdPath} is a dangling link; refusing to partition anything`);
  }
  const inDev = relative(settings.devRoot, target);
  if (inDev.startsWith('..') || !inDev.startsWith(`dev${sep}`)) throw new DiskMismatchError(`${byIdPath} resolves outside /dev (${target})`);
  const device = `/${inDev.split(sep).join('/')}`;
  const name = basename(device);
  const reported = settings.inventory.disks.find((d) => d.name === name);
  if (!reported) throw new DiskMismatchError(`${byIdPath} resolves to ${device}, which is not among the disks this machine reported`);
  if (reported.isBootMedium) throw new DiskMismatchError(`${byIdPath} resolves to ${device}, the installer's boot medium`);
  if (disk.serial !== '' && reported.serial.trim() !== disk.serial.trim()) {
    throw new DiskMismatchError(`${byIdPath} resolves to ${device} with serial "${reported.serial}", the plan expects "${disk.serial}"`);
  }
  if (disk.wwn !== '' && reported.wwn.toLowerCase() !== disk.wwn.toLowerCase()) {
    throw new DiskMismatchError(`${byIdPath} resolves to ${device} with WWN "${reported.wwn}", the plan expects "${disk.wwn}"`);
  }
  let sizeBytes = reported.sizeBytes;
  if (!settings.sizeFromInventory) {
    const result = await runChecked(settings.runner, { argv: ['blockdev', '--getsize64', byIdPath], timeoutMs: 30_000 }, settings.signal);
    const text = result.stdout.trim();
    if (!/^\d+$/.test(text)) throw new DiskMismatchError(`blockdev --getsize64 ${byIdPath} printed "${text.slice(0, 80)}", not a size`);
    sizeBytes = BigInt(text);
  }
  if (sizeBytes !== disk.sizeBytes) {
    throw new DiskMismatchError(`${byIdPath} resolves to ${device} of ${sizeBytes} bytes, the plan expects ${disk.sizeBytes}`);
  }
  return { byIdPath, device, sizeBytes };
}
