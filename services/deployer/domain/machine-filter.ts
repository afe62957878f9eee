// An operator's machine filter applied to one machine in memory: the same terms ListMachines
// applies in SQL (store/machine-queries.ts), for a watch that decides change by change with the
// machine's version in hand.
import type { Machine } from '../../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import type { MachineState } from '../../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { InvalidArgumentError } from '../../../lib/errors.js';
import { primaryMacSet } from './inventory.js';
import { type LabelTerm, matchesLabelSelector, parseLabelSelector } from './label-selector.js';
import { MACHINE_STATES } from './lifecycle.js';

/** Filter terms, combined with AND; empty terms match everything. */
export interface MachineFilterTerms {
  readonly states: readonly MachineState[];
  readonly nodeClass: string;
  readonly pool: string;
  readonly labels: readonly LabelTerm[];
  /** Case-insensitive substring of machine_id, node_id, hostname, DMI serial or a MAC. */
  readonly query: string;
}

/** The filter a request's fields describe; INVALID_ARGUMENT naming the field when one is malformed. */
export function machineFilterOf(req: { states: readonly MachineState[]; nodeClass: string; pool: string; labelSelector: string; query: string }): MachineFilterTerms {
  const unknown = req.states.filter((s) => !MACHINE_STATES.includes(s));
  if (unknown.length > 0) throw new InvalidArgumentError({ field: 'states', description: `not a machine state: ${unknown.join(', ')}` });
  return { states: [...req.states], nodeClass: req.nodeClass, pool: req.pool, labels: parseLabelSelector(req.labelSelector), query: req.query.trim() };
}

export function matchesMachineFilter(f: MachineFilterTerms, m: Machine): boolean {
  const a = m.assignment;
  if (f.states.length > 0 && !f.states.includes(m.state)) return false;
  if (f.nodeClass && a?.nodeClass !== f.nodeClass) return false;
  if (f.pool && a?.pool !== f.pool) return false;
  if (!matchesLabelSelector(f.labels, a?.labels)) return false;
  if (!f.query) return true;
  const q = f.query.toLowerCase();
  const fields = [m.machineId, a?.nodeId ?? '', a?.hostname ?? '', m.inventory?.identity?.serialNumber ?? '', ...(m.inventory ? primaryMacSet(m.inventory) : [])];
  return fields.some((field) => field.toLowerCase().includes(q));
}
