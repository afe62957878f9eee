// Machine rows and everything hanging off them (MACs, assignment, plan, credentials), mapped
// to and from the contract's messages. Every function takes the transaction it runs in.
import { type Kysely, type Selectable, sql, type Transaction } from 'kysely';
import { NodeAssignment, AssignmentSource } from '../../../gen/ts/ultracloud/assignment/v1/assignment.js';
import { InstallPlan } from '../../../gen/ts/ultracloud/installplan/v1/installplan.js';
import { MachineInventory } from '../../../gen/ts/ultracloud/inventory/v1/inventory.js';
import { InstallProgress, MachineState } from '../../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import type { Machine, PlanSummary } from '../../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { parseStateName, stateName } from '../domain/lifecycle.js';
import { StatementCache } from '../../../lib/db/statement-cache.js';
import { type AuditEntry, auditValues } from './audit.js';
import type { DeployerDatabase, InstallPlansTable, JsonDocument, MachinesTable } from './tables.js';

export type DeployerDb = Kysely<DeployerDatabase> | Transaction<DeployerDatabase>;

export interface MachineRow {
  readonly machineId: string;
  readonly state: MachineState;
  readonly previousState: MachineState;
  readonly resourceVersion: bigint;
  readonly inventory: MachineInventory;
  readonly inventoryHash: string;
  readonly bootId: string;
  readonly statusMessage: string;
  readonly lastError: string;
  readonly installProgress: InstallProgress | undefined;
  readonly createdAt: Date;
  readonly stateChangedAt: Date;
  readonly updatedAt: Date;
  readonly lastSeenAt: Date;
  readonly progressAt: Date | null;
}

export function stateFromColumn(value: string | null): MachineState {
  if (!value) return MachineState.MACHINE_STATE_UNSPECIFIED;
  const state = parseStateName(value);
  if (state === undefined) throw new Error(`unknown machine state in database: ${value}`);
  return state;
}


export function toRow(r: Selectable<MachinesTable>): MachineRow {
  return {
    machineId: r.machine_id,
    state: stateFromColumn(r.state),
    previousState: stateFromColumn(r.previous_state),
    resourceVersion: BigInt(r.resource_version),
    inventory: MachineInventory.fromJSON(r.inventory),
    inventoryHash: r.inventory_hash,
    bootId: r.boot_id,
    statusMessage: r.status_message,
    lastError: r.last_error,
    installProgress: r.install_progress ? InstallProgress.fromJSON(r.install_progress) : undefined,
    createdAt: r.created_at,
    stateChangedAt: r.state_changed_at,
    updatedAt: r.updated_at,
    lastSeenAt: r.last_seen_at,
    progressAt: r.progress_at,
  };
}

/** Locks and returns the machine, or undefined. */
export async function lockMachine(trx: DeployerDb, machineId: string): Promise<MachineRow | undefined> {
  const row = await trx.selectFrom('machines').selectAll().where('machine_id', '=', machineId).forUpdate().executeTakeFirst();
  return row ? toRow(row) : undefined;
}

/** The generation of the applied cluster state, read in the same statement as a machine. */
export function clusterGenerationColumn(db: DeployerDb) {
  return db.selectFrom('cluster_state').select('generation').where('id', '=', 1);
}

export function generationOf(value: bigint | string | null | undefined): bigint | undefined {
  return value === null || value === undefined ? undefined : BigInt(value);
}

export interface LockedMachine {
  readonly row: MachineRow;
  /** The applied cluster state's generation, undefined when none is applied. */
  readonly clusterGeneration: bigint | undefined;
  /** The node assignment, when asked for (undefined: the machine has none). */
  readonly assignment: NodeAssignment | undefined;
}

/**
 * Locks the machine and, in the same round trip, reads the cluster-state generation and (when
 * `withAssignment`) the machine's assignment: what every state-changing RPC reads first.
 */
export async function lockMachineWith(trx: DeployerDb, machineId: string, withAssignment = false): Promise<LockedMachine | undefined> {
  const r = await trx
    .selectFrom('machines')
    .selectAll('machines')
    .select((eb) => [
      clusterGenerationColumn(trx).as('cluster_generation'),
      ...(withAssignment
        ? [eb.selectFrom('assignments as a').select(sql<AssignmentJson>`to_jsonb(a)`.as('j')).whereRef('a.machine_id', '=', 'machines.machine_id').as('assignment_json')]
        : []),
    ])
    .where('machine_id', '=', machineId)
    .forUpdate()
    .executeTakeFirst();
  if (!r) return undefined;
  const extra = r as unknown as { cluster_generation: bigint | string | null; assignment_json?: AssignmentJson | null };
  return {
    row: toRow(r),
    clusterGeneration: generationOf(extra.cluster_generation),
    assignment: extra.assignment_json ? assignmentFromColumns(extra.assignment_json) : undefined,
  };
}

export async function getMachineRow(db: DeployerDb, machineId: string): Promise<MachineRow | undefined> {
  const row = await db.selectFrom('machines').selectAll().where('machine_id', '=', machineId).executeTakeFirst();
  return row ? toRow(row) : undefined;
}

/** The machine that owns this DMI UUID or any of these MACs, locked. */
export async function lockMachineByIdentity(trx: DeployerDb, systemUuid: string | undefined, macs: readonly string[]): Promise<MachineRow | undefined> {
  if (!systemUuid && macs.length === 0) return undefined;
  const row = await trx
    .selectFrom('machines')
    .selectAll()
    .where((eb) =>
      eb.or([
        ...(systemUuid ? [eb('system_uuid', '=', systemUuid)] : []),
        ...(macs.length > 0 ? [eb('machine_id', 'in', eb.selectFrom('machine_macs').select('machine_id').where('mac', 'in', [...macs]))] : []),
      ]),
    )
    // A UUID match wins over a MAC match when the two disagree (a NIC moved between machines).
    .orderBy(sql`system_uuid IS NOT DISTINCT FROM ${systemUuid ?? null}`, 'desc')
    .orderBy('machine_id')
    .limit(1)
    .forUpdate()
    .executeTakeFirst();
  return row ? toRow(row) : undefined;
}

export interface NewMachine {
  readonly machineId: string;
  readonly systemUuid: string | undefined;
  readonly serial: string | undefined;
  readonly inventory: MachineInventory;
  readonly inventoryHash: string;
  readonly bootId: string;
  readonly sessionSecretHash: string;
  readonly now: Date;
}

/**
 * Inserts the machine, its MACs (a MAC claimed by another machine moves to this one) and its
 * audit event in one statement; returns the row and the applied cluster-state generation.
 */
export async function insertMachine(trx: DeployerDb, m: NewMachine, macs: readonly string[], audit: Omit<AuditEntry, 'resourceVersion'>): Promise<{ row: MachineRow; clusterGeneration: bigint | undefined }> {
  let query = trx.with('m', (db) =>
    db
      .insertInto('machines')
      .values({
        machine_id: m.machineId,
        system_uuid: m.systemUuid ?? null,
        serial: m.serial ?? null,
        state: stateName(MachineState.MACHINE_STATE_DISCOVERED),
        previous_state: null,
        resource_version: sql<bigint>`nextval(${sql.lit('deployer.resource_version_seq')}::regclass)`,
        inventory: MachineInventory.toJSON(m.inventory) as JsonDocument,
        inventory_hash: m.inventoryHash,
        boot_id: m.bootId,
        status_message: '',
        last_error: '',
        session_secret_hash: m.sessionSecretHash,
        created_at: m.now,
        updated_at: m.now,
        state_changed_at: m.now,
        last_seen_at: m.now,
      })
      .returningAll(),
  );
  if (macs.length > 0) {
    // The MAC rows reference the new machine; a data-modifying CTE's row is visible to the
    // foreign-key check of a sibling CTE, as both run in one statement.
    query = query.with('x', (db) =>
      db
        .insertInto('machine_macs')
        .values(macs.map((mac) => ({ mac, machine_id: m.machineId })))
        .onConflict((oc) => oc.column('mac').doUpdateSet({ machine_id: m.machineId }))
        .returning('mac'),
    ) as unknown as typeof query;
  }
  const r = await query
    .with('a', (db) => db.insertInto('audit_events').values({ ...auditValues(audit), resource_version: sql<bigint>`(SELECT resource_version FROM m)` }).returning('id'))
    .selectFrom('m')
    .selectAll('m')
    .select(() => [clusterGenerationColumn(trx).as('cluster_generation')])
    .executeTakeFirstOrThrow();
  return { row: toRow(r as Selectable<MachinesTable>), clusterGeneration: generationOf((r as unknown as { cluster_generation: bigint | string | null }).cluster_generation) };
}

/** Replaces the machine's MAC set; a MAC claimed by another machine moves to this one. */
export async function setMachineMacs(trx: DeployerDb, machineId: string, macs: readonly string[]): Promise<void> {
  await trx.deleteFrom('machine_macs').where('machine_id', '=', machineId).execute();
  if (macs.length === 0) return;
  await trx
    .insertInto('machine_macs')
    .values(macs.map((mac) => ({ mac, machine_id: machineId })))
    .onConflict((oc) => oc.column('mac').doUpdateSet({ machine_id: machineId }))
    .execute();
}

export interface MachineUpdate {
  state?: MachineState;
  previousState?: MachineState;
  inventory?: MachineInventory;
  inventoryHash?: string;
  systemUuid?: string | null;
  serial?: string | null;
  bootId?: string;
  statusMessage?: string;
  lastError?: string;
  installProgress?: InstallProgress | null;
  sessionSecretHash?: string | null;
  seen?: boolean;
  progress?: boolean;
  /** The install token of one install or rescue attempt; null revokes it. */
  installToken?: { hash: string; expiresAt: Date } | null;
  /** A node assignment to insert by the same statement (commissioning). */
  newAssignment?: NodeAssignment;
}

/** The machines columns an update sets, with a new resource_version. */
export function machineColumns(update: MachineUpdate, now: Date, stateChanged: boolean) {
  return {
    resource_version: sql<bigint>`nextval(${sql.lit('deployer.resource_version_seq')}::regclass)`,
    updated_at: now,
    ...(update.state !== undefined ? { state: stateName(update.state) } : {}),
    ...(stateChanged ? { state_changed_at: now } : {}),
    ...(update.previousState !== undefined
      ? { previous_state: update.previousState === MachineState.MACHINE_STATE_UNSPECIFIED ? null : stateName(update.previousState) }
      : {}),
    ...(update.inventory ? { inventory: MachineInventory.toJSON(update.inventory) as JsonDocument } : {}),
    ...(update.inventoryHash !== undefined ? { inventory_hash: update.inventoryHash } : {}),
    ...(update.systemUuid !== undefined ? { system_uuid: update.systemUuid } : {}),
    ...(update.serial !== undefined ? { serial: update.serial } : {}),
    ...(update.bootId !== undefined ? { boot_id: update.bootId } : {}),
    ...(update.statusMessage !== undefined ? { status_message: update.statusMessage } : {}),
    ...(update.lastError !== undefined ? { last_error: update.lastError } : {}),
    ...(update.installProgress !== undefined
      ? { install_progress: update.installProgress ? (InstallProgress.toJSON(update.installProgress) as JsonDocument) : null }
      : {}),
    ...(update.sessionSecretHash !== undefined ? { session_secret_hash: update.sessionSecretHash } : {}),
    ...(update.seen ? { last_seen_at: now } : {}),
    ...(update.progress ? { progress_at: now } : {}),
    ...(update.installToken !== undefined ? { install_token_hash: update.installToken?.hash ?? null, install_token_expires_at: update.installToken?.expiresAt ?? null } : {}),
  };
}

/**
 * Applies the update with a new resource_version in one statement; returns the new row. With
 * `audit`, the audit event (carrying that resource_version) is inserted by the same statement.
 */
export async function updateMachine(trx: DeployerDb, current: MachineRow, update: MachineUpdate, now: Date, audit?: Omit<AuditEntry, 'resourceVersion'>): Promise<MachineRow> {
  const changes = machineColumns(update, now, update.state !== undefined && update.state !== current.state);
  if (!audit) {
    if (update.newAssignment) await insertAssignment(trx, current.machineId, update.newAssignment);
    const row = await trx.updateTable('machines').set(changes).where('machine_id', '=', current.machineId).returningAll().executeTakeFirstOrThrow();
    return toRow(row);
  }
  let query = trx
    .with('u', (db) => db.updateTable('machines').set(changes).where('machine_id', '=', current.machineId).returningAll())
    .with('a', (db) => db.insertInto('audit_events').values({ ...auditValues(audit), resource_version: sql<bigint>`(SELECT resource_version FROM u)` }).returning('id'));
  if (update.newAssignment) {
    const values = assignmentValues(current.machineId, update.newAssignment);
    query = query.with('n', (db) => db.insertInto('assignments').values(values).returning('machine_id')) as unknown as typeof query;
  }
  const row = await query
    .selectFrom('u')
    .selectAll('u')
    .executeTakeFirstOrThrow();
  return toRow(row as Selectable<MachinesTable>);
}

/**
 * An installer's progress report while the machine is INSTALLING, as one statement (no explicit
 * transaction): the row lock of the UPDATE orders it against every state change, and its WHERE is
 * re-checked on the locked row. Keeps the install's startedAt. Returns false when the machine is
 * not (or no longer) INSTALLING, or, with `installTokenHash`, holds no unexpired install token
 * of that hash: nothing is written then, and the caller takes the general path.
 */
export async function recordInstallingProgress(db: DeployerDb, machineId: string, progress: InstallProgress, now: Date, installTokenHash?: string): Promise<boolean> {
  const doc = JSON.stringify(InstallProgress.toJSON(progress));
  const guarded = installTokenHash !== undefined;
  // Every report of every installer runs this: a cached statement (lib/db/statement-cache.ts).
  const r = await statements.execute<never, DeployerDatabase>(
    db,
    guarded ? 'recordInstallingProgress|token' : 'recordInstallingProgress',
    (p) => {
      const update = db
        .updateTable('machines')
        .set({
          resource_version: sql<bigint>`nextval(${sql.lit('deployer.resource_version_seq')}::regclass)`,
          updated_at: p('now'),
          progress_at: p('now'),
          install_progress: sql<JsonDocument>`jsonb_set(${p('doc')}::jsonb, '{startedAt}', coalesce(install_progress -> 'startedAt', ${p('doc')}::jsonb -> 'startedAt'))`,
        })
        .where('machine_id', '=', p('machineId'))
        .where('state', '=', stateName(MachineState.MACHINE_STATE_INSTALLING));
      return guarded
        ? update.where('install_token_hash', '=', p('installTokenHash')).where((eb) => eb.or([eb('install_token_expires_at', 'is', null), eb('install_token_expires_at', '>', p('now'))]))
        : update;
    },
    guarded ? { now, doc, machineId, installTokenHash } : { now, doc, machineId },
  );
  return (r.numAffectedRows ?? 0n) > 0n;
}

const statements = new StatementCache();

/**
 * Serialises Discovers of one identity (its DMI UUID and each MAC) without serialising different
 * machines: two installers reporting the same hardware wait for each other, and only they do.
 * Keys are taken in sorted order so two overlapping identities cannot deadlock.
 */
export async function lockIdentity(trx: DeployerDb, systemUuid: string | undefined, macs: readonly string[]): Promise<void> {
  const keys = [...(systemUuid ? [`uuid:${systemUuid}`] : []), ...macs.map((m) => `mac:${m}`)].sort();
  if (keys.length === 0) return;
  await sql`SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM (SELECT unnest(${sql.val(keys)}::text[]) AS k ORDER BY 1) AS keys`.execute(trx);
}

export async function deleteMachine(trx: DeployerDb, machineId: string): Promise<void> {
  await trx.deleteFrom('machines').where('machine_id', '=', machineId).execute();
}

// ---- assignments ------------------------------------------------------------------------------

type AssignmentColumns = Selectable<DeployerDatabase['assignments']>;
/** An assignments row as `to_jsonb(a)` returns it (timestamps as text). */
export type AssignmentJson = Omit<AssignmentColumns, 'assigned_at' | 'cluster_generation'> & { assigned_at: Date | string; cluster_generation: bigint | string | number };

export function assignmentFromColumns(r: AssignmentJson): NodeAssignment {
  return {
    nodeId: r.node_id,
    hostname: r.hostname,
    nodeClass: r.node_class,
    pool: r.pool,
    labels: r.labels,
    failureDomain: r.failure_domain,
    installProfile: r.install_profile,
    source: AssignmentSource[r.source as keyof typeof AssignmentSource] ?? AssignmentSource.ASSIGNMENT_SOURCE_UNSPECIFIED,
    sourceName: r.source_name,
    assignedAt: typeof r.assigned_at === 'string' ? new Date(r.assigned_at) : r.assigned_at,
    clusterGeneration: BigInt(r.cluster_generation),
  };
}

export async function getAssignment(db: DeployerDb, machineId: string): Promise<NodeAssignment | undefined> {
  const r = await db.selectFrom('assignments').selectAll().where('machine_id', '=', machineId).executeTakeFirst();
  return r ? assignmentFromColumns(r) : undefined;
}

export function assignmentValues(machineId: string, a: NodeAssignment) {
  return {
      machine_id: machineId,
      node_id: a.nodeId,
      hostname: a.hostname,
      node_class: a.nodeClass,
      pool: a.pool,
      labels: JSON.stringify(a.labels),
      failure_domain: a.failureDomain,
      install_profile: a.installProfile,
      source: AssignmentSource[a.source],
      source_name: a.sourceName,
      assigned_at: a.assignedAt ?? new Date(),
      cluster_generation: a.clusterGeneration,
  };
}

export async function insertAssignment(trx: DeployerDb, machineId: string, a: NodeAssignment): Promise<void> {
  await trx.insertInto('assignments').values(assignmentValues(machineId, a)).execute();
}

export async function deleteAssignment(trx: DeployerDb, machineId: string): Promise<void> {
  await trx.deleteFrom('assignments').where('machine_id', '=', machineId).execute();
  await trx.deleteFrom('address_allocations').where('machine_id', '=', machineId).execute();
}

/** node_ids and hostnames held by machines other than `exceptMachineId`. */
export async function takenNames(db: DeployerDb, exceptMachineId: string): Promise<{ nodeIds: Set<string>; hostnames: Set<string> }> {
  const rows = await db.selectFrom('assignments').select(['node_id', 'hostname']).where('machine_id', '!=', exceptMachineId).execute();
  return { nodeIds: new Set(rows.map((r) => r.node_id)), hostnames: new Set(rows.map((r) => r.hostname)) };
}

/** Advisory-lock namespace of node names (the two-int4 key space; identity locks use one bigint). */
const NAME_LOCK_SPACE = 0x75630005;

/**
 * Claims the first of `candidates` (node_id/hostname pairs, in preference order) that no machine
 * holds and no concurrent transaction is claiming: each candidate is re-checked against the
 * committed assignments and its two per-name advisory locks are tried without waiting, so
 * concurrent enrolments diverge onto different names instead of queueing on one lock. The locks
 * are held to the end of the transaction. Returns the claimed candidate's position, or undefined
 * when every candidate is taken or being claimed. A claimer that committed between this
 * statement's snapshot and its lock attempt is not seen: the unique indexes still reject that
 * name, and the caller retries.
 */
export async function claimNames(trx: DeployerDb, candidates: readonly { nodeId: string; hostname: string }[]): Promise<number | undefined> {
  if (candidates.length === 0) return undefined;
  const r = await sql<{ i: string | number }>`
    SELECT c.i FROM unnest(${sql.val(candidates.map((c) => c.nodeId))}::text[], ${sql.val(candidates.map((c) => c.hostname))}::text[]) WITH ORDINALITY AS c(node_id, hostname, i)
    WHERE CASE
      WHEN EXISTS (SELECT 1 FROM ${sql.table('assignments')} a WHERE a.node_id = c.node_id) OR EXISTS (SELECT 1 FROM ${sql.table('assignments')} a WHERE a.hostname = c.hostname) THEN false
      ELSE pg_try_advisory_xact_lock(${NAME_LOCK_SPACE}, hashtext('n:' || c.node_id)) AND pg_try_advisory_xact_lock(${NAME_LOCK_SPACE}, hashtext('h:' || c.hostname))
    END
    LIMIT 1`.execute(trx);
  const first = r.rows[0];
  return first ? Number(first.i) - 1 : undefined;
}

/** Waits for the per-name locks of one node_id/hostname pair (an operator naming a node). */
export async function lockNames(trx: DeployerDb, names: { nodeId: string; hostname: string }): Promise<void> {
  const keys = [`n:${names.nodeId}`, `h:${names.hostname}`].sort();
  await sql`SELECT count(pg_advisory_xact_lock(${NAME_LOCK_SPACE}, hashtext(k))) FROM (SELECT unnest(${sql.val(keys)}::text[]) AS k ORDER BY 1) AS keys`.execute(trx);
}

export async function namesInUse(db: DeployerDb): Promise<{ nodeClasses: Set<string>; pools: Set<string>; installProfiles: Set<string>; nodeIds: Set<string> }> {
  const rows = await db.selectFrom('assignments').select(['node_class', 'pool', 'install_profile', 'node_id']).execute();
  return {
    nodeClasses: new Set(rows.map((r) => r.node_class)),
    pools: new Set(rows.map((r) => r.pool)),
    installProfiles: new Set(rows.map((r) => r.install_profile)),
    nodeIds: new Set(rows.map((r) => r.node_id)),
  };
}

// ---- plans and address allocations -------------------------------------------------------------

export interface PlanRow {
  readonly plan: InstallPlan;
  readonly createdAt: Date;
  readonly fetchedAt: Date | null;
  readonly clusterGeneration: bigint;
}

export function planFromColumns(r: Selectable<InstallPlansTable>): PlanRow {
  return { plan: InstallPlan.fromJSON(r.plan), createdAt: r.created_at, fetchedAt: r.fetched_at, clusterGeneration: BigInt(r.cluster_generation) };
}

export async function getPlan(db: DeployerDb, machineId: string): Promise<PlanRow | undefined> {
  const r = await db.selectFrom('install_plans').selectAll().where('machine_id', '=', machineId).executeTakeFirst();
  return r ? planFromColumns(r) : undefined;
}

export async function savePlan(trx: DeployerDb, machineId: string, plan: InstallPlan, now: Date): Promise<void> {
  const values = { plan: InstallPlan.toJSON(plan) as JsonDocument, created_at: now, fetched_at: null, cluster_generation: plan.clusterGeneration };
  await trx
    .insertInto('install_plans')
    .values({ machine_id: machineId, ...values })
    .onConflict((oc) => oc.column('machine_id').doUpdateSet(values))
    .execute();
}

export async function markPlanFetched(trx: DeployerDb, machineId: string, now: Date): Promise<void> {
  await trx.updateTable('install_plans').set({ fetched_at: now }).where('machine_id', '=', machineId).execute();
}

export async function deletePlan(trx: DeployerDb, machineId: string): Promise<void> {
  await trx.deleteFrom('install_plans').where('machine_id', '=', machineId).execute();
}

export async function allocatedAddresses(db: DeployerDb, exceptMachineId: string): Promise<Map<string, Set<string>>> {
  const rows = await db.selectFrom('address_allocations').select(['network', 'address']).where('machine_id', '!=', exceptMachineId).execute();
  const out = new Map<string, Set<string>>();
  for (const r of rows) {
    let set = out.get(r.network);
    if (!set) out.set(r.network, (set = new Set()));
    set.add(r.address);
  }
  return out;
}

export async function recordAllocation(trx: DeployerDb, machineId: string, network: string, address: string): Promise<void> {
  await trx.deleteFrom('address_allocations').where('machine_id', '=', machineId).execute();
  await trx.insertInto('address_allocations').values({ network, address, machine_id: machineId }).execute();
}

// ---- the Machine message ---------------------------------------------------------------------

export function planSummary(p: PlanRow): PlanSummary {
  const { plan } = p;
  return {
    mode: plan.mode,
    installProfile: plan.installProfile,
    flakeRef: plan.flakeRef,
    flakeAttr: plan.flakeAttr,
    rootDiskByIdPath: plan.disk?.byIdPath ?? '',
    rootDiskSizeBytes: plan.disk?.sizeBytes ?? 0n,
    matchedHints: plan.disk?.matchedHints ?? [],
    wipePolicy: plan.disk?.wipePolicy ?? 0,
    bundleUrl: plan.bundleUrl,
    bundleSha256: plan.bundleSha256,
    createdAt: p.createdAt,
    fetchedAt: p.fetchedAt ?? undefined,
    clusterGeneration: p.clusterGeneration,
  };
}

function toMachine(row: MachineRow, assignment: NodeAssignment | undefined, plan: PlanRow | undefined): Machine {
  return {
    machineId: row.machineId,
    state: row.state,
    resourceVersion: row.resourceVersion,
    inventory: { ...row.inventory, machineId: row.machineId, inventoryHash: row.inventoryHash },
    assignment,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
    stateChangedAt: row.stateChangedAt,
    lastError: row.lastError,
    installProgress: row.installProgress,
    plan: plan ? planSummary(plan) : undefined,
    previousState: row.previousState,
    lastSeenAt: row.lastSeenAt,
    statusMessage: row.statusMessage,
  };
}

export async function machineMessage(db: DeployerDb, row: MachineRow): Promise<Machine> {
  const [assignment, plan] = await Promise.all([getAssignment(db, row.machineId), getPlan(db, row.machineId)]);
  return toMachine(row, assignment, plan);
}

/** Machine messages for a page of rows: two queries for the page, not two per machine. */
export async function machineMessages(db: DeployerDb, rows: readonly MachineRow[]): Promise<Machine[]> {
  if (rows.length === 0) return [];
  const ids = rows.map((r) => r.machineId);
  const [assignments, plans] = await Promise.all([
    db.selectFrom('assignments').selectAll().where('machine_id', 'in', ids).execute(),
    db.selectFrom('install_plans').selectAll().where('machine_id', 'in', ids).execute(),
  ]);
  const assignmentOf = new Map(assignments.map((a) => [a.machine_id, assignmentFromColumns(a)]));
  const planOf = new Map(plans.map((p) => [p.machine_id, planFromColumns(p)]));
  return rows.map((row) => toMachine(row, assignmentOf.get(row.machineId), planOf.get(row.machineId)));
}
