// `deployer-ctl machines list|show`: the operator's inventory view.
import type { Machine } from '../../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { MachineServiceDefinition } from '../../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { AuditEvent, MachineState } from '../../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import type { Connection } from '../connection.js';
import { colour, EXIT, printJson, renderTable, UsageError } from '../output.js';

/** `install-pending` for MACHINE_STATE_INSTALL_PENDING, as in docs/lifecycle.md. */
export function stateLabel(state: MachineState): string {
  const name = MachineState[state] ?? 'UNKNOWN';
  return name.replace(/^MACHINE_STATE_/, '').toLowerCase().replace(/_/g, '-');
}

export function parseStateLabel(label: string): MachineState {
  const key = `MACHINE_STATE_${label.trim().toUpperCase().replace(/-/g, '_')}` as keyof typeof MachineState;
  const value = MachineState[key];
  if (value === undefined || value === MachineState.UNRECOGNIZED || value === MachineState.MACHINE_STATE_UNSPECIFIED) {
    throw new UsageError(`unknown state "${label}" (one of discovered, inspected, commissioned, install-pending, installing, installed, active, draining, reprovisioning, rescue, failed)`);
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

function address(m: Machine): string {
  const a = m.inventory?.network?.addresses.find((x) => !x.address.startsWith('127.') && !x.address.startsWith('::1') && !x.address.startsWith('fe80'));
  return a ? a.address.split('/')[0] ?? '-' : '-';
}

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

export function machineRow(m: Machine, now = new Date()): string[] {
  const state = stateLabel(m.state);
  const tint = STATE_COLOUR[m.state];
  return [
    m.assignment?.hostname || '-',
    m.assignment?.nodeId || '-',
    tint ? colour(state, tint) : state,
    m.assignment?.nodeClass || '-',
    m.assignment?.pool || '-',
    address(m),
    disk(m),
    humanAge(m.createdAt, now),
    m.machineId,
  ];
}

export interface ListOptions {
  readonly state?: string[];
  readonly label?: string[];
  readonly class?: string;
  readonly pool?: string;
  readonly query?: string;
}

export async function listMachinesCommand(connection: Connection, options: ListOptions): Promise<number> {
  const client = connection.client(MachineServiceDefinition);
  const machines: Machine[] = [];
  let pageToken = '';
  do {
    const page = await client.listMachines({
      states: (options.state ?? []).flatMap((s) => s.split(',')).filter(Boolean).map(parseStateLabel),
      nodeClass: options.class ?? '',
      pool: options.pool ?? '',
      labelSelector: (options.label ?? []).join(','),
      query: options.query ?? '',
      pageSize: 500,
      pageToken,
    });
    machines.push(...page.machines);
    pageToken = page.nextPageToken;
  } while (pageToken);
  if (connection.json) {
    printJson({ machines });
  } else if (machines.length === 0) {
    console.log('no machines');
  } else {
    console.log(renderTable(['hostname', 'node id', 'state', 'class', 'pool', 'ip', 'disk', 'age', 'machine id'], machines.map((m) => machineRow(m))));
  }
  return EXIT.ok;
}

/** A machine_id, or else a hostname or node_id. */
export async function showMachineCommand(connection: Connection, name: string): Promise<number> {
  const client = connection.client(MachineServiceDefinition);
  const keys = name.startsWith('m-')
    ? [{ $case: 'machineId' as const, value: name }]
    : [{ $case: 'hostname' as const, value: name }, { $case: 'nodeId' as const, value: name }];
  for (const key of keys) {
    try {
      const res = await client.getMachine({ key });
      if (connection.json) {
        printJson({ machine: res.machine, recentEvents: res.recentEvents.map((e) => AuditEvent.toJSON(e)) });
      } else {
        printMachine(res.machine as Machine, res.recentEvents);
      }
      return EXIT.ok;
    } catch (err) {
      if ((err as { code?: number }).code !== 5) throw err;
    }
  }
  console.error(`deployer-ctl: no machine named ${name}`);
  return EXIT.rejected;
}

function printMachine(m: Machine, events: AuditEvent[]): void {
  const a = m.assignment;
  const lines: [string, string][] = [
    ['machine id', m.machineId],
    ['state', stateLabel(m.state) + (m.previousState ? ` (previous: ${stateLabel(m.previousState)})` : '')],
    ['resource version', String(m.resourceVersion)],
    ['status', m.statusMessage || '-'],
    ['last error', m.lastError || '-'],
    ['node id', a?.nodeId || '-'],
    ['hostname', a?.hostname || '-'],
    ['class / pool', a ? `${a.nodeClass} / ${a.pool || '-'}` : '-'],
    ['labels', a ? Object.entries(a.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-' : '-'],
    ['failure domain', a?.failureDomain || '-'],
    ['vendor / product', `${m.inventory?.identity?.vendor ?? '-'} / ${m.inventory?.identity?.productName ?? '-'}`],
    ['serial', m.inventory?.identity?.serialNumber || '-'],
    ['cpu', m.inventory?.cpu ? `${m.inventory.cpu.model} (${m.inventory.cpu.cores} cores)` : '-'],
    ['memory', m.inventory ? gib(m.inventory.memoryBytes) : '-'],
    ['disks', (m.inventory?.disks ?? []).map((d) => `${d.name} ${gib(d.sizeBytes)} ${d.model}`.trim()).join('; ') || '-'],
    ['nics', (m.inventory?.nics ?? []).map((n) => `${n.name} ${n.macAddress}`).join('; ') || '-'],
    ['plan', m.plan ? `${m.plan.flakeRef}#${m.plan.flakeAttr} on ${m.plan.rootDiskByIdPath || '-'}` : '-'],
    ['install', m.installProgress ? `${m.installProgress.percent}% ${m.installProgress.message}` : '-'],
  ];
  const width = Math.max(...lines.map(([k]) => k.length));
  for (const [k, v] of lines) console.log(`${k.padEnd(width)}  ${v}`);
  if (m.installProgress?.logTail) {
    console.log('\ninstaller log (tail):');
    console.log(m.installProgress.logTail.split('\n').slice(-20).join('\n'));
  }
  if (events.length > 0) {
    console.log('\nrecent events:');
    console.log(
      renderTable(
        ['time', 'actor', 'from', 'to', 'reason'],
        events.map((e) => [e.time?.toISOString() ?? '-', e.actor, e.fromState ? stateLabel(e.fromState) : '-', e.toState ? stateLabel(e.toState) : '-', e.reason]),
      ),
    );
  }
}
