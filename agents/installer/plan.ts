// Carries out an install plan on this machine: fetch and check the bundle, verify the disk,
// partition it with disko, nixos-install the flake's system, write the node's secrets and
// identity into the target, then unmount. Every command goes through the runner and every file
// through the file sink, so --dry-run (recording runner and sink) shows exactly what a real run
// would do, and tests assert the exact command list.
import { join, resolve } from 'node:path';
import type { FetchPlanResponse } from '../../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import { AgentConfig, type InstallPlan, NetworkBootstrap, PlanMode, WipePolicy } from '../../gen/ts/ultracloud/installplan/v1/installplan.js';
import type { MachineInventory } from '../../gen/ts/ultracloud/inventory/v1/inventory.js';
import { InstallPhase } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import type { BootstrapSecrets } from '../../gen/ts/ultracloud/secrets/v1/secrets.js';
import type { Logger } from '../../lib/log.js';
import { downloadBundle } from './bundle.js';
import { verifyPlanDisk } from './disk-check.js';
import { InvalidPlanError, renderDiskoConfig } from './disko.js';
import type { FileSink } from './files.js';
import { type CommandRunner, type CommandSpec, runChecked } from './runner.js';

/** Reports one phase; throws to stop the install (e.g. the deployer said REDISCOVER). */
export type PhaseReporter = (phase: InstallPhase, percent: number, message: string) => Promise<void>;

export interface PlanSettings {
  readonly runner: CommandRunner;
  readonly files: FileSink;
  /** Where disko mounts the new system and nixos-install installs it. */
  readonly targetRoot: string;
  /** Root under which /dev/disk/by-id is resolved ("/" on a real machine). */
  readonly devRoot: string;
  /** Scratch space for the bundle and disko.nix (on the ISO's tmpfs). */
  readonly workDir: string;
  /** What this boot reported at Discover: the disk check compares against it. */
  readonly inventory: MachineInventory;
  readonly logger: Logger;
  /** Download nothing and take disk sizes from the inventory; runner and sink record. */
  readonly dryRun: boolean;
  /** host:port of the deployer: the install token goes only to bundle URLs on this host. */
  readonly deployerHost?: string;
  /** PEM CA bundle for https bundle URLs. */
  readonly ca?: string;
  readonly signal?: AbortSignal;
}

/** Paths inside the installed system (the contract with nix/modules: docs/nix-schema.md). */
export const TARGET_PATHS = {
  sshHostKey: '/etc/ssh/ssh_host_ed25519_key',
  sshHostKeyPub: '/etc/ssh/ssh_host_ed25519_key.pub',
  credentialsDir: '/var/lib/ultracloud/credentials',
  tlsKey: '/var/lib/ultracloud/credentials/tls.key',
  tlsCert: '/var/lib/ultracloud/credentials/tls.crt',
  ca: '/var/lib/ultracloud/credentials/ca.pem',
  nodeIdentity: '/var/lib/ultracloud/node.json',
  agentConfig: '/var/lib/ultracloud/agents.json',
} as const;

export const PHASE_PERCENT: Readonly<Record<InstallPhase, number>> = {
  [InstallPhase.INSTALL_PHASE_UNSPECIFIED]: 0,
  [InstallPhase.INSTALL_PHASE_FETCH_BUNDLE]: 5,
  [InstallPhase.INSTALL_PHASE_VERIFY_DISK]: 15,
  [InstallPhase.INSTALL_PHASE_PARTITION]: 25,
  [InstallPhase.INSTALL_PHASE_INSTALL]: 40,
  [InstallPhase.INSTALL_PHASE_WRITE_SECRETS]: 85,
  [InstallPhase.INSTALL_PHASE_FINALIZE]: 95,
  [InstallPhase.INSTALL_PHASE_RESCUE]: 100,
  [InstallPhase.UNRECOGNIZED]: 0,
};

const NIXOS_CONFIGURATIONS = 'nixosConfigurations.';

/**
 * `<flake>#<name>` for nixos-install, which itself looks the name up under nixosConfigurations:
 * the plan's attr loses that prefix. A relative `path:` ref names a directory of the bundle.
 */
export function nixosInstallFlake(flakeRef: string, flakeAttr: string, bundleDir?: string): string {
  if (flakeRef === '') throw new InvalidPlanError('plan.flake_ref: empty in an install plan');
  if (!flakeAttr.startsWith(NIXOS_CONFIGURATIONS)) {
    throw new InvalidPlanError(`plan.flake_attr: "${flakeAttr}" is not under nixosConfigurations, which nixos-install --flake requires`);
  }
  const name = flakeAttr.slice(NIXOS_CONFIGURATIONS.length).replace(/^"(.*)"$/, '$1');
  if (name === '' || /[#"]/.test(name)) throw new InvalidPlanError(`plan.flake_attr: "${flakeAttr}" does not name one configuration`);
  let ref = flakeRef;
  const pathRef = /^(path:)?(\.{1,2}(\/.*)?)$/.exec(flakeRef);
  if (pathRef) {
    if (!bundleDir) throw new InvalidPlanError(`plan.flake_ref: "${flakeRef}" is relative but the plan has no bundle_url`);
    ref = `path:${resolve(bundleDir, pathRef[2] as string)}`;
  }
  return `${ref}#${name}`;
}

/** Commands that apply the wipe policy after disko's own metadata wipe would be too late. */
export function wipeCommands(policy: WipePolicy, byIdPath: string): { spec: CommandSpec; mayFail: boolean }[] {
  switch (policy) {
    case WipePolicy.WIPE_POLICY_DISCARD:
      // Discard is an optimisation: without device support it falls back to METADATA (disko).
      return [{ spec: { argv: ['blkdiscard', '--force', byIdPath], timeoutMs: 3_600_000 }, mayFail: true }];
    case WipePolicy.WIPE_POLICY_ZERO:
      return [{ spec: { argv: ['blkdiscard', '--zeroout', '--force', byIdPath], timeoutMs: 24 * 3_600_000 }, mayFail: false }];
    default:
      return [];
  }
}

export interface TargetFile {
  /** Absolute path inside the installed system. */
  readonly path: string;
  readonly content: string;
  readonly mode: number;
  readonly dirMode: number;
}

/**
 * The node identity file of generic class systems (docs/nix-schema.md, "Generic class systems"):
 * the plan's NetworkBootstrap in proto3 JSON plus nodeId.
 */
export function nodeIdentityJson(plan: InstallPlan): string {
  const network = NetworkBootstrap.toJSON(plan.network ?? NetworkBootstrap.fromPartial({})) as Record<string, unknown>;
  return `${JSON.stringify({ nodeId: plan.nodeId, ...network }, null, 2)}\n`;
}

/** Every file the install writes into the target, with its mode. */
export function targetFiles(plan: InstallPlan, secrets: BootstrapSecrets): TargetFile[] {
  const need = (value: string, field: string) => {
    if (value.trim() === '') throw new InvalidPlanError(`secrets.${field}: empty in an install plan`);
    return value.endsWith('\n') ? value : `${value}\n`;
  };
  const agent = AgentConfig.toJSON(plan.agent ?? AgentConfig.fromPartial({})) as Record<string, unknown>;
  return [
    { path: TARGET_PATHS.sshHostKey, content: need(secrets.sshHostEd25519PrivateKey, 'ssh_host_ed25519_private_key'), mode: 0o600, dirMode: 0o755 },
    { path: TARGET_PATHS.sshHostKeyPub, content: need(secrets.sshHostEd25519PublicKey, 'ssh_host_ed25519_public_key'), mode: 0o644, dirMode: 0o755 },
    { path: TARGET_PATHS.tlsKey, content: need(secrets.tlsPrivateKeyPem, 'tls_private_key_pem'), mode: 0o600, dirMode: 0o700 },
    { path: TARGET_PATHS.tlsCert, content: need(secrets.tlsCertificatePem, 'tls_certificate_pem'), mode: 0o644, dirMode: 0o700 },
    { path: TARGET_PATHS.ca, content: need(secrets.caChainPem, 'ca_chain_pem'), mode: 0o644, dirMode: 0o700 },
    { path: TARGET_PATHS.nodeIdentity, content: nodeIdentityJson(plan), mode: 0o644, dirMode: 0o755 },
    { path: TARGET_PATHS.agentConfig, content: `${JSON.stringify({ nodeId: plan.nodeId, ...agent }, null, 2)}\n`, mode: 0o644, dirMode: 0o755 },
  ];
}

function inTarget(targetRoot: string, path: string): string {
  return join(targetRoot, path);
}

/** Runs an install plan; throws (with nothing destructive done, when the disk check fails). */
export async function executeInstallPlan(response: FetchPlanResponse, settings: PlanSettings, report: PhaseReporter): Promise<void> {
  const { plan, secrets } = response;
  if (!plan || !secrets) throw new InvalidPlanError('FetchPlan returned no plan or no secrets');
  if (plan.mode !== PlanMode.PLAN_MODE_INSTALL) throw new InvalidPlanError(`plan.mode: ${PlanMode[plan.mode]} is not an install plan`);
  const disk = plan.disk;
  if (!disk?.layout) throw new InvalidPlanError('plan.disk: an install plan needs a resolved disk and layout');
  const { runner, signal } = settings;
  const run = (spec: CommandSpec) => runChecked(runner, spec, signal);
  // Rendered (and so validated) before anything else: a bad layout fails without side effects.
  const disko = renderDiskoConfig(disk.byIdPath, disk.layout);
  const files = targetFiles(plan, secrets);

  let bundleDir: string | undefined;
  if (plan.bundleUrl) {
    await report(InstallPhase.INSTALL_PHASE_FETCH_BUNDLE, PHASE_PERCENT[InstallPhase.INSTALL_PHASE_FETCH_BUNDLE], `fetching ${redactUrl(plan.bundleUrl)}`);
    if (!/^[0-9a-f]{64}$/.test(plan.bundleSha256)) throw new InvalidPlanError('plan.bundle_sha256: must be 64 lowercase hex digits when bundle_url is set');
    const archive = join(settings.workDir, 'bundle.tar');
    bundleDir = join(settings.workDir, 'bundle');
    if (!settings.dryRun) {
      const url = new URL(plan.bundleUrl);
      const toDeployer = settings.deployerHost !== undefined && url.host === settings.deployerHost;
      const got = await downloadBundle({
        url: plan.bundleUrl,
        destination: archive,
        expectedSha256: plan.bundleSha256,
        ...(toDeployer ? { bearer: secrets.installToken } : {}),
        ...(settings.ca ? { ca: settings.ca } : {}),
        ...(signal ? { signal } : {}),
      });
      settings.logger.info({ event: 'bundle.fetched', bytes: got.sizeBytes, sha256: got.sha256 });
    }
    await settings.files.mkdir(bundleDir, 0o755);
    // GNU tar detects gzip and zstd compression by itself when reading a file.
    await run({ argv: ['tar', '-xf', archive, '-C', bundleDir], timeoutMs: 600_000 });
  } else {
    await report(InstallPhase.INSTALL_PHASE_FETCH_BUNDLE, PHASE_PERCENT[InstallPhase.INSTALL_PHASE_FETCH_BUNDLE], `no bundle; nix fetches ${plan.flakeRef}`);
  }
  const flake = nixosInstallFlake(plan.flakeRef, plan.flakeAttr, bundleDir);

  await report(InstallPhase.INSTALL_PHASE_VERIFY_DISK, PHASE_PERCENT[InstallPhase.INSTALL_PHASE_VERIFY_DISK], `checking ${disk.byIdPath}`);
  const verified = await verifyPlanDisk(disk, {
    runner,
    devRoot: settings.devRoot,
    inventory: settings.inventory,
    sizeFromInventory: settings.dryRun,
    ...(signal ? { signal } : {}),
  });
  if (disk.wipePolicy === WipePolicy.WIPE_POLICY_REQUIRE_EMPTY && !settings.dryRun) {
    const signatures = await run({ argv: ['wipefs', '--no-act', '--noheadings', disk.byIdPath], timeoutMs: 60_000 });
    if (signatures.stdout.trim() !== '') {
      throw new InvalidPlanError(`wipe policy REQUIRE_EMPTY: ${disk.byIdPath} holds partition-table or filesystem signatures (${signatures.stdout.trim().split('\n').length} found); refusing to wipe it`);
    }
  }

  await report(InstallPhase.INSTALL_PHASE_PARTITION, PHASE_PERCENT[InstallPhase.INSTALL_PHASE_PARTITION], `${verified.device} (${verified.sizeBytes} bytes) matches; partitioning`);
  for (const wipe of wipeCommands(disk.wipePolicy, disk.byIdPath)) {
    const result = await runner.run(wipe.spec, signal);
    if (result.exitCode !== 0 && !wipe.mayFail) await run(wipe.spec);
  }
  const diskoFile = join(settings.workDir, 'disko.nix');
  await settings.files.writeFile(diskoFile, disko, 0o644, 0o700);
  await run({ argv: ['disko', '--mode', 'destroy,format,mount', '--yes-wipe-all-disks', '--root-mountpoint', settings.targetRoot, diskoFile], timeoutMs: 3_600_000 });

  await report(InstallPhase.INSTALL_PHASE_INSTALL, PHASE_PERCENT[InstallPhase.INSTALL_PHASE_INSTALL], `nixos-install --flake ${flake}`);
  await run({ argv: ['nixos-install', '--flake', flake, '--no-root-passwd', '--root', settings.targetRoot], timeoutMs: 4 * 3_600_000 });

  await report(InstallPhase.INSTALL_PHASE_WRITE_SECRETS, PHASE_PERCENT[InstallPhase.INSTALL_PHASE_WRITE_SECRETS], 'writing host keys, certificates and node identity');
  await settings.files.mkdir(inTarget(settings.targetRoot, TARGET_PATHS.credentialsDir), 0o700);
  for (const file of files.filter((f) => f.path !== TARGET_PATHS.agentConfig)) {
    await settings.files.writeFile(inTarget(settings.targetRoot, file.path), file.content, file.mode, file.dirMode);
  }

  await report(InstallPhase.INSTALL_PHASE_FINALIZE, PHASE_PERCENT[InstallPhase.INSTALL_PHASE_FINALIZE], 'writing agent configuration; unmounting');
  for (const file of files.filter((f) => f.path === TARGET_PATHS.agentConfig)) {
    await settings.files.writeFile(inTarget(settings.targetRoot, file.path), file.content, file.mode, file.dirMode);
  }
  await run({ argv: ['umount', '--recursive', settings.targetRoot], timeoutMs: 300_000 });
}

/** A URL for logs and reports: no userinfo, no query (either may carry a credential). */
export function redactUrl(raw: string): string {
  try {
    const url = new URL(raw);
    return `${url.protocol}//${url.host}${url.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}
