// MachineService handlers: inventory views and one RPC per operator transition.
import type { ServiceImplementation } from 'nice-grpc';
import type { MachineServiceDefinition } from '../../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { MachineTransition as T } from '../../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { InvalidArgumentError, NotFoundError } from '../../../lib/errors.js';
import type { HandlerContext } from '../../../lib/grpc/server.js';
import type { Deployer } from '../deployer.js';
import type { MachineFeed } from '../machine-feed.js';
import type { MachineReader } from '../machine-reader.js';
import { actorOf } from './actor.js';

const MAX_PAGE = 1000;

export function pageSize(requested: number): number {
  return requested === 0 ? 100 : Math.min(requested, MAX_PAGE);
}

/** `feed` serves WatchMachines and is told of every committed transition. */
export function machineService(deployer: Deployer, reader: MachineReader, feed: MachineFeed): ServiceImplementation<typeof MachineServiceDefinition, HandlerContext> {
  const operatorTransition = async (...args: Parameters<Deployer['operatorTransition']>) => {
    const machine = await deployer.operatorTransition(...args);
    feed.changed();
    return { machine };
  };
  const transition = (t: Parameters<Deployer['operatorTransition']>[1], rpc: string) =>
    async (req: { machineId: string; reason: string; expectedResourceVersion: bigint }, context: HandlerContext & { peer: string }) =>
      operatorTransition(req, t, actorOf(context, rpc));
  return {
    async listMachines(req) {
      // Taken before the listing is read: a watch from it misses nothing the listing lacks.
      const resourceVersion = await feed.safeResourceVersion();
      return { ...(await reader.list(req, pageSize(req.pageSize))), resourceVersion };
    },
    async getMachine(req) {
      if (!req.key) throw new InvalidArgumentError({ field: 'key', description: 'give machine_id, node_id or hostname' });
      const found = await reader.get(req.key);
      if (!found) throw new NotFoundError(`machine ${req.key.value} not found`);
      return found;
    },
    async *watchMachines(req, context) {
      yield* feed.watch(req, context.signal);
    },
    async listAuditEvents(req) {
      return reader.audit(req, pageSize(req.pageSize));
    },
    async commission(req, context) {
      return operatorTransition(req, T.MACHINE_TRANSITION_COMMISSION, actorOf(context, 'Commission'), {
        commission: {
          nodeClass: req.nodeClass,
          pool: req.pool,
          labels: req.labels,
          installProfile: req.installProfile,
          nodeId: req.nodeId,
          hostname: req.hostname,
          failureDomain: req.failureDomain,
        },
      });
    },
    release: transition(T.MACHINE_TRANSITION_RELEASE, 'Release'),
    deploy: transition(T.MACHINE_TRANSITION_DEPLOY, 'Deploy'),
    reinstall: transition(T.MACHINE_TRANSITION_REINSTALL, 'Reinstall'),
    async rescue(req, context) {
      return operatorTransition(req, T.MACHINE_TRANSITION_RESCUE, actorOf(context, 'Rescue'), { rescueKeys: req.sshAuthorizedKeys });
    },
    exitRescue: transition(T.MACHINE_TRANSITION_EXIT_RESCUE, 'ExitRescue'),
    drain: transition(T.MACHINE_TRANSITION_DRAIN, 'Drain'),
    undrain: transition(T.MACHINE_TRANSITION_UNDRAIN, 'Undrain'),
    activate: transition(T.MACHINE_TRANSITION_ACTIVATE, 'Activate'),
    markFailed: transition(T.MACHINE_TRANSITION_MARK_FAILED, 'MarkFailed'),
    retry: transition(T.MACHINE_TRANSITION_RETRY, 'Retry'),
    async delete(req, context) {
      return operatorTransition(req, T.MACHINE_TRANSITION_DELETE, actorOf(context, 'Delete'));
    },
  };
}
