// AccessService handlers: operator tokens. Admin only (see policy.ts), except WhoAmI.
import type { ServiceImplementation } from 'nice-grpc';
import type { AccessServiceDefinition, Token } from '../../../gen/ts/ultracloud/deployer/v1/access_service.js';
import { InvalidArgumentError, PermissionDeniedError } from '../../../lib/errors.js';
import type { HandlerContext } from '../../../lib/grpc/server.js';
import { roleToProto, validateNewToken } from '../domain/operator-tokens.js';
import { ACCESS_SERVICE, type OperatorTokens, type TokenReference } from '../operator-tokens.js';
import type { StoredToken } from '../store/operator-tokens.js';
import { actorOf } from './actor.js';

export function tokenMessage(t: StoredToken): Token {
  return {
    tokenId: t.tokenId,
    name: t.name,
    role: roleToProto(t.role),
    createdAt: t.createdAt,
    ...(t.expiresAt ? { expiresAt: t.expiresAt } : {}),
    ...(t.revokedAt ? { revokedAt: t.revokedAt } : {}),
    createdBy: t.createdBy,
    ...(t.lastUsedAt ? { lastUsedAt: t.lastUsedAt } : {}),
    description: t.description,
  };
}

function tokenReference(token: { $case: 'tokenId' | 'name'; value: string } | undefined): TokenReference {
  if (!token || token.value === '') throw new InvalidArgumentError({ field: 'token', description: 'required: give token_id or name' });
  return token.$case === 'tokenId' ? { tokenId: token.value } : { name: token.value };
}

export function accessService(tokens: OperatorTokens): ServiceImplementation<typeof AccessServiceDefinition, HandlerContext> {
  return {
    async createToken(req, context) {
      const issued = await tokens.create(validateNewToken(req), actorOf(context, `${ACCESS_SERVICE}/CreateToken`));
      return { token: tokenMessage(issued.token), secret: issued.secret };
    },
    async listTokens(req) {
      return { tokens: (await tokens.list(req.includeRevoked)).map(tokenMessage) };
    },
    async revokeToken(req, context) {
      const token = await tokens.revoke(tokenReference(req.token), req.reason, actorOf(context, `${ACCESS_SERVICE}/RevokeToken`));
      return { token: tokenMessage(token) };
    },
    async whoAmI(_req, context) {
      const p = context.principal;
      // The policy admits operators only.
      if (p.kind !== 'operator') throw new PermissionDeniedError('WhoAmI answers for operator tokens only');
      return { subject: p.subject, role: roleToProto(p.role), tokenId: p.tokenId ?? '' };
    },
  };
}
