// Settings of `ultracloud nix-agent`, from flags and ULTRACLOUD_* variables (the NixOS module
// nix/modules/nix-agent.nix sets them), validated together at start. The node's certificate,
// key and the cluster CA default to where the installer wrote them (agents/installer/plan.ts);
// the node id defaults to the certificate's CN, which the controller requires anyway.
import { X509Certificate } from 'node:crypto';
import { accessSync, constants, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  ConfigError,
  type ConfigSpec,
  formatHostPort,
  type HostPort,
  isLoopbackHost,
  loadConfig,
  type LogLevel,
  parseBoolean,
  parseHostPort,
  parseLogLevel,
  parseNonEmpty,
} from '../../lib/config/settings.js';
import { TARGET_PATHS } from '../installer/plan.js';

export interface NixAgentConfig {
  readonly hostController: HostPort;
  readonly nodeId: string;
  readonly tlsCertFile: string;
  readonly tlsKeyFile: string;
  readonly caFile: string;
  /** Plaintext to a loopback controller (development only); no certificate then. */
  readonly insecureLoopback: boolean;
  readonly systemProfile: string;
  readonly stateDir: string;
  readonly rebootCommand: readonly string[];
  readonly kexecCommand: readonly string[];
  readonly kexecExecCommand: readonly string[];
  readonly copyCommand: readonly string[] | undefined;
  readonly bootId: string | undefined;
  readonly bootIdFile: string;
  readonly currentSystemLink: string;
  readonly bootedSystemLink: string;
  readonly systemStateCommand: readonly string[];
  readonly logLevel: LogLevel;
}

type RawConfig = Omit<NixAgentConfig, 'nodeId'> & { readonly nodeId: string | undefined };

function parsePath(raw: string): string {
  return resolve(parseNonEmpty(raw));
}

/** A command as an argv, split on white space (no shell, no quoting). */
export function parseArgv(raw: string): string[] {
  return parseNonEmpty(raw).trim().split(/\s+/);
}

function parseNodeId(raw: string): string {
  const v = raw.trim();
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(v)) throw new Error('expected a node id: lowercase letters, digits and -, 1-63 characters');
  return v;
}

export function nixAgentConfigSpec(): ConfigSpec<RawConfig> {
  return {
    hostController: { env: 'ULTRACLOUD_HOST_CONTROLLER', flag: 'host-controller', description: 'host-controller gRPC address, host:port', parse: parseHostPort },
    nodeId: { env: 'ULTRACLOUD_NODE_ID', flag: 'node-id', description: "this node's id; default: the certificate's CN", parse: parseNodeId, optional: true },
    tlsCertFile: { env: 'ULTRACLOUD_TLS_CERT', flag: 'tls-cert', description: "PEM node certificate (mTLS client certificate)", parse: parsePath, default: TARGET_PATHS.tlsCert },
    tlsKeyFile: { env: 'ULTRACLOUD_TLS_KEY', flag: 'tls-key', description: 'PEM private key of the node certificate', parse: parsePath, default: TARGET_PATHS.tlsKey },
    caFile: { env: 'ULTRACLOUD_CA', flag: 'ca', description: "PEM cluster CA bundle that signed the controller's certificate", parse: parsePath, default: TARGET_PATHS.ca },
    insecureLoopback: { env: 'ULTRACLOUD_INSECURE_LOOPBACK', flag: 'insecure-loopback', description: 'plaintext to a loopback controller, without a certificate', parse: parseBoolean, default: false },
    systemProfile: { env: 'ULTRACLOUD_SYSTEM_PROFILE', flag: 'system-profile', description: 'Nix profile holding the system generations', parse: parsePath, default: '/nix/var/nix/profiles/system' },
    stateDir: { env: 'ULTRACLOUD_STATE_DIR', flag: 'state-dir', description: 'directory for the activation journal and machine command records', parse: parsePath, default: '/var/lib/ultracloud/nix-agent' },
    rebootCommand: { env: 'ULTRACLOUD_REBOOT_COMMAND', flag: 'reboot-command', description: 'command run when a reboot is granted', parse: parseArgv, default: ['systemctl', 'reboot'] },
    kexecCommand: { env: 'ULTRACLOUD_KEXEC_COMMAND', flag: 'kexec-command', description: 'kexec binary; --load, --initrd and --command-line are appended', parse: parseArgv, default: ['kexec'] },
    kexecExecCommand: { env: 'ULTRACLOUD_KEXEC_EXEC_COMMAND', flag: 'kexec-exec-command', description: 'command that boots the loaded kernel', parse: parseArgv, default: ['systemctl', 'kexec'] },
    copyCommand: { env: 'ULTRACLOUD_COPY_COMMAND', flag: 'copy-command', description: 'run before nix-store --realise with the store path appended', parse: parseArgv, optional: true },
    bootId: { env: 'ULTRACLOUD_BOOT_ID', flag: 'boot-id', description: 'boot id to report instead of the kernel one', parse: parseNonEmpty, optional: true },
    bootIdFile: { env: 'ULTRACLOUD_BOOT_ID_FILE', flag: 'boot-id-file', description: 'file holding the kernel boot id', parse: parsePath, default: '/proc/sys/kernel/random/boot_id' },
    currentSystemLink: { env: 'ULTRACLOUD_CURRENT_SYSTEM', flag: 'current-system', description: 'link to the running system', parse: parsePath, default: '/run/current-system' },
    bootedSystemLink: { env: 'ULTRACLOUD_BOOTED_SYSTEM', flag: 'booted-system', description: 'link to the booted system', parse: parsePath, default: '/run/booted-system' },
    systemStateCommand: { env: 'ULTRACLOUD_SYSTEM_STATE_COMMAND', flag: 'system-state-command', description: 'prints the system state', parse: parseArgv, default: ['systemctl', 'is-system-running'] },
    logLevel: { env: 'ULTRACLOUD_LOG_LEVEL', flag: 'log-level', description: 'log level', parse: parseLogLevel, default: 'info' },
  };
}

function readable(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

/** The subject CN of a PEM certificate, undefined when it has none. */
export function certificateCommonName(pem: string): string | undefined {
  const subject = new X509Certificate(pem).subject;
  const cn = subject.split('\n').find((line) => line.startsWith('CN='));
  return cn?.slice(3);
}

export function loadNixAgentConfig(flags: Readonly<Record<string, string | undefined>>, env: NodeJS.ProcessEnv = process.env): NixAgentConfig {
  const raw = loadConfig(nixAgentConfigSpec(), { flags, env });
  const problems: string[] = [];
  if (raw.insecureLoopback && !isLoopbackHost(raw.hostController.host)) {
    problems.push(`ULTRACLOUD_INSECURE_LOOPBACK (--insecure-loopback): plaintext is allowed only to a loopback controller, not ${formatHostPort(raw.hostController)}`);
  }
  let certificateCn: string | undefined;
  if (!raw.insecureLoopback) {
    const files: [string, string, string][] = [
      ['ULTRACLOUD_TLS_CERT (--tls-cert)', raw.tlsCertFile, 'the node certificate'],
      ['ULTRACLOUD_TLS_KEY (--tls-key)', raw.tlsKeyFile, "the node certificate's key"],
      ['ULTRACLOUD_CA (--ca)', raw.caFile, 'the cluster CA bundle'],
    ];
    for (const [name, path, what] of files) if (!readable(path)) problems.push(`${name}: ${what} ${path} does not exist or is not readable`);
    if (readable(raw.tlsCertFile)) {
      try {
        certificateCn = certificateCommonName(readFileSync(raw.tlsCertFile, 'utf8'));
        if (!certificateCn) problems.push(`ULTRACLOUD_TLS_CERT (--tls-cert): ${raw.tlsCertFile} has no subject CN (the node id)`);
      } catch (err) {
        problems.push(`ULTRACLOUD_TLS_CERT (--tls-cert): ${raw.tlsCertFile} is not a PEM certificate (${(err as Error).message})`);
      }
    }
  }
  if (raw.nodeId && certificateCn && raw.nodeId !== certificateCn) {
    problems.push(`ULTRACLOUD_NODE_ID (--node-id): ${raw.nodeId} differs from the certificate's CN ${certificateCn}; the controller accepts only the certificate's node`);
  }
  const nodeId = raw.nodeId ?? certificateCn;
  if (!nodeId && raw.insecureLoopback) problems.push('ULTRACLOUD_NODE_ID (--node-id): required without a certificate');
  if (problems.length > 0) throw new ConfigError(problems);
  return { ...raw, nodeId: nodeId as string };
}
