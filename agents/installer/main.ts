// `ultracloud installer`: the agent on the generic ISO. Settings come from flags and
// ULTRACLOUD_* variables, validated together at start; then it runs the Discover loop until
// SIGTERM (or, with --once / --dry-run, for one attempt).
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { BootstrapServiceDefinition, type FetchPlanResponse } from '../../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import { PlanMode, WipePolicy } from '../../gen/ts/ultracloud/installplan/v1/installplan.js';
import { parseReadableFile } from '../../lib/config/daemon.js';
import { ConfigError, type ConfigSpec, formatHostPort, type HostPort, isLoopbackHost, loadConfig, type LogLevel, parseBoolean, parseHostPort, parseLogLevel, parseNonEmpty } from '../../lib/config/settings.js';
import { createServiceClient, openChannel } from '../../lib/grpc/client.js';
import { createLogger } from '../../lib/log.js';
import { capturedFactsSource, collectInventory, liveFactsSource } from './facts/collect.js';
import { type FileSink, formatMode, fsFileSink, RecordingFileSink } from './files.js';
import { redactUrl } from './plan.js';
import { type AttemptOutcome, runInstaller } from './protocol.js';
import { DEFAULT_SSHD_COMMAND } from './rescue.js';
import { type CommandRunner, OutputTail, RecordingRunner, runChecked, spawnRunner } from './runner.js';

export const INSTALLER_VERSION = 'ultracloud-installer 0.1.0';

export interface InstallerConfig {
  readonly deployer: HostPort;
  readonly joinTokenFile: string | undefined;
  readonly caFile: string | undefined;
  readonly target: string;
  readonly devRoot: string;
  readonly sysfsRoot: string;
  readonly commandsFrom: string | undefined;
  readonly workDir: string;
  readonly dryRun: boolean;
  readonly once: boolean;
  readonly rebootCommand: readonly string[];
  readonly logLevel: LogLevel;
}

/** Paths are resolved against the working directory once, at start. */
function parsePath(raw: string): string {
  return resolve(parseNonEmpty(raw));
}

function parseArgv(raw: string): string[] {
  const argv = parseNonEmpty(raw).trim().split(/\s+/);
  return argv;
}

export function installerConfigSpec(): ConfigSpec<InstallerConfig> {
  return {
    deployer: { env: 'ULTRACLOUD_DEPLOYER', flag: 'deployer', description: 'deployer gRPC address, host:port', parse: parseHostPort },
    joinTokenFile: { env: 'ULTRACLOUD_JOIN_TOKEN_FILE', flag: 'join-token-file', description: 'file holding the ISO join token', parse: parseReadableFile, optional: true },
    caFile: { env: 'ULTRACLOUD_CA', flag: 'ca', description: 'PEM CA bundle of the deployer (TLS)', parse: parseReadableFile, optional: true },
    target: { env: 'ULTRACLOUD_INSTALL_TARGET', flag: 'target', description: 'mount point of the system being installed', parse: parsePath, default: '/mnt' },
    devRoot: { env: 'ULTRACLOUD_DEV_ROOT', flag: 'dev-root', description: 'root under which /dev/disk/by-id is resolved', parse: parsePath, default: '/' },
    sysfsRoot: { env: 'ULTRACLOUD_SYSFS_ROOT', flag: 'sysfs-root', description: 'root under which /sys and /proc facts are read', parse: parsePath, default: '/' },
    commandsFrom: { env: 'ULTRACLOUD_COMMANDS_FROM', flag: 'commands-from', description: 'directory of captured command outputs to read facts from', parse: parsePath, optional: true },
    workDir: { env: 'ULTRACLOUD_WORK_DIR', flag: 'work-dir', description: 'scratch directory for the bundle and disko.nix', parse: parsePath, default: '/run/ultracloud-installer' },
    dryRun: { env: 'ULTRACLOUD_DRY_RUN', flag: 'dry-run', description: 'print the plan and its commands, run nothing', parse: parseBoolean, default: false },
    once: { env: 'ULTRACLOUD_ONCE', flag: 'once', description: 'stop after one install or rescue attempt', parse: parseBoolean, default: false },
    rebootCommand: { env: 'ULTRACLOUD_REBOOT_COMMAND', flag: 'reboot-command', description: 'command run to reboot after a successful install', parse: parseArgv, default: ['systemctl', 'reboot'] },
    logLevel: { env: 'ULTRACLOUD_LOG_LEVEL', flag: 'log-level', description: 'log level', parse: parseLogLevel, default: 'info' },
  };
}

export function loadInstallerConfig(flags: Readonly<Record<string, string | undefined>>, env: NodeJS.ProcessEnv = process.env): InstallerConfig {
  const config = loadConfig(installerConfigSpec(), { flags, env });
  if (!config.caFile && !isLoopbackHost(config.deployer.host)) {
    throw new ConfigError([`ULTRACLOUD_CA (--ca): required for the non-loopback deployer ${formatHostPort(config.deployer)} (plaintext is allowed only on loopback)`]);
  }
  return config;
}

/** What --dry-run prints: the plan, then every command and file, never a secret's content. */
export function formatDryRun(fetched: FetchPlanResponse, commands: readonly (readonly string[])[], files: RecordingFileSink): string {
  const plan = fetched.plan;
  const lines = [
    `dry run: plan for node ${plan?.nodeId ?? '?'} (machine ${plan?.machineId ?? '?'}, ${PlanMode[plan?.mode ?? PlanMode.PLAN_MODE_UNSPECIFIED]})`,
    ...(plan?.disk ? [`  disk: ${plan.disk.byIdPath} (${plan.disk.sizeBytes} bytes, serial ${plan.disk.serial || '-'}), wipe ${WipePolicy[plan.disk.wipePolicy]}`] : []),
    ...(plan?.flakeRef ? [`  system: ${plan.flakeRef} ${plan.flakeAttr}`] : []),
    ...(plan?.bundleUrl ? [`  bundle: GET ${redactUrl(plan.bundleUrl)} (sha256 ${plan.bundleSha256})`] : []),
    'commands:',
    ...commands.map((argv) => `  ${argv.join(' ')}`),
    'files:',
    ...files.written.map((f) => `  ${f.directory ? 'dir ' : 'file'} ${formatMode(f.mode)} ${f.directory ? '' : `${f.sizeBytes} bytes `}${f.path}`),
  ];
  return `${lines.join('\n')}\n`;
}

function readBootId(root: string): string {
  try {
    return readFileSync(join(root, 'proc/sys/kernel/random/boot_id'), 'utf8').trim() || randomUUID();
  } catch {
    return randomUUID();
  }
}

/** Runs the installer with validated settings until `signal` aborts. */
export async function runInstallerCommand(flags: Readonly<Record<string, string | undefined>>, signal: AbortSignal, env: NodeJS.ProcessEnv = process.env): Promise<AttemptOutcome | undefined> {
  const config = loadInstallerConfig(flags, env);
  const logger = createLogger({ level: config.logLevel, name: 'ultracloud-installer' }).child({ component: 'installer' });
  const address = formatHostPort(config.deployer);
  const channel = openChannel(address, config.caFile ? { tls: { caFile: config.caFile } } : {});
  const client = createServiceClient(BootstrapServiceDefinition, channel, { defaultDeadlineMs: 30_000 });
  const joinToken = config.joinTokenFile ? readFileSync(config.joinTokenFile, 'utf8').trim() : undefined;
  const tail = new OutputTail();
  let runner: CommandRunner;
  let files: FileSink;
  let recorded: { runner: RecordingRunner; files: RecordingFileSink } | undefined;
  if (config.dryRun) {
    recorded = { runner: new RecordingRunner([], logger, tail), files: new RecordingFileSink() };
    runner = recorded.runner;
    files = recorded.files;
  } else {
    runner = spawnRunner({ logger, tail });
    files = fsFileSink();
  }
  // Facts commands (lsblk, ip, dmidecode) run for real even in a dry run: they only read. Their
  // output goes to a tail of its own, so failure reports show the install's output.
  const factsRunner = spawnRunner({ logger: logger.child({ stage: 'facts' }), tail: new OutputTail(20) });
  const source = config.commandsFrom
    ? capturedFactsSource(config.commandsFrom)
    : liveFactsSource({ root: config.sysfsRoot, run: async (command, args) => (await runChecked(factsRunner, { argv: [command, ...args], timeoutMs: 30_000 }, signal)).stdout });
  try {
    const outcome = await runInstaller(
      {
        client,
        joinToken,
        collectInventory: () => collectInventory(source, { deployerIp: config.deployer.host }),
        bootId: readBootId(config.sysfsRoot),
        installerVersion: INSTALLER_VERSION,
        runner,
        files,
        plan: { targetRoot: config.target, devRoot: config.devRoot, workDir: config.workDir, deployerHost: address, ...(config.caFile ? { ca: readFileSync(config.caFile, 'utf8') } : {}) },
        rescue: { liveRoot: '/', sshdCommand: DEFAULT_SSHD_COMMAND },
        rebootCommand: config.rebootCommand,
        logger,
        dryRun: config.dryRun,
        once: config.once,
      },
      signal,
    );
    if (recorded && outcome?.kind === 'dry-run') process.stdout.write(formatDryRun(outcome.plan, recorded.runner.commands.map((c) => c.argv), recorded.files));
    if (recorded && outcome?.kind === 'failed') process.stdout.write(`dry run: the plan would fail in ${outcome.phase}: ${outcome.reason}\n${recorded.runner.commandLines.map((l) => `  ${l}`).join('\n')}\n`);
    return outcome;
  } finally {
    channel.close();
  }
}

/** Adds `ultracloud installer` to the composition root's program. */
export function registerInstallerCommand(program: Command): void {
  program
    .command('installer')
    .description('run the installer agent of the generic ISO: discover, fetch the plan, install, report')
    .option('--deployer <host:port>', 'deployer address (ULTRACLOUD_DEPLOYER)')
    .option('--join-token-file <file>', 'ISO join token (ULTRACLOUD_JOIN_TOKEN_FILE)')
    .option('--ca <file>', 'PEM CA bundle of the deployer; required off loopback (ULTRACLOUD_CA)')
    .option('--target <dir>', 'mount point of the new system (ULTRACLOUD_INSTALL_TARGET, default /mnt)')
    .option('--dev-root <dir>', 'root for /dev/disk/by-id lookups (ULTRACLOUD_DEV_ROOT, default /)')
    .option('--sysfs-root <dir>', 'root for /sys and /proc facts (ULTRACLOUD_SYSFS_ROOT, default /)')
    .option('--commands-from <dir>', 'read facts from captured outputs (ULTRACLOUD_COMMANDS_FROM)')
    .option('--work-dir <dir>', 'scratch directory (ULTRACLOUD_WORK_DIR, default /run/ultracloud-installer)')
    .option('--dry-run', 'print the plan, its commands and files; run nothing (ULTRACLOUD_DRY_RUN)')
    .option('--once', 'stop after one install or rescue attempt (ULTRACLOUD_ONCE)')
    .option('--reboot-command <argv>', 'command run to reboot (ULTRACLOUD_REBOOT_COMMAND, default "systemctl reboot")')
    .option('--log-level <level>', 'trace|debug|info|warn|error (ULTRACLOUD_LOG_LEVEL)')
    .action(async (opts: Record<string, unknown>) => {
      const flags: Record<string, string | undefined> = {};
      for (const [key, value] of Object.entries(opts)) {
        const flag = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
        if (typeof value === 'string') flags[flag] = value;
        else if (value === true) flags[flag] = 'true';
      }
      const controller = new AbortController();
      // SIGTERM stops the loop between steps; a running command's process group is killed.
      process.once('SIGTERM', () => controller.abort(new Error('SIGTERM')));
      process.once('SIGINT', () => controller.abort(new Error('SIGINT')));
      const outcome = await runInstallerCommand(flags, controller.signal);
      process.exitCode = outcome?.kind === 'failed' ? 1 : 0;
    });
}
