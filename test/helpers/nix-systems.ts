// Tiny NixOS-shaped systems for nix-agent tests, built by the real Nix (`builtins.derivation`
// with builder /bin/sh: no nixpkgs, no network) into the real store, and a throwaway "host" in a
// temporary directory: a real system profile, /run/current-system and /run/booted-system links,
// and a log of every switch-to-configuration run.
//
// Each system's `bin/switch-to-configuration` is a script whose behaviour the test picks:
//   succeed     logs, moves current-system (switch, test) and boot-default (switch, boot), exits 0;
//               activated (switch, test), it removes `<root>/controller-blocked` (the network works)
//   fail        logs and exits 4 with a failed-unit message, as a broken activation does
//   hang        logs and sleeps for an hour (the activation timeout must kill it)
//   unhealthy   succeeds, but its `sw/bin/ultracloud-test-health` exits 1
//   disconnect  succeeds, but creates `<root>/controller-blocked`: the test's controller link
//               (or TCP proxy) refuses new connections from then on, as a broken network would
//   slow        logs, sleeps 3 s, then succeeds
// Every system ships `sw/bin/ultracloud-test-health` (exit 0 unless unhealthy), so a command
// health check `["ultracloud-test-health"]` runs the new system's own probe.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import type { Duration } from '../../gen/ts/google/protobuf/duration.js';
import { ActivationStrategy, type DesiredSystem, type HealthCheck } from '../../gen/ts/ultracloud/system/v1/system.js';
import { nixStandIn } from './nix.js';

const run = promisify(execFile);

// Tests build everything locally: without this, Nix asks cache.nixos.org first and retries
// for seconds on a machine without network.
process.env.NIX_CONFIG ??= 'substituters =\n';

export type SwitchBehaviour = 'succeed' | 'fail' | 'hang' | 'unhealthy' | 'disconnect' | 'slow';

export interface TestHost {
  readonly root: string;
  /** The system profile, e.g. <root>/profiles/system. */
  readonly profile: string;
  readonly currentSystemLink: string;
  readonly bootedSystemLink: string;
  /** Exists once a `disconnect` system was activated. */
  readonly blockedFile: string;
  readonly activationLog: string;
  /** Agent state directory (journal, GC root). */
  readonly stateDir: string;
  /** Store path per system name. */
  readonly systems: Readonly<Record<string, string>>;
}

/** An activated system that does not break the network brings it back (as a rollback does). */
const RESTORE_NETWORK = 'if [ "$action" != boot ]; then rm -f "$root/controller-blocked"; fi';

function switchScript(name: string, behaviour: SwitchBehaviour, root: string): string {
  const log = `echo "${name} $action` ;
  const before: Record<SwitchBehaviour, string> = {
    succeed: RESTORE_NETWORK,
    unhealthy: RESTORE_NETWORK,
    fail: `${log} failed" >> "$root/activations.log"\necho "warning: the following units failed: broken.service" >&2\nexit 4`,
    hang: `${log} hanging" >> "$root/activations.log"\nsleep 3600`,
    disconnect: 'touch "$root/controller-blocked"',
    slow: `sleep 3\n${RESTORE_NETWORK}`,
  };
  return [
    '#!/bin/sh',
    'action="$1"',
    `root='${root}'`,
    `${log} start $$" >> "$root/activations.log"`,
    'case "$action" in switch|boot|test) ;; *) echo "unknown action $action" >&2; exit 1;; esac',
    before[behaviour],
    'if [ "$action" != boot ]; then ln -sfn "@out@" "$root/run/current-system"; fi',
    'if [ "$action" != test ]; then ln -sfn "@out@" "$root/boot-default"; fi',
    `${log} done" >> "$root/activations.log"`,
    '',
  ].join('\n');
}

function healthScript(behaviour: SwitchBehaviour): string {
  return behaviour === 'unhealthy' ? '#!/bin/sh\necho "unhealthy: service answers 503" >&2\nexit 1\n' : '#!/bin/sh\nexit 0\n';
}

const SYSTEMS_NIX = `let specs = builtins.fromJSON (builtins.readFile ./systems.json);
in builtins.mapAttrs (n: s: builtins.derivation {
  name = s.name;
  system = builtins.currentSystem;
  builder = "/bin/sh";
  switchScript = s.switchScript;
  healthScript = s.healthScript;
  args = [ "-c" ''
    /bin/mkdir -p $out/bin $out/sw/bin
    printf '%s' "$switchScript" | /bin/sed "s|@out@|$out|g" > $out/bin/switch-to-configuration
    printf '%s' "$healthScript" > $out/sw/bin/ultracloud-test-health
    /bin/chmod +x $out/bin/switch-to-configuration $out/sw/bin/ultracloud-test-health
  '' ];
}) specs
`;

/** Builds the systems into the store; returns their store paths by name. */
export async function buildTestSystems(root: string, systems: Readonly<Record<string, SwitchBehaviour>>): Promise<Record<string, string>> {
  const dir = join(root, 'nix');
  mkdirSync(dir, { recursive: true });
  const specs = Object.fromEntries(
    Object.entries(systems).map(([name, behaviour]) => [name, { name: `ultracloud-test-${name}`, switchScript: switchScript(name, behaviour, root), healthScript: healthScript(behaviour) }]),
  );
  writeFileSync(join(dir, 'systems.json'), JSON.stringify(specs));
  writeFileSync(join(dir, 'default.nix'), SYSTEMS_NIX);
  const evaluated = await run('nix-instantiate', ['--eval', '--strict', '--json', '-E', `builtins.mapAttrs (n: d: d.outPath) (import ${dir})`], { timeout: 120_000 });
  const paths = JSON.parse(evaluated.stdout) as Record<string, string>;
  await run('nix-build', ['--no-out-link', dir], { timeout: 300_000 });
  return paths;
}

/**
 * A flake in `<root>/flake-<name>` whose output `system` is a test system (flakes evaluate
 * purely, so the platform is written in); returns its `path:` reference.
 */
export async function writeTestFlake(root: string, name: string, behaviour: SwitchBehaviour): Promise<string> {
  const platform = JSON.parse((await run('nix-instantiate', ['--eval', '--json', '-E', 'builtins.currentSystem'], { timeout: 60_000 })).stdout) as string;
  const dir = join(root, `flake-${name}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'systems.json'), JSON.stringify({ system: { name: `ultracloud-test-${name}`, switchScript: switchScript(name, behaviour, root), healthScript: healthScript(behaviour) } }));
  writeFileSync(join(dir, 'default.nix'), SYSTEMS_NIX.replace('builtins.currentSystem', JSON.stringify(platform)));
  writeFileSync(join(dir, 'flake.nix'), '{ outputs = { self }: import ./default.nix; }\n');
  return `path:${dir}`;
}

/** `nix-env -p <profile> --set <path>` from the test, as an operator would. */
export async function setProfile(profile: string, systemPath: string): Promise<void> {
  await run('nix-env', ['-p', profile, '--set', systemPath], { timeout: 120_000 });
}

/**
 * A host in a temporary directory whose profile's first generation is `systems.base`
 * (behaviour `succeed` unless given), running and booted.
 */
export async function createTestHost(systems: Readonly<Record<string, SwitchBehaviour>>): Promise<TestHost> {
  const root = mkdtempSync(join(tmpdir(), 'ultracloud-nix-host-'));
  for (const d of ['profiles', 'run', 'state']) mkdirSync(join(root, d), { recursive: true });
  const built = await buildTestSystems(root, { base: 'succeed', ...systems });
  const host: TestHost = {
    root,
    profile: join(root, 'profiles', 'system'),
    currentSystemLink: join(root, 'run', 'current-system'),
    bootedSystemLink: join(root, 'run', 'booted-system'),
    blockedFile: join(root, 'controller-blocked'),
    activationLog: join(root, 'activations.log'),
    stateDir: join(root, 'state'),
    systems: built,
  };
  const base = built.base as string;
  await setProfile(host.profile, base);
  symlinkSync(base, host.currentSystemLink);
  symlinkSync(base, host.bootedSystemLink);
  symlinkSync(base, join(root, 'boot-default'));
  return host;
}

export function removeTestHost(host: TestHost): void {
  rmSync(host.root, { recursive: true, force: true });
}

/** Lines of the activation log: "<system> <action> start|done|failed|hanging [pid]". */
export function activationLog(host: TestHost): string[] {
  if (!existsSync(host.activationLog)) return [];
  return readFileSync(host.activationLog, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.replace(/ \d+$/, ''));
}

function readLink(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

export function currentSystem(host: TestHost): string | undefined {
  return readLink(host.currentSystemLink);
}

export function bootDefault(host: TestHost): string | undefined {
  return readLink(join(host.root, 'boot-default'));
}

export interface ListedGeneration {
  readonly generation: number;
  readonly current: boolean;
  readonly systemPath: string | undefined;
}

/** `nix-env -p <profile> --list-generations`, with each generation's store path. */
export async function listGenerations(profile: string): Promise<ListedGeneration[]> {
  const { stdout } = await run('nix-env', ['-p', profile, '--list-generations'], { timeout: 60_000 });
  return stdout
    .split('\n')
    .map((line) => /^\s*(\d+)\s+\S+\s+\S+\s*(\(current\))?\s*$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ generation: Number(m[1]), current: m[2] !== undefined, systemPath: readLink(`${profile}-${m[1]}-link`) }));
}

/**
 * The profile's generations as "<n>:<system name>" ("*" marks the current one), e.g.
 * ["1:base", "2:next*"]; a path that is not one of the host's systems is shown as is.
 */
export async function generationNames(host: TestHost): Promise<string[]> {
  const names = Object.fromEntries(Object.entries(host.systems).map(([name, path]) => [path, name]));
  return (await listGenerations(host.profile)).map((g) => `${g.generation}:${names[g.systemPath ?? ''] ?? g.systemPath}${g.current ? '*' : ''}`);
}

/** Simulates the reboot a reboot command asked for: the host comes up on its boot default. */
export function rebootHost(host: TestHost, bootInto: string | undefined = bootDefault(host)): void {
  for (const link of [host.currentSystemLink, host.bootedSystemLink]) {
    rmSync(link, { force: true });
    if (bootInto) symlinkSync(bootInto, link);
  }
}

/**
 * A test needing Nix, run serially: activation timeouts under test must not compete with other
 * tests' Nix builds and agent processes on a 2-core machine.
 */
export function serialNixTest(title: string, implementation: (t: ExecutionContext) => Promise<void>): void {
  if (!nixStandIn(title)) test.serial(title, implementation);
}

export function seconds(s: number): Duration {
  return { seconds: BigInt(Math.floor(s)), nanos: Math.round((s % 1) * 1e9) };
}

/** Runs the new system's own `sw/bin/ultracloud-test-health` every 0.2 s, twice at most. */
export const TEST_HEALTH_CHECK: HealthCheck = { probe: { $case: 'command', value: { argv: ['ultracloud-test-health'], env: {} } }, interval: seconds(0.2), retries: 1 };

export interface TestDesiredOptions {
  readonly nodeId?: string;
  readonly revision?: bigint;
  readonly strategy?: ActivationStrategy;
  readonly healthCheck?: HealthCheck;
  /** Default 30 s. */
  readonly activationTimeoutS?: number;
  /** Default 10 s. */
  readonly confirmTimeoutS?: number;
  readonly autoRollback?: boolean;
}

/** Deployment "workers-os" for node-1, revision 1, switch, no health check unless given. */
export function testDesiredSystem(systemPath: string, o: TestDesiredOptions = {}): DesiredSystem {
  return {
    nodeId: o.nodeId ?? 'node-1',
    deployment: 'workers-os',
    revision: o.revision ?? 1n,
    systemPath,
    flakeRef: '',
    flakeAttr: '',
    activationStrategy: o.strategy ?? ActivationStrategy.ACTIVATION_STRATEGY_SWITCH,
    healthCheck: o.healthCheck,
    rollbackPolicy: {
      activationTimeout: seconds(o.activationTimeoutS ?? 30),
      confirmTimeout: seconds(o.confirmTimeoutS ?? 10),
      ...(o.autoRollback === undefined ? {} : { autoRollback: o.autoRollback }),
    },
    substituters: [],
  };
}
