// The applied cluster-state document: one row, replaced whole on every apply.
import { ClusterState } from '../../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import type { DeployerDb } from './machines.js';
import type { JsonDocument } from './tables.js';

export interface AppliedClusterState {
  readonly state: ClusterState;
  readonly generation: bigint;
  readonly hash: string;
  readonly appliedAt: Date;
  readonly appliedBy: string;
}

export async function getClusterState(db: DeployerDb, options: { forUpdate?: boolean } = {}): Promise<AppliedClusterState | undefined> {
  let query = db.selectFrom('cluster_state').selectAll().where('id', '=', 1);
  if (options.forUpdate) query = query.forUpdate();
  const r = await query.executeTakeFirst();
  if (!r) return undefined;
  return { state: ClusterState.fromJSON(r.document), generation: BigInt(r.generation), hash: r.hash, appliedAt: r.applied_at, appliedBy: r.applied_by };
}

export async function saveClusterState(db: DeployerDb, applied: AppliedClusterState): Promise<void> {
  const values = {
    generation: applied.generation,
    document: ClusterState.toJSON(applied.state) as JsonDocument,
    hash: applied.hash,
    applied_at: applied.appliedAt,
    applied_by: applied.appliedBy,
  };
  await db
    .insertInto('cluster_state')
    .values({ id: 1, ...values })
    .onConflict((oc) => oc.column('id').doUpdateSet(values))
    .execute();
}

/** The applied generation alone: a cheap check before reusing a parsed document. */
export async function getClusterGeneration(db: DeployerDb): Promise<bigint | undefined> {
  const r = await db.selectFrom('cluster_state').select('generation').where('id', '=', 1).executeTakeFirst();
  return r ? BigInt(r.generation) : undefined;
}
