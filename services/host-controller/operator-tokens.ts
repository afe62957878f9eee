// Operator tokens on a host-controller run as its own daemon. The deployer owns them (issues,
// hashes and revokes them), so the controller asks the deployer's AccessService.WhoAmI, with the
// caller's token, who a token it has not seen lately belongs to. Answers are kept for `ttlMs`
// (a revocation takes effect here within that time; refusals are kept for a shorter while), keyed
// by the token's hash. A deployer that cannot be reached makes the call fail with UNAVAILABLE:
// a token is never accepted unverified.
import { ClientError, Status } from 'nice-grpc';
import { AccessServiceDefinition, Role } from '../../gen/ts/ultracloud/deployer/v1/access_service.js';
import { UnauthenticatedError, UnavailableError } from '../../lib/errors.js';
import type { Authenticator, AuthRequest, OperatorRole, Principal } from '../../lib/grpc/auth.js';
import { createServiceClient, openChannel } from '../../lib/grpc/client.js';
import { hashToken } from '../../lib/pki/index.js';
import type { DeployerEndpoint } from './machine-inventory.js';

const ROLES: ReadonlyMap<Role, OperatorRole> = new Map([
  [Role.ROLE_VIEWER, 'viewer'],
  [Role.ROLE_OPERATOR, 'operator'],
  [Role.ROLE_ADMIN, 'admin'],
]);

export interface DeployerTokenVerifierOptions {
  readonly endpoint: () => DeployerEndpoint;
  /** How long an accepted token is trusted without asking again. Default 10 s. */
  readonly ttlMs?: number;
  /** How long a refused token is refused without asking again. Default 2 s. */
  readonly refusedTtlMs?: number;
  /** Tokens remembered at most (oldest forgotten first). Default 10,000. */
  readonly maxEntries?: number;
  readonly now?: () => number;
}

interface Entry {
  readonly principal: Principal | undefined;
  readonly until: number;
}

export class DeployerTokenVerifier implements Authenticator {
  private readonly entries = new Map<string, Entry>();
  private readonly asking = new Map<string, Promise<Principal | undefined>>();
  private channel: ReturnType<typeof openChannel> | undefined;

  constructor(private readonly options: DeployerTokenVerifierOptions) {}

  async authenticate({ bearer }: AuthRequest): Promise<Principal | undefined> {
    if (!bearer) return undefined;
    const key = hashToken(bearer);
    const now = (this.options.now ?? Date.now)();
    const known = this.entries.get(key);
    let principal: Principal | undefined;
    if (known && known.until > now) principal = known.principal;
    else {
      let pending = this.asking.get(key);
      if (!pending) {
        pending = this.ask(bearer, key).finally(() => this.asking.delete(key));
        this.asking.set(key, pending);
      }
      principal = await pending;
    }
    if (!principal) throw new UnauthenticatedError('token not recognised by the deployer (unknown, expired or revoked)');
    return principal;
  }

  close(): void {
    this.channel?.close();
    this.channel = undefined;
  }

  private async ask(bearer: string, key: string): Promise<Principal | undefined> {
    const endpoint = this.options.endpoint();
    this.channel ??= openChannel(endpoint.address, endpoint.caFile ? { tls: { caFile: endpoint.caFile } } : {});
    const client = createServiceClient(AccessServiceDefinition, this.channel, { token: bearer, defaultDeadlineMs: 5_000 });
    let principal: Principal | undefined;
    try {
      const who = await client.whoAmI({});
      const role = ROLES.get(who.role);
      principal = role ? { kind: 'operator', role, subject: who.subject, ...(who.tokenId ? { tokenId: who.tokenId } : {}) } : undefined;
    } catch (err) {
      const code = err instanceof ClientError ? err.code : undefined;
      if (code !== Status.UNAUTHENTICATED && code !== Status.PERMISSION_DENIED) {
        throw new UnavailableError(`cannot verify the token with the deployer at ${endpoint.address}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    const now = (this.options.now ?? Date.now)();
    this.entries.delete(key);
    this.entries.set(key, { principal, until: now + (principal ? (this.options.ttlMs ?? 10_000) : (this.options.refusedTtlMs ?? 2_000)) });
    const max = this.options.maxEntries ?? 10_000;
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= max) break;
      this.entries.delete(oldest);
    }
    return principal;
  }
}
