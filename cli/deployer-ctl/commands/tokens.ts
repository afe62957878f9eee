// `deployer-ctl tokens create|list|revoke|whoami`: operator bearer tokens (AccessService; admin
// only, except whoami).
// Rotation is create-then-revoke: issue the new token, move its users over, revoke the old one.
import type { Command } from 'commander';
import {
  AccessServiceDefinition,
  CreateTokenResponse,
  ListTokensResponse,
  RevokeTokenResponse,
  Role,
  type Token,
  WhoAmIResponse,
} from '../../../gen/ts/ultracloud/deployer/v1/access_service.js';
import type { Connection } from '../connection.js';
import { EXIT, printJson, renderTable, UsageError } from '../output.js';
import { humanAge } from './machines.js';

const ROLES: Record<string, Role> = { viewer: Role.ROLE_VIEWER, operator: Role.ROLE_OPERATOR, admin: Role.ROLE_ADMIN };

export function parseRole(value: string): Role {
  const role = ROLES[value.trim().toLowerCase()];
  if (role === undefined) throw new UsageError(`--role ${value}: expected viewer, operator or admin`);
  return role;
}

export function roleLabel(role: Role): string {
  return Object.entries(ROLES).find(([, r]) => r === role)?.[0] ?? 'unknown';
}

const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 } as const;

/** `--expires 30d` (s, m, h, d or w) as a token lifetime in seconds; `never` or absent: none. */
export function parseExpires(value: string | undefined): bigint | undefined {
  if (value === undefined || value.trim().toLowerCase() === 'never') return undefined;
  const m = /^(\d+)([smhdw])$/.exec(value.trim());
  if (!m || Number(m[1]) === 0) throw new UsageError(`--expires ${value}: expected a lifetime such as 12h, 30d or 8w, or never`);
  return BigInt(Number(m[1]) * UNIT_SECONDS[m[2] as keyof typeof UNIT_SECONDS]);
}

export function tokenState(t: Token, now = new Date()): 'valid' | 'expired' | 'revoked' {
  if (t.revokedAt) return 'revoked';
  if (t.expiresAt && t.expiresAt.getTime() <= now.getTime()) return 'expired';
  return 'valid';
}

function describeToken(t: Token): string {
  return `${t.name} (${t.tokenId}, role ${roleLabel(t.role)}, ${t.expiresAt ? `expires ${t.expiresAt.toISOString()}` : 'never expires'})`;
}

export interface CreateOptions {
  readonly role: string;
  readonly name: string;
  readonly expires?: string;
  readonly description?: string;
}

/** Prints the secret alone on stdout (so `$(deployer-ctl tokens create …)` captures it); the rest on stderr. */
export async function createTokenCommand(connection: Connection, options: CreateOptions): Promise<number> {
  const role = parseRole(options.role);
  const ttl = parseExpires(options.expires);
  const res = await connection.client(AccessServiceDefinition).createToken({
    name: options.name,
    role,
    description: options.description ?? '',
    ...(ttl === undefined ? {} : { ttl: { seconds: ttl, nanos: 0 } }),
  });
  if (connection.json) {
    printJson(CreateTokenResponse.toJSON(res));
    return EXIT.ok;
  }
  if (res.token) process.stderr.write(`created token ${describeToken(res.token)}; the secret is shown only now:\n`);
  process.stdout.write(`${res.secret}\n`);
  return EXIT.ok;
}

export async function listTokensCommand(connection: Connection, options: { all?: boolean }): Promise<number> {
  const res = await connection.client(AccessServiceDefinition).listTokens({ includeRevoked: options.all ?? false });
  if (connection.json) {
    printJson(ListTokensResponse.toJSON(res));
    return EXIT.ok;
  }
  const now = new Date();
  const rows = res.tokens.map((t) => [
    t.name,
    roleLabel(t.role),
    tokenState(t, now),
    t.tokenId,
    t.createdBy,
    `${humanAge(t.createdAt, now)} ago`,
    t.expiresAt ? t.expiresAt.toISOString() : 'never',
    t.lastUsedAt ? `${humanAge(t.lastUsedAt, now)} ago` : 'never',
  ]);
  process.stdout.write(`${renderTable(['name', 'role', 'state', 'id', 'created by', 'created', 'expires', 'last used'], rows)}\n`);
  return EXIT.ok;
}

/** `<token>` is a token id when one has that id, a name otherwise. */
export async function revokeTokenCommand(connection: Connection, token: string, options: { reason?: string }): Promise<number> {
  const client = connection.client(AccessServiceDefinition);
  const known = await client.listTokens({ includeRevoked: true });
  const byId = known.tokens.some((t) => t.tokenId === token);
  const res = await client.revokeToken({
    token: byId ? { $case: 'tokenId', value: token } : { $case: 'name', value: token },
    reason: options.reason ?? '',
  });
  if (connection.json) {
    printJson(RevokeTokenResponse.toJSON(res));
    return EXIT.ok;
  }
  const t = res.token;
  if (t) process.stdout.write(`revoked token ${t.name} (${t.tokenId}) at ${t.revokedAt?.toISOString() ?? '?'}\n`);
  return EXIT.ok;
}

/** Whose token this is and its role, as the deployer sees it (any operator token). */
export async function whoAmICommand(connection: Connection): Promise<number> {
  const res = await connection.client(AccessServiceDefinition).whoAmI({});
  if (connection.json) printJson(WhoAmIResponse.toJSON(res));
  else process.stdout.write(`${res.subject} (role ${roleLabel(res.role)}${res.tokenId ? `, token ${res.tokenId}` : ''})\n`);
  return EXIT.ok;
}

type WithConnection = (run: (connection: Connection) => Promise<number>) => Promise<void>;

export function registerTokensCommands(program: Command, withConnection: WithConnection): void {
  const tokens = program
    .command('tokens')
    .description('operator tokens (admin): create, list, revoke; rotate by creating a new one and revoking the old');
  tokens
    .command('create')
    .description('issue a token and print its secret, once (stdout: the secret alone)')
    .requiredOption('--role <role>', 'viewer, operator or admin')
    .requiredOption('--name <name>', 'unique name, e.g. alice-laptop; the actor in audit events')
    .option('--expires <lifetime>', 'lifetime such as 12h, 30d or 8w (default: never)')
    .option('--description <text>', 'free-form note')
    .action((opts: CreateOptions) => withConnection((c) => createTokenCommand(c, opts)));
  tokens
    .command('list')
    .description('token metadata, newest first; never secrets')
    .option('--all', 'also revoked and expired tokens')
    .action((opts: { all?: boolean }) => withConnection((c) => listTokensCommand(c, opts)));
  tokens
    .command('revoke')
    .argument('<token>', 'token id or name')
    .description('revoke a token now, on every deployer replica')
    .option('--reason <text>', 'why; recorded in the audit log')
    .action((token: string, opts: { reason?: string }) => withConnection((c) => revokeTokenCommand(c, token, opts)));
  tokens
    .command('whoami')
    .description('whose token this command uses, and its role (any token)')
    .action(() => withConnection((c) => whoAmICommand(c)));
}
