// Cordon and drain before activation, uncordon after, through the fleet-scheduler
// (SchedulerService.DrainNode / UncordonNode with owner "host-controller"). Without a configured
// scheduler there is no drainer: deployments that ask for drain wait, and say why, rather than
// pretend a drain happened.
import { SchedulerServiceDefinition } from '../../gen/ts/ultracloud/runtime/v1/scheduler_service.js';
import { createServiceClient, openChannel, type ServiceClient } from '../../lib/grpc/client.js';

export const DRAIN_OWNER = 'host-controller';

export interface DrainProgress {
  /** No instance on the node is running or stopping any more. */
  readonly drained: boolean;
  /** Human-readable progress, e.g. "3 instances still on the node". */
  readonly message: string;
}

/** What the leader needs from a scheduler. Calls are idempotent and may be repeated. */
export interface NodeDrainer {
  /** Cordons the node (ours) and asks for its workloads to move; resolves with progress. */
  drain(nodeId: string, reason: string): Promise<DrainProgress>;
  /** Lifts our cordon. */
  uncordon(nodeId: string, reason: string): Promise<void>;
  close(): void;
}

export interface SchedulerEndpoint {
  readonly address: string;
  readonly caFile: string | undefined;
  /** Operator token the scheduler accepts for cordon, drain and uncordon. Never logged. */
  readonly token: string;
}

/** The fleet-scheduler over gRPC. */
export class SchedulerDrainer implements NodeDrainer {
  private readonly channel;
  private readonly client: ServiceClient<typeof SchedulerServiceDefinition>;

  constructor(endpoint: SchedulerEndpoint) {
    this.channel = openChannel(endpoint.address, endpoint.caFile ? { tls: { caFile: endpoint.caFile } } : {});
    this.client = createServiceClient(SchedulerServiceDefinition, this.channel, { token: endpoint.token, defaultDeadlineMs: 30_000 });
  }

  async drain(nodeId: string, reason: string): Promise<DrainProgress> {
    // Waits up to 10 s for the drain to finish, so a quick drain needs one call.
    const res = await this.client.drainNode({ nodeId, owner: DRAIN_OWNER, reason, wait: { seconds: 10n, nanos: 0 } });
    const unplaced = res.unplacedReplacements > 0 ? `, ${res.unplacedReplacements} without a replacement` : '';
    return { drained: res.drained, message: res.drained ? 'drained' : `${res.remainingInstances} instances still on the node${unplaced}` };
  }

  async uncordon(nodeId: string, reason: string): Promise<void> {
    await this.client.uncordonNode({ nodeId, owner: DRAIN_OWNER, allOwners: false, reason });
  }

  close(): void {
    this.channel.close();
  }
}
