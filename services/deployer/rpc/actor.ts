// Turns the authenticated principal of a call into the actor recorded in the audit log.
import { ActorKind } from '../../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { PermissionDeniedError } from '../../../lib/errors.js';
import type { InstallerCredential } from '../../../lib/grpc/auth.js';
import type { HandlerContext } from '../../../lib/grpc/server.js';
import type { Actor } from '../deployer.js';

export function actorOf(context: HandlerContext & { readonly peer: string }, rpc: string): Actor {
  const p = context.principal;
  const peer = context.peer;
  switch (p.kind) {
    case 'operator':
      return { name: p.subject, kind: ActorKind.ACTOR_KIND_OPERATOR, rpc, peer };
    case 'installer':
      return { name: p.machineId ? `installer:${p.machineId}` : 'installer', kind: ActorKind.ACTOR_KIND_INSTALLER, rpc, peer };
    case 'agent':
      return { name: `agent:${p.nodeId}`, kind: ActorKind.ACTOR_KIND_AGENT, rpc, peer };
    case 'anonymous':
      return { name: 'anonymous', kind: ActorKind.ACTOR_KIND_ANONYMOUS, rpc, peer };
  }
}

/** The machine an installer credential was issued to. */
export function installerMachine(context: HandlerContext, credential: InstallerCredential): string {
  const p = context.principal;
  if (p.kind !== 'installer' || p.credential !== credential || !p.machineId) {
    throw new PermissionDeniedError(`this call needs the ${credential} of the machine`);
  }
  return p.machineId;
}
