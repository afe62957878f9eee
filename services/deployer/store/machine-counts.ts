// Aggregate reads for metrics: how many machines are in each lifecycle state.
import type { DeployerDb } from './machines.js';

/** Machines per state name (`install-pending`), in one GROUP BY; states with none are absent. */
export async function countMachinesByState(db: DeployerDb): Promise<Map<string, number>> {
  const rows = await db
    .selectFrom('machines')
    .select((eb) => ['state', eb.fn.countAll().as('machines')])
    .groupBy('state')
    .execute();
  return new Map(rows.map((r) => [r.state, Number(r.machines)]));
}
