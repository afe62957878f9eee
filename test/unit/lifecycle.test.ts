import test from 'ava';
import { FailedPreconditionError } from '../../lib/errors.js';
import {
  allowedTransitions,
  hasAssignment,
  MACHINE_STATES,
  MachineState,
  MachineTransition,
  parseStateName,
  planTransition,
  stateName,
  TRANSITIONS,
  transitionInfo,
} from '../../services/deployer/domain/lifecycle.js';

// Written out independently of the module so that changing the lifecycle table needs a
// deliberate change here too.
const STATE: Readonly<Record<string, MachineState>> = {
  none: MachineState.MACHINE_STATE_UNSPECIFIED,
  discovered: MachineState.MACHINE_STATE_DISCOVERED,
  inspected: MachineState.MACHINE_STATE_INSPECTED,
  commissioned: MachineState.MACHINE_STATE_COMMISSIONED,
  'install-pending': MachineState.MACHINE_STATE_INSTALL_PENDING,
  installing: MachineState.MACHINE_STATE_INSTALLING,
  installed: MachineState.MACHINE_STATE_INSTALLED,
  active: MachineState.MACHINE_STATE_ACTIVE,
  draining: MachineState.MACHINE_STATE_DRAINING,
  reprovisioning: MachineState.MACHINE_STATE_REPROVISIONING,
  rescue: MachineState.MACHINE_STATE_RESCUE,
  failed: MachineState.MACHINE_STATE_FAILED,
};

const TRANSITION: Readonly<Record<string, MachineTransition>> = {
  Unspecified: MachineTransition.MACHINE_TRANSITION_UNSPECIFIED,
  Discover: MachineTransition.MACHINE_TRANSITION_DISCOVER,
  Inspect: MachineTransition.MACHINE_TRANSITION_INSPECT,
  Commission: MachineTransition.MACHINE_TRANSITION_COMMISSION,
  Release: MachineTransition.MACHINE_TRANSITION_RELEASE,
  Deploy: MachineTransition.MACHINE_TRANSITION_DEPLOY,
  StartInstall: MachineTransition.MACHINE_TRANSITION_START_INSTALL,
  InstallSucceeded: MachineTransition.MACHINE_TRANSITION_INSTALL_SUCCEEDED,
  InstallFailed: MachineTransition.MACHINE_TRANSITION_INSTALL_FAILED,
  InstallTimedOut: MachineTransition.MACHINE_TRANSITION_INSTALL_TIMED_OUT,
  PlanFailed: MachineTransition.MACHINE_TRANSITION_PLAN_FAILED,
  Activate: MachineTransition.MACHINE_TRANSITION_ACTIVATE,
  Drain: MachineTransition.MACHINE_TRANSITION_DRAIN,
  Undrain: MachineTransition.MACHINE_TRANSITION_UNDRAIN,
  Reinstall: MachineTransition.MACHINE_TRANSITION_REINSTALL,
  InstallerBooted: MachineTransition.MACHINE_TRANSITION_INSTALLER_BOOTED,
  Rescue: MachineTransition.MACHINE_TRANSITION_RESCUE,
  ExitRescue: MachineTransition.MACHINE_TRANSITION_EXIT_RESCUE,
  MarkFailed: MachineTransition.MACHINE_TRANSITION_MARK_FAILED,
  Retry: MachineTransition.MACHINE_TRANSITION_RETRY,
  Delete: MachineTransition.MACHINE_TRANSITION_DELETE,
};

// The whole table: state -> allowed transition -> target state. Every pair not listed must be
// refused. "none" is the absent record (Discover creates it, Delete returns to it). The rescue
// row assumes the machine entered rescue from active.
const EXPECTED: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  none: { Discover: 'discovered' },
  discovered: { Inspect: 'inspected', Rescue: 'rescue', Delete: 'none' },
  inspected: { Commission: 'commissioned', Rescue: 'rescue', Delete: 'none' },
  commissioned: {
    Release: 'inspected', Deploy: 'install-pending', PlanFailed: 'failed', Reinstall: 'reprovisioning',
    Rescue: 'rescue', Delete: 'none',
  },
  'install-pending': {
    StartInstall: 'installing', InstallTimedOut: 'failed', PlanFailed: 'failed', Reinstall: 'reprovisioning',
    Rescue: 'rescue', MarkFailed: 'failed', Delete: 'none',
  },
  installing: {
    InstallSucceeded: 'installed', InstallFailed: 'failed', InstallTimedOut: 'failed', Reinstall: 'reprovisioning',
    Rescue: 'rescue', MarkFailed: 'failed', Delete: 'none',
  },
  installed: { Activate: 'active', Reinstall: 'reprovisioning', Rescue: 'rescue', Delete: 'none' },
  active: { Release: 'inspected', Drain: 'draining', Reinstall: 'reprovisioning', Rescue: 'rescue', Delete: 'none' },
  draining: { Undrain: 'active', Reinstall: 'reprovisioning', Rescue: 'rescue', Delete: 'none' },
  reprovisioning: { PlanFailed: 'failed', InstallerBooted: 'install-pending', Rescue: 'rescue', Delete: 'none' },
  rescue: { Reinstall: 'reprovisioning', ExitRescue: 'active', Delete: 'none' },
  failed: {
    Release: 'inspected', Reinstall: 'reprovisioning', Rescue: 'rescue', Retry: 'install-pending', Delete: 'none',
  },
};

const RESCUED_FROM = MachineState.MACHINE_STATE_ACTIVE;

function expectedTarget(state: string, transition: string): string | undefined {
  return EXPECTED[state]?.[transition];
}

for (const [stateLabel, state] of Object.entries(STATE)) {
  test(`lifecycle table from ${stateLabel}: every transition is allowed or refused as specified`, (t) => {
    const ctx = { previousState: RESCUED_FROM };
    for (const [transitionLabel, transition] of Object.entries(TRANSITION)) {
      const target = expectedTarget(stateLabel, transitionLabel);
      if (target !== undefined) {
        const plan = planTransition(state, transition, ctx);
        t.is(stateName(plan.to), target, `${transitionLabel} from ${stateLabel}`);
        t.is(plan.from, state);
      } else {
        const err = t.throws(() => planTransition(state, transition, ctx), { instanceOf: FailedPreconditionError },
          `${transitionLabel} from ${stateLabel} must be refused`);
        const named = transitionLabel === 'Unspecified'
          ? `cannot apply unknown transition 0 to a machine in state ${stateLabel}`
          : `cannot ${transitionLabel} a machine in state ${stateLabel}`;
        t.true(err?.message.startsWith(named), err?.message);
      }
    }
  });
}

test('the expected table covers exactly the module table', (t) => {
  t.deepEqual(Object.keys(STATE).length, MACHINE_STATES.length + 1);
  t.deepEqual(TRANSITIONS.length, Object.keys(TRANSITION).length - 1);
  for (const [stateLabel, state] of Object.entries(STATE)) {
    const expected = Object.keys(EXPECTED[stateLabel] ?? {}).map((name) => TRANSITION[name]).sort((a, b) => (a ?? 0) - (b ?? 0));
    t.deepEqual(allowedTransitions(state, { previousState: RESCUED_FROM }), expected, stateLabel);
  }
});

test('a refusal names the current state, the transition and the states it is allowed from', (t) => {
  const err = t.throws(() => planTransition(MachineState.MACHINE_STATE_INSTALLING, MachineTransition.MACHINE_TRANSITION_DEPLOY), {
    instanceOf: FailedPreconditionError,
  });
  t.is(err?.message, 'cannot Deploy a machine in state installing (allowed from: commissioned)');
  const release = t.throws(() => planTransition(MachineState.MACHINE_STATE_DRAINING, MachineTransition.MACHINE_TRANSITION_RELEASE));
  t.is(release?.message, 'cannot Release a machine in state draining (allowed from: commissioned, failed, active)');
});

test('Rescue remembers the state it came from and ExitRescue returns to it', (t) => {
  for (const from of MACHINE_STATES.filter((s) => s !== MachineState.MACHINE_STATE_RESCUE)) {
    const rescued = planTransition(from, MachineTransition.MACHINE_TRANSITION_RESCUE);
    t.is(rescued.to, MachineState.MACHINE_STATE_RESCUE);
    t.is(rescued.previousState, from);
    const back = planTransition(rescued.to, MachineTransition.MACHINE_TRANSITION_EXIT_RESCUE, { previousState: rescued.previousState });
    t.is(back.to, from, stateName(from));
    t.is(back.previousState, MachineState.MACHINE_STATE_UNSPECIFIED);
  }
});

test('ExitRescue without a recorded previous state is refused', (t) => {
  for (const previousState of [undefined, MachineState.MACHINE_STATE_UNSPECIFIED, MachineState.MACHINE_STATE_RESCUE]) {
    const err = t.throws(
      () => planTransition(MachineState.MACHINE_STATE_RESCUE, MachineTransition.MACHINE_TRANSITION_EXIT_RESCUE, { previousState }),
      { instanceOf: FailedPreconditionError },
    );
    t.regex(err?.message ?? '', /ExitRescue a machine in state rescue/);
  }
});

test('Reinstall from rescue needs an assignment from before rescue', (t) => {
  const plan = planTransition(MachineState.MACHINE_STATE_RESCUE, MachineTransition.MACHINE_TRANSITION_REINSTALL, {
    previousState: MachineState.MACHINE_STATE_FAILED,
  });
  t.is(plan.to, MachineState.MACHINE_STATE_REPROVISIONING);
  t.is(plan.previousState, MachineState.MACHINE_STATE_UNSPECIFIED);
  const err = t.throws(
    () => planTransition(MachineState.MACHINE_STATE_RESCUE, MachineTransition.MACHINE_TRANSITION_REINSTALL, {
      previousState: MachineState.MACHINE_STATE_INSPECTED,
    }),
    { instanceOf: FailedPreconditionError },
  );
  t.is(err?.message, 'cannot Reinstall a machine in state rescue entered from inspected: it has no assignment (Commission it first)');
  t.false(
    allowedTransitions(MachineState.MACHINE_STATE_RESCUE, { previousState: MachineState.MACHINE_STATE_DISCOVERED })
      .includes(MachineTransition.MACHINE_TRANSITION_REINSTALL),
  );
});

test('assigned states are those with a NodeAssignment; rescue inherits from its previous state', (t) => {
  const assigned = ['commissioned', 'install-pending', 'installing', 'installed', 'active', 'draining', 'reprovisioning', 'failed'];
  for (const [label, state] of Object.entries(STATE)) {
    if (label === 'rescue') continue;
    t.is(hasAssignment(state), assigned.includes(label), label);
  }
  t.true(hasAssignment(MachineState.MACHINE_STATE_RESCUE, MachineState.MACHINE_STATE_ACTIVE));
  t.false(hasAssignment(MachineState.MACHINE_STATE_RESCUE, MachineState.MACHINE_STATE_INSPECTED));
  t.false(hasAssignment(MachineState.MACHINE_STATE_RESCUE));
});

test('release and delete drop the assignment and revoke secrets; reinstall and retry rotate them', (t) => {
  const release = transitionInfo(MachineTransition.MACHINE_TRANSITION_RELEASE);
  t.is(release.assignment, 'drop');
  t.is(release.secrets, 'revoke');
  const del = planTransition(MachineState.MACHINE_STATE_ACTIVE, MachineTransition.MACHINE_TRANSITION_DELETE);
  t.deepEqual([del.assignment, del.secrets, del.record], ['drop', 'revoke', 'delete']);
  const rotating = [
    MachineTransition.MACHINE_TRANSITION_REINSTALL,
    MachineTransition.MACHINE_TRANSITION_RETRY,
    MachineTransition.MACHINE_TRANSITION_DEPLOY,
  ] as const;
  for (const tr of rotating) {
    t.is(transitionInfo(tr).secrets, 'rotate');
    t.is(transitionInfo(tr).assignment, 'keep');
  }
  t.is(transitionInfo(MachineTransition.MACHINE_TRANSITION_COMMISSION).assignment, 'create');
});

test('state names are the operator spelling and parse back', (t) => {
  for (const [label, state] of Object.entries(STATE)) {
    t.is(stateName(state), label);
    if (label !== 'none') t.is(parseStateName(label), state);
  }
  t.is(parseStateName('MACHINE_STATE_INSTALL_PENDING'), MachineState.MACHINE_STATE_INSTALL_PENDING);
  t.is(parseStateName('Install_Pending'), MachineState.MACHINE_STATE_INSTALL_PENDING);
  t.is(parseStateName('none'), undefined);
  t.is(parseStateName('bogus'), undefined);
});
