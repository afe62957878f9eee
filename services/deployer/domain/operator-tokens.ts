// Operator tokens: which names, roles and lifetimes are valid, the format of the operator tokens
// file, and whether a stored token still authenticates. Pure functions over plain data.
import { Role } from '../../../gen/ts/ultracloud/deployer/v1/access_service.js';
import type { Duration } from '../../../gen/ts/google/protobuf/duration.js';
import { type FieldViolation, InvalidArgumentError } from '../../../lib/errors.js';

/** Roles in increasing power; the same three the access policy knows. */
export const TOKEN_ROLES = ['viewer', 'operator', 'admin'] as const;
export type TokenRole = (typeof TOKEN_ROLES)[number];

const ROLE_BY_PROTO: Partial<Record<Role, TokenRole>> = {
  [Role.ROLE_VIEWER]: 'viewer',
  [Role.ROLE_OPERATOR]: 'operator',
  [Role.ROLE_ADMIN]: 'admin',
};

export function roleFromProto(role: Role): TokenRole | undefined {
  return ROLE_BY_PROTO[role];
}

export function roleToProto(role: TokenRole): Role {
  switch (role) {
    case 'viewer':
      return Role.ROLE_VIEWER;
    case 'operator':
      return Role.ROLE_OPERATOR;
    case 'admin':
      return Role.ROLE_ADMIN;
  }
}

export function isTokenRole(value: string): value is TokenRole {
  return (TOKEN_ROLES as readonly string[]).includes(value);
}

/** Lowercase letters, digits, '-', '_' and '.', at most 63; starting with a letter or digit. */
const TOKEN_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const MAX_DESCRIPTION = 1024;

export function tokenNameProblem(name: string): string | undefined {
  if (name === '') return 'required';
  if (!TOKEN_NAME.test(name)) {
    return `"${name}" is not a token name: lowercase letters, digits, '-', '_' and '.', starting with a letter or digit, at most 63 characters`;
  }
  return undefined;
}

/** A token to issue, validated. */
export interface NewToken {
  readonly name: string;
  readonly role: TokenRole;
  /** Lifetime; undefined: never expires. */
  readonly ttlMs: number | undefined;
  readonly description: string;
}

export interface NewTokenRequest {
  readonly name: string;
  readonly role: Role;
  readonly ttl?: Duration | undefined;
  readonly description: string;
}

/** Checks a CreateToken request; every problem at once, named by its field. */
export function validateNewToken(request: NewTokenRequest): NewToken {
  const problems: FieldViolation[] = [];
  const nameProblem = tokenNameProblem(request.name);
  if (nameProblem) problems.push({ field: 'name', description: nameProblem });
  const role = roleFromProto(request.role);
  if (!role) problems.push({ field: 'role', description: 'required: ROLE_VIEWER, ROLE_OPERATOR or ROLE_ADMIN' });
  let ttlMs: number | undefined;
  if (request.ttl) {
    const ms = Number(request.ttl.seconds) * 1000 + Math.trunc(request.ttl.nanos / 1e6);
    if (request.ttl.seconds < 0n || request.ttl.nanos < 0) problems.push({ field: 'ttl', description: 'must not be negative' });
    else if (ms > 0) ttlMs = ms;
  }
  if (request.description.length > MAX_DESCRIPTION) problems.push({ field: 'description', description: `at most ${MAX_DESCRIPTION} characters` });
  if (problems.length > 0 || !role) throw new InvalidArgumentError(problems);
  return { name: request.name, role, ttlMs, description: request.description };
}

/** What a stored token looks like to the rules below. */
export interface TokenLifetime {
  readonly expiresAt: Date | null;
  readonly revokedAt: Date | null;
}

export type TokenStatus = 'valid' | 'expired' | 'revoked';

export function tokenStatus(token: TokenLifetime, now: Date): TokenStatus {
  if (token.revokedAt) return 'revoked';
  if (token.expiresAt && token.expiresAt.getTime() <= now.getTime()) return 'expired';
  return 'valid';
}

/** `last_used_at` is written at most this often per token, so verification stays a read. */
export const LAST_USED_RESOLUTION_MS = 60_000;

export function lastUsedIsStale(lastUsedAt: Date | null, now: Date): boolean {
  return !lastUsedAt || now.getTime() - lastUsedAt.getTime() >= LAST_USED_RESOLUTION_MS;
}

/** One token of the operator tokens file. */
export interface FileToken {
  readonly role: TokenRole;
  /** SHA-256 of the secret, lowercase hex. */
  readonly hash: string;
  readonly name: string;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Parses the operator tokens file: one token a line, `<role> <sha256 hex of the secret> <name>`,
 * separated by spaces or tabs; blank lines and lines starting with `#` are ignored. Throws an
 * InvalidArgumentError naming every bad line (`line 3: ...`).
 */
export function parseOperatorTokensFile(text: string): FileToken[] {
  const tokens: FileToken[] = [];
  const problems: FieldViolation[] = [];
  const names = new Map<string, number>();
  const hashes = new Map<string, number>();
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const at = `line ${index + 1}`;
    const fields = line.split(/\s+/);
    if (fields.length !== 3) {
      problems.push({ field: at, description: `expected "<role> <sha256 hex> <name>", got ${fields.length} field${fields.length === 1 ? '' : 's'}` });
      return;
    }
    const [role, rawHash, name] = fields as [string, string, string];
    const hash = rawHash.toLowerCase();
    const before = problems.length;
    if (!isTokenRole(role)) problems.push({ field: at, description: `unknown role "${role}" (expected ${TOKEN_ROLES.join(', ')})` });
    if (!SHA256_HEX.test(hash)) problems.push({ field: at, description: 'the second field must be the SHA-256 of the token as 64 hex digits (e.g. printf %s "$TOKEN" | sha256sum)' });
    const nameProblem = tokenNameProblem(name);
    if (nameProblem) problems.push({ field: at, description: nameProblem });
    if (names.has(name)) problems.push({ field: at, description: `name "${name}" is already used on line ${names.get(name)}` });
    if (hashes.has(hash)) problems.push({ field: at, description: `the same token is already listed on line ${hashes.get(hash)}` });
    names.set(name, index + 1);
    hashes.set(hash, index + 1);
    if (problems.length === before) tokens.push({ role: role as TokenRole, hash, name });
  });
  if (problems.length > 0) throw new InvalidArgumentError(problems);
  return tokens;
}
