// ClusterService handlers.
import type { ServiceImplementation } from 'nice-grpc';
import type { ClusterServiceDefinition } from '../../../gen/ts/ultracloud/deployer/v1/cluster_service.js';
import type { HandlerContext } from '../../../lib/grpc/server.js';
import type { Deployer } from '../deployer.js';
import type { MachineChangeSignal } from '../machine-feed.js';
import { actorOf } from './actor.js';

/** An applied cluster state can change what machines say about themselves: `changes` is told. */
export function clusterService(deployer: Deployer, changes: MachineChangeSignal): ServiceImplementation<typeof ClusterServiceDefinition, HandlerContext> {
  return {
    async applyClusterState(req, context) {
      const response = await deployer.applyClusterState(req, actorOf(context, 'ApplyClusterState'));
      if (response.applied) changes.changed();
      return response;
    },
    async getClusterState() {
      return deployer.getClusterState();
    },
  };
}
