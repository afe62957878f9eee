// `deployer-ctl machines list|show`: the operator's inventory view, and how every machine
// command turns the name an operator types (machine id, hostname or node id) into a machine.
import { ClientError, Status } from 'nice-grpc';
import { GetMachineResponse, Machine, MachineServiceDefinition } from '../../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { type AuditEvent, AuditOutcome, InstallPhase, MachineState } from '../../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import type { Connection } from '../connection.js';
import { colour, EXIT, printJson, progress, renderTable, UsageError } from '../output.js';

/** `install-pending` for MACHINE_STATE_INSTALL_PENDING, as in docs/lifecycle.md. */
export function stateLabel(state: MachineState): string {
  const name = MachineState[state] ?? 'UNKNOWN';
  return name.replace(/^MACHINE_STATE_/, '').toLowerCase().replace(/_/g, '-');
}

export const STATE_LABELS = Object.values(MachineState)
  .filter((v): v is MachineState => typeof v === 'number' && v !== MachineState.MACHINE_STATE_UNSPECIFIED && v !== MachineState.UNRECOGNIZED)
  .map(stateLabel);

export function parseStateLabel(label: string): MachineState {
  const key = `MACHINE_STATE_${label.trim().toUpperCase().replace(/-/g, '_')}` as keyof typeof MachineState;
  const value = MachineState[key];
  if (value === undefined || value === MachineState.UNRECOGNIZED || value === MachineState.MACHINE_STATE_UNSPECIFIED) {
    throw new UsageError(`unknown state "${label}" (one of ${STATE_LABELS.join(', ')})`);
  }
  return value;
}

export function humanAge(from: Date | undefined, now = new Date()): string {
  if (!from) return '-';
  const s = Math.max(0, Math.floor((now.getTime() - from.getTime()) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

function gib(bytes: bigint): string {
  return `${Number(bytes / (1024n * 1024n * 1024n))}G`;
}

/** The machine's first routable address as the installer saw it, without the prefix length. */
function address(m: Machine): string {
  const a = m.inventory?.network?.addresses.find((x) => !x.address.startsWith('127.') && !x.address.startsWith('::1') && !x.address.startsWith('fe80'));
  return a ? (a.address.split('/')[0] ?? '-') : '-';
}

/** The planned root disk (by-id name and size), else how many disks the machine has. */
function disk(m: Machine): string {
  if (m.plan?.rootDiskByIdPath) return `${m.plan.rootDiskByIdPath.replace('/dev/disk/by-id/', '')} (${gib(m.plan.rootDiskSizeBytes)})`;
  const disks = m.inventory?.disks ?? [];
  return disks.length > 0 ? `${disks.length} disk${disks.length > 1 ? 's' : ''}` : '-';
}

const STATE_COLOUR: Partial<Record<MachineState, 'green' | 'red' | 'yellow'>> = {
  [MachineState.MACHINE_STATE_ACTIVE]: 'green',
  [MachineState.MACHINE_STATE_INSTALLED]: 'green',
  [MachineState.MACHINE_STATE_FAILED]: 'red',
  [MachineState.MACHINE_STATE_INSTALLING]: 'yellow',
  [MachineState.MACHINE_STATE_RESCUE]: 'yellow',
};

export function colouredState(state: MachineState): string {
  const tint = STATE_COLOUR[state];
  return tint ? colour(stateLabel(state), tint) : stateLabel(state);
}

export const MACHINE_COLUMNS = ['hostname', 'node id', 'state', 'class', 'pool', 'ip', 'disk', 'age', 'machine id'] as const;

export function machineRow(m: Machine, now = new Date()): string[] {
  return [
    m.assignment?.hostname || '-',
    m.assignment?.nodeId || '-',
    colouredState(m.state),
    m.assignment?.nodeClass || '-',
    m.assignment?.pool || '-',
    address(m),
    disk(m),
    humanAge(m.createdAt, now),
    m.machineId,
  ];
}

/** `hostname (m-…)`, or the machine id alone while the machine has no assignment. */
export function machineName(m: Machine): string {
  return m.assignment?.hostname ? `${m.assignment.hostname} (${m.machineId})` : m.machineId;
}

export interface ListOptions {
  readonly state?: string[];
  readonly label?: string[];
  readonly class?: string;
  readonly pool?: string;
  readonly query?: string;
  /** Machines per ListMachines call. */
  readonly pageSize?: string;
}

/** The ListMachines filter of the command line; bad values are usage errors (nothing is sent). */
export function listFilter(options: ListOptions) {
  for (const l of options.label ?? []) {
    if (!/^[^=,!\s]+(!?=[^=,\s]*)?$/.test(l)) throw new UsageError(`-l ${l}: expected key=value, key!=value or key`);
  }
  return {
    states: (options.state ?? []).flatMap((s) => s.split(',')).filter(Boolean).map(parseStateLabel),
    nodeClass: options.class ?? '',
    pool: options.pool ?? '',
    labelSelector: (options.label ?? []).join(','),
    query: options.query ?? '',
  };
}

/** Every page of ListMachines for the options' filter. */
export async function listAllMachines(connection: Connection, options: ListOptions): Promise<Machine[]> {
  const filter = listFilter(options);
  const pageSize = options.pageSize === undefined ? 500 : Number(options.pageSize);
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 1000) throw new UsageError(`--page-size ${options.pageSize}: expected 1 to 1000`);
  const client = connection.client(MachineServiceDefinition);
  const machines: Machine[] = [];
  const note = progress();
  let pageToken = '';
  try {
    do {
      const page = await client.listMachines({ ...filter, pageSize, pageToken });
      machines.push(...page.machines);
      pageToken = page.nextPageToken;
      if (pageToken) note.update(`listing machines: ${machines.length} so far…`);
    } while (pageToken);
  } finally {
    note.done();
  }
  return machines;
}

export async function listMachinesCommand(connection: Connection, options: ListOptions): Promise<number> {
  const machines = await listAllMachines(connection, options);
  if (connection.json) {
    printJson({ machines: machines.map((m) => Machine.toJSON(m)) });
  } else if (machines.length === 0) {
    console.log('no machines');
  } else {
    const now = new Date();
    console.log(renderTable(MACHINE_COLUMNS, machines.map((m) => machineRow(m, now))));
  }
  return EXIT.ok;
}

/**
 * The machine an operator named: a machine id (`m-…`), else a hostname, else a node id.
 * NOT_FOUND (exit 3) when nothing matches.
 */
export async function resolveMachine(connection: Connection, name: string): Promise<GetMachineResponse & { machine: Machine }> {
  if (!name.trim()) throw new UsageError('a machine id, hostname or node id is required');
  const client = connection.client(MachineServiceDefinition);
  const keys = name.startsWith('m-')
    ? [{ $case: 'machineId' as const, value: name }]
    : [{ $case: 'hostname' as const, value: name }, { $case: 'nodeId' as const, value: name }];
  for (const key of keys) {
    try {
      const found = await client.getMachine({ key });
      if (found.machine) return found as GetMachineResponse & { machine: Machine };
    } catch (err) {
      if (!(err instanceof ClientError) || err.code !== Status.NOT_FOUND) throw err;
    }
  }
  throw new ClientError(`/${MachineServiceDefinition.fullName}/GetMachine`, Status.NOT_FOUND, `no machine named ${name} (looked for a machine id, hostname and node id)`);
}

export async function showMachineCommand(connection: Connection, name: string): Promise<number> {
  const found = await resolveMachine(connection, name);
  if (connection.json) printJson(GetMachineResponse.toJSON(found));
  else printMachine(found.machine, found.recentEvents);
  return EXIT.ok;
}

function installLine(m: Machine): string {
  const p = m.installProgress;
  if (!p) return '-';
  const phase = (InstallPhase[p.phase] ?? '').replace(/^INSTALL_PHASE_/, '').toLowerCase().replace(/_/g, '-');
  const failure = p.failureReason ? ` — failed: ${p.failureReason}` : '';
  return `${p.percent}% ${phase ? `${phase}: ` : ''}${p.message}${failure}`;
}

/** What an audit event did: `from -> to`, `denied`, or `-`. */
export function auditChange(e: AuditEvent): string {
  if (e.outcome === AuditOutcome.AUDIT_OUTCOME_DENIED) return colour('denied', 'red');
  if (!e.fromState && !e.toState) return '-';
  return `${e.fromState ? stateLabel(e.fromState) : '-'} -> ${e.toState ? stateLabel(e.toState) : '(deleted)'}`;
}

function printMachine(m: Machine, events: readonly AuditEvent[]): void {
  const a = m.assignment;
  const lines: [string, string][] = [
    ['machine id', m.machineId],
    ['state', colouredState(m.state) + (m.previousState ? ` (previous: ${stateLabel(m.previousState)})` : '')],
    ['resource version', String(m.resourceVersion)],
    ['status', m.statusMessage || '-'],
    ['last error', m.lastError || '-'],
    ['node id', a?.nodeId || '-'],
    ['hostname', a?.hostname || '-'],
    ['class / pool', a ? `${a.nodeClass} / ${a.pool || '-'}` : '-'],
    ['labels', a ? Object.entries(a.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-' : '-'],
    ['failure domain', a?.failureDomain || '-'],
    ['vendor / product', `${m.inventory?.identity?.vendor || '-'} / ${m.inventory?.identity?.productName || '-'}`],
    ['serial', m.inventory?.identity?.serialNumber || '-'],
    ['cpu', m.inventory?.cpu ? `${m.inventory.cpu.model} (${m.inventory.cpu.cores} cores)` : '-'],
    ['memory', m.inventory ? gib(m.inventory.memoryBytes) : '-'],
    ['disks', (m.inventory?.disks ?? []).map((d) => `${d.name} ${gib(d.sizeBytes)} ${d.model}`.trim()).join('; ') || '-'],
    ['nics', (m.inventory?.nics ?? []).map((n) => `${n.name} ${n.macAddress}`).join('; ') || '-'],
    ['ip', address(m)],
    ['plan', m.plan ? `${m.plan.flakeRef}#${m.plan.flakeAttr} on ${m.plan.rootDiskByIdPath || '-'}` : '-'],
    ['install', installLine(m)],
    ['discovered', m.createdAt ? `${m.createdAt.toISOString()} (${humanAge(m.createdAt)} ago)` : '-'],
    ['last seen', m.lastSeenAt ? `${m.lastSeenAt.toISOString()} (${humanAge(m.lastSeenAt)} ago)` : '-'],
  ];
  const width = Math.max(...lines.map(([k]) => k.length));
  for (const [k, v] of lines) console.log(`${k.padEnd(width)}  ${v}`);
  if (m.installProgress?.logTail) {
    console.log('\ninstaller log (tail):');
    console.log(m.installProgress.logTail.split('\n').slice(-20).join('\n'));
  }
  if (events.length > 0) {
    console.log('\nrecent events (oldest first):');
    console.log(renderTable(['time', 'actor', 'rpc', 'change', 'reason'], [...events].reverse().map((e) => [e.time?.toISOString() ?? '-', e.actor, e.rpc || '-', auditChange(e), e.reason])));
  }
}
