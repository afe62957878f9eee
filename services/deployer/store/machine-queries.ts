// Read paths for operators: filtered, keyset-paginated machine listings and lookups by name.
import { sql } from 'kysely';
import type { MachineState } from '../../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { InvalidArgumentError } from '../../../lib/errors.js';
import { stateName } from '../domain/lifecycle.js';
import { type DeployerDb, type MachineRow, toRow } from './machines.js';

export interface MachineFilter {
  readonly states: readonly MachineState[];
  readonly nodeClass: string;
  readonly pool: string;
  /** Parsed `k=v,k2=v2`. */
  readonly labels: Readonly<Record<string, string>>;
  readonly query: string;
}

interface Cursor {
  readonly h: string;
  readonly m: string;
}

export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify(c)).toString('base64url');
}

export function decodeCursor(token: string): Cursor {
  try {
    const c = JSON.parse(Buffer.from(token, 'base64url').toString()) as Cursor;
    if (typeof c.h === 'string' && typeof c.m === 'string') return c;
  } catch {
    // fall through
  }
  throw new InvalidArgumentError({ field: 'page_token', description: 'not a token returned by ListMachines' });
}

export function parseLabelSelector(selector: string, field = 'label_selector'): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of selector.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = /^([A-Za-z0-9._/-]+)=([A-Za-z0-9._-]*)$/.exec(part);
    if (!m) throw new InvalidArgumentError({ field, description: `"${part}" is not key=value` });
    out[m[1] as string] = m[2] as string;
  }
  return out;
}

/** Sorted by hostname (unassigned machines first, as ''), then machine_id; stable across pages. */
export async function listMachineRows(db: DeployerDb, filter: MachineFilter, pageSize: number, after?: Cursor): Promise<{ rows: MachineRow[]; next?: Cursor }> {
  let q = db
    .selectFrom('machines as m')
    .leftJoin('assignments as a', 'a.machine_id', 'm.machine_id')
    .selectAll('m')
    .select(sql<string>`coalesce(a.hostname, '')`.as('host'));
  if (filter.states.length > 0) q = q.where('m.state', 'in', filter.states.map(stateName));
  if (filter.nodeClass) q = q.where('a.node_class', '=', filter.nodeClass);
  if (filter.pool) q = q.where('a.pool', '=', filter.pool);
  if (Object.keys(filter.labels).length > 0) q = q.where(sql<boolean>`a.labels @> ${JSON.stringify(filter.labels)}::jsonb`);
  if (filter.query) {
    const like = `%${filter.query.toLowerCase().replace(/[%_\\]/g, (c) => `\\${c}`)}%`;
    q = q.where((eb) =>
      eb.or([
        eb(sql`lower(coalesce(a.hostname, ''))`, 'like', like),
        eb(sql`lower(coalesce(a.node_id, ''))`, 'like', like),
        eb(sql`lower(coalesce(m.serial, ''))`, 'like', like),
        eb(sql`lower(m.machine_id)`, 'like', like),
        eb.exists(eb.selectFrom('machine_macs as mm').select('mm.mac').whereRef('mm.machine_id', '=', 'm.machine_id').where('mm.mac', 'like', like)),
      ]),
    );
  }
  if (after) {
    q = q.where(sql<boolean>`(coalesce(a.hostname, ''), m.machine_id) > (${after.h}, ${after.m})`);
  }
  const page = await q.orderBy(sql`coalesce(a.hostname, '')`).orderBy('m.machine_id').limit(pageSize + 1).execute();
  const more = page.length > pageSize;
  const visible = page.slice(0, pageSize);
  const rows = visible.map(({ host: _host, ...machine }) => toRow(machine));
  const last = visible[visible.length - 1];
  return more && last ? { rows, next: { h: last.host, m: last.machine_id } } : { rows };
}

export async function machineIdByName(db: DeployerDb, key: { nodeId?: string; hostname?: string }): Promise<string | undefined> {
  let q = db.selectFrom('assignments').select('machine_id');
  if (key.nodeId) q = q.where('node_id', '=', key.nodeId);
  else if (key.hostname) q = q.where('hostname', '=', key.hostname);
  else return undefined;
  return (await q.executeTakeFirst())?.machine_id;
}

export async function currentResourceVersion(db: DeployerDb): Promise<bigint> {
  const r = await db.selectFrom('machines').select((eb) => eb.fn.max('resource_version').as('rv')).executeTakeFirst();
  return r?.rv ? BigInt(r.rv) : 0n;
}
