// HostAgentService.Connect: the stream itself is the AgentStreams of this replica. Every node
// holds one for as long as its agent runs, so it is served directly on grpc-js (see
// lib/grpc/direct-stream.ts), under the same access policy, log and metrics as every RPC.
import type { HostAgentServiceDefinition } from '../../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import { bindDirectService, type ServiceBinding } from '../../../lib/grpc/server.js';
import type { AgentStreams } from '../agent-streams.js';

export function hostAgentService(definition: typeof HostAgentServiceDefinition, streams: AgentStreams): ServiceBinding {
  return bindDirectService(definition, { connect: (call) => streams.connect(call) });
}
