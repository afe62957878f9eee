// `deployer-ctl machines <transition> <machine> --reason "…"`: one command per operator transition
// of the lifecycle (docs/lifecycle.md). The machine is named by machine id, hostname or node id;
// the server checks the transition against the machine's current state and refuses it with
// FAILED_PRECONDITION naming that state (exit 4).
import { existsSync, readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { Machine, MachineServiceDefinition } from '../../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { MachineState } from '../../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import type { Connection } from '../connection.js';
import { EXIT, printJson, UsageError } from '../output.js';
import { colouredState, machineName, resolveMachine } from './machines.js';

type Rpc = 'commission' | 'release' | 'deploy' | 'reinstall' | 'rescue' | 'exitRescue' | 'drain' | 'undrain' | 'activate' | 'markFailed' | 'retry' | 'delete';

export interface TransitionCommand {
  readonly command: string;
  readonly rpc: Rpc;
  /** The lifecycle edge, for `--help`. */
  readonly summary: string;
  /** What the operator does or waits for next, printed after a success. */
  readonly next?: string;
}

export const TRANSITION_COMMANDS: readonly TransitionCommand[] = [
  { command: 'commission', rpc: 'commission', summary: 'inspected -> commissioned: give the machine a node identity (rules decide; flags override)' },
  { command: 'release', rpc: 'release', summary: 'commissioned | failed | active -> inspected: drop the assignment and revoke its secrets, keep the inventory' },
  {
    command: 'deploy',
    rpc: 'deploy',
    summary: 'commissioned -> install-pending: render the install plan and issue secrets',
    next: 'the installer fetches the plan on its next Discover (boot the machine from the UltraCloud installer if it is not running)',
  },
  {
    command: 'reinstall',
    rpc: 'reinstall',
    summary: 'any assigned state -> reprovisioning: rotate the secrets and install afresh',
    next: "the node's nix-agent kexecs into the installer; without one, boot the machine from the USB installer",
  },
  {
    command: 'rescue',
    rpc: 'rescue',
    summary: 'any state -> rescue: the next installer boot starts sshd with the rescue keys and touches no disk',
    next: 'boot the machine from the installer; it starts sshd and reports RESCUE_READY',
  },
  { command: 'exit-rescue', rpc: 'exitRescue', summary: 'rescue -> the state before rescue; the installer reboots' },
  { command: 'drain', rpc: 'drain', summary: 'active -> draining: no new placements, workloads move off' },
  { command: 'undrain', rpc: 'undrain', summary: 'draining -> active' },
  { command: 'activate', rpc: 'activate', summary: 'installed -> active (normally the host-controller does this on the first healthy report)' },
  { command: 'mark-failed', rpc: 'markFailed', summary: 'install-pending | installing -> failed, with the reason as last error' },
  { command: 'retry', rpc: 'retry', summary: 'failed -> install-pending with a new plan and new secrets' },
  { command: 'delete', rpc: 'delete', summary: 'remove the machine, its assignment, plan and secrets (the audit trail is kept; needs role admin)' },
];

export interface TransitionOptions {
  readonly reason: string;
  readonly expectVersion?: string;
  // commission
  readonly class?: string;
  readonly pool?: string;
  readonly nodeId?: string;
  readonly hostname?: string;
  readonly label?: string[];
  readonly profile?: string;
  readonly failureDomain?: string;
  // rescue
  readonly sshKey?: string[];
}

/** `--expect-version 42` as the machine's resource_version; absent: 0 (no check). */
export function parseExpectVersion(value: string | undefined): bigint {
  if (value === undefined) return 0n;
  if (!/^[1-9]\d{0,19}$/.test(value.trim())) throw new UsageError(`--expect-version ${value}: expected a resource version (a positive integer, see "machines show")`);
  return BigInt(value.trim());
}

/** `-l key=value` (repeatable) as a label map. */
export function parseLabels(values: readonly string[] | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const v of values ?? []) {
    const m = /^([^=\s]+)=([^=\s]*)$/.exec(v);
    if (!m) throw new UsageError(`-l ${v}: expected key=value`);
    labels[m[1] as string] = m[2] as string;
  }
  return labels;
}

const KEY_LINE = /^(ssh-|ecdsa-|sk-)\S+ \S+/;

/** `--ssh-key` values: an authorized_keys line, or a file of them (e.g. ~/.ssh/id_ed25519.pub). */
export function readSshKeys(values: readonly string[] | undefined): string[] {
  const keys: string[] = [];
  for (const v of values ?? []) {
    if (KEY_LINE.test(v.trim())) {
      keys.push(v.trim());
      continue;
    }
    if (!existsSync(v)) throw new UsageError(`--ssh-key ${v}: neither an OpenSSH public key line nor a file`);
    const lines = readFileSync(v, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    if (lines.length === 0 || !lines.every((l) => KEY_LINE.test(l))) throw new UsageError(`--ssh-key ${v}: not a file of OpenSSH public keys`);
    keys.push(...lines);
  }
  return keys;
}

export async function transitionCommand(connection: Connection, spec: TransitionCommand, name: string, options: TransitionOptions): Promise<number> {
  const reason = options.reason.trim();
  if (!reason) throw new UsageError('--reason must say why: it goes to the audit log');
  const expectedResourceVersion = parseExpectVersion(options.expectVersion);
  const labels = parseLabels(options.label);
  const sshAuthorizedKeys = readSshKeys(options.sshKey);
  const { machine: before } = await resolveMachine(connection, name);
  const client = connection.client(MachineServiceDefinition);
  const base = { machineId: before.machineId, reason, expectedResourceVersion };
  let after: Machine | undefined;
  switch (spec.rpc) {
    case 'commission':
      ({ machine: after } = await client.commission({
        ...base,
        nodeClass: options.class ?? '',
        pool: options.pool ?? '',
        labels,
        installProfile: options.profile ?? '',
        nodeId: options.nodeId ?? '',
        hostname: options.hostname ?? '',
        failureDomain: options.failureDomain ?? '',
      }));
      break;
    case 'rescue':
      ({ machine: after } = await client.rescue({ ...base, sshAuthorizedKeys }));
      break;
    default:
      ({ machine: after } = await client[spec.rpc](base));
  }
  if (!after) throw new Error(`${spec.command}: the server returned no machine`);
  if (connection.json) {
    printJson({ machine: Machine.toJSON(after) });
  } else if (spec.rpc === 'delete') {
    console.log(`deleted ${machineName(after)} (was ${colouredState(after.state)})`);
  } else {
    console.log(`${machineName(after)}: ${colouredState(before.state)} -> ${colouredState(after.state)} (resource version ${after.resourceVersion})`);
    if (after.statusMessage) console.log(after.statusMessage);
    if (spec.next && after.state !== MachineState.MACHINE_STATE_FAILED) console.log(`next: ${spec.next}`);
  }
  // Deploy and Retry succeed on the server but leave the machine failed when no plan can be
  // rendered (e.g. the disk hints match no disk): a script must not take that for success.
  if (after.state === MachineState.MACHINE_STATE_FAILED && spec.rpc !== 'markFailed' && spec.rpc !== 'delete') {
    console.error(`deployer-ctl: ${spec.command}: ${machineName(after)} is failed: ${after.lastError || after.statusMessage || 'no reason given'}`);
    return EXIT.failed;
  }
  return EXIT.ok;
}

type WithConnection = (run: (connection: Connection) => Promise<number>) => Promise<void>;

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** Adds one subcommand per transition under `machines`. */
export function addTransitionCommands(machines: Command, withConnection: WithConnection): void {
  for (const spec of TRANSITION_COMMANDS) {
    const command = machines
      .command(spec.command)
      .argument('<machine>', 'machine id, hostname or node id')
      .description(spec.summary)
      .requiredOption('--reason <text>', 'why; recorded in the audit log')
      .option('--expect-version <n>', 'refuse (exit 4) unless the machine is still at this resource version (from "machines show")');
    if (spec.rpc === 'commission') {
      command
        .option('--class <name>', 'node class (overrides the enrollment rule)')
        .option('--pool <name>', 'pool (overrides the rule)')
        .option('--node-id <id>', 'node id (default: the rule\'s template, or "<class>-<n>")')
        .option('--hostname <name>', 'hostname (default: the rule\'s template, else the node id)')
        .option('-l, --label <key=value>', 'label, merged over the rule\'s (repeatable)', collect)
        .option('--profile <name>', 'install profile (default: the rule\'s or the class\'s)')
        .option('--failure-domain <name>', 'failure domain (default: the rule\'s)');
    }
    if (spec.rpc === 'rescue') {
      command.option('--ssh-key <key|file>', "an OpenSSH public key (or a .pub file) allowed in, besides the cluster's rescue keys (repeatable)", collect);
    }
    command.action((name: string, options: TransitionOptions) => withConnection((c) => transitionCommand(c, spec, name, options)));
  }
}
