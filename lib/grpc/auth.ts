// Authentication and authorization as one server middleware. Every RPC a server exposes must be
// listed in its access policy; an RPC missing from the table is denied, so a new RPC cannot be
// reachable by accident. Credentials travel in the `authorization` metadata as `Bearer <secret>`;
// agents authenticate with a client certificate issued by the cluster CA instead (mTLS, see
// client-certificate.ts). Every denial, whether decided here or by a handler's own ownership
// check further in, is reported once through `onDenied` (log and audit trail).
import { ServerError, Status } from 'nice-grpc';
import type { CallContext, ServerMiddlewareCall } from 'nice-grpc-common';
import { DomainError, PermissionDeniedError, UnauthenticatedError } from '../errors.js';
import { clientCertificateFrom, type VerifiedClientCertificate } from './client-certificate.js';

export const OPERATOR_ROLES = ['viewer', 'operator', 'admin'] as const;
export type OperatorRole = (typeof OPERATOR_ROLES)[number];

/** Installer credentials, in the order an installer receives them during one boot. */
export type InstallerCredential = 'join-token' | 'session-secret' | 'install-token';

/** Who is calling, as established by an authenticator or the client certificate. */
export type Principal =
  | { readonly kind: 'anonymous' }
  | {
      readonly kind: 'operator';
      readonly role: OperatorRole;
      /** Token name; the actor in audit events. */
      readonly subject: string;
      /** Id of an issued token (AccessService); absent for the admin token and file tokens. */
      readonly tokenId?: string;
    }
  | {
      readonly kind: 'installer';
      readonly credential: InstallerCredential;
      /** The machine the credential was issued to, when the authenticator looked it up. */
      readonly machineId?: string;
      /** Otherwise the look-up is left to the handler (see TokenClaim). */
      readonly claim?: TokenClaim;
    }
  | { readonly kind: 'agent'; readonly nodeId: string };

/**
 * A bearer token recognised by its kind but not yet looked up. The handler proves it where it
 * acts: its statement matches the token's hash on the row it changes (no extra round trip on the
 * hot path), and whenever that statement does not answer, `verify` looks the token up, throwing
 * UnauthenticatedError as the authenticator would have, before any other outcome is returned.
 */
export interface TokenClaim {
  /** The token's hash, as stored. */
  readonly tokenHash: string;
  /** The machine the token was issued to; throws UnauthenticatedError when it is not valid. */
  verify(): Promise<string>;
}

/** Which agents may call an RPC. */
export interface AgentRule {
  /**
   * The node_id a request names (for a request stream: one message; undefined when that message
   * names none). The certificate's CN must equal it; a unary request must name one.
   */
  readonly nodeIdOf?: (message: unknown) => string | undefined;
}

/** Who may call one RPC. `public` RPCs (health, reflection) need no credential. */
export type AccessRule =
  | { readonly public: true }
  | {
      readonly public?: false;
      /** Least operator role allowed; higher roles are allowed too. */
      readonly operator?: OperatorRole;
      readonly installer?: readonly InstallerCredential[];
      /** `true`: any agent; a rule: agents speaking for their own node only. */
      readonly agent?: boolean | AgentRule;
    };

/** Full method path (`/ultracloud.deployer.v1.MachineService/ListMachines`) to its rule. */
export type AccessPolicy = Readonly<Record<string, AccessRule>>;

/** An agent rule for requests whose node_id `pick` reads (typed for the service's request). */
export function sameNode<Request>(pick: (message: Request) => string | undefined): AgentRule {
  return { nodeIdOf: (message) => pick(message as Request) };
}

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

export type DenialCode = 'UNAUTHENTICATED' | 'PERMISSION_DENIED';

export interface AccessDenial {
  readonly method: string;
  readonly peer: string;
  /** Who was refused; undefined when the credential itself was refused. */
  readonly principal: Principal | undefined;
  readonly code: DenialCode;
  /** Why, as the client is told; never contains the credential. */
  readonly reason: string;
}

export function bearerFrom(authorization: string | undefined): string | undefined {
  if (!authorization) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  return m ? m[1] : undefined;
}

const ROLE_RANK: Record<OperatorRole, number> = { viewer: 0, operator: 1, admin: 2 };

/** Whether the rule admits the principal at all (an agent's node is checked per request). */
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
      return rule.agent !== undefined && rule.agent !== false;
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

/** node_id: a lowercase RFC 1123 label, as the deployer assigns them. */
const NODE_ID = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export interface AuthContext {
  readonly principal: Principal;
}

export interface AuthMiddlewareOptions {
  readonly policy: AccessPolicy;
  readonly authenticators: readonly Authenticator[];
  /**
   * Told about every denial (for the log and the audit trail); never given the secret. Called
   * without waiting: it must queue slow work, not do it, so a flood of denials cannot hold calls.
   */
  readonly onDenied?: (denial: AccessDenial) => void | Promise<void>;
}

/**
 * A bearer token wins over a client certificate: the host-controller, say, may present its
 * control-plane certificate and still act with an operator token. Without either the caller is
 * anonymous.
 */
async function resolvePrincipal(options: AuthMiddlewareOptions, request: AuthRequest, certificate: VerifiedClientCertificate | undefined): Promise<Principal> {
  if (request.bearer !== undefined) {
    for (const a of options.authenticators) {
      const p = await a.authenticate(request);
      if (p) return p;
    }
    throw new UnauthenticatedError('credential not recognised');
  }
  if (certificate) {
    if (!NODE_ID.test(certificate.commonName)) throw new UnauthenticatedError('client certificate does not name a node (CN is not a node id)');
    return { kind: 'agent', nodeId: certificate.commonName };
  }
  return { kind: 'anonymous' };
}

function nodeMismatch(principal: Principal & { kind: 'agent' }, named: string | undefined, method: string): PermissionDeniedError {
  return new PermissionDeniedError(
    named ? `agent:${principal.nodeId} may not call ${method} for node ${named}` : `agent:${principal.nodeId} must name its own node in ${method}`,
  );
}

/** Checks every message of an agent's request stream that names a node. */
async function* sameNodeStream<T>(messages: AsyncIterable<T>, principal: Principal & { kind: 'agent' }, rule: AgentRule, method: string): AsyncGenerator<T, void, undefined> {
  for await (const message of messages) {
    const named = rule.nodeIdOf?.(message);
    if (named !== undefined && named !== principal.nodeId) throw nodeMismatch(principal, named, method);
    yield message;
  }
}

function denialCode(err: unknown): DenialCode | undefined {
  if (err instanceof DomainError) {
    if (err.kind === 'unauthenticated') return 'UNAUTHENTICATED';
    if (err.kind === 'permission-denied') return 'PERMISSION_DENIED';
    return undefined;
  }
  if (err instanceof ServerError) {
    if (err.code === Status.UNAUTHENTICATED) return 'UNAUTHENTICATED';
    if (err.code === Status.PERMISSION_DENIED) return 'PERMISSION_DENIED';
  }
  return undefined;
}

/** The principal of a call about to run, or the denial, reported once through `onDenied`. */
export interface CallAuthorizer {
  /** Resolves the caller and checks the method's rule; throws UNAUTHENTICATED or PERMISSION_DENIED (reported). */
  authorize(request: AuthRequest, certificate: VerifiedClientCertificate | undefined): Promise<Principal>;
  /**
   * What a handler threw, seen by the authorizer: a denial decided further in (a valid session
   * secret used for another machine, an agent stream naming another node) is reported like any
   * other. A claimed token the handler found invalid is a refused credential (no principal).
   */
  handlerFailed(request: AuthRequest, principal: Principal, err: unknown): void;
  /** The method's agent rule when the principal is an agent it restricts to its own node. */
  agentRule(method: string, principal: Principal): AgentRule | undefined;
}

export function callAuthorizer(options: AuthMiddlewareOptions): CallAuthorizer {
  const report = (denial: AccessDenial) => {
    try {
      const pending = options.onDenied?.(denial);
      if (pending) pending.catch(() => undefined);
    } catch {
      // The denial is still returned to the caller; reporting is best effort by contract.
    }
  };
  return {
    async authorize(request, certificate) {
      const { method } = request;
      const rule = options.policy[method];
      let principal: Principal | undefined;
      try {
        principal = rule?.public ? { kind: 'anonymous' } : await resolvePrincipal(options, request, certificate);
        if (!rule) throw new PermissionDeniedError(`${method} is not in the access policy`);
        if (!isAllowed(rule, principal)) {
          throw principal.kind === 'anonymous'
            ? new UnauthenticatedError('a credential is required (authorization: Bearer <token>, or a client certificate)')
            : new PermissionDeniedError(`${describePrincipal(principal)} may not call ${method}`);
        }
        return principal;
      } catch (err) {
        const code = denialCode(err);
        // Anything else (a database outage while looking a token up) is a failure, not a denial.
        if (code) report({ method, peer: request.peer, principal, code, reason: (err as Error).message });
        throw err;
      }
    },
    handlerFailed(request, principal, err) {
      const code = denialCode(err);
      if (!code) return;
      const claimRefused = code === 'UNAUTHENTICATED' && principal.kind === 'installer' && principal.claim !== undefined;
      report({ method: request.method, peer: request.peer, principal: claimRefused ? undefined : principal, code, reason: err instanceof ServerError ? err.details : (err as Error).message });
    },
    agentRule(method, principal) {
      const rule = options.policy[method];
      return rule && !rule.public && principal.kind === 'agent' && typeof rule.agent === 'object' && rule.agent.nodeIdOf ? rule.agent : undefined;
    },
  };
}

/** Checks, for an agent restricted to its own node, that a message naming a node names its own. */
export function checkAgentMessage(rule: AgentRule | undefined, principal: Principal, method: string, message: unknown): void {
  if (!rule?.nodeIdOf || principal.kind !== 'agent') return;
  const named = rule.nodeIdOf(message);
  if (named !== undefined && named !== principal.nodeId) throw nodeMismatch(principal, named, method);
}

export function authMiddleware(options: AuthMiddlewareOptions) {
  const authorizer = callAuthorizer(options);
  return async function* authorize<Request, Response>(
    call: ServerMiddlewareCall<Request, Response, AuthContext>,
    context: CallContext,
  ): AsyncGenerator<Response, Response | void, undefined> {
    const method = call.method.path;
    const request: AuthRequest = {
      method,
      bearer: bearerFrom(context.metadata.get('authorization')),
      peer: context.peer,
    };
    const principal = await authorizer.authorize(request, clientCertificateFrom(context.metadata));
    let forwarded = call.request;
    const agentRule = authorizer.agentRule(method, principal);
    try {
      if (agentRule?.nodeIdOf && principal.kind === 'agent') {
        if (call.requestStream) {
          forwarded = sameNodeStream(call.request as AsyncIterable<unknown>, principal, agentRule, method) as Request;
        } else {
          const named = agentRule.nodeIdOf(call.request);
          if (!named || named !== principal.nodeId) throw nodeMismatch(principal, named, method);
        }
      }
      return yield* call.next(forwarded, { ...context, principal });
    } catch (err) {
      authorizer.handlerFailed(request, principal, err);
      throw err;
    }
  };
}
