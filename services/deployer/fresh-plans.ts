// What this replica's Discover just wrote for a machine whose install plan is ready, kept so the
// installer's FetchPlan (usually a few milliseconds later, on the same replica) needs no read of
// the machine before issuing its credentials. An entry is only a hint: FetchPlan's write is
// guarded by the resource_version and session secret recorded here, so a machine changed
// meanwhile (another Discover, an operator, another replica) makes the write match nothing and
// the general path reads the machine as it is.
import type { NodeAssignment } from '../../gen/ts/ultracloud/assignment/v1/assignment.js';
import type { InstallPlan } from '../../gen/ts/ultracloud/installplan/v1/installplan.js';

export interface FreshPlan {
  readonly machineId: string;
  /** The session secret this Discover issued (its hash): only its holder's FetchPlan uses the entry. */
  readonly sessionSecretHash: string;
  /** The machine's resource_version after the Discover's write. */
  readonly resourceVersion: bigint;
  readonly assignment: NodeAssignment;
  readonly plan: InstallPlan;
  readonly clusterGeneration: bigint;
}

export interface FreshPlansOptions {
  /** Entries kept at most; the oldest goes first. */
  readonly capacity?: number;
  /** An entry older than this is not used. */
  readonly maxAgeMs?: number;
  readonly now?: () => number;
}

export class FreshPlans {
  private readonly entries = new Map<string, { plan: FreshPlan; at: number }>();
  private readonly capacity: number;
  private readonly maxAgeMs: number;
  private readonly now: () => number;

  constructor(options: FreshPlansOptions = {}) {
    this.capacity = options.capacity ?? 4096;
    this.maxAgeMs = options.maxAgeMs ?? 10 * 60_000;
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  put(plan: FreshPlan): void {
    this.entries.delete(plan.machineId);
    this.entries.set(plan.machineId, { plan, at: this.now() });
    while (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  /**
   * The entry for the machine, removed, if the caller holds the session secret it was made for
   * (another secret leaves it in place) and it is not too old (then it is dropped).
   */
  take(machineId: string, sessionSecretHash: string): FreshPlan | undefined {
    const entry = this.entries.get(machineId);
    if (!entry || entry.plan.sessionSecretHash !== sessionSecretHash) return undefined;
    this.entries.delete(machineId);
    return this.now() - entry.at > this.maxAgeMs ? undefined : entry.plan;
  }
}
