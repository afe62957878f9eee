// Turns the authenticated principal of a call into the actor recorded in the audit log.
import { ActorKind, AuditOutcome } from '../../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { PermissionDeniedError } from '../../../lib/errors.js';
import type { AccessDenial, InstallerCredential, Principal } from '../../../lib/grpc/auth.js';
import type { HandlerContext } from '../../../lib/grpc/server.js';
import type { Actor, InstallerCaller } from '../deployer.js';
import type { AuditEntry } from '../store/audit.js';

export function actorOfPrincipal(p: Principal, rpc: string, peer: string): Actor {
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

export function actorOf(context: HandlerContext & { readonly peer: string }, rpc: string): Actor {
  return actorOfPrincipal(context.principal, rpc, context.peer);
}

/**
 * The audit row of a denied call: who (anonymous when the credential itself was refused), which
 * RPC, from where, and why, as the caller was told. Never the credential.
 */
export function denialAuditEntry(denial: AccessDenial, at: Date): AuditEntry {
  const p: Principal = denial.principal ?? { kind: 'anonymous' };
  const actor = actorOfPrincipal(p, denial.method, denial.peer);
  return {
    at,
    actor: actor.name,
    actorKind: actor.kind,
    rpc: denial.method,
    ...(p.kind === 'installer' && p.machineId ? { machineId: p.machineId } : {}),
    ...(p.kind === 'agent' ? { nodeId: p.nodeId } : {}),
    reason: `${denial.code}: ${denial.reason}`,
    outcome: AuditOutcome.AUDIT_OUTCOME_DENIED,
    peer: denial.peer,
  };
}

/** How the call proves which machine it acts for (see InstallerCaller and TokenClaim). */
export function installerCaller(context: HandlerContext, credential: InstallerCredential): InstallerCaller {
  const p = context.principal;
  if (p.kind === 'installer' && p.credential === credential) {
    if (p.machineId) return { machineId: p.machineId };
    if (p.claim) return { claim: p.claim };
  }
  throw new PermissionDeniedError(`this call needs the ${credential} of the machine`);
}

/**
 * The actor of an installer's call naming `machineId`: the deployer writes under it only once
 * the credential is proven to belong to that machine.
 */
export function installerActor(context: HandlerContext & { readonly peer: string }, rpc: string, machineId: string): Actor {
  const p = context.principal;
  return actorOfPrincipal(p.kind === 'installer' && !p.machineId && machineId ? { ...p, machineId } : p, rpc, context.peer);
}
