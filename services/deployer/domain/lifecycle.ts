// The machine lifecycle as one table (ARCHITECTURE.md "Lifecycle", docs/lifecycle.md). Every
// state change in the deployer goes through planTransition; whatever the table does not list is
// refused with FailedPreconditionError (gRPC FAILED_PRECONDITION). Storage, audit events and the
// resource_version check are the caller's job: this module only decides.
import { FailedPreconditionError } from '../../../lib/errors.js';
import { MachineState, MachineTransition } from '../../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';

export { MachineState, MachineTransition };

const S = MachineState;
const T = MachineTransition;

/** Who may cause a transition (documentation and audit; authorization is the RPC layer's). */
export type TransitionTrigger = 'operator' | 'installer' | 'system' | 'service';

/** What a transition does to the node assignment. */
export type AssignmentEffect = 'keep' | 'create' | 'drop';

/**
 * What a transition does to the node's bootstrap secrets (install token, keys, certificate):
 * 'rotate' invalidates any previous set and allows exactly one more FetchPlan with a fresh one;
 * 'revoke' invalidates them with no replacement.
 */
export type SecretsEffect = 'keep' | 'rotate' | 'revoke';

/** What a transition does to the machine record itself. */
export type RecordEffect = 'keep' | 'create' | 'delete';

/** A real transition: every enum value except UNSPECIFIED and UNRECOGNIZED. */
export type LifecycleTransition = Exclude<
  MachineTransition,
  MachineTransition.MACHINE_TRANSITION_UNSPECIFIED | MachineTransition.UNRECOGNIZED
>;

/** The input of a transition besides the current state. */
export interface TransitionContext {
  /** Machine.previous_state: the state before RESCUE. Only read when the machine is in RESCUE. */
  readonly previousState?: MachineState;
}

interface Edge {
  /** Human and audit name; operator-triggered edges use their MachineService RPC name. */
  readonly name: string;
  readonly from: readonly MachineState[];
  /** 'previous' = Machine.previous_state (ExitRescue). */
  readonly to: MachineState | 'previous';
  readonly triggers: readonly TransitionTrigger[];
  readonly assignment: AssignmentEffect;
  readonly secrets: SecretsEffect;
  readonly record: RecordEffect;
}

/** Every stored state (UNSPECIFIED is "no machine record", never stored). */
export const MACHINE_STATES: readonly MachineState[] = [
  S.MACHINE_STATE_DISCOVERED,
  S.MACHINE_STATE_INSPECTED,
  S.MACHINE_STATE_COMMISSIONED,
  S.MACHINE_STATE_INSTALL_PENDING,
  S.MACHINE_STATE_INSTALLING,
  S.MACHINE_STATE_INSTALLED,
  S.MACHINE_STATE_ACTIVE,
  S.MACHINE_STATE_DRAINING,
  S.MACHINE_STATE_REPROVISIONING,
  S.MACHINE_STATE_RESCUE,
  S.MACHINE_STATE_FAILED,
];

/**
 * States in which the machine has a NodeAssignment. RESCUE is assigned exactly when the state it
 * was entered from is (see hasAssignment); FAILED is only reachable from assigned states.
 */
export const ASSIGNED_STATES: readonly MachineState[] = [
  S.MACHINE_STATE_COMMISSIONED,
  S.MACHINE_STATE_INSTALL_PENDING,
  S.MACHINE_STATE_INSTALLING,
  S.MACHINE_STATE_INSTALLED,
  S.MACHINE_STATE_ACTIVE,
  S.MACHINE_STATE_DRAINING,
  S.MACHINE_STATE_REPROVISIONING,
  S.MACHINE_STATE_FAILED,
];

const STATE_NAMES: Readonly<Record<MachineState, string>> = {
  [S.MACHINE_STATE_UNSPECIFIED]: 'none',
  [S.MACHINE_STATE_DISCOVERED]: 'discovered',
  [S.MACHINE_STATE_INSPECTED]: 'inspected',
  [S.MACHINE_STATE_COMMISSIONED]: 'commissioned',
  [S.MACHINE_STATE_INSTALL_PENDING]: 'install-pending',
  [S.MACHINE_STATE_INSTALLING]: 'installing',
  [S.MACHINE_STATE_INSTALLED]: 'installed',
  [S.MACHINE_STATE_ACTIVE]: 'active',
  [S.MACHINE_STATE_DRAINING]: 'draining',
  [S.MACHINE_STATE_REPROVISIONING]: 'reprovisioning',
  [S.MACHINE_STATE_RESCUE]: 'rescue',
  [S.MACHINE_STATE_FAILED]: 'failed',
  [S.UNRECOGNIZED]: 'unrecognized',
};

// Rescue can be entered from anywhere except rescue itself: a second Rescue would overwrite the
// remembered previous state and make ExitRescue lose its way back.
const RESCUABLE = MACHINE_STATES.filter((s) => s !== S.MACHINE_STATE_RESCUE);

// Reinstall needs an assignment (secrets are issued for a node_id). RESCUE is listed and guarded
// by previousState in planTransition. REPROVISIONING is left out: no transition is a self-loop,
// and the secrets were already rotated when it was entered.
const REINSTALLABLE = [
  ...ASSIGNED_STATES.filter((s) => s !== S.MACHINE_STATE_REPROVISIONING),
  S.MACHINE_STATE_RESCUE,
];

/**
 * THE lifecycle table: one entry per MachineTransition, each with its source states, target
 * state and side effects. Changing it changes the product; test/unit/lifecycle.test.ts pins it.
 */
const TABLE: Readonly<Record<LifecycleTransition, Edge>> = {
  // UNSPECIFIED as a source means "no record yet": Discover of a known identity is not a
  // transition, only an inventory update.
  [T.MACHINE_TRANSITION_DISCOVER]: {
    name: 'Discover', from: [S.MACHINE_STATE_UNSPECIFIED], to: S.MACHINE_STATE_DISCOVERED,
    triggers: ['installer'], assignment: 'keep', secrets: 'keep', record: 'create',
  },
  [T.MACHINE_TRANSITION_INSPECT]: {
    name: 'Inspect', from: [S.MACHINE_STATE_DISCOVERED], to: S.MACHINE_STATE_INSPECTED,
    triggers: ['system'], assignment: 'keep', secrets: 'keep', record: 'keep',
  },
  [T.MACHINE_TRANSITION_COMMISSION]: {
    name: 'Commission', from: [S.MACHINE_STATE_INSPECTED], to: S.MACHINE_STATE_COMMISSIONED,
    triggers: ['operator', 'system'], assignment: 'create', secrets: 'keep', record: 'keep',
  },
  [T.MACHINE_TRANSITION_RELEASE]: {
    name: 'Release',
    from: [S.MACHINE_STATE_COMMISSIONED, S.MACHINE_STATE_FAILED, S.MACHINE_STATE_ACTIVE],
    to: S.MACHINE_STATE_INSPECTED,
    triggers: ['operator'], assignment: 'drop', secrets: 'revoke', record: 'keep',
  },
  // A plan that cannot be rendered sends COMMISSIONED to FAILED via PLAN_FAILED instead.
  [T.MACHINE_TRANSITION_DEPLOY]: {
    name: 'Deploy', from: [S.MACHINE_STATE_COMMISSIONED], to: S.MACHINE_STATE_INSTALL_PENDING,
    triggers: ['operator', 'system'], assignment: 'keep', secrets: 'rotate', record: 'keep',
  },
  [T.MACHINE_TRANSITION_START_INSTALL]: {
    name: 'StartInstall', from: [S.MACHINE_STATE_INSTALL_PENDING], to: S.MACHINE_STATE_INSTALLING,
    triggers: ['installer'], assignment: 'keep', secrets: 'keep', record: 'keep',
  },
  [T.MACHINE_TRANSITION_INSTALL_SUCCEEDED]: {
    name: 'InstallSucceeded', from: [S.MACHINE_STATE_INSTALLING], to: S.MACHINE_STATE_INSTALLED,
    triggers: ['installer'], assignment: 'keep', secrets: 'keep', record: 'keep',
  },
  [T.MACHINE_TRANSITION_INSTALL_FAILED]: {
    name: 'InstallFailed', from: [S.MACHINE_STATE_INSTALLING], to: S.MACHINE_STATE_FAILED,
    triggers: ['installer'], assignment: 'keep', secrets: 'keep', record: 'keep',
  },
  [T.MACHINE_TRANSITION_INSTALL_TIMED_OUT]: {
    name: 'InstallTimedOut',
    from: [S.MACHINE_STATE_INSTALL_PENDING, S.MACHINE_STATE_INSTALLING],
    to: S.MACHINE_STATE_FAILED,
    triggers: ['system'], assignment: 'keep', secrets: 'keep', record: 'keep',
  },
  // Plans are rendered on Deploy (COMMISSIONED), when the installer boots a reprovisioned
  // machine with fresh facts (REPROVISIONING) and when a pending plan is re-rendered
  // (INSTALL_PENDING); each can find no root disk or several.
  [T.MACHINE_TRANSITION_PLAN_FAILED]: {
    name: 'PlanFailed',
    from: [S.MACHINE_STATE_COMMISSIONED, S.MACHINE_STATE_INSTALL_PENDING, S.MACHINE_STATE_REPROVISIONING],
    to: S.MACHINE_STATE_FAILED,
    triggers: ['system'], assignment: 'keep', secrets: 'keep', record: 'keep',
  },
  [T.MACHINE_TRANSITION_ACTIVATE]: {
    name: 'Activate', from: [S.MACHINE_STATE_INSTALLED], to: S.MACHINE_STATE_ACTIVE,
    triggers: ['operator', 'service'], assignment: 'keep', secrets: 'keep', record: 'keep',
  },
  [T.MACHINE_TRANSITION_DRAIN]: {
    name: 'Drain', from: [S.MACHINE_STATE_ACTIVE], to: S.MACHINE_STATE_DRAINING,
    triggers: ['operator'], assignment: 'keep', secrets: 'keep', record: 'keep',
  },
  [T.MACHINE_TRANSITION_UNDRAIN]: {
    name: 'Undrain', from: [S.MACHINE_STATE_DRAINING], to: S.MACHINE_STATE_ACTIVE,
    triggers: ['operator'], assignment: 'keep', secrets: 'keep', record: 'keep',
  },
  [T.MACHINE_TRANSITION_REINSTALL]: {
    name: 'Reinstall', from: REINSTALLABLE, to: S.MACHINE_STATE_REPROVISIONING,
    triggers: ['operator'], assignment: 'keep', secrets: 'rotate', record: 'keep',
  },
  [T.MACHINE_TRANSITION_INSTALLER_BOOTED]: {
    name: 'InstallerBooted', from: [S.MACHINE_STATE_REPROVISIONING], to: S.MACHINE_STATE_INSTALL_PENDING,
    triggers: ['installer'], assignment: 'keep', secrets: 'keep', record: 'keep',
  },
  [T.MACHINE_TRANSITION_RESCUE]: {
    name: 'Rescue', from: RESCUABLE, to: S.MACHINE_STATE_RESCUE,
    triggers: ['operator'], assignment: 'keep', secrets: 'keep', record: 'keep',
  },
  [T.MACHINE_TRANSITION_EXIT_RESCUE]: {
    name: 'ExitRescue', from: [S.MACHINE_STATE_RESCUE], to: 'previous',
    triggers: ['operator'], assignment: 'keep', secrets: 'keep', record: 'keep',
  },
  [T.MACHINE_TRANSITION_MARK_FAILED]: {
    name: 'MarkFailed',
    from: [S.MACHINE_STATE_INSTALL_PENDING, S.MACHINE_STATE_INSTALLING],
    to: S.MACHINE_STATE_FAILED,
    triggers: ['operator'], assignment: 'keep', secrets: 'keep', record: 'keep',
  },
  [T.MACHINE_TRANSITION_RETRY]: {
    name: 'Retry', from: [S.MACHINE_STATE_FAILED], to: S.MACHINE_STATE_INSTALL_PENDING,
    triggers: ['operator'], assignment: 'keep', secrets: 'rotate', record: 'keep',
  },
  // The record goes; audit events stay. The same hardware is discovered as a new machine.
  [T.MACHINE_TRANSITION_DELETE]: {
    name: 'Delete', from: MACHINE_STATES, to: S.MACHINE_STATE_UNSPECIFIED,
    triggers: ['operator'], assignment: 'drop', secrets: 'revoke', record: 'delete',
  },
};

/** The outcome of an allowed transition: what to store, in one transaction with its audit event. */
export interface TransitionPlan {
  readonly transition: LifecycleTransition;
  readonly from: MachineState;
  /** New state; UNSPECIFIED for Delete (no record remains). */
  readonly to: MachineState;
  /** New Machine.previous_state: the source state when entering RESCUE, otherwise UNSPECIFIED. */
  readonly previousState: MachineState;
  readonly assignment: AssignmentEffect;
  readonly secrets: SecretsEffect;
  readonly record: RecordEffect;
}

/** Static description of one transition, for docs, the CLI and audit output. */
export interface TransitionInfo {
  readonly transition: LifecycleTransition;
  readonly name: string;
  readonly from: readonly MachineState[];
  readonly to: MachineState | 'previous';
  readonly triggers: readonly TransitionTrigger[];
  readonly assignment: AssignmentEffect;
  readonly secrets: SecretsEffect;
  readonly record: RecordEffect;
}

/** Every transition in enum order. */
export const TRANSITIONS: readonly LifecycleTransition[] = (
  Object.keys(TABLE).map(Number) as LifecycleTransition[]
).sort((a, b) => a - b);

function edgeOf(transition: MachineTransition): Edge | undefined {
  return Object.prototype.hasOwnProperty.call(TABLE, transition)
    ? TABLE[transition as LifecycleTransition]
    : undefined;
}

/** Human name of a state as operators see it, e.g. "install-pending". */
export function stateName(state: MachineState): string {
  return STATE_NAMES[state] ?? `unknown(${String(state)})`;
}

/** Parses a human state name ("install-pending", also "INSTALL_PENDING" or the full enum name). */
export function parseStateName(name: string): MachineState | undefined {
  const wanted = name.trim().toLowerCase().replace(/^machine_state_/, '').replace(/_/g, '-');
  return MACHINE_STATES.find((s) => STATE_NAMES[s] === wanted);
}

/** Name of a transition, e.g. "Reinstall" (the MachineService RPC for operator transitions). */
export function transitionName(transition: MachineTransition): string {
  return edgeOf(transition)?.name ?? `unknown transition ${String(transition)}`;
}

/** The table entry of a transition. */
export function transitionInfo(transition: LifecycleTransition): TransitionInfo {
  const edge = TABLE[transition];
  return { transition, ...edge };
}

/** True when a machine in this state has a NodeAssignment (RESCUE: when its previous state has). */
export function hasAssignment(state: MachineState, previousState?: MachineState): boolean {
  if (state === S.MACHINE_STATE_RESCUE) {
    return previousState !== undefined && ASSIGNED_STATES.includes(previousState);
  }
  return ASSIGNED_STATES.includes(state);
}

/** Why a listed edge is still refused for this machine, or undefined when it may proceed. */
function guard(edge: Edge, transition: LifecycleTransition, current: MachineState, ctx: TransitionContext): string | undefined {
  if (current !== S.MACHINE_STATE_RESCUE) return undefined;
  const previous = ctx.previousState ?? S.MACHINE_STATE_UNSPECIFIED;
  if (edge.to === 'previous' && !MACHINE_STATES.includes(previous)) {
    return `cannot ${edge.name} a machine in state rescue: no previous state is recorded (Reinstall or Delete it instead)`;
  }
  if (edge.to === 'previous' && previous === S.MACHINE_STATE_RESCUE) {
    return `cannot ${edge.name} a machine in state rescue: its recorded previous state is rescue`;
  }
  if (transition === T.MACHINE_TRANSITION_REINSTALL && !hasAssignment(current, previous)) {
    return `cannot ${edge.name} a machine in state rescue entered from ${stateName(previous)}: it has no assignment (Commission it first)`;
  }
  return undefined;
}

/**
 * The transitions allowed from a state. With ctx, edges out of RESCUE are checked against the
 * recorded previous state as planTransition would; without it they are all listed.
 */
export function allowedTransitions(state: MachineState, ctx?: TransitionContext): LifecycleTransition[] {
  return TRANSITIONS.filter((t) => {
    const edge = TABLE[t];
    if (!edge.from.includes(state)) return false;
    return ctx === undefined || guard(edge, t, state, ctx) === undefined;
  });
}

/**
 * Decides a transition. Throws FailedPreconditionError naming the current state, the
 * transition and the states it is allowed from when the table does not allow it.
 */
export function planTransition(
  current: MachineState,
  transition: MachineTransition,
  ctx: TransitionContext = {},
): TransitionPlan {
  const edge = edgeOf(transition);
  if (edge === undefined) {
    throw new FailedPreconditionError(
      `cannot apply ${transitionName(transition)} to a machine in state ${stateName(current)}: not a lifecycle edge`,
    );
  }
  const t = transition as LifecycleTransition;
  if (!edge.from.includes(current)) {
    const allowed = edge.from.map(stateName).join(', ');
    throw new FailedPreconditionError(
      `cannot ${edge.name} a machine in state ${stateName(current)} (allowed from: ${allowed})`,
    );
  }
  const refused = guard(edge, t, current, ctx);
  if (refused !== undefined) throw new FailedPreconditionError(refused);

  const to = edge.to === 'previous' ? (ctx.previousState ?? S.MACHINE_STATE_UNSPECIFIED) : edge.to;
  return {
    transition: t,
    from: current,
    to,
    previousState: to === S.MACHINE_STATE_RESCUE ? current : S.MACHINE_STATE_UNSPECIFIED,
    assignment: edge.assignment,
    secrets: edge.secrets,
    record: edge.record,
  };
}
