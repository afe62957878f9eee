// BootstrapService handlers: decode, identify the calling machine, call the deployer.
import type { ServiceImplementation } from 'nice-grpc';
import type { BootstrapServiceDefinition } from '../../../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import type { HandlerContext } from '../../../lib/grpc/server.js';
import type { Deployer } from '../deployer.js';
import { actorOf, installerMachine } from './actor.js';

export function bootstrapService(deployer: Deployer): ServiceImplementation<typeof BootstrapServiceDefinition, HandlerContext> {
  return {
    async discover(req, context) {
      return deployer.discover(req, actorOf(context, 'Discover'));
    },
    async fetchPlan(req, context) {
      const machineId = installerMachine(context, 'session-secret');
      context.log.debug({ event: 'plan.fetch', machine_id: machineId });
      return deployer.fetchPlan(req.machineId, machineId, actorOf(context, 'FetchPlan'));
    },
    async reportInstallProgress(req, context) {
      const machineId = installerMachine(context, 'install-token');
      return deployer.reportProgress(req, machineId, actorOf(context, 'ReportInstallProgress'));
    },
  };
}
