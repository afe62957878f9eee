// `deployer-ctl status`: asks every control-plane service for its health. Components can run in
// one process (`ultracloud up`) or as separate daemons; `--deployer` etc. point at the latter.
import { ClientError, Status } from 'nice-grpc';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from '../../../gen/ts/grpc/health/v1/health.js';
import { BootstrapServiceDefinition } from '../../../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import { AccessServiceDefinition } from '../../../gen/ts/ultracloud/deployer/v1/access_service.js';
import { ClusterServiceDefinition } from '../../../gen/ts/ultracloud/deployer/v1/cluster_service.js';
import { MachineServiceDefinition } from '../../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { HostAgentServiceDefinition } from '../../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import { HostDeploymentServiceDefinition } from '../../../gen/ts/ultracloud/host/v1/host_deployment_service.js';
import { NodeAgentServiceDefinition } from '../../../gen/ts/ultracloud/runtime/v1/node_agent_service.js';
import { SchedulerServiceDefinition } from '../../../gen/ts/ultracloud/runtime/v1/scheduler_service.js';
import type { Connection } from '../connection.js';
import { colour, EXIT, printJson, renderTable } from '../output.js';

export const COMPONENT_SERVICES = {
  deployer: [BootstrapServiceDefinition, ClusterServiceDefinition, MachineServiceDefinition, AccessServiceDefinition],
  'host-controller': [HostDeploymentServiceDefinition, HostAgentServiceDefinition],
  'fleet-scheduler': [SchedulerServiceDefinition, NodeAgentServiceDefinition],
} as const;

export type ComponentName = keyof typeof COMPONENT_SERVICES;

/** `serving`, `not-serving`, `not-served` (this server does not run it) or `unreachable`. */
export type ServiceHealth = 'serving' | 'not-serving' | 'not-served' | 'unreachable';

export interface ServiceStatus {
  readonly component: ComponentName;
  readonly service: string;
  readonly address: string;
  readonly health: ServiceHealth;
  readonly detail?: string;
}

async function checkOne(connection: Connection, address: string, service: string): Promise<{ health: ServiceHealth; detail?: string }> {
  const health = connection.client(HealthDefinition, address);
  try {
    const res = await health.check({ service }, { deadline: 5_000 });
    return { health: res.status === HealthCheckResponse_ServingStatus.SERVING ? 'serving' : 'not-serving' };
  } catch (err) {
    if (err instanceof ClientError && err.code === Status.NOT_FOUND) return { health: 'not-served' };
    if (err instanceof ClientError) return { health: 'unreachable', detail: `${Status[err.code]}: ${err.details}` };
    throw err;
  }
}

export async function collectStatus(connection: Connection, addresses: Partial<Record<ComponentName, string>>): Promise<ServiceStatus[]> {
  const checks: Promise<ServiceStatus>[] = [];
  for (const [component, definitions] of Object.entries(COMPONENT_SERVICES) as [ComponentName, readonly { fullName: string }[]][]) {
    const address = addresses[component] ?? connection.server;
    for (const { fullName } of definitions) {
      checks.push(checkOne(connection, address, fullName).then((r) => ({ component, service: fullName, address, ...r })));
    }
  }
  return Promise.all(checks);
}

/** 0 when everything served is serving; 3 when nothing answered; 1 otherwise. */
export function statusExitCode(statuses: readonly ServiceStatus[]): number {
  if (statuses.every((s) => s.health === 'unreachable')) return EXIT.unavailable;
  if (statuses.some((s) => s.health === 'not-serving' || s.health === 'unreachable')) return EXIT.unhealthy;
  if (!statuses.some((s) => s.health === 'serving')) return EXIT.unhealthy;
  return EXIT.ok;
}

const HEALTH_COLOUR = { serving: 'green', 'not-serving': 'red', 'not-served': 'dim', unreachable: 'red' } as const;

export async function statusCommand(connection: Connection, addresses: Partial<Record<ComponentName, string>>): Promise<number> {
  const statuses = await collectStatus(connection, addresses);
  if (connection.json) {
    printJson({ services: statuses });
  } else {
    const rows = statuses.map((s) => [s.component, s.service, s.address, colour(s.health, HEALTH_COLOUR[s.health]) + (s.detail ? ` (${s.detail})` : '')]);
    console.log(renderTable(['component', 'service', 'address', 'health'], rows));
  }
  return statusExitCode(statuses);
}
