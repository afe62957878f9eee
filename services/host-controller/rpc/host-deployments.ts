// HostDeploymentService handlers: decode, take the actor from the authenticated principal, call
// the application layer. Errors are domain errors, mapped to statuses by the server middleware.
import type { ServiceImplementation } from 'nice-grpc';
import type { HostDeploymentServiceDefinition } from '../../../gen/ts/ultracloud/host/v1/host_deployment_service.js';
import { ActorKind } from '../../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import type { Principal } from '../../../lib/grpc/auth.js';
import type { HandlerContext } from '../../../lib/grpc/server.js';
import type { Actor, HostRollouts } from '../host-rollouts.js';

const SERVICE = '/ultracloud.host.v1.HostDeploymentService';

function actorName(p: Principal): { name: string; kind: ActorKind } {
  switch (p.kind) {
    case 'operator':
      return { name: p.subject, kind: ActorKind.ACTOR_KIND_OPERATOR };
    case 'agent':
      return { name: `agent:${p.nodeId}`, kind: ActorKind.ACTOR_KIND_AGENT };
    case 'installer':
      return { name: 'installer', kind: ActorKind.ACTOR_KIND_INSTALLER };
    case 'anonymous':
      return { name: 'anonymous', kind: ActorKind.ACTOR_KIND_ANONYMOUS };
  }
}

export function actorOf(context: HandlerContext & { peer: string }, method: string): Actor {
  const { name, kind } = actorName(context.principal);
  return { name, kind: ActorKind[kind], rpc: `${SERVICE}/${method}`, peer: context.peer };
}

export function hostDeploymentService(rollouts: HostRollouts): ServiceImplementation<typeof HostDeploymentServiceDefinition, HandlerContext> {
  return {
    applyHostDeployments: (req, context) => rollouts.apply(req, actorOf(context, 'ApplyHostDeployments')),
    listHostDeployments: (req) => rollouts.list(req),
    getHostDeployment: async (req) => ({ rollout: await rollouts.get(req.name) }),
    pauseHostDeployment: async (req, context) => ({ rollout: await rollouts.pause(req, actorOf(context, 'PauseHostDeployment')) }),
    resumeHostDeployment: async (req, context) => ({ rollout: await rollouts.resume(req, actorOf(context, 'ResumeHostDeployment')) }),
    abortHostDeployment: async (req, context) => ({ rollout: await rollouts.abort(req, actorOf(context, 'AbortHostDeployment')) }),
    deleteHostDeployment: async (req, context) => ({ hostDeployment: await rollouts.delete(req, actorOf(context, 'DeleteHostDeployment')) }),
    listHostAgents: (req) => rollouts.listAgents(req),
  };
}
