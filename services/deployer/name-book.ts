// Node names this process is handing out. A new machine's enrolment picks its node_id and
// hostname from what this book says is free, without a database round trip or a lock: the book
// holds the names assigned in the cluster (reloaded every few seconds, and at once after a
// conflict) plus the names concurrent enrolments of this process are writing right now. The
// unique indexes on assignments stay the arbiter: a name another replica (or an operator) took
// meanwhile makes the write fail, the book is reloaded and the enrolment picks again.
import { type TakenNames, unionOfNames } from './domain/enrollment.js';
import { type DeployerDb, takenNames } from './store/machines.js';

export interface NodeNames {
  readonly nodeId: string;
  readonly hostname: string;
}

export class NameBook {
  private assigned: { nodeIds: Set<string>; hostnames: Set<string> } | undefined;
  private loadedAt = 0;
  private loading: Promise<void> | undefined;
  /** Names committed while a reload was reading, so the reload cannot drop them. */
  private committedDuringLoad: NodeNames[] | undefined;
  private readonly pendingNodeIds = new Set<string>();
  private readonly pendingHostnames = new Set<string>();
  /** Enrolment's scan hints (TakenNames.scanFrom): valid while names are only taken, never freed. */
  private readonly scanFrom = new Map<string, number>();

  constructor(
    private readonly maxAgeMs = 5_000,
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * Names taken in the cluster or being written by this process: a view over the book, valid for
   * one synchronous enrolment (no copy of the cluster's names per machine).
   */
  async taken(db: DeployerDb): Promise<TakenNames> {
    if (!this.assigned || this.clock() - this.loadedAt > this.maxAgeMs) await this.reload(db);
    const assigned = this.assigned as { nodeIds: Set<string>; hostnames: Set<string> };
    return { nodeIds: unionOfNames(assigned.nodeIds, this.pendingNodeIds), hostnames: unionOfNames(assigned.hostnames, this.pendingHostnames), scanFrom: this.scanFrom };
  }

  /** Marks the pair as being written; false when a concurrent enrolment of this process has it. */
  reserve(names: NodeNames): boolean {
    if (this.pendingNodeIds.has(names.nodeId) || this.pendingHostnames.has(names.hostname)) return false;
    this.pendingNodeIds.add(names.nodeId);
    this.pendingHostnames.add(names.hostname);
    return true;
  }

  /** The write of a reserved pair ended: committed (the names are now assigned) or not. */
  settle(names: NodeNames, committed: boolean): void {
    this.pendingNodeIds.delete(names.nodeId);
    this.pendingHostnames.delete(names.hostname);
    if (!committed) {
      this.scanFrom.clear(); // the pair is free again
      return;
    }
    this.assigned?.nodeIds.add(names.nodeId);
    this.assigned?.hostnames.add(names.hostname);
    this.committedDuringLoad?.push(names);
  }

  /** The book was wrong (a unique index refused a name): read the assignments again next time. */
  invalidate(): void {
    this.loadedAt = 0;
  }

  private async reload(db: DeployerDb): Promise<void> {
    if (!this.loading) {
      this.committedDuringLoad = [];
      const startedAt = this.clock();
      this.loading = takenNames(db, '')
        .then((fresh) => {
          for (const n of this.committedDuringLoad ?? []) {
            fresh.nodeIds.add(n.nodeId);
            fresh.hostnames.add(n.hostname);
          }
          this.assigned = fresh;
          this.loadedAt = startedAt;
          this.scanFrom.clear(); // names released elsewhere (a machine deleted) are free again
        })
        .finally(() => {
          this.loading = undefined;
          this.committedDuringLoad = undefined;
        });
    }
    await this.loading;
  }
}
