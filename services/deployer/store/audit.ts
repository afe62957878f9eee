// The append-only audit log: every state change and every denial, never updated or deleted.
import { ActorKind, type AuditEvent, AuditOutcome, MachineState, MachineTransition } from '../../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { stateName } from '../domain/lifecycle.js';
import type { DeployerDb } from './machines.js';
import { stateFromColumn } from './machines.js';

export interface AuditEntry {
  readonly at: Date;
  readonly actor: string;
  readonly actorKind: ActorKind;
  readonly rpc: string;
  readonly machineId?: string;
  readonly nodeId?: string;
  readonly from?: MachineState;
  readonly to?: MachineState;
  readonly transition?: MachineTransition;
  readonly reason?: string;
  readonly outcome: AuditOutcome;
  readonly resourceVersion?: bigint;
  readonly peer?: string;
}

const stateColumn = (s: MachineState | undefined) => (s === undefined || s === MachineState.MACHINE_STATE_UNSPECIFIED ? '' : stateName(s));

/** The audit_events row of `e`, for an INSERT (alone or inside a state change's statement). */
export function auditValues(e: AuditEntry) {
  return {
    at: e.at,
    actor: e.actor,
    actor_kind: ActorKind[e.actorKind],
    rpc: e.rpc,
    machine_id: e.machineId ?? '',
    node_id: e.nodeId ?? '',
    from_state: stateColumn(e.from),
    to_state: stateColumn(e.to),
    transition: e.transition ? MachineTransition[e.transition] : '',
    reason: e.reason ?? '',
    outcome: AuditOutcome[e.outcome],
    resource_version: e.resourceVersion ?? null,
    peer: e.peer ?? '',
  };
}

export async function appendAudit(db: DeployerDb, e: AuditEntry): Promise<void> {
  await db.insertInto('audit_events').values(auditValues(e)).execute();
}

export interface AuditQuery {
  readonly machineId?: string;
  readonly nodeId?: string;
  readonly actor?: string;
  /** Events at or after this time. */
  readonly since?: Date;
  readonly outcome?: AuditOutcome;
  /** Events with a smaller id than this (newest first paging). */
  readonly beforeId?: bigint;
  readonly limit: number;
}

export async function listAudit(db: DeployerDb, q: AuditQuery): Promise<AuditEvent[]> {
  let query = db.selectFrom('audit_events').selectAll().orderBy('id', 'desc').limit(q.limit);
  if (q.machineId) query = query.where('machine_id', '=', q.machineId);
  if (q.nodeId) query = query.where('node_id', '=', q.nodeId);
  if (q.actor) query = query.where('actor', '=', q.actor);
  if (q.since) query = query.where('at', '>=', q.since);
  if (q.outcome !== undefined && q.outcome !== AuditOutcome.AUDIT_OUTCOME_UNSPECIFIED) query = query.where('outcome', '=', AuditOutcome[q.outcome]);
  if (q.beforeId !== undefined) query = query.where('id', '<', q.beforeId);
  const rows = await query.execute();
  return rows.map((r) => ({
    id: String(r.id),
    time: r.at,
    actor: r.actor,
    actorKind: ActorKind[r.actor_kind as keyof typeof ActorKind] ?? ActorKind.ACTOR_KIND_UNSPECIFIED,
    rpc: r.rpc,
    machineId: r.machine_id,
    nodeId: r.node_id,
    fromState: stateFromColumn(r.from_state),
    toState: stateFromColumn(r.to_state),
    transition: MachineTransition[r.transition as keyof typeof MachineTransition] ?? MachineTransition.MACHINE_TRANSITION_UNSPECIFIED,
    reason: r.reason,
    outcome: AuditOutcome[r.outcome as keyof typeof AuditOutcome] ?? AuditOutcome.AUDIT_OUTCOME_UNSPECIFIED,
    resourceVersion: r.resource_version === null ? 0n : BigInt(r.resource_version),
    peer: r.peer,
  }));
}
