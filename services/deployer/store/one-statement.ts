// The bootstrap's hot path as single statements. An installer's common requests (a new machine's
// Discover, FetchPlan, the final progress report) read what they need without locking, decide in
// memory, and then write every row they change — machine, MACs, assignment, plan, credentials,
// audit events — in one statement whose WHERE re-checks what the decision was based on (the
// machine's resource_version or state). One statement is atomic on its own, so no explicit
// transaction is needed; when the re-check fails (a concurrent change) or a unique index refuses
// a row (a concurrent Discover of the same hardware, a name taken by another replica), nothing is
// written and the caller takes the general, locking path.
import { type Selectable, sql } from 'kysely';
import { type Param, StatementCache } from '../../../lib/db/statement-cache.js';
import { InstallPlan } from '../../../gen/ts/ultracloud/installplan/v1/installplan.js';
import { MachineInventory } from '../../../gen/ts/ultracloud/inventory/v1/inventory.js';
import type { NodeAssignment } from '../../../gen/ts/ultracloud/assignment/v1/assignment.js';
import { InstallProgress, MachineState } from '../../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { stateName } from '../domain/lifecycle.js';
import { type AuditEntry, auditValues } from './audit.js';
import type { NodeCredentialRecord } from './credentials.js';
import {
  type AssignmentJson,
  assignmentFromColumns,
  assignmentValues,
  type DeployerDb,
  generationOf,
  type MachineRow,
  type MachineUpdate,
  machineColumns,
  type NewMachine,
  type PlanRow,
  stateFromColumn,
  toRow,
} from './machines.js';
import type { DeployerDatabase, JsonDocument, MachinesTable } from './tables.js';

/** What a write hands back: the machine's row without its (large) inventory and timestamps. */
export type MachineHead = Pick<MachineRow, 'machineId' | 'state' | 'resourceVersion' | 'statusMessage' | 'lastError' | 'installProgress'>;

const HEAD_COLUMNS = ['machine_id', 'state', 'resource_version', 'status_message', 'last_error', 'install_progress'] as const;

function toHead(r: Pick<Selectable<MachinesTable>, (typeof HEAD_COLUMNS)[number]>): MachineHead {
  return {
    machineId: r.machine_id,
    state: stateFromColumn(r.state),
    resourceVersion: BigInt(r.resource_version),
    statusMessage: r.status_message,
    lastError: r.last_error,
    installProgress: r.install_progress ? InstallProgress.fromJSON(r.install_progress) : undefined,
  };
}

/** Hot statements are built once per shape (see lib/db/statement-cache.ts). */
const statements = new StatementCache();

/**
 * The values of `row` as named parameters `prefix.column` for a cached statement: `build` puts a
 * placeholder for each, `values` has them, `shape` names the columns (part of the cache key).
 * SQL expressions (sql``) are kept as they are and must not carry values of their own.
 */
function bindRow<T extends Record<string, unknown>>(prefix: string, row: T): { shape: string; build: (p: Param) => T; values: Record<string, unknown> } {
  const keys = Object.keys(row);
  const values: Record<string, unknown> = {};
  const shape: string[] = [];
  for (const k of keys) {
    const v = row[k];
    if (isSqlExpression(v)) shape.push(`${k}=sql`);
    else {
      shape.push(k);
      values[`${prefix}.${k}`] = v;
    }
  }
  const build = (p: Param) => Object.fromEntries(keys.map((k) => [k, isSqlExpression(row[k]) ? row[k] : p(`${prefix}.${k}`)])) as T;
  return { shape: shape.join(','), build, values };
}

function isSqlExpression(v: unknown): boolean {
  return typeof v === 'object' && v !== null && (v as { isRawBuilder?: boolean }).isRawBuilder === true;
}

/** The machine owning this DMI UUID or any of these MACs (not locked), and the cluster generation. */
export async function findByIdentity(db: DeployerDb, systemUuid: string | undefined, macs: readonly string[]): Promise<{ row: MachineRow | undefined; clusterGeneration: bigint | undefined }> {
  // One row always comes back: the generation, joined with the machine when there is one. The
  // candidates are a union of two index look-ups (DMI UUID, MACs): written as `system_uuid = … OR
  // machine_id IN (…)` the planner can only scan every machine.
  const r = await statements.execute<Selectable<MachinesTable> & { cluster_generation: bigint | string | null }, DeployerDatabase>(
    db,
    'findByIdentity',
    (p) => sql`
    SELECT g.cluster_generation, m.* FROM
      (SELECT (SELECT generation FROM ${sql.table('cluster_state')} WHERE id = 1) AS cluster_generation) AS g
      LEFT JOIN LATERAL (
        SELECT * FROM ${sql.table('machines')}
        WHERE machine_id IN (
          SELECT machine_id FROM ${sql.table('machines')} WHERE system_uuid = ${p('uuid')}
          UNION ALL
          SELECT machine_id FROM ${sql.table('machine_macs')} WHERE mac = ANY(${p('macs')}::text[]))
        ORDER BY system_uuid IS NOT DISTINCT FROM ${p('uuid')} DESC, machine_id
        LIMIT 1
      ) AS m ON true`,
    { uuid: systemUuid ?? null, macs: [...macs] },
  );
  const first = r.rows[0];
  return { row: first?.machine_id ? toRow(first) : undefined, clusterGeneration: generationOf(first?.cluster_generation) };
}

/** Everything a new machine's Discover decided, written together. */
export interface NewMachineWrite {
  readonly machine: NewMachine;
  readonly macs: readonly string[];
  /** The machine's columns after every step the Discover took (state, status, ...). */
  readonly final: MachineUpdate;
  /** One event per step, in order; all carry the machine's resource_version. */
  readonly audits: readonly Omit<AuditEntry, 'resourceVersion'>[];
  readonly assignment?: NodeAssignment | undefined;
  readonly plan?: InstallPlan | undefined;
}

/** A unique index refused a row: which identity or name was already taken. */
export type UniqueConflict = 'identity' | 'name' | 'other';

export function uniqueConflictOf(err: unknown): UniqueConflict | undefined {
  if (typeof err !== 'object' || err === null || (err as { code?: string }).code !== '23505') return undefined;
  const constraint = (err as { constraint?: string }).constraint ?? '';
  const detail = `${constraint} ${(err as { detail?: string }).detail ?? ''} ${(err as Error).message ?? ''}`;
  if (/machine_macs|system_uuid/.test(detail)) return 'identity';
  if (/assignments/.test(detail)) return 'name';
  return 'other';
}

/**
 * Inserts a new machine with everything its Discover decided in one statement. A MAC or DMI
 * UUID another machine holds, or a name another machine holds, makes the unique indexes refuse
 * it (see uniqueConflictOf); nothing is written then.
 */
export async function insertNewMachine(db: DeployerDb, w: NewMachineWrite): Promise<MachineHead> {
  const { machine: m } = w;
  const columns = machineColumns(w.final, m.now, true);
  const machine = bindRow('m', {
    machine_id: m.machineId,
    system_uuid: m.systemUuid ?? null,
    serial: m.serial ?? null,
    previous_state: null,
    inventory: MachineInventory.toJSON(m.inventory) as JsonDocument,
    inventory_hash: m.inventoryHash,
    boot_id: m.bootId,
    status_message: '',
    last_error: '',
    session_secret_hash: m.sessionSecretHash,
    created_at: m.now,
    last_seen_at: m.now,
    ...columns,
    state: columns.state ?? stateName(MachineState.MACHINE_STATE_DISCOVERED),
    state_changed_at: m.now,
  });
  const macs = w.macs.map((mac, i) => bindRow(`mac${i}`, { mac, machine_id: m.machineId }));
  const audits = w.audits.map((a, i) => bindRow(`audit${i}`, auditValues(a)));
  const assignment = w.assignment ? bindRow('n', assignmentValues(m.machineId, w.assignment)) : undefined;
  const plan = w.plan ? bindRow('p', { machine_id: m.machineId, plan: InstallPlan.toJSON(w.plan) as JsonDocument, created_at: m.now, fetched_at: null, cluster_generation: w.plan.clusterGeneration }) : undefined;
  const key = `insertNewMachine|${machine.shape}|macs=${macs.length}|audits=${audits.map((a) => a.shape).join(';')}|n=${assignment?.shape ?? '-'}|p=${plan?.shape ?? '-'}`;
  const values = Object.assign({}, machine.values, ...macs.map((x) => x.values), ...audits.map((x) => x.values), assignment?.values ?? {}, plan?.values ?? {});
  const r = await statements.execute<Pick<Selectable<MachinesTable>, (typeof HEAD_COLUMNS)[number]>, DeployerDatabase>(
    db,
    key,
    (p) => {
      let query = db.with('m', (q) => q.insertInto('machines').values(machine.build(p)).returning(HEAD_COLUMNS));
      if (macs.length > 0) {
        query = query.with('x', (q) => q.insertInto('machine_macs').values(macs.map((x) => x.build(p))).returning('mac')) as unknown as typeof query;
      }
      if (audits.length > 0) {
        query = query.with('a', (q) =>
          q.insertInto('audit_events').values(audits.map((x) => ({ ...x.build(p), resource_version: sql<bigint>`(SELECT resource_version FROM m)` }))).returning('id'),
        ) as unknown as typeof query;
      }
      if (assignment) query = query.with('n', (q) => q.insertInto('assignments').values(assignment.build(p)).returning('machine_id')) as unknown as typeof query;
      if (plan) query = query.with('p', (q) => q.insertInto('install_plans').values(plan.build(p)).returning('machine_id')) as unknown as typeof query;
      return query.selectFrom('m').select(HEAD_COLUMNS);
    },
    values,
  );
  const row = r.rows[0];
  if (!row) throw new Error(`machine ${m.machineId} was not inserted`);
  return toHead(row);
}

/** A machine with its assignment, plan and the cluster generation, read without locking. */
export interface MachineSnapshot {
  readonly row: MachineRow;
  readonly assignment: NodeAssignment | undefined;
  readonly plan: PlanRow | undefined;
  readonly clusterGeneration: bigint | undefined;
}

type PlanJson = { plan: unknown; created_at: string | Date; fetched_at: string | Date | null; cluster_generation: string | number | bigint };

/** `sessionSecretHash`: only if the machine's current session secret has this hash. */
export async function readMachineSnapshot(db: DeployerDb, machineId: string, sessionSecretHash?: string): Promise<MachineSnapshot | undefined> {
  const result = await statements.execute<Selectable<MachinesTable>, DeployerDatabase>(
    db,
    sessionSecretHash === undefined ? 'readMachineSnapshot' : 'readMachineSnapshot|session',
    (p) => {
      const query = db
        .selectFrom('machines')
        .selectAll('machines')
        .select((eb) => [
          eb.selectFrom('cluster_state').select('generation').where('id', '=', 1).as('cluster_generation'),
          eb.selectFrom('assignments as a').select(sql<AssignmentJson>`to_jsonb(a)`.as('j')).whereRef('a.machine_id', '=', 'machines.machine_id').as('assignment_json'),
          eb.selectFrom('install_plans as p').select(sql<PlanJson>`to_jsonb(p)`.as('j')).whereRef('p.machine_id', '=', 'machines.machine_id').as('plan_json'),
        ])
        .where('machine_id', '=', p('machineId'));
      return sessionSecretHash === undefined ? query : query.where('session_secret_hash', '=', p('sessionSecretHash'));
    },
    sessionSecretHash === undefined ? { machineId } : { machineId, sessionSecretHash },
  );
  const r = result.rows[0];
  if (!r) return undefined;
  const extra = r as unknown as { cluster_generation: bigint | string | null; assignment_json: AssignmentJson | null; plan_json: PlanJson | null };
  const p = extra.plan_json;
  return {
    row: toRow(r),
    clusterGeneration: generationOf(extra.cluster_generation),
    assignment: extra.assignment_json ? assignmentFromColumns(extra.assignment_json) : undefined,
    plan: p
      ? {
          plan: InstallPlan.fromJSON(p.plan),
          createdAt: new Date(p.created_at),
          fetchedAt: p.fetched_at === null ? null : new Date(p.fetched_at),
          clusterGeneration: BigInt(p.cluster_generation),
        }
      : undefined,
  };
}

/** A change to one machine, applied only if the machine is still as the caller read it. */
export interface GuardedWrite {
  readonly machineId: string;
  /** The machine must still have this resource_version ... */
  readonly resourceVersion?: bigint;
  /** ... and/or be in this state ... */
  readonly state?: MachineState;
  /** ... and/or hold the session secret with this hash ... */
  readonly sessionSecretHash?: string;
  /** ... and/or an install token with this hash that has not expired at `now`. */
  readonly installTokenHash?: string;
  readonly update: MachineUpdate;
  readonly now: Date;
  /** Events of the change; they carry its resource_version. A node_id of '' is filled from the assignment. */
  readonly audits: readonly Omit<AuditEntry, 'resourceVersion'>[];
  /** Marks the install plan fetched (FetchPlan). */
  readonly planFetched?: boolean;
  /** The node's issued credentials (FetchPlan). */
  readonly credentials?: NodeCredentialRecord;
  /** The stored install progress keeps its startedAt (the new one only fills it when absent). */
  readonly keepStartedAt?: boolean;
}

/**
 * Applies `w` in one statement when the guard still holds; returns the new row, or undefined
 * when the machine changed meanwhile (or is gone) and nothing was written.
 */
export async function guardedWrite(db: DeployerDb, w: GuardedWrite): Promise<MachineHead | undefined> {
  const columns: Record<string, unknown> = machineColumns(w.update, w.now, w.update.state !== undefined && w.update.state !== w.state);
  const keepStartedAt = Boolean(w.keepStartedAt && w.update.installProgress);
  const progressDoc = keepStartedAt && w.update.installProgress ? JSON.stringify(InstallProgress.toJSON(w.update.installProgress)) : undefined;
  if (keepStartedAt) delete columns.install_progress;
  const set = bindRow('u', columns);
  const c = w.credentials;
  const credentials = c
    ? bindRow('c', {
        node_id: c.nodeId,
        ssh_public_key: c.sshPublicKey,
        ssh_private_key_sealed: c.sshPrivateKeySealed,
        tls_certificate_pem: c.tlsCertificatePem,
        tls_private_key_sealed: c.tlsPrivateKeySealed,
        tls_expires_at: c.tlsExpiresAt,
        issued_at: c.issuedAt,
      })
    : undefined;
  const guards = `${w.resourceVersion !== undefined ? 'rv' : ''}${w.state !== undefined ? 'state' : ''}${w.sessionSecretHash !== undefined ? 'session' : ''}${w.installTokenHash !== undefined ? 'install' : ''}`;
  const key = `guardedWrite|${set.shape}|keep=${keepStartedAt}|guard=${guards}|audits=${w.audits.length > 0}|fetched=${Boolean(w.planFetched)}|c=${credentials?.shape ?? '-'}`;
  const values: Record<string, unknown> = {
    ...set.values,
    ...(credentials?.values ?? {}),
    machineId: w.machineId,
    ...(progressDoc !== undefined ? { progressDoc } : {}),
    ...(w.resourceVersion !== undefined ? { resourceVersion: w.resourceVersion } : {}),
    ...(w.state !== undefined ? { state: stateName(w.state) } : {}),
    ...(w.sessionSecretHash !== undefined ? { sessionSecretHash: w.sessionSecretHash } : {}),
    ...(w.installTokenHash !== undefined ? { installTokenHash: w.installTokenHash, tokenValidAt: w.now } : {}),
    ...(w.audits.length > 0 ? { audits: JSON.stringify(w.audits.map((a) => auditValues(a))) } : {}),
    ...(w.planFetched ? { now: w.now } : {}),
  };
  const r = await statements.execute<Pick<Selectable<MachinesTable>, (typeof HEAD_COLUMNS)[number]>, DeployerDatabase>(
    db,
    key,
    (p) => {
      const changes = {
        ...set.build(p),
        ...(keepStartedAt
          ? { install_progress: sql<JsonDocument>`jsonb_set(${p('progressDoc')}::jsonb, '{startedAt}', coalesce(install_progress -> 'startedAt', ${p('progressDoc')}::jsonb -> 'startedAt'))` }
          : {}),
      };
      let query = db.with('u', (q) => {
        let update = q.updateTable('machines').set(changes).where('machine_id', '=', p('machineId'));
        if (w.resourceVersion !== undefined) update = update.where('resource_version', '=', p('resourceVersion'));
        if (w.state !== undefined) update = update.where('state', '=', p('state'));
        if (w.sessionSecretHash !== undefined) update = update.where('session_secret_hash', '=', p('sessionSecretHash'));
        if (w.installTokenHash !== undefined) {
          update = update
            .where('install_token_hash', '=', p('installTokenHash'))
            .where((eb) => eb.or([eb('install_token_expires_at', 'is', null), eb('install_token_expires_at', '>', p('tokenValidAt'))]));
        }
        return update.returning(HEAD_COLUMNS);
      });
      if (w.audits.length > 0) {
        // Inserted only when the guarded UPDATE matched (a row of u), with the resource_version it
        // set; an empty node_id is filled from the machine's assignment.
        query = query.with('a', () =>
          sql`(INSERT INTO ${sql.table('audit_events')} (at, actor, actor_kind, rpc, machine_id, node_id, from_state, to_state, transition, reason, outcome, resource_version, peer)
            SELECT r.at, r.actor, r.actor_kind, r.rpc, r.machine_id, coalesce(nullif(r.node_id, ''), (SELECT node_id FROM ${sql.table('assignments')} WHERE machine_id = u.machine_id), ''), r.from_state, r.to_state, r.transition, r.reason, r.outcome, u.resource_version, r.peer
            FROM u, jsonb_populate_recordset(NULL::${sql.table('audit_events')}, ${p('audits')}::jsonb) AS r
            RETURNING id)`,
        ) as unknown as typeof query;
      }
      if (w.planFetched) {
        query = query.with('p', (q) =>
          q
            .updateTable('install_plans')
            .set({ fetched_at: p('now') })
            .where('machine_id', 'in', (eb) => eb.selectFrom('u').select('u.machine_id'))
            .returning('machine_id'),
        ) as unknown as typeof query;
      }
      if (credentials) {
        const v = credentials.build(p);
        query = query.with('c', (q) =>
          q
            .insertInto('node_credentials')
            .columns(['machine_id', 'node_id', 'ssh_public_key', 'ssh_private_key_sealed', 'tls_certificate_pem', 'tls_private_key_sealed', 'tls_expires_at', 'issued_at'])
            .expression((eb) =>
              eb
                .selectFrom('u')
                .select((s) => [
                  s.ref('u.machine_id').as('machine_id'),
                  sql<string>`${v.node_id}::text`.as('node_id'),
                  sql<string>`${v.ssh_public_key}::text`.as('ssh_public_key'),
                  sql<string>`${v.ssh_private_key_sealed}::text`.as('ssh_private_key_sealed'),
                  sql<string>`${v.tls_certificate_pem}::text`.as('tls_certificate_pem'),
                  sql<string>`${v.tls_private_key_sealed}::text`.as('tls_private_key_sealed'),
                  sql<Date>`${v.tls_expires_at}::timestamptz`.as('tls_expires_at'),
                  sql<Date>`${v.issued_at}::timestamptz`.as('issued_at'),
                ]),
            )
            .onConflict((oc) => oc.column('machine_id').doUpdateSet((eb) => ({
              node_id: eb.ref('excluded.node_id'),
              ssh_public_key: eb.ref('excluded.ssh_public_key'),
              ssh_private_key_sealed: eb.ref('excluded.ssh_private_key_sealed'),
              tls_certificate_pem: eb.ref('excluded.tls_certificate_pem'),
              tls_private_key_sealed: eb.ref('excluded.tls_private_key_sealed'),
              tls_expires_at: eb.ref('excluded.tls_expires_at'),
              issued_at: eb.ref('excluded.issued_at'),
            })))
            .returning('machine_id'),
        ) as unknown as typeof query;
      }
      return query.selectFrom('u').select(HEAD_COLUMNS);
    },
    values,
  );
  const row = r.rows[0];
  return row ? toHead(row) : undefined;
}
