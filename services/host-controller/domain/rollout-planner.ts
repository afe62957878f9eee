// The rollout planner: given one HostDeployment, the nodes the deployer knows, the node entries
// of the rollout so far and which agents are connected, decide what happens next. Nodes join and
// leave with the selector, are skipped when they cannot be rolled out, start in rollout order
// (failure domain by failure domain when asked) while fewer than max_unavailable nodes are
// disrupted, get reboot slots from the same budget, and the rollout pauses once failures exceed
// the failure budget. Pure: the caller stores the plan and carries out its side effects.
import {
  ActivationFailureReason,
  type DesiredSystem,
  FailureDomainOrdering,
  type HostDeployment,
  HostDeploymentPhase,
  NodeRolloutPhase as P,
} from '../../../gen/ts/ultracloud/system/v1/system.js';
import { drainTimeoutMs, rebootTimeoutMs, resolveMaxUnavailable } from './deployment-spec.js';
import { desiredSystems, type NodeTarget, nodeTargets } from './desired-system.js';
import { FAILED_PHASES, IN_PROGRESS, type NodeChange, type NodeRollout, newNodeRollout, restartForRevision, TERMINAL } from './node-rollout.js';
import { domainOrder, effectiveOrdering, type NodeFacts, ROLLOUT_STATES, rolloutSequence, selectorOf } from './selection.js';

/** What the leader keeps about a deployment besides its spec. */
export interface DeploymentState {
  /** The stored spec (output-only fields cleared); `name` identifies the deployment. */
  readonly spec: HostDeployment;
  readonly revision: bigint;
  readonly createdAt: Date;
  readonly operatorPaused: boolean;
  readonly budgetPaused: boolean;
  /** The revision an operator aborted; equal to `revision` while the current one is aborted. */
  readonly abortedRevision: bigint;
  /** PENDING, PROGRESSING, COMPLETED or FAILED, as the planner last computed it. */
  readonly rolloutPhase: HostDeploymentPhase;
  readonly statusMessage: string;
  readonly selectedNodes: number;
  readonly maxUnavailableNodes: number;
  readonly startedAt: Date | undefined;
  readonly finishedAt: Date | undefined;
}

export interface AgentLiveness {
  /** A stream is open and the agent is not stale. */
  readonly connected: boolean;
  /** What the host runs, from its last hello or confirmed activation. */
  readonly currentSystemPath: string;
}

export interface PlanInput {
  readonly deployment: DeploymentState;
  /** The rollout's node entries by node id. */
  readonly rows: ReadonlyMap<string, NodeRollout>;
  /** Every node the deployer knows (machines with an assignment). */
  readonly nodes: readonly NodeFacts[];
  /** The same nodes by node id, when the caller has them so (built here otherwise). */
  readonly nodeIndex?: ReadonlyMap<string, NodeFacts>;
  readonly agents: ReadonlyMap<string, AgentLiveness>;
  /** For nodes selected by several deployments: the one that rolls the node out. */
  readonly owners: ReadonlyMap<string, string>;
  /** Whether a fleet-scheduler is configured, and which nodes it reported drained. */
  readonly drain: { readonly configured: boolean; readonly drained: ReadonlySet<string> };
  readonly now: Date;
  /** How long a reboot grant is valid; the agent asks again after that. */
  readonly rebootGrantMs: number;
}

export interface RebootGrantDecision {
  readonly nodeId: string;
  readonly deadline: Date;
}

export interface RolloutPlan {
  /** Entries that are new or changed. */
  readonly changes: readonly NodeChange[];
  /** Entries to delete: nodes that left the selection and are not in progress. */
  readonly removed: readonly NodeRollout[];
  /** Desired systems to hand over now (each node moved to ACTIVATING by this plan). */
  readonly activations: readonly DesiredSystem[];
  /** The entry each of those activations moved its node to, in the same order (also in `changes`). */
  readonly activated: readonly NodeRollout[];
  readonly rebootGrants: readonly RebootGrantDecision[];
  /** Nodes to ask the fleet-scheduler to drain (again). */
  readonly drains: readonly string[];
  /** Nodes to uncordon: done, and cordoned by us. */
  readonly uncordons: readonly string[];
  readonly deployment: DeploymentState;
  /** Controller decisions worth an event of their own (pauses), as messages. */
  readonly decisions: readonly string[];
}

/** What a node entry says once its desired system is handed over. */
export const ACTIVATION_MESSAGE = 'desired system sent to the nix-agent';

export const DRAIN_UNAVAILABLE = 'drain requested but no fleet-scheduler configured';

/**
 * Which deployment rolls out each node: of those selecting it, the oldest (then the first by
 * name). The others list the node as SKIPPED, so two deployments never fight over one host.
 */
export function nodeOwners(deployments: readonly { spec: HostDeployment; createdAt: Date }[], nodes: readonly NodeFacts[]): Map<string, string> {
  const ordered = [...deployments].sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.spec.name < b.spec.name ? -1 : a.spec.name > b.spec.name ? 1 : 0));
  const selectors = ordered.map((d) => ({ name: d.spec.name, selects: selectorOf(d.spec.selector) }));
  const owners = new Map<string, string>();
  for (const node of nodes) {
    const owner = selectors.find((d) => d.selects(node));
    if (owner) owners.set(node.nodeId, owner.name);
  }
  return owners;
}

function skipReason(spec: HostDeployment, node: NodeFacts, owner: string | undefined, targetOf: (node: NodeFacts) => NodeTarget | undefined): string | undefined {
  if (!ROLLOUT_STATES.has(node.machineState)) return `machine is ${node.machineState}; only installed and active machines are rolled out`;
  if (owner !== undefined && owner !== spec.name) return `also selected by deployment ${owner}, which rolls it out`;
  if (!targetOf(node)) return 'no target for this node: no node_system_paths entry, system_path or flake_ref';
  return undefined;
}

function humanDuration(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000}m` : `${Math.round(ms / 1000)}s`;
}

/** Whether an entry takes one of the max_unavailable slots. */
function disrupts(row: NodeRollout, revision: bigint, drain: boolean): boolean {
  switch (row.phase) {
    case P.NODE_ROLLOUT_PHASE_DRAINING:
    case P.NODE_ROLLOUT_PHASE_ACTIVATING:
    case P.NODE_ROLLOUT_PHASE_CONFIRMING:
    case P.NODE_ROLLOUT_PHASE_REBOOTING:
      return true;
    // Staged but running the old system: harmless, unless the node was drained for it.
    case P.NODE_ROLLOUT_PHASE_AWAITING_REBOOT:
      return drain;
    // Broken and not rolled back: unavailable until a new revision replaces the attempt.
    case P.NODE_ROLLOUT_PHASE_FAILED:
      return row.revision === revision && row.failureReason !== ActivationFailureReason.ACTIVATION_FAILURE_REASON_DRAIN_TIMEOUT;
    default:
      return false;
  }
}

function needsUncordon(row: NodeRollout): boolean {
  if (!row.cordoned || IN_PROGRESS.has(row.phase)) return false;
  // A node left broken stays cordoned: nothing should be placed on it.
  return !(row.phase === P.NODE_ROLLOUT_PHASE_FAILED && row.failureReason !== ActivationFailureReason.ACTIVATION_FAILURE_REASON_DRAIN_TIMEOUT);
}

export function planRollout(input: PlanInput): RolloutPlan {
  const { deployment: dep, now } = input;
  const spec = dep.spec;
  const rows = new Map(input.rows);
  const changes = new Map<string, NodeChange>();
  const set = (next: NodeRollout) => {
    rows.set(next.nodeId, next);
    changes.set(next.nodeId, { before: input.rows.get(next.nodeId), after: next });
  };
  const move = (row: NodeRollout, phase: P, patch: Partial<NodeRollout>) =>
    set({
      ...row,
      ...patch,
      phase,
      phaseChangedAt: phase === row.phase ? row.phaseChangedAt : now,
      finishedAt: TERMINAL.has(phase) ? (patch.finishedAt ?? row.finishedAt ?? now) : undefined,
    });
  const facts = input.nodeIndex ?? new Map(input.nodes.map((n) => [n.nodeId, n]));
  const selected = input.nodes.filter(selectorOf(spec.selector));
  // Every node, as with an all-nodes selector: the index answers for the set.
  const selectedIds: { has(id: string): boolean } = selected.length === input.nodes.length ? facts : new Set(selected.map((n) => n.nodeId));
  const targetOf = nodeTargets(spec);

  // Nodes join with the selector; finished entries of an older revision start over.
  for (const n of selected) {
    const row = rows.get(n.nodeId);
    if (!row) set(newNodeRollout(n, dep.revision, now));
    else if (row.revision < dep.revision && !IN_PROGRESS.has(row.phase)) set({ ...restartForRevision(row, dep.revision, now), hostname: n.hostname, failureDomain: n.failureDomain });
    else if (row.hostname !== n.hostname || row.failureDomain !== n.failureDomain) set({ ...row, hostname: n.hostname, failureDomain: n.failureDomain });
  }
  // Nodes that left the selection go, unless they are in progress or still cordoned by us.
  // (Deleting the entry being visited does not disturb a Map's iteration.)
  const removed: NodeRollout[] = [];
  for (const row of rows.values()) {
    if (selectedIds.has(row.nodeId) || IN_PROGRESS.has(row.phase) || row.cordoned) continue;
    rows.delete(row.nodeId);
    changes.delete(row.nodeId);
    if (input.rows.has(row.nodeId)) removed.push(row);
  }

  // Skipped or pending, as the node's machine and ownership say. (Replacing the value of the
  // entry being visited does not disturb a Map's iteration.)
  for (const row of rows.values()) {
    const node = facts.get(row.nodeId);
    if (row.revision === dep.revision && (row.phase === P.NODE_ROLLOUT_PHASE_PENDING || row.phase === P.NODE_ROLLOUT_PHASE_SKIPPED) && node && selectedIds.has(row.nodeId)) {
      const reason = skipReason(spec, node, input.owners.get(row.nodeId), targetOf);
      if (reason && (row.phase !== P.NODE_ROLLOUT_PHASE_SKIPPED || row.message !== reason)) move(row, P.NODE_ROLLOUT_PHASE_SKIPPED, { message: reason });
      else if (!reason && row.phase === P.NODE_ROLLOUT_PHASE_SKIPPED) move(row, P.NODE_ROLLOUT_PHASE_PENDING, { message: '' });
    } else if (IN_PROGRESS.has(row.phase) && (!node || !ROLLOUT_STATES.has(node.machineState))) {
      // Reinstalled, rescued or deleted mid-rollout: the activation will never report back.
      move(row, P.NODE_ROLLOUT_PHASE_SKIPPED, { message: node ? `machine went to ${node.machineState} during the rollout` : 'machine is no longer known to the deployer' });
    }
  }

  // Drains that finished or took too long, reboots that did not come back.
  const activations: DesiredSystem[] = [];
  const activated: NodeRollout[] = [];
  const desiredOf = desiredSystems(spec, now);
  const activate = (row: NodeRollout, node: NodeFacts, started: { startedAt: Date; attempts: number } | undefined, known?: NodeTarget) => {
    const target = known ?? targetOf(node);
    if (!target) return false;
    // move(row, ACTIVATING, {systemPath, message, startedAt, attempts}) written out as one
    // literal: a rollout decides thousands of these at once, and a spread costs microseconds each.
    const entry: NodeRollout = {
      nodeId: row.nodeId,
      revision: row.revision,
      phase: P.NODE_ROLLOUT_PHASE_ACTIVATING,
      hostname: row.hostname,
      failureDomain: row.failureDomain,
      systemPath: target.systemPath,
      generation: row.generation,
      failureReason: row.failureReason,
      message: ACTIVATION_MESSAGE,
      attempts: started ? started.attempts : row.attempts,
      budgetCounted: row.budgetCounted,
      cordoned: row.cordoned,
      rebootRequested: row.rebootRequested,
      rebootGrantedAt: row.rebootGrantedAt,
      startedAt: started ? started.startedAt : row.startedAt,
      finishedAt: undefined,
      phaseChangedAt: row.phase === P.NODE_ROLLOUT_PHASE_ACTIVATING ? row.phaseChangedAt : now,
    };
    set(entry);
    activated.push(entry);
    activations.push(desiredOf(row.revision, row.nodeId, target));
    return true;
  };
  const drainMs = drainTimeoutMs(spec);
  const rebootMs = rebootTimeoutMs(spec);
  for (const row of rows.values()) {
    if (row.phase === P.NODE_ROLLOUT_PHASE_DRAINING) {
      const node = facts.get(row.nodeId);
      if (input.drain.drained.has(row.nodeId) && node) activate(row, node, undefined);
      else if (now.getTime() - (row.startedAt ?? row.phaseChangedAt).getTime() > drainMs) {
        move(row, P.NODE_ROLLOUT_PHASE_FAILED, {
          failureReason: ActivationFailureReason.ACTIVATION_FAILURE_REASON_DRAIN_TIMEOUT,
          budgetCounted: true,
          message: `the fleet-scheduler did not drain the node within ${humanDuration(drainMs)}; the system was not touched`,
        });
      }
    } else if (row.phase === P.NODE_ROLLOUT_PHASE_REBOOTING && now.getTime() - (row.rebootGrantedAt ?? row.phaseChangedAt).getTime() > rebootMs) {
      move(row, P.NODE_ROLLOUT_PHASE_FAILED, {
        failureReason: ActivationFailureReason.ACTIVATION_FAILURE_REASON_REBOOT_FAILED,
        budgetCounted: true,
        rebootRequested: false,
        message: `the node did not come back on the staged system within ${humanDuration(rebootMs)} of its reboot grant`,
      });
    }
  }

  // The failure budget.
  const decisions: string[] = [];
  let failures = 0;
  for (const r of rows.values()) if (r.revision === dep.revision && r.budgetCounted) failures += 1;
  let budgetPaused = dep.budgetPaused;
  if (!budgetPaused && failures > spec.failureBudget) {
    budgetPaused = true;
    decisions.push(`paused: ${failures} failed node${failures === 1 ? '' : 's'} exceed the failure budget of ${spec.failureBudget}`);
  }
  const aborted = dep.revision > 0n && dep.abortedRevision === dep.revision;
  const blockedBy = aborted ? 'the rollout was aborted' : spec.paused ? 'the deployment is paused in its spec' : dep.operatorPaused ? 'paused by an operator' : budgetPaused ? 'paused: failures exceed the failure budget' : undefined;

  const maxUnavailable = resolveMaxUnavailable(spec.maxUnavailable, selected.length);
  let unavailable = 0;
  for (const r of rows.values()) if (disrupts(r, dep.revision, spec.drain)) unavailable += 1;
  const sequence = rolloutSequence([...rows.values()], spec.rolloutOrder);

  // Reboot slots: a granted node asking again gets a new deadline; new grants need a free slot.
  const rebootGrants: RebootGrantDecision[] = [];
  const deadline = new Date(now.getTime() + input.rebootGrantMs);
  for (const row of sequence) {
    const r = rows.get(row.nodeId) as NodeRollout;
    if (!r.rebootRequested) continue;
    if (r.phase === P.NODE_ROLLOUT_PHASE_REBOOTING) {
      set({ ...r, rebootRequested: false });
      rebootGrants.push({ nodeId: r.nodeId, deadline });
    } else if (r.phase === P.NODE_ROLLOUT_PHASE_AWAITING_REBOOT && !blockedBy) {
      const takesSlot = !spec.drain;
      if (takesSlot && unavailable >= maxUnavailable) continue;
      if (takesSlot) unavailable += 1;
      move(r, P.NODE_ROLLOUT_PHASE_REBOOTING, { rebootRequested: false, rebootGrantedAt: now, message: 'reboot granted' });
      rebootGrants.push({ nodeId: r.nodeId, deadline });
    }
  }

  // New starts, in rollout order, while slots are free.
  const drains: string[] = [];
  const waiting = new Map<string, string>();
  const pending = sequence.filter((r) => {
    const row = rows.get(r.nodeId) as NodeRollout;
    return row.phase === P.NODE_ROLLOUT_PHASE_PENDING && row.revision === dep.revision && selectedIds.has(row.nodeId);
  });
  let waitingForDrain = 0;
  if (blockedBy) {
    for (const r of pending) waiting.set(r.nodeId, `not started: ${blockedBy}`);
  } else {
    const ordering = effectiveOrdering(spec.rolloutOrder);
    let candidates = pending;
    if (ordering === FailureDomainOrdering.FAILURE_DOMAIN_ORDERING_SEQUENTIAL) {
      // The first domain with a node not finished yet is the only one that may start nodes.
      const open = new Set<string>();
      for (const r of rows.values()) {
        if ((r.revision === dep.revision && selectedIds.has(r.nodeId) && !TERMINAL.has(r.phase)) || IN_PROGRESS.has(r.phase)) open.add(r.failureDomain);
      }
      const active = domainOrder(open, spec.rolloutOrder)[0];
      candidates = pending.filter((r) => r.failureDomain === active);
      for (const r of pending) if (r.failureDomain !== active) waiting.set(r.nodeId, `waiting for failure domain ${active || '(none)'} to finish`);
    } else if (ordering === FailureDomainOrdering.FAILURE_DOMAIN_ORDERING_INTERLEAVED) {
      const busy = new Set([...rows.values()].filter((r) => IN_PROGRESS.has(r.phase)).map((r) => r.failureDomain));
      candidates = [...pending.filter((r) => !busy.has(r.failureDomain)), ...pending.filter((r) => busy.has(r.failureDomain))];
    }
    for (const c of candidates) {
      const row = rows.get(c.nodeId) as NodeRollout;
      const node = facts.get(c.nodeId) as NodeFacts;
      const target = targetOf(node);
      if (!target) continue;
      const agent = input.agents.get(c.nodeId);
      if (target.systemPath !== '' && agent?.currentSystemPath === target.systemPath) {
        move(row, P.NODE_ROLLOUT_PHASE_SUCCEEDED, { systemPath: target.systemPath, startedAt: now, message: 'already running the target system' });
        continue;
      }
      if (!agent?.connected) {
        waiting.set(c.nodeId, 'waiting for its nix-agent to connect');
        continue;
      }
      if (spec.drain && !input.drain.configured) {
        waitingForDrain += 1;
        waiting.set(c.nodeId, `${DRAIN_UNAVAILABLE}; the node waits`);
        continue;
      }
      if (unavailable >= maxUnavailable) {
        waiting.set(c.nodeId, `waiting for a slot: ${unavailable} of ${maxUnavailable} allowed nodes unavailable`);
        continue;
      }
      unavailable += 1;
      const started = { startedAt: now, attempts: row.attempts + 1 };
      if (spec.drain) {
        move(row, P.NODE_ROLLOUT_PHASE_DRAINING, { ...started, systemPath: target.systemPath, cordoned: true, message: 'cordoning and draining through the fleet-scheduler' });
      } else {
        activate(row, node, started, target);
      }
    }
  }
  for (const [nodeId, message] of waiting) {
    const row = rows.get(nodeId) as NodeRollout;
    if (row.phase === P.NODE_ROLLOUT_PHASE_PENDING && row.message !== message) set({ ...row, message });
  }
  // The rollout's phase as the planner sees it (pauses and aborts are laid over it when read),
  // drains to ask for and nodes to uncordon, in one pass over the entries.
  const uncordons: string[] = [];
  /** Selected entries not SKIPPED, and how many of those are finished with the current revision or failed it. */
  let eligible = 0;
  let eligibleFinished = 0;
  let failedNow = 0;
  let inProgress = false;
  let started = false;
  let budgetFailures = 0;
  for (const r of rows.values()) {
    if (r.phase === P.NODE_ROLLOUT_PHASE_DRAINING && !input.drain.drained.has(r.nodeId)) drains.push(r.nodeId);
    if (needsUncordon(r)) uncordons.push(r.nodeId);
    if (IN_PROGRESS.has(r.phase)) inProgress = true;
    const ofRevision = r.revision === dep.revision;
    if (ofRevision && r.startedAt !== undefined) started = true;
    if (ofRevision && r.budgetCounted) budgetFailures += 1;
    if (r.phase === P.NODE_ROLLOUT_PHASE_SKIPPED || !selectedIds.has(r.nodeId)) continue;
    eligible += 1;
    if (ofRevision && TERMINAL.has(r.phase)) eligibleFinished += 1;
    if (ofRevision && FAILED_PHASES.has(r.phase)) failedNow += 1;
  }
  for (const r of removed) if (needsUncordon(r)) uncordons.push(r.nodeId);
  const done = eligibleFinished === eligible && !inProgress;
  const rolloutPhase =
    eligible === 0
      ? HostDeploymentPhase.HOST_DEPLOYMENT_PHASE_PENDING
      : done
        ? failedNow > 0
          ? HostDeploymentPhase.HOST_DEPLOYMENT_PHASE_FAILED
          : HostDeploymentPhase.HOST_DEPLOYMENT_PHASE_COMPLETED
        : started
          ? HostDeploymentPhase.HOST_DEPLOYMENT_PHASE_PROGRESSING
          : HostDeploymentPhase.HOST_DEPLOYMENT_PHASE_PENDING;
  const finished = rolloutPhase === HostDeploymentPhase.HOST_DEPLOYMENT_PHASE_COMPLETED || rolloutPhase === HostDeploymentPhase.HOST_DEPLOYMENT_PHASE_FAILED;
  const statusMessage = budgetPaused
    ? `${budgetFailures} failed node${budgetFailures === 1 ? '' : 's'} exceed the failure budget of ${spec.failureBudget}; ResumeHostDeployment continues`
    : waitingForDrain > 0
      ? `${DRAIN_UNAVAILABLE}: ${waitingForDrain} node${waitingForDrain === 1 ? '' : 's'} wait`
      : selected.length === 0
        ? 'the selector matches no node the deployer knows'
        : eligible === 0
          ? `no selected node can be rolled out yet (${selected.length} skipped)`
          : '';
  return {
    changes: [...changes.values()],
    removed,
    activations,
    activated,
    rebootGrants,
    drains,
    uncordons,
    decisions,
    deployment: {
      ...dep,
      budgetPaused,
      rolloutPhase,
      statusMessage,
      selectedNodes: selected.length,
      maxUnavailableNodes: maxUnavailable,
      startedAt: dep.startedAt ?? (started ? now : undefined),
      finishedAt: finished || aborted ? (dep.finishedAt ?? now) : undefined,
    },
  };
}
