// Table tests: an operator's machine filter on one machine in memory, and what each change means
// to a watch client (WatchView): ADDED, MODIFIED, DELETED or not sent.
import test from 'ava';
import { Machine, MachineEventType } from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { MachineState } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { machineFilterOf, matchesMachineFilter, type MachineFilterTerms } from '../../services/deployer/domain/machine-filter.js';
import { type ViewedChange, WatchView } from '../../services/deployer/domain/watch-view.js';

const S = MachineState;
const E = MachineEventType;

function machine(id: string, state: MachineState, assigned?: { hostname: string; nodeClass?: string; pool?: string; labels?: Record<string, string> }): Machine {
  return Machine.fromPartial({
    machineId: id,
    state,
    inventory: { identity: { serialNumber: `SN-${id}`, macAddresses: ['02:00:00:00:00:0a'] }, nics: [{ name: 'eno1', macAddress: '02:00:00:00:00:0A', permanentMacAddress: '' }] },
    ...(assigned
      ? { assignment: { hostname: assigned.hostname, nodeId: assigned.hostname, nodeClass: assigned.nodeClass ?? 'worker', pool: assigned.pool ?? 'workers', labels: assigned.labels ?? {} } }
      : {}),
  });
}

function filter(terms: Partial<{ states: MachineState[]; nodeClass: string; pool: string; labelSelector: string; query: string }> = {}): MachineFilterTerms {
  return machineFilterOf({ states: [], nodeClass: '', pool: '', labelSelector: '', query: '', ...terms });
}

const worker = machine('m-1', S.MACHINE_STATE_INSTALLING, { hostname: 'worker-1', labels: { rack: 'a' } });
const unassigned = machine('m-2', S.MACHINE_STATE_INSPECTED);

const FILTER_CASES: [string, MachineFilterTerms, Machine, boolean][] = [
  ['no terms match any machine', filter(), unassigned, true],
  ['state in the list', filter({ states: [S.MACHINE_STATE_INSTALLING, S.MACHINE_STATE_INSTALLED] }), worker, true],
  ['state not in the list', filter({ states: [S.MACHINE_STATE_ACTIVE] }), worker, false],
  ['node class of the assignment', filter({ nodeClass: 'worker' }), worker, true],
  ['a class filter never matches an unassigned machine', filter({ nodeClass: 'worker' }), unassigned, false],
  ['pool', filter({ pool: 'control' }), worker, false],
  ['label equals', filter({ labelSelector: 'rack=a' }), worker, true],
  ['label differs', filter({ labelSelector: 'rack=b' }), worker, false],
  ['label not-equals on an unassigned machine', filter({ labelSelector: 'rack!=a' }), unassigned, true],
  ['label present', filter({ labelSelector: 'rack' }), worker, true],
  ['query matches the hostname, any case', filter({ query: 'WORKER-1' }), worker, true],
  ['query matches the DMI serial', filter({ query: 'sn-m-2' }), unassigned, true],
  ['query matches a MAC', filter({ query: '00:0a' }), unassigned, true],
  ['query matches nothing', filter({ query: 'control' }), worker, false],
];

for (const [title, terms, m, expected] of FILTER_CASES) {
  test(`machine filter: ${title}`, (t) => {
    t.is(matchesMachineFilter(terms, m), expected);
  });
}

test('machine filter: a malformed selector or an unknown state is INVALID_ARGUMENT naming the field', (t) => {
  t.throws(() => filter({ labelSelector: 'rack=a=b' }), { message: /^label_selector: / });
  t.throws(() => filter({ states: [S.MACHINE_STATE_UNSPECIFIED] }), { message: /^states: / });
});

function change(m: Machine, options: { deleted?: boolean; created?: bigint } = {}): ViewedChange {
  return { machine: m, deleted: options.deleted ?? false, createdResourceVersion: options.created ?? 1n };
}

const installing = (id: string, created = 1n) => change(machine(id, S.MACHINE_STATE_INSTALLING, { hostname: id }), { created });
const installed = (id: string) => change(machine(id, S.MACHINE_STATE_INSTALLED, { hostname: id }));
const deleted = (id: string, state = S.MACHINE_STATE_INSTALLING, created = 1n) => change(machine(id, state, { hostname: id }), { deleted: true, created });

interface ViewCase {
  readonly title: string;
  readonly view: () => WatchView;
  readonly changes: readonly ViewedChange[];
  readonly expected: readonly (MachineEventType | undefined)[];
}

const VIEW_CASES: readonly ViewCase[] = [
  {
    title: 'after a snapshot, an unknown machine is ADDED, then MODIFIED, then DELETED',
    view: () => new WatchView(filter(), true, 10n),
    changes: [installing('m-9'), installed('m-9'), deleted('m-9', S.MACHINE_STATE_INSTALLED)],
    expected: [E.MACHINE_EVENT_TYPE_ADDED, E.MACHINE_EVENT_TYPE_MODIFIED, E.MACHINE_EVENT_TYPE_DELETED],
  },
  {
    title: 'a filtered machine entering is ADDED, leaving is sent once as MODIFIED, then nothing',
    view: () => new WatchView(filter({ states: [S.MACHINE_STATE_INSTALLING] }), true, 10n),
    changes: [installing('m-9'), installing('m-9'), installed('m-9'), installed('m-9'), deleted('m-9', S.MACHINE_STATE_INSTALLED)],
    expected: [E.MACHINE_EVENT_TYPE_ADDED, E.MACHINE_EVENT_TYPE_MODIFIED, E.MACHINE_EVENT_TYPE_MODIFIED, undefined, undefined],
  },
  {
    title: 'after a snapshot, a deletion of a machine the client never had is not sent',
    view: () => new WatchView(filter(), true, 10n),
    changes: [deleted('m-9')],
    expected: [undefined],
  },
  {
    title: 'resumed: a machine that existed before is MODIFIED, one created since is ADDED',
    view: () => new WatchView(filter(), false, 10n),
    changes: [installing('m-old', 5n), installing('m-new', 12n), installed('m-new')],
    expected: [E.MACHINE_EVENT_TYPE_MODIFIED, E.MACHINE_EVENT_TYPE_ADDED, E.MACHINE_EVENT_TYPE_MODIFIED],
  },
  {
    title: 'resumed: a deleted machine that existed before is DELETED, one created and deleted since is not sent',
    view: () => new WatchView(filter(), false, 10n),
    changes: [deleted('m-old', S.MACHINE_STATE_ACTIVE, 5n), deleted('m-brief', S.MACHINE_STATE_DISCOVERED, 12n)],
    expected: [E.MACHINE_EVENT_TYPE_DELETED, undefined],
  },
];

for (const c of VIEW_CASES) {
  test(`watch view: ${c.title}`, (t) => {
    const view = c.view();
    t.deepEqual(
      c.changes.map((ch) => view.decide(ch)),
      [...c.expected],
    );
  });
}

test('watch view: snapshot machines are known, so their next change is MODIFIED and their deletion DELETED', (t) => {
  const view = new WatchView(filter({ nodeClass: 'worker' }), true, 10n);
  t.true(view.seed(worker));
  t.false(view.seed(unassigned), 'the unassigned machine does not match the class filter');
  t.is(view.decide(change(worker)), E.MACHINE_EVENT_TYPE_MODIFIED);
  t.is(view.decide(change(unassigned)), undefined);
  t.is(view.decide(change(worker, { deleted: true })), E.MACHINE_EVENT_TYPE_DELETED);
});
