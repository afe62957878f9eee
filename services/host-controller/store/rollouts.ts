// Node rollout entries, the desired system of each node, the rollout event log and the audit log.
import { ActivationFailureReason, type DesiredSystem } from '../../../gen/ts/ultracloud/system/v1/system.js';
import { type NodeRollout, phaseFromName, phaseName } from '../domain/node-rollout.js';
import { type RawBuilder, sql } from 'kysely';
import { type JsonRowsWrite, writeJsonRows } from '../../../lib/db/json-rows.js';
import { desiredSystemJson, desiredTemplateJson } from './documents.js';
import type { HostsDb, JsonDocument, NodeRolloutsTable, RolloutEventsTable, Selectable } from './tables.js';

function reasonColumn(r: ActivationFailureReason): string {
  return r === ActivationFailureReason.ACTIVATION_FAILURE_REASON_UNSPECIFIED ? '' : (ActivationFailureReason[r] ?? '').replace(/^ACTIVATION_FAILURE_REASON_/, '');
}

function reasonFromColumn(s: string): ActivationFailureReason {
  if (s === '') return ActivationFailureReason.ACTIVATION_FAILURE_REASON_UNSPECIFIED;
  return (ActivationFailureReason as unknown as Record<string, ActivationFailureReason>)[`ACTIVATION_FAILURE_REASON_${s}`] ?? ActivationFailureReason.ACTIVATION_FAILURE_REASON_UNSPECIFIED;
}

export function nodeRolloutFromRow(r: Selectable<NodeRolloutsTable>): NodeRollout {
  return {
    nodeId: r.node_id,
    revision: r.revision,
    phase: phaseFromName(r.phase),
    hostname: r.hostname,
    failureDomain: r.failure_domain,
    systemPath: r.system_path,
    generation: r.generation,
    failureReason: reasonFromColumn(r.failure_reason),
    message: r.message,
    attempts: r.attempts,
    budgetCounted: r.budget_counted,
    cordoned: r.cordoned,
    rebootRequested: r.reboot_requested,
    rebootGrantedAt: r.reboot_granted_at ?? undefined,
    startedAt: r.started_at ?? undefined,
    finishedAt: r.finished_at ?? undefined,
    phaseChangedAt: r.phase_changed_at,
  };
}

function nodeRolloutRow(deployment: string, n: NodeRollout): NodeRolloutsTable {
  return {
    deployment,
    node_id: n.nodeId,
    revision: n.revision,
    phase: phaseName(n.phase),
    hostname: n.hostname,
    failure_domain: n.failureDomain,
    system_path: n.systemPath,
    generation: n.generation,
    failure_reason: reasonColumn(n.failureReason),
    message: n.message,
    attempts: n.attempts,
    budget_counted: n.budgetCounted,
    cordoned: n.cordoned,
    reboot_requested: n.rebootRequested,
    reboot_granted_at: n.rebootGrantedAt ?? null,
    started_at: n.startedAt ?? null,
    finished_at: n.finishedAt ?? null,
    phase_changed_at: n.phaseChangedAt,
  };
}

/** Every entry of `deployment`, or of every deployment (keyed by deployment, then node). */
export async function nodeRollouts(db: HostsDb, deployment?: string): Promise<Map<string, Map<string, NodeRollout>>> {
  let q = db.selectFrom('node_rollouts').selectAll();
  if (deployment !== undefined) q = q.where('deployment', '=', deployment);
  const out = new Map<string, Map<string, NodeRollout>>();
  for (const r of await q.execute()) {
    let rows = out.get(r.deployment);
    if (!rows) out.set(r.deployment, (rows = new Map()));
    rows.set(r.node_id, nodeRolloutFromRow(r));
  }
  return out;
}

const NODE_ROLLOUT_COLUMNS = [
  'deployment',
  'node_id',
  'revision',
  'phase',
  'hostname',
  'failure_domain',
  'system_path',
  'generation',
  'failure_reason',
  'message',
  'attempts',
  'budget_counted',
  'cordoned',
  'reboot_requested',
  'reboot_granted_at',
  'started_at',
  'finished_at',
  'phase_changed_at',
] as const satisfies readonly (keyof NodeRolloutsTable)[];

function nodeRolloutsWrite(rows: readonly NodeRolloutsTable[]): JsonRowsWrite {
  return { table: 'node_rollouts', columns: NODE_ROLLOUT_COLUMNS, rows, onConflict: { columns: ['deployment', 'node_id'], update: NODE_ROLLOUT_COLUMNS.slice(2) } };
}

/**
 * Upserts node entries from `select`, a query yielding the columns of NODE_ROLLOUT_COLUMNS in
 * that order (for entries built by the database rather than sent as rows).
 */
export function nodeRolloutsFrom(select: RawBuilder<unknown>): RawBuilder<unknown> {
  const columns = sql.join(NODE_ROLLOUT_COLUMNS.map((c) => sql.id(c)));
  const update = sql.join(NODE_ROLLOUT_COLUMNS.slice(2).map((c) => sql`${sql.id(c)} = ${sql.id('excluded', c)}`));
  return sql`INSERT INTO ${sql.table('node_rollouts')} (${columns}) ${select} ON CONFLICT (deployment, node_id) DO UPDATE SET ${update}`;
}

/** Upserts node entries, all in one statement. */
export async function saveNodeRollouts(db: HostsDb, deployment: string, rows: readonly NodeRollout[]): Promise<void> {
  await writeJsonRows(db, nodeRolloutsWrite(rows.map((r) => nodeRolloutRow(deployment, r))));
}

export async function deleteNodeRollouts(db: HostsDb, deployment: string, nodeIds: readonly string[]): Promise<void> {
  if (nodeIds.length === 0) return;
  await db.deleteFrom('node_rollouts').where('deployment', '=', deployment).where('node_id', 'in', nodeIds).execute();
}

/** ResumeHostDeployment: failures so far no longer count against the budget. */
export async function forgiveFailures(db: HostsDb, deployment: string): Promise<number> {
  const r = await db.updateTable('node_rollouts').set({ budget_counted: false }).where('deployment', '=', deployment).where('budget_counted', '=', true).executeTakeFirst();
  return Number(r.numUpdatedRows);
}

export async function setCordoned(db: HostsDb, deployment: string, nodeId: string, cordoned: boolean): Promise<void> {
  await db.updateTable('node_rollouts').set({ cordoned }).where('deployment', '=', deployment).where('node_id', '=', nodeId).execute();
}

// ---- desired systems --------------------------------------------------------------------------

export interface StoredDesiredSystem {
  readonly desired: DesiredSystem;
  /** Set while a reboot grant for this desired system is outstanding. */
  readonly rebootGrantDeadline: Date | undefined;
  /** The node's boot id when granted ("" when unknown): a rebooted node has used the grant. */
  readonly rebootGrantBootId: string;
}

/**
 * Upserts desired systems from `source`, a relation with the columns node_id, deployment,
 * revision, template (the DesiredSystem's proto3 JSON without the node's id and target),
 * system_path, flake_attr and decided_at. Each stored document is the template plus the node's
 * fields (proto3 JSON leaves out empty strings, as the codec does), so it is what the JSON codec
 * makes of the node's message; a new desired system ends any outstanding reboot grant.
 */
export function desiredSystemsFrom(source: RawBuilder<unknown>): RawBuilder<unknown> {
  return sql`INSERT INTO ${sql.table('desired_systems')} (node_id, deployment, revision, desired, reboot_grant_deadline, reboot_grant_boot_id, decided_at, updated_at)
    SELECT s.node_id, s.deployment, s.revision,
      s.template || jsonb_strip_nulls(jsonb_build_object('nodeId', nullif(s.node_id, ''), 'systemPath', nullif(s.system_path, ''), 'flakeAttr', nullif(s.flake_attr, ''))),
      NULL, '', s.decided_at, s.decided_at
    FROM ${source} AS s
    ON CONFLICT (node_id) DO UPDATE SET deployment = excluded.deployment, revision = excluded.revision, desired = excluded.desired,
      reboot_grant_deadline = excluded.reboot_grant_deadline, reboot_grant_boot_id = excluded.reboot_grant_boot_id, decided_at = excluded.decided_at, updated_at = excluded.updated_at`;
}

/**
 * Hands each node its new desired system, in one statement. Those of one deployment revision
 * decided at one instant share everything but the node's id and target: their shared JSON
 * travels once, and PostgreSQL adds each node's fields to it, so a rollout of thousands of nodes
 * neither builds nor parses the same JSON thousands of times.
 */
export async function saveDesiredSystems(db: HostsDb, desired: readonly DesiredSystem[], now: Date): Promise<void> {
  if (desired.length === 0) return;
  const shared = new Map<string, number>();
  const templates: JsonDocument[] = [];
  const rows = desired.map((d) => {
    const key = `${d.deployment}\u0000${d.revision}\u0000${d.createdAt?.getTime() ?? ''}`;
    let t = shared.get(key);
    if (t === undefined) {
      t = templates.push(desiredTemplateJson(d)) - 1;
      shared.set(key, t);
    }
    return { node_id: d.nodeId, deployment: d.deployment, revision: d.revision.toString(), t, system_path: d.systemPath, flake_attr: d.flakeAttr };
  });
  await desiredSystemsFrom(sql`(
    SELECT r.node_id, r.deployment, r.revision, ${JSON.stringify(templates)}::jsonb -> r.t AS template, r.system_path, r.flake_attr, ${now}::timestamptz AS decided_at
    FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) AS r(node_id text, deployment text, revision int8, t int4, system_path text, flake_attr text))`).execute(db);
}

export async function grantReboot(db: HostsDb, nodeId: string, deadline: Date, bootId: string, now: Date): Promise<void> {
  await db.updateTable('desired_systems').set({ reboot_grant_deadline: deadline, reboot_grant_boot_id: bootId, updated_at: now }).where('node_id', '=', nodeId).execute();
}

export async function desiredSystemsOf(db: HostsDb, nodeIds: readonly string[]): Promise<Map<string, StoredDesiredSystem>> {
  const out = new Map<string, StoredDesiredSystem>();
  if (nodeIds.length === 0) return out;
  const rows = await db.selectFrom('desired_systems').select(['node_id', 'desired', 'reboot_grant_deadline', 'reboot_grant_boot_id']).where('node_id', 'in', [...nodeIds]).execute();
  for (const r of rows) out.set(r.node_id, { desired: desiredSystemJson.fromJson(r.desired), rebootGrantDeadline: r.reboot_grant_deadline ?? undefined, rebootGrantBootId: r.reboot_grant_boot_id });
  return out;
}

// ---- the rollout event log ------------------------------------------------------------------

export interface RolloutEvent {
  readonly at: Date;
  readonly deployment: string;
  readonly revision: bigint;
  readonly nodeId: string;
  /**
   * `node.phase` (a node entry changed phase), `node.removed`, `decision.activate` (a desired
   * system handed over; it records the node's move to ACTIVATING in from/to phase, see
   * PHASE_EVENT_KINDS), `decision.drain`, `decision.reboot_grant`, `decision.uncordon`,
   * `rollout.phase`, `rollout.paused`, `deployment.applied|paused|resumed|aborted|deleted`,
   * `machine.activated`.
   */
  readonly kind: string;
  readonly fromPhase: string;
  readonly toPhase: string;
  readonly message: string;
  readonly replica: string;
}

/**
 * Events that move a node entry to `toPhase`: phase changes of their own, and activation
 * decisions, each of which records the move to ACTIVATING it made (one row per node decided).
 * Replaying these in id order gives every node's phase over time.
 */
export const PHASE_EVENT_KINDS: ReadonlySet<string> = new Set(['node.phase', 'decision.activate']);

const EVENT_COLUMNS = ['at', 'deployment', 'revision', 'node_id', 'kind', 'from_phase', 'to_phase', 'message', 'replica'] as const satisfies readonly (keyof RolloutEventsTable)[];

function eventsWrite(events: readonly RolloutEvent[]): JsonRowsWrite {
  return {
    table: 'rollout_events',
    columns: EVENT_COLUMNS,
    rows: events.map((e) => ({ at: e.at, deployment: e.deployment, revision: e.revision, node_id: e.nodeId, kind: e.kind, from_phase: e.fromPhase, to_phase: e.toPhase, message: e.message, replica: e.replica })),
  };
}

/** Appends events in the given order (ids ascend with it), in one statement. */
export async function appendEvents(db: HostsDb, events: readonly RolloutEvent[]): Promise<void> {
  await writeJsonRows(db, eventsWrite(events));
}

export async function listEvents(db: HostsDb, query: { deployment?: string; nodeId?: string; afterId?: bigint; limit?: number } = {}): Promise<(RolloutEvent & { id: bigint })[]> {
  let q = db.selectFrom('rollout_events').selectAll().orderBy('id');
  if (query.deployment !== undefined) q = q.where('deployment', '=', query.deployment);
  if (query.nodeId !== undefined) q = q.where('node_id', '=', query.nodeId);
  if (query.afterId !== undefined) q = q.where('id', '>', query.afterId);
  q = q.limit(query.limit ?? 10_000);
  return (await q.execute()).map((r) => ({
    id: r.id,
    at: r.at,
    deployment: r.deployment,
    revision: r.revision,
    nodeId: r.node_id,
    kind: r.kind,
    fromPhase: r.from_phase,
    toPhase: r.to_phase,
    message: r.message,
    replica: r.replica,
  }));
}

// ---- the audit log of operator calls ----------------------------------------------------------

export interface AuditEntry {
  readonly at: Date;
  readonly actor: string;
  readonly actorKind: string;
  readonly rpc: string;
  readonly deployment: string;
  /** `apply.create`, `apply.update`, `apply.delete`, `pause`, `resume`, `abort`, `delete`. */
  readonly action: string;
  readonly reason: string;
  readonly outcome: 'ALLOWED' | 'DENIED';
  readonly revision?: bigint;
  readonly resourceVersion?: bigint;
  readonly peer: string;
}

export async function appendAudit(db: HostsDb, e: AuditEntry): Promise<void> {
  await db
    .insertInto('audit_events')
    .values({
      at: e.at,
      actor: e.actor,
      actor_kind: e.actorKind,
      rpc: e.rpc,
      deployment: e.deployment,
      action: e.action,
      reason: e.reason,
      outcome: e.outcome,
      revision: e.revision ?? null,
      resource_version: e.resourceVersion ?? null,
      peer: e.peer,
    })
    .execute();
}

/**
 * Takes back desired systems whose activation ended without success, so a reconnecting agent is
 * not handed them again (it would try once more); a confirmed one stays, harmless to repeat.
 */
export async function withdrawDesiredSystems(db: HostsDb, items: readonly { nodeId: string; deployment: string; revision: bigint }[]): Promise<void> {
  if (items.length === 0) return;
  await sql`
    DELETE FROM ${sql.table('desired_systems')} AS d
    USING unnest(${items.map((i) => i.nodeId)}::text[], ${items.map((i) => i.deployment)}::text[], ${items.map((i) => i.revision.toString())}::bigint[]) AS w(node_id, deployment, revision)
    WHERE d.node_id = w.node_id AND d.deployment = w.deployment AND d.revision = w.revision`.execute(db);
}
