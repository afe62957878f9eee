// What the machine watch reads: how far the resource_version sequence has gone, which
// transactions may still hold versions nobody can see yet, the changes (current machine rows
// and deletions) within a range of versions, and the retention of deletions.
import { type Kysely, type Selectable, sql } from 'kysely';
import type { Machine } from '../../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { DEPLOYER_SCHEMA } from '../migrations/index.js';
import { type AssignmentJson, assignmentFromColumns, type DeployerDb, machineMessages, planFromColumns, planSummary, toRow } from './machines.js';
import type { DeployerDatabase, InstallPlansTable, MachinesTable } from './tables.js';

/** The largest resource_version handed out so far, committed or not (0 before the first). */
export async function lastIssuedResourceVersion(db: DeployerDb): Promise<bigint> {
  const r = await sql<{ rv: bigint | string }>`SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END AS rv FROM ${sql.table('resource_version_seq')}`.execute(db);
  return BigInt(r.rows[0]?.rv ?? 0);
}

/**
 * The transactions (virtual ids) holding a write lock on machines. Every statement that takes a
 * resource_version writes a machine row (deletions through their trigger), and a statement locks
 * its table before it computes its values: a transaction that took a version up to what
 * lastIssuedResourceVersion read before this call is finished, or it is listed here.
 */
export async function machineWriters(db: DeployerDb): Promise<string[]> {
  const r = await sql<{ vxid: string }>`
    SELECT virtualtransaction AS vxid FROM pg_locks
    WHERE locktype = 'relation' AND relation = ${sql.lit(`${DEPLOYER_SCHEMA}.machines`)}::regclass AND mode = 'RowExclusiveLock' AND pid <> pg_backend_pid()`.execute(db);
  return r.rows.map((row) => row.vxid);
}

/** One change a watch delivers. */
export interface MachineChange {
  /** The machine's current resource_version, or the deletion's. */
  readonly resourceVersion: bigint;
  /** The machine as it is, or for a deletion as it was. */
  readonly machine: Machine;
  readonly deleted: boolean;
  /** The resource_version the machine was created with; 0 when unknown. */
  readonly createdResourceVersion: bigint;
}

type DeletionRow = Selectable<MachinesTable> & {
  deletion_rv: bigint | string;
  created_rv: bigint | string | null;
  assignment_doc: AssignmentJson | null;
  plan_doc: Selectable<InstallPlansTable>['plan'] | null;
  plan_created_at: Date | null;
  plan_fetched_at: Date | null;
  plan_cluster_generation: bigint | string | null;
};

/**
 * The changes with a resource_version in (after, through], oldest first, at most `limit`: each
 * machine whose current version is in the range (one that changed again since is in a later
 * range: a watcher gets a machine's latest version, not every step) and each deletion. Read in
 * one snapshot, so a machine's assignment and plan belong to the version read.
 */
export async function changesInRange(db: Kysely<DeployerDatabase>, after: bigint, through: bigint, limit: number): Promise<MachineChange[]> {
  if (through <= after) return [];
  return db
    .transaction()
    .setIsolationLevel('repeatable read')
    .execute(async (trx) => {
      const live = await trx
        .selectFrom('machines')
        .selectAll('machines')
        .select(sql<bigint | string | null>`created_resource_version`.as('created_rv'))
        .where('resource_version', '>', after)
        .where('resource_version', '<=', through)
        .orderBy('resource_version')
        .limit(limit)
        .execute();
      const gone = await sql<DeletionRow>`
        SELECT m.*, d.resource_version AS deletion_rv, m.created_resource_version AS created_rv, d.assignment AS assignment_doc,
               p.plan AS plan_doc, p.created_at AS plan_created_at, p.fetched_at AS plan_fetched_at, p.cluster_generation AS plan_cluster_generation
        FROM ${sql.table('machine_deletions')} d
        CROSS JOIN LATERAL jsonb_populate_record(NULL::${sql.table('machines')}, d.machine) m
        LEFT JOIN LATERAL jsonb_populate_record(NULL::${sql.table('install_plans')}, d.plan) p ON d.plan IS NOT NULL
        WHERE d.resource_version > ${after} AND d.resource_version <= ${through}
        ORDER BY d.resource_version
        LIMIT ${limit}`.execute(trx);
      const merged = [
        ...live.map((r) => ({ rv: BigInt(r.resource_version), created: r.created_rv, row: r, deletion: undefined })),
        ...gone.rows.map((r) => ({ rv: BigInt(r.deletion_rv), created: r.created_rv, row: r, deletion: r })),
      ]
        .sort((a, b) => (a.rv < b.rv ? -1 : a.rv > b.rv ? 1 : 0))
        .slice(0, limit);
      // A deleted machine's assignment and plan rows are gone: its message gets them from the
      // deletion record instead.
      const messages = await machineMessages(trx, merged.map((c) => toRow(c.row)));
      return merged.map((c, i) => {
        const message = messages[i] as Machine;
        const d = c.deletion;
        const machine: Machine = d
          ? {
              ...message,
              assignment: d.assignment_doc ? assignmentFromColumns(d.assignment_doc) : undefined,
              plan:
                d.plan_doc && d.plan_created_at && d.plan_cluster_generation !== null
                  ? planSummary(planFromColumns({ machine_id: message.machineId, plan: d.plan_doc, created_at: d.plan_created_at, fetched_at: d.plan_fetched_at, cluster_generation: BigInt(d.plan_cluster_generation) }))
                  : undefined,
            }
          : message;
        return { resourceVersion: c.rv, machine, deleted: d !== undefined, createdResourceVersion: c.created === null ? 0n : BigInt(c.created) };
      });
    });
}

/** Deletions up to this resource_version are no longer kept. */
export async function prunedThrough(db: DeployerDb): Promise<bigint> {
  const r = await db.selectFrom('machine_watch_horizon').select('pruned_through').where('id', '=', 1).executeTakeFirst();
  return r ? BigInt(r.pruned_through) : 0n;
}

/** Forgets deletions made before `before` and moves the horizon past them; safe on every replica at once. */
export async function pruneDeletions(db: DeployerDb, before: Date): Promise<number> {
  const r = await sql<{ n: bigint | string }>`
    WITH gone AS (DELETE FROM ${sql.table('machine_deletions')} WHERE deleted_at < ${before} RETURNING resource_version),
    horizon AS (
      UPDATE ${sql.table('machine_watch_horizon')} SET pruned_through = greatest(pruned_through, (SELECT max(resource_version) FROM gone))
      WHERE id = 1 AND EXISTS (SELECT 1 FROM gone)
      RETURNING pruned_through
    )
    SELECT count(*) AS n FROM gone`.execute(db);
  return Number(r.rows[0]?.n ?? 0);
}
