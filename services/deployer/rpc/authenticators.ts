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

export function installerAuthenticator(db: Kysely<DeployerDatabase>, joinToken: string): Authenticator {
  const joinHash = Buffer.from(hashToken(joinToken), 'hex');
  return {
    async authenticate({ bearer }): Promise<Principal | undefined> {
      if (!bearer) return undefined;
      const kind = tokenKind(bearer);
      if (kind === 'join') {
        if (!timingSafeEqual(Buffer.from(hashToken(bearer), 'hex'), joinHash)) throw new UnauthenticatedError('join token not recognised');
        return { kind: 'installer', credential: 'join-token' };
      }
      if (kind === 'session') {
        const machineId = await machineBySessionSecret(db, hashToken(bearer));
        if (!machineId) throw new UnauthenticatedError('session secret not recognised or replaced by a newer Discover');
        return { kind: 'installer', credential: 'session-secret', machineId };
      }
      if (kind === 'install') {
        const found = await machineByInstallToken(db, hashToken(bearer));
        if (!found) throw new UnauthenticatedError('install token not recognised or revoked');
        if (found.expiresAt && found.expiresAt.getTime() < Date.now()) throw new UnauthenticatedError('install token expired');
        return { kind: 'installer', credential: 'install-token', machineId: found.machineId };
      }
      return undefined;
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
