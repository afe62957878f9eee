// What one WatchMachines client has been told, and so what each further change means to it: a
// machine it has not seen is ADDED, one it has is MODIFIED, one leaving its filter is sent once
// more (MODIFIED, the version that no longer matches), a deleted one it knows is DELETED.
import { type Machine, MachineEventType } from '../../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { type MachineFilterTerms, matchesMachineFilter } from './machine-filter.js';

/** One change as the watch sees it. */
export interface ViewedChange {
  /** The new version, or for a deletion the last one. */
  readonly machine: Machine;
  readonly deleted: boolean;
  /** The resource_version the machine was created with; 0 when unknown. */
  readonly createdResourceVersion: bigint;
}

export class WatchView {
  /** Machines the client holds as matching its filter. */
  private readonly shown = new Set<string>();

  /**
   * `complete`: the client received a snapshot, so the view knows every machine it holds. Else
   * it resumed after `since`: it may hold any machine that existed then, which the view learns
   * only as changes arrive.
   */
  constructor(
    private readonly filter: MachineFilterTerms,
    private readonly complete: boolean,
    private readonly since: bigint,
  ) {}

  /** A snapshot machine; true when it matches and is to be sent as ADDED. */
  seed(machine: Machine): boolean {
    if (!matchesMachineFilter(this.filter, machine)) return false;
    this.shown.add(machine.machineId);
    return true;
  }

  /** The event `change` is for this client, or undefined when it is not sent. */
  decide(change: ViewedChange): MachineEventType | undefined {
    const id = change.machine.machineId;
    const known = this.shown.has(id);
    const matches = matchesMachineFilter(this.filter, change.machine);
    if (change.deleted) {
      this.shown.delete(id);
      // A resumed client may hold a machine that existed when it last watched and matched then.
      const mayHold = !this.complete && change.createdResourceVersion <= this.since && matches;
      return known || mayHold ? MachineEventType.MACHINE_EVENT_TYPE_DELETED : undefined;
    }
    if (matches) {
      this.shown.add(id);
      if (known) return MachineEventType.MACHINE_EVENT_TYPE_MODIFIED;
      const isNew = this.complete || change.createdResourceVersion > this.since;
      return isNew ? MachineEventType.MACHINE_EVENT_TYPE_ADDED : MachineEventType.MACHINE_EVENT_TYPE_MODIFIED;
    }
    if (!known) return undefined;
    this.shown.delete(id);
    return MachineEventType.MACHINE_EVENT_TYPE_MODIFIED;
  }
}
