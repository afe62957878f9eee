// Who may call each host-controller RPC. Deny by default: an RPC missing here is refused.
// Operators read with role viewer and change rollouts with role operator; a nix-agent opens
// its own node's stream only (hello.node_id must equal its certificate's CN).
import type { ConnectRequest } from '../../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import { type AccessPolicy, sameNode } from '../../../lib/grpc/auth.js';

const deployments = '/ultracloud.host.v1.HostDeploymentService';
const agents = '/ultracloud.host.v1.HostAgentService';

const viewer = { operator: 'viewer' } as const;
const operator = { operator: 'operator' } as const;

export const HOST_CONTROLLER_POLICY: AccessPolicy = {
  [`${deployments}/ApplyHostDeployments`]: operator,
  [`${deployments}/ListHostDeployments`]: viewer,
  [`${deployments}/GetHostDeployment`]: viewer,
  [`${deployments}/PauseHostDeployment`]: operator,
  [`${deployments}/ResumeHostDeployment`]: operator,
  [`${deployments}/AbortHostDeployment`]: operator,
  [`${deployments}/DeleteHostDeployment`]: operator,
  [`${deployments}/ListHostAgents`]: viewer,
  [`${agents}/Connect`]: { agent: sameNode((m: ConnectRequest) => (m.payload?.$case === 'hello' ? m.payload.value.nodeId : undefined)) },
};
