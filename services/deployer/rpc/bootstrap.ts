// BootstrapService handlers: decode, identify the calling machine, call the deployer.
import type { ServiceImplementation } from 'nice-grpc';
import type { BootstrapServiceDefinition } from '../../../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import type { HandlerContext } from '../../../lib/grpc/server.js';
import type { Deployer } from '../deployer.js';
import type { MachineChangeSignal } from '../machine-feed.js';
import { actorOf, installerMachine } from './actor.js';

/** Every call records something on the machine (at least when it was last seen): `changes` is told. */
export function bootstrapService(deployer: Deployer, changes: MachineChangeSignal): ServiceImplementation<typeof BootstrapServiceDefinition, HandlerContext> {
  return {
    async discover(req, context) {
      const response = await deployer.discover(req, actorOf(context, 'Discover'));
      changes.changed();
      return response;
    },
    async fetchPlan(req, context) {
      const machineId = installerMachine(context, 'session-secret');
      context.log.debug({ event: 'plan.fetch', machine_id: machineId });
      const response = await deployer.fetchPlan(req.machineId, machineId, actorOf(context, 'FetchPlan'));
      changes.changed();
      return response;
    },
    async reportInstallProgress(req, context) {
      const machineId = installerMachine(context, 'install-token');
      const response = await deployer.reportProgress(req, machineId, actorOf(context, 'ReportInstallProgress'));
      changes.changed();
      return response;
    },
  };
}
