// A rollout's status as operators read it: the planner's phase with pauses and aborts laid over
// it, counters per node phase, and the node entries in rollout order.
import {
  HostDeploymentPauseCause as Cause,
  HostDeploymentPhase as Phase,
  type HostDeploymentStatus,
  NodeRolloutPhase as P,
  type NodeRolloutStatus,
} from '../../../gen/ts/ultracloud/system/v1/system.js';
import { IN_PROGRESS, type NodeRollout, TERMINAL } from './node-rollout.js';
import type { DeploymentState } from './rollout-planner.js';
import { rolloutSequence } from './selection.js';

/** What reads need besides the planner's state: the operator's reasons and the last change. */
export interface DeploymentView extends DeploymentState {
  readonly operatorPauseReason: string;
  readonly abortReason: string;
  readonly statusUpdatedAt: Date;
}

export interface EffectivePhase {
  readonly phase: Phase;
  readonly pauseCause: Cause;
  readonly message: string;
}

export function isAborted(d: Pick<DeploymentState, 'revision' | 'abortedRevision'>): boolean {
  return d.revision > 0n && d.abortedRevision === d.revision;
}

/** ABORTED wins, then COMPLETED; a pause (spec, operator, budget, in that order) over the rest. */
export function effectivePhase(d: DeploymentView): EffectivePhase {
  if (isAborted(d)) return { phase: Phase.HOST_DEPLOYMENT_PHASE_ABORTED, pauseCause: Cause.HOST_DEPLOYMENT_PAUSE_CAUSE_UNSPECIFIED, message: d.abortReason };
  if (d.rolloutPhase === Phase.HOST_DEPLOYMENT_PHASE_COMPLETED) return { phase: d.rolloutPhase, pauseCause: Cause.HOST_DEPLOYMENT_PAUSE_CAUSE_UNSPECIFIED, message: d.statusMessage };
  const paused = (cause: Cause, message: string): EffectivePhase => ({ phase: Phase.HOST_DEPLOYMENT_PHASE_PAUSED, pauseCause: cause, message });
  if (d.spec.paused) return paused(Cause.HOST_DEPLOYMENT_PAUSE_CAUSE_SPEC, 'paused in the deployment (paused: true); apply it with paused: false to continue');
  if (d.operatorPaused) return paused(Cause.HOST_DEPLOYMENT_PAUSE_CAUSE_OPERATOR, d.operatorPauseReason);
  if (d.budgetPaused) return paused(Cause.HOST_DEPLOYMENT_PAUSE_CAUSE_FAILURE_BUDGET, d.statusMessage);
  return { phase: d.rolloutPhase, pauseCause: Cause.HOST_DEPLOYMENT_PAUSE_CAUSE_UNSPECIFIED, message: d.statusMessage };
}

/** An entry as shown: a finished entry of an older revision waits for the current one. */
function shown(row: NodeRollout, revision: bigint): NodeRolloutStatus {
  const stale = row.revision < revision && TERMINAL.has(row.phase);
  return {
    nodeId: row.nodeId,
    hostname: row.hostname,
    failureDomain: row.failureDomain,
    phase: stale ? P.NODE_ROLLOUT_PHASE_PENDING : row.phase,
    systemPath: row.systemPath,
    generation: row.generation,
    failureReason: row.failureReason,
    message: stale ? `waiting for revision ${revision}` : row.message,
    startedAt: stale ? undefined : row.startedAt,
    finishedAt: stale ? undefined : row.finishedAt,
    updatedAt: row.phaseChangedAt,
  };
}

export function rolloutStatus(d: DeploymentView, rows: readonly NodeRollout[], withNodes: boolean): HostDeploymentStatus {
  const nodes = rolloutSequence(rows, d.spec.rolloutOrder).map((r) => shown(r, d.revision));
  const count = (p: P) => nodes.filter((n) => n.phase === p).length;
  const { phase, pauseCause, message } = effectivePhase(d);
  return {
    name: d.spec.name,
    revision: d.revision,
    phase,
    pauseCause,
    message,
    selectedNodes: d.selectedNodes,
    pendingNodes: count(P.NODE_ROLLOUT_PHASE_PENDING),
    inProgressNodes: nodes.filter((n) => IN_PROGRESS.has(n.phase)).length,
    succeededNodes: count(P.NODE_ROLLOUT_PHASE_SUCCEEDED),
    rolledBackNodes: count(P.NODE_ROLLOUT_PHASE_ROLLED_BACK),
    failedNodes: count(P.NODE_ROLLOUT_PHASE_FAILED),
    skippedNodes: count(P.NODE_ROLLOUT_PHASE_SKIPPED),
    maxUnavailableNodes: d.maxUnavailableNodes,
    nodes: withNodes ? nodes : [],
    startedAt: d.startedAt,
    finishedAt: isAborted(d) ? (d.finishedAt ?? d.statusUpdatedAt) : d.finishedAt,
    updatedAt: d.statusUpdatedAt,
  };
}
