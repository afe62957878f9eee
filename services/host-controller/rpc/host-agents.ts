// HostAgentService.Connect: the stream itself is the AgentStreams of this replica.
import type { ServiceImplementation } from 'nice-grpc';
import type { HostAgentServiceDefinition } from '../../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import type { HandlerContext } from '../../../lib/grpc/server.js';
import type { AgentStreams } from '../agent-streams.js';

export function hostAgentService(streams: AgentStreams): ServiceImplementation<typeof HostAgentServiceDefinition, HandlerContext> {
  return {
    connect: (requests, context) => streams.connect(requests, context),
  };
}
