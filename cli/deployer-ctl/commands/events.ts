// `deployer-ctl events`: the audit log — every state change and every denied call, who did it
// and why. `--machine` takes a machine id, hostname or node id; a deleted machine's history is
// still there by its machine id or node id.
import { ClientError, Status } from 'nice-grpc';
import { type AuditEvent, AuditOutcome } from '../../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { ListAuditEventsResponse, MachineServiceDefinition } from '../../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import type { Connection } from '../connection.js';
import { EXIT, printJson, progress, renderTable, UsageError } from '../output.js';
import { auditChange, resolveMachine } from './machines.js';

export interface EventsOptions {
  readonly machine?: string;
  readonly limit?: string;
  readonly actor?: string;
  readonly since?: string;
  readonly denied?: boolean;
}

export const DEFAULT_EVENT_LIMIT = 50;

export function parseLimit(value: string | undefined): number {
  if (value === undefined) return DEFAULT_EVENT_LIMIT;
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1 || Number(value) > 100_000) throw new UsageError(`--limit ${value}: expected a number of events from 1 to 100000`);
  return Number(value);
}

const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `--since 2h` (s, m, h, d ago) or an ISO 8601 time. */
export function parseSince(value: string | undefined, now = new Date()): Date | undefined {
  if (value === undefined) return undefined;
  const ago = /^(\d+)([smhd])$/.exec(value.trim());
  if (ago) return new Date(now.getTime() - Number(ago[1]) * UNIT_MS[ago[2] as keyof typeof UNIT_MS]);
  const time = /^\d{4}-\d{2}-\d{2}/.test(value) ? new Date(value) : new Date(Number.NaN);
  if (Number.isNaN(time.getTime())) throw new UsageError(`--since ${value}: expected a duration (30m, 2h, 7d) or an ISO time (2025-01-31T12:00:00Z)`);
  return time;
}

export function auditRow(e: AuditEvent): string[] {
  return [e.time?.toISOString() ?? '-', e.nodeId || e.machineId || '-', e.actor, e.rpc || '-', auditChange(e), e.reason];
}

type Filter = { machineId?: string; nodeId?: string };

/** The ListAuditEvents filter for `--machine`: resolved to a machine id, else taken as a node id. */
async function machineFilter(connection: Connection, name: string | undefined): Promise<{ filter: Filter; notFound?: ClientError }> {
  if (!name) return { filter: {} };
  if (name.startsWith('m-')) return { filter: { machineId: name } };
  try {
    return { filter: { machineId: (await resolveMachine(connection, name)).machine.machineId } };
  } catch (err) {
    if (err instanceof ClientError && err.code === Status.NOT_FOUND) return { filter: { nodeId: name }, notFound: err };
    throw err;
  }
}

export async function eventsCommand(connection: Connection, options: EventsOptions): Promise<number> {
  const limit = parseLimit(options.limit);
  const since = parseSince(options.since);
  const { filter, notFound } = await machineFilter(connection, options.machine);
  const client = connection.client(MachineServiceDefinition);
  const events: AuditEvent[] = [];
  const note = progress();
  let pageToken = '';
  try {
    do {
      const page = await client.listAuditEvents({
        machineId: filter.machineId ?? '',
        nodeId: filter.nodeId ?? '',
        actor: options.actor ?? '',
        ...(since ? { since } : {}),
        outcome: options.denied ? AuditOutcome.AUDIT_OUTCOME_DENIED : AuditOutcome.AUDIT_OUTCOME_UNSPECIFIED,
        pageSize: Math.min(limit - events.length, 1000),
        pageToken,
      });
      events.push(...page.events);
      pageToken = page.nextPageToken;
      if (pageToken && events.length < limit) note.update(`reading the audit log: ${events.length} events so far…`);
    } while (pageToken && events.length < limit);
  } finally {
    note.done();
  }
  // A name that is no machine now and never was a node: not found, rather than an empty log.
  if (notFound && events.length === 0) throw notFound;
  if (connection.json) {
    printJson(ListAuditEventsResponse.toJSON({ events, nextPageToken: '' }));
  } else if (events.length === 0) {
    console.log('no events');
  } else {
    console.log(renderTable(['time', 'machine', 'actor', 'rpc', 'change', 'reason'], [...events].reverse().map(auditRow)));
  }
  return EXIT.ok;
}
