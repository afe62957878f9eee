// HostDeployments and what the leader computed about their rollouts (table host_deployments).
import { sql } from 'kysely';
import { HostDeploymentPhase, type HostDeployment } from '../../../gen/ts/ultracloud/system/v1/system.js';
import type { DeploymentState } from '../domain/rollout-planner.js';
import type { DeploymentView } from '../domain/rollout-status.js';
import { HOSTS_SCHEMA } from '../migrations/index.js';
import { hostDeploymentJson } from './documents.js';
import type { HostDeploymentsTable, HostsDb, Selectable } from './tables.js';

/** A deployment as stored, with its spec decoded. */
export interface StoredDeployment extends DeploymentView {
  readonly resourceVersion: bigint;
  readonly updatedAt: Date;
}

function phaseColumn(p: HostDeploymentPhase): string {
  return (HostDeploymentPhase[p] ?? 'HOST_DEPLOYMENT_PHASE_PENDING').replace(/^HOST_DEPLOYMENT_PHASE_/, '');
}

function phaseFromColumn(s: string): HostDeploymentPhase {
  return (HostDeploymentPhase as unknown as Record<string, HostDeploymentPhase>)[`HOST_DEPLOYMENT_PHASE_${s}`] ?? HostDeploymentPhase.HOST_DEPLOYMENT_PHASE_PENDING;
}

export function deploymentFromRow(r: Selectable<HostDeploymentsTable>): StoredDeployment {
  return {
    spec: hostDeploymentJson.fromJson(r.spec),
    revision: r.revision,
    resourceVersion: r.resource_version,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    operatorPaused: r.operator_paused,
    operatorPauseReason: r.operator_pause_reason,
    budgetPaused: r.budget_paused,
    abortedRevision: r.aborted_revision,
    abortReason: r.abort_reason,
    rolloutPhase: phaseFromColumn(r.rollout_phase),
    statusMessage: r.status_message,
    selectedNodes: r.selected_nodes,
    maxUnavailableNodes: r.max_unavailable_nodes,
    startedAt: r.started_at ?? undefined,
    finishedAt: r.finished_at ?? undefined,
    statusUpdatedAt: r.status_updated_at,
  };
}

/** The deployment as an API object: the spec with its output-only fields. */
export function apiDeployment(d: StoredDeployment): HostDeployment {
  return { ...d.spec, revision: d.revision, resourceVersion: d.resourceVersion, createdAt: d.createdAt, updatedAt: d.updatedAt };
}

export async function nextResourceVersion(db: HostsDb): Promise<bigint> {
  const r = await sql<{ v: bigint }>`SELECT nextval(${sql.lit(`${HOSTS_SCHEMA}.resource_version_seq`)}::regclass) AS v`.execute(db);
  return BigInt((r.rows[0] as { v: bigint }).v);
}

export async function getDeployment(db: HostsDb, name: string, lock = false): Promise<StoredDeployment | undefined> {
  let q = db.selectFrom('host_deployments').selectAll().where('name', '=', name);
  if (lock) q = q.forUpdate();
  const row = await q.executeTakeFirst();
  return row ? deploymentFromRow(row) : undefined;
}

/** Deployments in name order; `lock` takes their row locks (the leader's tick, prune). */
export async function listDeployments(db: HostsDb, options: { afterName?: string; limit?: number; lock?: boolean } = {}): Promise<StoredDeployment[]> {
  let q = db.selectFrom('host_deployments').selectAll().orderBy('name');
  if (options.afterName !== undefined) q = q.where('name', '>', options.afterName);
  if (options.limit !== undefined) q = q.limit(options.limit);
  if (options.lock) q = q.forUpdate();
  return (await q.execute()).map(deploymentFromRow);
}

export async function insertDeployment(db: HostsDb, spec: HostDeployment, resourceVersion: bigint, now: Date): Promise<void> {
  await db
    .insertInto('host_deployments')
    .values({
      name: spec.name,
      spec: JSON.stringify(hostDeploymentJson.toJson(spec)),
      revision: 1n,
      resource_version: resourceVersion,
      rollout_phase: phaseColumn(HostDeploymentPhase.HOST_DEPLOYMENT_PHASE_PENDING),
      status_message: '',
      status_updated_at: now,
      created_at: now,
      updated_at: now,
    })
    .execute();
}

/** A new spec; with a new revision the rollout's computed state starts over. */
export async function updateDeploymentSpec(db: HostsDb, spec: HostDeployment, revision: bigint, newRevision: boolean, resourceVersion: bigint, now: Date): Promise<void> {
  await db
    .updateTable('host_deployments')
    .set({
      spec: JSON.stringify(hostDeploymentJson.toJson(spec)),
      revision,
      resource_version: resourceVersion,
      updated_at: now,
      ...(newRevision
        ? {
            budget_paused: false,
            rollout_phase: phaseColumn(HostDeploymentPhase.HOST_DEPLOYMENT_PHASE_PENDING),
            status_message: '',
            started_at: null,
            finished_at: null,
            status_updated_at: now,
          }
        : {}),
    })
    .where('name', '=', spec.name)
    .execute();
}

export interface OperatorState {
  readonly operatorPaused?: boolean;
  readonly operatorPauseReason?: string;
  readonly budgetPaused?: boolean;
  readonly abortedRevision?: bigint;
  readonly abortReason?: string;
}

export async function updateOperatorState(db: HostsDb, name: string, state: OperatorState, resourceVersion: bigint, now: Date): Promise<void> {
  await db
    .updateTable('host_deployments')
    .set({
      ...(state.operatorPaused !== undefined ? { operator_paused: state.operatorPaused } : {}),
      ...(state.operatorPauseReason !== undefined ? { operator_pause_reason: state.operatorPauseReason } : {}),
      ...(state.budgetPaused !== undefined ? { budget_paused: state.budgetPaused } : {}),
      ...(state.abortedRevision !== undefined ? { aborted_revision: state.abortedRevision, finished_at: now } : {}),
      ...(state.abortReason !== undefined ? { abort_reason: state.abortReason } : {}),
      resource_version: resourceVersion,
      updated_at: now,
      status_updated_at: now,
    })
    .where('name', '=', name)
    .execute();
}

/** What the leader's planner computed; written only when something changed. */
export async function updatePlannerState(db: HostsDb, d: DeploymentState, now: Date): Promise<void> {
  await db
    .updateTable('host_deployments')
    .set({
      budget_paused: d.budgetPaused,
      rollout_phase: phaseColumn(d.rolloutPhase),
      status_message: d.statusMessage,
      selected_nodes: d.selectedNodes,
      max_unavailable_nodes: d.maxUnavailableNodes,
      started_at: d.startedAt ?? null,
      finished_at: d.finishedAt ?? null,
      status_updated_at: now,
    })
    .where('name', '=', d.spec.name)
    .execute();
}

export function plannerStateChanged(before: DeploymentState, after: DeploymentState): boolean {
  return (
    before.budgetPaused !== after.budgetPaused ||
    before.rolloutPhase !== after.rolloutPhase ||
    before.statusMessage !== after.statusMessage ||
    before.selectedNodes !== after.selectedNodes ||
    before.maxUnavailableNodes !== after.maxUnavailableNodes ||
    before.startedAt?.getTime() !== after.startedAt?.getTime() ||
    before.finishedAt?.getTime() !== after.finishedAt?.getTime()
  );
}

export async function deleteDeployment(db: HostsDb, name: string): Promise<void> {
  await db.deleteFrom('desired_systems').where('deployment', '=', name).execute();
  await db.deleteFrom('host_deployments').where('name', '=', name).execute();
}

export function rolloutPhaseName(p: HostDeploymentPhase): string {
  return phaseColumn(p);
}
