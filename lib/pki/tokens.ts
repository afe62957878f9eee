// Bearer tokens: ISO join tokens, per-boot session secrets, single-use install tokens and operator
// tokens. A readable prefix says what a leaked string is (and lets secret scanners find it); the
// rest is 256 random bits. Only the hash is stored.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export const TOKEN_PREFIXES = {
  join: 'ucjoin_',
  session: 'ucsess_',
  install: 'ucinst_',
  operator: 'ucop_',
} as const;

export type TokenKind = keyof typeof TOKEN_PREFIXES;

const TOKEN_BYTES = 32;

export interface IssuedToken {
  /** The bearer string; hand it out once, never store or log it. */
  readonly token: string;
  /** What to store: `hashToken(token)`. */
  readonly hash: string;
  readonly expiresAt?: Date;
}

export function generateToken(kind: TokenKind): string {
  return TOKEN_PREFIXES[kind] + randomBytes(TOKEN_BYTES).toString('base64url');
}

/** A token plus its stored hash and, when `ttlMs` is given, its expiry. */
export function issueToken(kind: TokenKind, options: { ttlMs?: number; now?: Date } = {}): IssuedToken {
  const token = generateToken(kind);
  const hash = hashToken(token);
  if (options.ttlMs === undefined) return { token, hash };
  return { token, hash, expiresAt: new Date((options.now ?? new Date()).getTime() + options.ttlMs) };
}

/**
 * SHA-256, hex. A slow KDF (argon2, scrypt) defends guessable passwords; these tokens carry 256
 * random bits, so a plain hash is already infeasible to invert and keeps verification cheap.
 */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** The kind named by the token's prefix, or undefined for a string that is not one of ours. */
export function tokenKind(token: string): TokenKind | undefined {
  for (const [kind, prefix] of Object.entries(TOKEN_PREFIXES) as [TokenKind, string][]) {
    if (token.startsWith(prefix)) return kind;
  }
  return undefined;
}

/**
 * True when `token` hashes to `storedHash` (and carries the prefix of `kind`, when given).
 * Compares the digests in constant time so response timing reveals nothing about the stored hash.
 */
export function verifyToken(token: string, storedHash: string, kind?: TokenKind): boolean {
  if (kind !== undefined && !token.startsWith(TOKEN_PREFIXES[kind])) return false;
  const expected = Buffer.from(storedHash, 'hex');
  const actual = createHash('sha256').update(token, 'utf8').digest();
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}
