// Authentication and authorization as one server middleware. Every RPC a server exposes must be
// listed in its access policy; an RPC missing from the table is denied, so a new RPC cannot be
// reachable by accident. Credentials travel in the `authorization` metadata as `Bearer <secret>`.
import type { CallContext, ServerMiddlewareCall } from 'nice-grpc-common';
import { PermissionDeniedError, UnauthenticatedError } from '../errors.js';

export const OPERATOR_ROLES = ['viewer', 'operator', 'admin'] as const;
export type OperatorRole = (typeof OPERATOR_ROLES)[number];

/** Installer credentials, in the order an installer receives them during one boot. */
export type InstallerCredential = 'join-token' | 'session-secret' | 'install-token';

/** Who is calling, as established by an authenticator. */
export type Principal =
  | { readonly kind: 'anonymous' }
  | { readonly kind: 'operator'; readonly role: OperatorRole; readonly subject: string }
  | { readonly kind: 'installer'; readonly credential: InstallerCredential; readonly machineId?: string }
  | { readonly kind: 'agent'; readonly nodeId: string };

/** Who may call one RPC. `public` RPCs (health, reflection) need no credential. */
export type AccessRule =
  | { readonly public: true }
  | {
      readonly public?: false;
      /** Least operator role allowed; higher roles are allowed too. */
      readonly operator?: OperatorRole;
      readonly installer?: readonly InstallerCredential[];
      readonly agent?: boolean;
    };

/** Full method path (`/ultracloud.deployer.v1.MachineService/ListMachines`) to its rule. */
export type AccessPolicy = Readonly<Record<string, AccessRule>>;

export interface AuthRequest {
  readonly method: string;
  readonly bearer: string | undefined;
  readonly peer: string;
}

/**
 * Turns a credential into a principal. Returns undefined when the credential is not of its kind
 * (the next authenticator is tried); throws UnauthenticatedError when it is of its kind but invalid.
 */
export interface Authenticator {
  authenticate(request: AuthRequest): Promise<Principal | undefined>;
}

export interface AccessDenial {
  readonly method: string;
  readonly peer: string;
  readonly principal: Principal | undefined;
  readonly reason: string;
}

export function bearerFrom(authorization: string | undefined): string | undefined {
  if (!authorization) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  return m ? m[1] : undefined;
}

const ROLE_RANK: Record<OperatorRole, number> = { viewer: 0, operator: 1, admin: 2 };

export function isAllowed(rule: AccessRule | undefined, principal: Principal): boolean {
  if (!rule) return false;
  if (rule.public) return true;
  switch (principal.kind) {
    case 'anonymous':
      return false;
    case 'operator':
      return rule.operator !== undefined && ROLE_RANK[principal.role] >= ROLE_RANK[rule.operator];
    case 'installer':
      return rule.installer?.includes(principal.credential) ?? false;
    case 'agent':
      return rule.agent === true;
  }
}

export function describePrincipal(p: Principal): string {
  switch (p.kind) {
    case 'anonymous':
      return 'anonymous';
    case 'operator':
      return `operator:${p.subject}(${p.role})`;
    case 'installer':
      return p.machineId ? `installer:${p.machineId}(${p.credential})` : `installer(${p.credential})`;
    case 'agent':
      return `agent:${p.nodeId}`;
  }
}

export interface AuthContext {
  readonly principal: Principal;
}

export interface AuthMiddlewareOptions {
  readonly policy: AccessPolicy;
  readonly authenticators: readonly Authenticator[];
  /** Told about every denial (for the log and the audit trail); never given the secret. */
  readonly onDenied?: (denial: AccessDenial) => void | Promise<void>;
}

async function resolvePrincipal(options: AuthMiddlewareOptions, request: AuthRequest): Promise<Principal> {
  if (request.bearer === undefined) return { kind: 'anonymous' };
  for (const a of options.authenticators) {
    const p = await a.authenticate(request);
    if (p) return p;
  }
  throw new UnauthenticatedError('credential not recognised');
}

export function authMiddleware(options: AuthMiddlewareOptions) {
  return async function* authorize<Request, Response>(
    call: ServerMiddlewareCall<Request, Response, AuthContext>,
    context: CallContext,
  ): AsyncGenerator<Response, Response | void, undefined> {
    const method = call.method.path;
    const rule = options.policy[method];
    const request: AuthRequest = {
      method,
      bearer: bearerFrom(context.metadata.get('authorization')),
      peer: context.peer,
    };
    let principal: Principal | undefined;
    try {
      principal = rule?.public ? { kind: 'anonymous' } : await resolvePrincipal(options, request);
      if (!rule) throw new PermissionDeniedError(`${method} is not in the access policy`);
      if (!isAllowed(rule, principal)) {
        throw principal.kind === 'anonymous'
          ? new UnauthenticatedError('a credential is required (authorization: Bearer <token>)')
          : new PermissionDeniedError(`${describePrincipal(principal)} may not call ${method}`);
      }
    } catch (err) {
      await options.onDenied?.({ method, peer: context.peer, principal, reason: (err as Error).message });
      throw err;
    }
    return yield* call.next(call.request, { ...context, principal });
  };
}
