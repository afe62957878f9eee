// Operator tokens: issue, list, revoke (each change one transaction with an audit event) and
// verify. Verification reads the database on every call, so a revocation made on any replica
// refuses the token on every replica from its commit on; there is no cache to invalidate.
import { randomBytes } from 'node:crypto';
import { AuditOutcome } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { AlreadyExistsError, NotFoundError, UnauthenticatedError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { hashToken, issueToken } from '../../lib/pki/index.js';
import type { Actor } from './deployer.js';
import { type FileToken, LAST_USED_RESOLUTION_MS, lastUsedIsStale, type NewToken, type TokenRole, tokenStatus } from './domain/operator-tokens.js';
import { appendAudit } from './store/audit.js';
import type { DeployerDb } from './store/machines.js';
import { insertToken, listTokens, markRevoked, recordUse, type StoredToken, tokenByHash, tokenById, tokenByName } from './store/operator-tokens.js';

export const ACCESS_SERVICE = '/ultracloud.deployer.v1.AccessService';

export interface IssuedOperatorToken {
  readonly token: StoredToken;
  /** The bearer secret: returned once, never stored or logged. */
  readonly secret: string;
}

export type TokenReference = { readonly tokenId: string } | { readonly name: string };

/** A token that authenticated a call. */
export interface VerifiedOperatorToken {
  readonly tokenId: string;
  readonly name: string;
  readonly role: TokenRole;
}

function isUniqueViolation(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: string }).code === '23505';
}

function describeExpiry(expiresAt: Date | null): string {
  return expiresAt ? `expires ${expiresAt.toISOString()}` : 'never expires';
}

export class OperatorTokens {
  /** When this process last recorded each token's use; spares the UPDATE within the resolution. */
  private readonly recordedUse = new Map<string, number>();
  private readonly pendingWrites = new Set<Promise<void>>();
  private readonly fileNames: ReadonlySet<string>;

  constructor(
    private readonly db: DeployerDb,
    private readonly log: Logger,
    fileTokens: readonly FileToken[] = [],
    private readonly now: () => Date = () => new Date(),
  ) {
    this.fileNames = new Set(fileTokens.map((t) => t.name));
  }

  async create(spec: NewToken, actor: Actor): Promise<IssuedOperatorToken> {
    if (this.fileNames.has(spec.name)) throw new AlreadyExistsError(`token name "${spec.name}" is used by the operator tokens file`);
    const now = this.now();
    const issued = issueToken('operator', { now, ...(spec.ttlMs === undefined ? {} : { ttlMs: spec.ttlMs }) });
    const token: StoredToken = {
      tokenId: `tok-${randomBytes(8).toString('hex')}`,
      name: spec.name,
      role: spec.role,
      description: spec.description,
      createdBy: actor.name,
      createdAt: now,
      expiresAt: issued.expiresAt ?? null,
      revokedAt: null,
      lastUsedAt: null,
    };
    try {
      await this.db.transaction().execute(async (trx) => {
        await insertToken(trx, token, issued.hash);
        await appendAudit(trx, {
          at: now,
          actor: actor.name,
          actorKind: actor.kind,
          rpc: actor.rpc,
          reason: `created token ${token.name} (${token.tokenId}, role ${token.role}, ${describeExpiry(token.expiresAt)})`,
          outcome: AuditOutcome.AUDIT_OUTCOME_ALLOWED,
          ...(actor.peer ? { peer: actor.peer } : {}),
        });
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new AlreadyExistsError(`a valid token named "${spec.name}" exists; revoke it first or choose another name`);
      throw err;
    }
    this.log.info({ event: 'operator_token.created', token_id: token.tokenId, token_name: token.name, role: token.role, actor: actor.name });
    return { token, secret: issued.token };
  }

  list(includeRevoked: boolean): Promise<StoredToken[]> {
    return listTokens(this.db, { includeRevoked, now: this.now() });
  }

  /** Revokes at once; revoking a revoked token returns it unchanged and records nothing. */
  async revoke(ref: TokenReference, reason: string, actor: Actor): Promise<StoredToken> {
    const revoked = await this.db.transaction().execute(async (trx) => {
      const found = 'tokenId' in ref ? await tokenById(trx, ref.tokenId, { forUpdate: true }) : await tokenByName(trx, ref.name, { forUpdate: true });
      if (!found) {
        if ('name' in ref && this.fileNames.has(ref.name)) {
          throw new NotFoundError(`token ${ref.name} comes from the operator tokens file; remove its line there and restart the deployer`);
        }
        throw new NotFoundError('tokenId' in ref ? `no token has id ${ref.tokenId}` : `no token is named ${ref.name}`);
      }
      if (found.revokedAt) return { token: found, changed: false };
      const at = this.now();
      await markRevoked(trx, found.tokenId, at);
      await appendAudit(trx, {
        at,
        actor: actor.name,
        actorKind: actor.kind,
        rpc: actor.rpc,
        reason: `revoked token ${found.name} (${found.tokenId})${reason ? `: ${reason}` : ''}`,
        outcome: AuditOutcome.AUDIT_OUTCOME_ALLOWED,
        ...(actor.peer ? { peer: actor.peer } : {}),
      });
      return { token: { ...found, revokedAt: at }, changed: true };
    });
    if (revoked.changed) this.log.info({ event: 'operator_token.revoked', token_id: revoked.token.tokenId, token_name: revoked.token.name, actor: actor.name });
    return revoked.token;
  }

  /** The token `secret` belongs to, if it still authenticates; UNAUTHENTICATED otherwise. */
  async verify(secret: string): Promise<VerifiedOperatorToken> {
    const token = await tokenByHash(this.db, hashToken(secret));
    if (!token) throw new UnauthenticatedError('operator token not recognised');
    const now = this.now();
    const status = tokenStatus(token, now);
    if (status === 'revoked') throw new UnauthenticatedError(`operator token ${token.name} was revoked`);
    if (status === 'expired') throw new UnauthenticatedError(`operator token ${token.name} expired`);
    this.noteUse(token, now);
    return { tokenId: token.tokenId, name: token.name, role: token.role };
  }

  /** Waits for last-used writes still in flight (before the database closes). */
  async drain(): Promise<void> {
    await Promise.all([...this.pendingWrites]);
  }

  /** Records the use in the background: the call it authenticates does not wait for a write. */
  private noteUse(token: StoredToken, now: Date): void {
    const recorded = this.recordedUse.get(token.tokenId);
    if (!lastUsedIsStale(token.lastUsedAt, now) || (recorded !== undefined && now.getTime() - recorded < LAST_USED_RESOLUTION_MS)) return;
    this.recordedUse.set(token.tokenId, now.getTime());
    const write = recordUse(this.db, token.tokenId, now, new Date(now.getTime() - LAST_USED_RESOLUTION_MS))
      .catch((err: unknown) => this.log.warn({ event: 'operator_token.last_used_failed', token_id: token.tokenId, err }))
      .finally(() => this.pendingWrites.delete(write));
    this.pendingWrites.add(write);
  }
}
