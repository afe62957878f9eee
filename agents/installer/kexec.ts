// Booting the generic installer without a BMC or a USB stick: the nix-agent of an installed node
// loads the installer's kernel and initrd with kexec and jumps into them (as nixos-anywhere
// does), when an operator asks for Reinstall or Rescue. The artefacts are the ISO's own
// (`nix build .#installer-kexec`: bzImage, initrd, and the kernel parameters of the ISO); the
// join token travels inside an extra initrd (a cpio holding /etc/ultracloud/join.token), never
// on the kernel command line, which every process can read from /proc/cmdline.
import type { CommandRunner } from './runner.js';
import { runChecked } from './runner.js';

export interface KexecArtefacts {
  /** Path of the installer kernel (bzImage) on the running system. */
  readonly kernel: string;
  /**
   * The initrd: the installer's, with the token cpio appended (`cat initrd token.cpio`; the
   * kernel unpacks concatenated archives in order, and kexec-tools takes a single --initrd).
   */
  readonly initrd: string;
  /** Kernel parameters: the ISO's own plus `ultracloud.deployer=<host:port>`. */
  readonly commandLine: string;
}

export interface InstallerKernelParams {
  /** host:port of the deployer the installer Discovers against. */
  readonly deployer: string;
  /** The ISO's fixed parameters (init=, console=, ...). */
  readonly base?: readonly string[];
}

/** The installer's kernel command line: the ISO's parameters plus where the deployer is. */
export function installerCommandLine(params: InstallerKernelParams): string {
  if (!/^[^\s=]+:\d{1,5}$/.test(params.deployer)) throw new Error(`deployer: expected host:port, got ${JSON.stringify(params.deployer)}`);
  return [...(params.base ?? []), `ultracloud.deployer=${params.deployer}`].join(' ');
}

/** `kexec --load`: stages the installer kernel; nothing happens until it is executed. */
export function kexecLoadArgv(artefacts: KexecArtefacts): string[] {
  return ['kexec', '--load', artefacts.kernel, `--initrd=${artefacts.initrd}`, `--command-line=${artefacts.commandLine}`];
}

/**
 * Jumps into the loaded kernel. Through systemd (`systemctl kexec`) services stop and
 * filesystems unmount first; `kexec -e` jumps at once (for a system whose systemd is wedged).
 */
export function kexecExecArgv(viaSystemd = true): string[] {
  return viaSystemd ? ['systemctl', 'kexec'] : ['kexec', '-e'];
}

/** Loads the installer and boots it. Returns only if the jump did not happen (or in tests). */
export async function bootInstallerByKexec(runner: CommandRunner, artefacts: KexecArtefacts, options: { viaSystemd?: boolean; signal?: AbortSignal } = {}): Promise<void> {
  await runChecked(runner, { argv: kexecLoadArgv(artefacts), timeoutMs: 120_000 }, options.signal);
  await runChecked(runner, { argv: kexecExecArgv(options.viaSystemd ?? true), timeoutMs: 120_000 }, options.signal);
}
