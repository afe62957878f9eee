// ClusterService handlers.
import type { ServiceImplementation } from 'nice-grpc';
import type { ClusterServiceDefinition } from '../../../gen/ts/ultracloud/deployer/v1/cluster_service.js';
import type { HandlerContext } from '../../../lib/grpc/server.js';
import type { Deployer } from '../deployer.js';
import { actorOf } from './actor.js';

export function clusterService(deployer: Deployer): ServiceImplementation<typeof ClusterServiceDefinition, HandlerContext> {
  return {
    async applyClusterState(req, context) {
      return deployer.applyClusterState(req, actorOf(context, 'ApplyClusterState'));
    },
    async getClusterState() {
      return deployer.getClusterState();
    },
  };
}
