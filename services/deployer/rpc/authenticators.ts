// Installer credentials, recognised by their prefix: the ISO's join token (compared by hash),
// the per-boot session secret and the install token (looked up by hash). Operator tokens: those
// of the operator tokens file (any string whose hash is listed) and those issued through
// AccessService (prefix `ucop_`, looked up by hash on every call).
import { timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import { UnauthenticatedError } from '../../../lib/errors.js';
import type { Authenticator, Principal } from '../../../lib/grpc/auth.js';
import { hashToken, tokenKind } from '../../../lib/pki/index.js';
import { machineByInstallToken, machineBySessionSecret } from '../store/credentials.js';
import type { DeployerDatabase } from '../store/tables.js';
import type { FileToken } from '../domain/operator-tokens.js';
import type { OperatorTokens } from '../operator-tokens.js';

/**
 * `claimedIn`: methods whose handlers prove session secrets and install tokens themselves (the
 * bootstrap's FetchPlan and ReportInstallProgress match the token's hash in the statement that
 * acts on the machine, see TokenClaim); everywhere else they are looked up here.
 */
export function installerAuthenticator(db: Kysely<DeployerDatabase>, joinToken: string, claimedIn: ReadonlySet<string> = new Set()): Authenticator {
  const joinHash = Buffer.from(hashToken(joinToken), 'hex');
  const sessionMachine = async (hash: string): Promise<string> => {
    const machineId = await machineBySessionSecret(db, hash);
    if (!machineId) throw new UnauthenticatedError('session secret not recognised or replaced by a newer Discover');
    return machineId;
  };
  const installMachine = async (hash: string): Promise<string> => {
    const found = await machineByInstallToken(db, hash);
    if (!found) throw new UnauthenticatedError('install token not recognised or revoked');
    if (found.expiresAt && found.expiresAt.getTime() < Date.now()) throw new UnauthenticatedError('install token expired');
    return found.machineId;
  };
  return {
    async authenticate({ bearer, method }): Promise<Principal | undefined> {
      if (!bearer) return undefined;
      const kind = tokenKind(bearer);
      if (kind === 'join') {
        if (!timingSafeEqual(Buffer.from(hashToken(bearer), 'hex'), joinHash)) throw new UnauthenticatedError('join token not recognised');
        return { kind: 'installer', credential: 'join-token' };
      }
      if (kind !== 'session' && kind !== 'install') return undefined;
      const tokenHash = hashToken(bearer);
      const lookUp = kind === 'session' ? sessionMachine : installMachine;
      const credential = kind === 'session' ? 'session-secret' : 'install-token';
      if (claimedIn.has(method)) return { kind: 'installer', credential, claim: { tokenHash, verify: () => lookUp(tokenHash) } };
      return { kind: 'installer', credential, machineId: await lookUp(tokenHash) };
    },
  };
}

export function operatorTokenAuthenticator(tokens: OperatorTokens, fileTokens: readonly FileToken[]): Authenticator {
  const byHash = new Map(fileTokens.map((t) => [t.hash, t]));
  return {
    async authenticate({ bearer }): Promise<Principal | undefined> {
      if (!bearer) return undefined;
      const fromFile = byHash.size > 0 ? byHash.get(hashToken(bearer)) : undefined;
      if (fromFile) return { kind: 'operator', role: fromFile.role, subject: fromFile.name };
      if (tokenKind(bearer) !== 'operator') return undefined;
      const token = await tokens.verify(bearer);
      return { kind: 'operator', role: token.role, subject: token.name, tokenId: token.tokenId };
    },
  };
}
