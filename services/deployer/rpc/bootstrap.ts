// BootstrapService handlers: decode, identify the calling machine, call the deployer. FetchPlan's
// session secret and ReportInstallProgress's install token are proven by the deployer's own
// statements (see TokenClaim in lib/grpc/auth.ts), not looked up before the call.
import type { ServiceImplementation } from 'nice-grpc';
import { BootstrapServiceDefinition } from '../../../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import type { HandlerContext } from '../../../lib/grpc/server.js';
import type { Deployer } from '../deployer.js';
import type { MachineChangeSignal } from '../machine-feed.js';
import { actorOf, installerActor, installerCaller } from './actor.js';

/** The methods whose installer tokens the deployer proves in its statements. */
export const BOOTSTRAP_CLAIMED_METHODS: ReadonlySet<string> = new Set([BootstrapServiceDefinition.methods.fetchPlan, BootstrapServiceDefinition.methods.reportInstallProgress].map((m) => `/${BootstrapServiceDefinition.fullName}/${m.name}`));

/** Every call records something on the machine (at least when it was last seen): `changes` is told. */
export function bootstrapService(deployer: Deployer, changes: MachineChangeSignal): ServiceImplementation<typeof BootstrapServiceDefinition, HandlerContext> {
  return {
    async discover(req, context) {
      const response = await deployer.discover(req, actorOf(context, 'Discover'));
      changes.changed();
      return response;
    },
    async fetchPlan(req, context) {
      const caller = installerCaller(context, 'session-secret');
      const response = await deployer.fetchPlan(req.machineId, caller, installerActor(context, 'FetchPlan', req.machineId));
      changes.changed();
      return response;
    },
    async reportInstallProgress(req, context) {
      const caller = installerCaller(context, 'install-token');
      const response = await deployer.reportProgress(req, caller, installerActor(context, 'ReportInstallProgress', req.machineId));
      changes.changed();
      return response;
    },
  };
}
