// One node's place in a deployment's rollout, and how the nix-agent's reports move it. The
// controller derives NodeRolloutPhase from ActivationReports; nothing else moves a node that the
// controller has handed its DesiredSystem to, except the controller's own timeouts.
import { ActivationPhase, type ActivationReport, type RebootRequest } from '../../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import { ActivationFailureReason, NodeRolloutPhase as P } from '../../../gen/ts/ultracloud/system/v1/system.js';

/** A node's rollout entry as stored (schema `hosts`, table node_rollouts). */
export interface NodeRollout {
  readonly nodeId: string;
  /** The deployment revision this entry is for. */
  readonly revision: bigint;
  readonly phase: P;
  readonly hostname: string;
  readonly failureDomain: string;
  /** Store path the node is moved to ("" for a flake built on the node). */
  readonly systemPath: string;
  readonly generation: bigint;
  readonly failureReason: ActivationFailureReason;
  readonly message: string;
  /** How many times the node was started in this revision. */
  readonly attempts: number;
  /** A failure that counts against the failure budget (ResumeHostDeployment forgives it). */
  readonly budgetCounted: boolean;
  /** The fleet-scheduler holds a cordon of ours on the node; uncordon it when the node is done. */
  readonly cordoned: boolean;
  /** Boot strategy: the agent asked for a reboot slot and has not been granted one since. */
  readonly rebootRequested: boolean;
  readonly rebootGrantedAt: Date | undefined;
  readonly startedAt: Date | undefined;
  readonly finishedAt: Date | undefined;
  readonly phaseChangedAt: Date;
}

/** Phases in which the controller has handed the node over (or is draining it). */
export const IN_PROGRESS: ReadonlySet<P> = new Set([P.NODE_ROLLOUT_PHASE_DRAINING, P.NODE_ROLLOUT_PHASE_ACTIVATING, P.NODE_ROLLOUT_PHASE_CONFIRMING, P.NODE_ROLLOUT_PHASE_AWAITING_REBOOT, P.NODE_ROLLOUT_PHASE_REBOOTING]);
export const TERMINAL: ReadonlySet<P> = new Set([P.NODE_ROLLOUT_PHASE_SUCCEEDED, P.NODE_ROLLOUT_PHASE_ROLLED_BACK, P.NODE_ROLLOUT_PHASE_FAILED, P.NODE_ROLLOUT_PHASE_SKIPPED]);
export const FAILED_PHASES: ReadonlySet<P> = new Set([P.NODE_ROLLOUT_PHASE_ROLLED_BACK, P.NODE_ROLLOUT_PHASE_FAILED]);

/** The short phase name used in the event log and in messages (`ACTIVATING`). */
export function phaseName(p: P): string {
  return (P[p] ?? String(p)).replace(/^NODE_ROLLOUT_PHASE_/, '');
}

export function phaseFromName(name: string): P {
  const value = (P as unknown as Record<string, P>)[`NODE_ROLLOUT_PHASE_${name}`];
  return value ?? P.NODE_ROLLOUT_PHASE_UNSPECIFIED;
}

/** A change to one node entry, for the event log. */
export interface NodeChange {
  readonly before: NodeRollout | undefined;
  readonly after: NodeRollout;
}

function moved(row: NodeRollout, phase: P, now: Date, patch: Partial<NodeRollout>): NodeRollout {
  const terminal = TERMINAL.has(phase);
  return {
    ...row,
    ...patch,
    phase,
    phaseChangedAt: phase === row.phase ? row.phaseChangedAt : now,
    finishedAt: terminal ? (row.finishedAt ?? now) : undefined,
  };
}

const PHASE_BY_ACTIVATION: Partial<Record<ActivationPhase, P>> = {
  [ActivationPhase.ACTIVATION_PHASE_REALISING]: P.NODE_ROLLOUT_PHASE_ACTIVATING,
  [ActivationPhase.ACTIVATION_PHASE_ACTIVATING]: P.NODE_ROLLOUT_PHASE_ACTIVATING,
  [ActivationPhase.ACTIVATION_PHASE_CONFIRMING]: P.NODE_ROLLOUT_PHASE_CONFIRMING,
  [ActivationPhase.ACTIVATION_PHASE_CONFIRMED]: P.NODE_ROLLOUT_PHASE_SUCCEEDED,
  [ActivationPhase.ACTIVATION_PHASE_AWAITING_REBOOT]: P.NODE_ROLLOUT_PHASE_AWAITING_REBOOT,
  [ActivationPhase.ACTIVATION_PHASE_REBOOTED]: P.NODE_ROLLOUT_PHASE_CONFIRMING,
  [ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK]: P.NODE_ROLLOUT_PHASE_ROLLED_BACK,
  [ActivationPhase.ACTIVATION_PHASE_FAILED]: P.NODE_ROLLOUT_PHASE_FAILED,
};

function activationPhaseName(p: ActivationPhase): string {
  return (ActivationPhase[p] ?? String(p)).replace(/^ACTIVATION_PHASE_/, '').toLowerCase().replace(/_/g, ' ');
}

/** Whether `report` speaks of the activation this entry handed over. */
function concerns(row: NodeRollout, deployment: string, reportDeployment: string, revision: bigint): boolean {
  return reportDeployment === deployment && revision === row.revision && (IN_PROGRESS.has(row.phase) || row.phase === P.NODE_ROLLOUT_PHASE_DRAINING);
}

/**
 * The entry after an ActivationReport, or undefined when the report changes nothing: it is about
 * another deployment or revision, arrives after the node finished (a report sent again after a
 * reconnect), or repeats what the entry already says.
 */
export function applyActivationReport(row: NodeRollout, deployment: string, report: ActivationReport, now: Date): NodeRollout | undefined {
  if (!concerns(row, deployment, report.deployment, report.revision)) return undefined;
  if (row.phase === P.NODE_ROLLOUT_PHASE_DRAINING) return undefined;
  const generation = report.generation > 0n ? report.generation : row.generation;
  const detail = report.message ? `${activationPhaseName(report.phase)}: ${report.message}` : activationPhaseName(report.phase);
  let next: NodeRollout;
  if (report.phase === ActivationPhase.ACTIVATION_PHASE_ROLLING_BACK) {
    next = { ...row, generation, message: `rolling back: ${report.message || ActivationFailureReason[report.failureReason]}` };
  } else {
    let phase = PHASE_BY_ACTIVATION[report.phase];
    if (phase === undefined) return undefined;
    // A staged node repeats AWAITING_REBOOT until it reboots; the grant already moved it on.
    if (phase === P.NODE_ROLLOUT_PHASE_AWAITING_REBOOT && row.phase === P.NODE_ROLLOUT_PHASE_REBOOTING) phase = P.NODE_ROLLOUT_PHASE_REBOOTING;
    const failed = FAILED_PHASES.has(phase);
    next = moved(row, phase, now, {
      generation,
      message: detail,
      failureReason: failed ? report.failureReason : ActivationFailureReason.ACTIVATION_FAILURE_REASON_UNSPECIFIED,
      budgetCounted: failed,
      rebootRequested: phase === P.NODE_ROLLOUT_PHASE_REBOOTING ? row.rebootRequested : phase === P.NODE_ROLLOUT_PHASE_AWAITING_REBOOT && row.rebootRequested,
    });
  }
  if (next.phase === row.phase && next.message === row.message && next.generation === row.generation) return undefined;
  return next;
}

/** The entry after a RebootRequest: marked as asking for a slot (again, when already granted). */
export function applyRebootRequest(row: NodeRollout, deployment: string, request: RebootRequest): NodeRollout | undefined {
  if (!concerns(row, deployment, request.deployment, request.revision)) return undefined;
  if (row.phase !== P.NODE_ROLLOUT_PHASE_AWAITING_REBOOT && row.phase !== P.NODE_ROLLOUT_PHASE_REBOOTING) return undefined;
  if (row.rebootRequested) return undefined;
  return { ...row, rebootRequested: true, generation: request.generation > 0n ? request.generation : row.generation };
}

/** An entry for a node that has just joined the rollout. */
export function newNodeRollout(node: { nodeId: string; hostname: string; failureDomain: string }, revision: bigint, now: Date): NodeRollout {
  return {
    nodeId: node.nodeId,
    revision,
    phase: P.NODE_ROLLOUT_PHASE_PENDING,
    hostname: node.hostname,
    failureDomain: node.failureDomain,
    systemPath: '',
    generation: 0n,
    failureReason: ActivationFailureReason.ACTIVATION_FAILURE_REASON_UNSPECIFIED,
    message: '',
    attempts: 0,
    budgetCounted: false,
    cordoned: false,
    rebootRequested: false,
    rebootGrantedAt: undefined,
    startedAt: undefined,
    finishedAt: undefined,
    phaseChangedAt: now,
  };
}

/** A finished entry taken into a new revision: pending again, with nothing of the old attempt. */
export function restartForRevision(row: NodeRollout, revision: bigint, now: Date): NodeRollout {
  return { ...newNodeRollout(row, revision, now), cordoned: row.cordoned };
}
