// Operator tokens issued through AccessService: metadata plus the SHA-256 of the secret.
import type { TokenRole } from '../domain/operator-tokens.js';
import type { DeployerDb } from './machines.js';
import type { OperatorTokensTable } from './tables.js';

export interface StoredToken {
  readonly tokenId: string;
  readonly name: string;
  readonly role: TokenRole;
  readonly description: string;
  readonly createdBy: string;
  readonly createdAt: Date;
  readonly expiresAt: Date | null;
  readonly revokedAt: Date | null;
  readonly lastUsedAt: Date | null;
}

function fromRow(r: OperatorTokensTable): StoredToken {
  return {
    tokenId: r.token_id,
    name: r.name,
    role: r.role as TokenRole,
    description: r.description,
    createdBy: r.created_by,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    revokedAt: r.revoked_at,
    lastUsedAt: r.last_used_at,
  };
}

export async function insertToken(db: DeployerDb, token: StoredToken, hash: string): Promise<void> {
  await db
    .insertInto('operator_tokens')
    .values({
      token_id: token.tokenId,
      name: token.name,
      role: token.role,
      token_hash: hash,
      description: token.description,
      created_by: token.createdBy,
      created_at: token.createdAt,
      expires_at: token.expiresAt,
      revoked_at: null,
      last_used_at: null,
    })
    .execute();
}

/** The token a secret hashes to, revoked and expired ones included (the caller decides). */
export async function tokenByHash(db: DeployerDb, hash: string): Promise<StoredToken | undefined> {
  const r = await db.selectFrom('operator_tokens').selectAll().where('token_hash', '=', hash).executeTakeFirst();
  return r ? fromRow(r) : undefined;
}

export async function tokenById(db: DeployerDb, tokenId: string, options: { forUpdate?: boolean } = {}): Promise<StoredToken | undefined> {
  let q = db.selectFrom('operator_tokens').selectAll().where('token_id', '=', tokenId);
  if (options.forUpdate) q = q.forUpdate();
  const r = await q.executeTakeFirst();
  return r ? fromRow(r) : undefined;
}

/** The unrevoked token with this name if there is one, else the most recently created one. */
export async function tokenByName(db: DeployerDb, name: string, options: { forUpdate?: boolean } = {}): Promise<StoredToken | undefined> {
  let q = db
    .selectFrom('operator_tokens')
    .selectAll()
    .where('name', '=', name)
    .orderBy((eb) => eb.case().when('revoked_at', 'is', null).then(0).else(1).end())
    .orderBy('created_at', 'desc')
    .limit(1);
  if (options.forUpdate) q = q.forUpdate();
  const r = await q.executeTakeFirst();
  return r ? fromRow(r) : undefined;
}

/** Newest first; without `includeRevoked` only tokens that still authenticate at `now`. */
export async function listTokens(db: DeployerDb, options: { includeRevoked: boolean; now: Date }): Promise<StoredToken[]> {
  let q = db.selectFrom('operator_tokens').selectAll().orderBy('created_at', 'desc').orderBy('token_id', 'desc');
  if (!options.includeRevoked) {
    q = q.where('revoked_at', 'is', null).where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', options.now)]));
  }
  return (await q.execute()).map(fromRow);
}

export async function markRevoked(db: DeployerDb, tokenId: string, at: Date): Promise<void> {
  await db.updateTable('operator_tokens').set({ revoked_at: at }).where('token_id', '=', tokenId).where('revoked_at', 'is', null).execute();
}

/** Records a use unless one at or after `unlessSince` is already recorded (by any replica). */
export async function recordUse(db: DeployerDb, tokenId: string, at: Date, unlessSince: Date): Promise<void> {
  await db
    .updateTable('operator_tokens')
    .set({ last_used_at: at })
    .where('token_id', '=', tokenId)
    .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', unlessSince)]))
    .execute();
}
