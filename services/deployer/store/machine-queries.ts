// Read paths for operators: filtered, keyset-paginated machine listings and lookups by name.
import { createHash } from 'node:crypto';
import { type Expression, sql, type SqlBool } from 'kysely';
import { InvalidArgumentError } from '../../../lib/errors.js';
import { formatLabelSelector, type LabelTerm } from '../domain/label-selector.js';
import type { MachineFilterTerms } from '../domain/machine-filter.js';
import { stateName } from '../domain/lifecycle.js';
import { type DeployerDb, type MachineRow, toRow } from './machines.js';

/** The filter of a listing: the same terms a watch applies in memory (domain/machine-filter.ts). */
export type MachineFilter = MachineFilterTerms;

/**
 * Where the next page starts: the sort key of the last machine returned (unassigned?, hostname,
 * machine_id) and a fingerprint of the filter the token was issued for.
 */
export interface Cursor {
  readonly u: boolean;
  readonly h: string;
  readonly m: string;
  readonly f: string;
}

/** Equal filters give equal fingerprints, whatever the order of states or selector terms. */
export function filterFingerprint(filter: MachineFilter): string {
  const canonical = JSON.stringify([
    [...filter.states].sort((a, b) => a - b),
    filter.nodeClass,
    filter.pool,
    formatLabelSelector(filter.labels),
    filter.query.toLowerCase(),
  ]);
  return createHash('sha256').update(canonical).digest('base64url').slice(0, 16);
}

export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify(c)).toString('base64url');
}

/** The cursor in `token`; INVALID_ARGUMENT when it is not ours or was issued for another filter. */
export function decodeCursor(token: string, filter: MachineFilter): Cursor {
  let c: Partial<Cursor> | undefined;
  try {
    c = JSON.parse(Buffer.from(token, 'base64url').toString()) as Partial<Cursor>;
  } catch {
    // reported below
  }
  if (!c || typeof c.u !== 'boolean' || typeof c.h !== 'string' || typeof c.m !== 'string' || typeof c.f !== 'string') {
    throw new InvalidArgumentError({ field: 'page_token', description: 'not a token returned by ListMachines' });
  }
  if (c.f !== filterFingerprint(filter)) {
    throw new InvalidArgumentError({ field: 'page_token', description: 'issued for a different filter: list again from the first page' });
  }
  return c as Cursor;
}

/** One selector term over the assignment's labels; a machine without an assignment has none. */
function labelTerm(term: LabelTerm): Expression<SqlBool> {
  switch (term.op) {
    case 'equals':
      return sql<SqlBool>`coalesce(a.labels @> ${JSON.stringify({ [term.key]: term.value })}::jsonb, false)`;
    case 'not-equals':
      return sql<SqlBool>`not coalesce(a.labels @> ${JSON.stringify({ [term.key]: term.value })}::jsonb, false)`;
    case 'exists':
      return sql<SqlBool>`(a.labels -> ${term.key}) is not null`;
  }
}

/** `%query%`, lower-cased, with LIKE's wildcards in the query taken literally. */
function likePattern(query: string): string {
  return `%${query.toLowerCase().replace(/[%_\\]/g, (c) => `\\${c}`)}%`;
}

/**
 * Sorted by hostname, machines without an assignment last, then by machine_id. Pages continue
 * after the last row's sort key (keyset), so a machine that exists for the whole walk appears
 * exactly once even while others are added, changed or deleted.
 */
export async function listMachineRows(db: DeployerDb, filter: MachineFilter, pageSize: number, after?: Cursor): Promise<{ rows: MachineRow[]; next?: Cursor }> {
  let q = db
    .selectFrom('machines as m')
    .leftJoin('assignments as a', 'a.machine_id', 'm.machine_id')
    .selectAll('m')
    .select([sql<boolean>`(a.hostname is null)`.as('unassigned'), sql<string>`coalesce(a.hostname, '')`.as('host')]);
  if (filter.states.length > 0) q = q.where('m.state', 'in', filter.states.map(stateName));
  if (filter.nodeClass) q = q.where('a.node_class', '=', filter.nodeClass);
  if (filter.pool) q = q.where('a.pool', '=', filter.pool);
  for (const term of filter.labels) q = q.where(labelTerm(term));
  if (filter.query) {
    const like = likePattern(filter.query);
    q = q.where((eb) =>
      eb.or([
        eb(sql`lower(coalesce(a.hostname, ''))`, 'like', like),
        eb(sql`lower(coalesce(a.node_id, ''))`, 'like', like),
        eb(sql`lower(coalesce(m.serial, ''))`, 'like', like),
        eb(sql`lower(m.machine_id)`, 'like', like),
        eb.exists(eb.selectFrom('machine_macs as mm').select('mm.mac').whereRef('mm.machine_id', '=', 'm.machine_id').where(sql`lower(mm.mac)`, 'like', like)),
      ]),
    );
  }
  if (after) q = q.where(sql<SqlBool>`((a.hostname is null), coalesce(a.hostname, ''), m.machine_id) > (${after.u}, ${after.h}, ${after.m})`);
  const page = await q
    .orderBy(sql`(a.hostname is null)`)
    .orderBy(sql`coalesce(a.hostname, '')`)
    .orderBy('m.machine_id')
    .limit(pageSize + 1)
    .execute();
  const more = page.length > pageSize;
  const visible = page.slice(0, pageSize);
  const rows = visible.map(({ host: _host, unassigned: _unassigned, ...machine }) => toRow(machine));
  const last = visible[visible.length - 1];
  return more && last ? { rows, next: { u: Boolean(last.unassigned), h: last.host, m: last.machine_id, f: filterFingerprint(filter) } } : { rows };
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
