// `ultracloud nix-agent`: the host rollout agent on every installed host. Settings come from
// flags and ULTRACLOUD_* variables, validated together at start (config.ts); then it holds its
// stream to the host-controller until SIGTERM.
import type { Command } from 'commander';
import { createLogger } from '../../lib/log.js';
import { stopOnSignals } from '../../lib/process.js';
import { loadNixAgentConfig } from './config.js';
import { startNixAgent } from './daemon.js';

const OPTIONS: [string, string][] = [
  ['--host-controller <host:port>', 'host-controller address (ULTRACLOUD_HOST_CONTROLLER)'],
  ['--node-id <id>', "this node's id (ULTRACLOUD_NODE_ID, default: the certificate's CN)"],
  ['--tls-cert <file>', 'node certificate (ULTRACLOUD_TLS_CERT, default /var/lib/ultracloud/credentials/tls.crt)'],
  ['--tls-key <file>', 'node certificate key (ULTRACLOUD_TLS_KEY, default /var/lib/ultracloud/credentials/tls.key)'],
  ['--ca <file>', 'cluster CA bundle (ULTRACLOUD_CA, default /var/lib/ultracloud/credentials/ca.pem)'],
  ['--insecure-loopback', 'plaintext to a loopback controller, without a certificate (ULTRACLOUD_INSECURE_LOOPBACK)'],
  ['--system-profile <path>', 'system profile (ULTRACLOUD_SYSTEM_PROFILE, default /nix/var/nix/profiles/system)'],
  ['--state-dir <dir>', 'activation journal and records (ULTRACLOUD_STATE_DIR, default /var/lib/ultracloud/nix-agent)'],
  ['--reboot-command <argv>', 'run when a reboot is granted (ULTRACLOUD_REBOOT_COMMAND, default "systemctl reboot")'],
  ['--kexec-command <argv>', 'kexec binary (ULTRACLOUD_KEXEC_COMMAND, default "kexec")'],
  ['--kexec-exec-command <argv>', 'boots the loaded kernel (ULTRACLOUD_KEXEC_EXEC_COMMAND, default "systemctl kexec")'],
  ['--copy-command <argv>', 'fetches a closure before realising it; the store path is appended (ULTRACLOUD_COPY_COMMAND)'],
  ['--boot-id <id>', 'boot id to report (ULTRACLOUD_BOOT_ID, default: the kernel one)'],
  ['--boot-id-file <file>', 'kernel boot id (ULTRACLOUD_BOOT_ID_FILE, default /proc/sys/kernel/random/boot_id)'],
  ['--current-system <link>', 'running system link (ULTRACLOUD_CURRENT_SYSTEM, default /run/current-system)'],
  ['--booted-system <link>', 'booted system link (ULTRACLOUD_BOOTED_SYSTEM, default /run/booted-system)'],
  ['--system-state-command <argv>', 'prints the system state (ULTRACLOUD_SYSTEM_STATE_COMMAND, default "systemctl is-system-running")'],
  ['--log-level <level>', 'trace|debug|info|warn|error (ULTRACLOUD_LOG_LEVEL)'],
];

/** Adds `ultracloud nix-agent` to the composition root's program. */
export function registerNixAgentCommand(program: Command): void {
  const command = program.command('nix-agent').description('run the host rollout agent: apply desired systems from the host-controller with rollback');
  for (const [flag, help] of OPTIONS) command.option(flag, help);
  command.action(async (opts: Record<string, unknown>) => {
    const flags: Record<string, string | undefined> = {};
    for (const [key, value] of Object.entries(opts)) {
      const flag = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
      if (typeof value === 'string') flags[flag] = value;
      else if (value === true) flags[flag] = 'true';
    }
    const config = loadNixAgentConfig(flags);
    const logger = createLogger({ level: config.logLevel, name: 'ultracloud-nix-agent' });
    const agent = await startNixAgent(config, logger);
    stopOnSignals(() => agent.stop(), logger);
  });
}
