// The bootstrap admin credential of a single-node control plane: `ultracloud up` creates a random
// token in its state dir on first start (mode 0600, like a kubeconfig) and keeps only its hash in
// memory; `deployer-ctl` run from the same directory picks it up. It acts as the admin named
// "bootstrap" (the actor in audit events and the `created_by` of tokens it issues).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UnauthenticatedError } from './errors.js';
import type { Authenticator, Principal } from './grpc/auth.js';

export const ADMIN_TOKEN_FILE = 'admin.token';
const TOKEN_PREFIX = 'ucadm_';
/** The admin token's name. */
export const BOOTSTRAP_ADMIN = 'bootstrap';

export function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** Reads the admin token from the state dir, creating it on first use. */
export function ensureAdminToken(stateDir: string): { token: string; path: string; created: boolean } {
  const path = join(stateDir, ADMIN_TOKEN_FILE);
  if (existsSync(path)) return { token: readFileSync(path, 'utf8').trim(), path, created: false };
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  writeFileSync(path, `${token}\n`, { mode: 0o600, flag: 'wx' });
  return { token, path, created: true };
}

/** Authenticates bearers that carry the admin token prefix; compares hashes in constant time. */
export function adminTokenAuthenticator(token: string): Authenticator {
  const expected = sha256(token);
  return {
    async authenticate({ bearer }): Promise<Principal | undefined> {
      if (!bearer?.startsWith(TOKEN_PREFIX)) return undefined;
      if (!timingSafeEqual(sha256(bearer), expected)) throw new UnauthenticatedError('admin token not recognised');
      return { kind: 'operator', role: 'admin', subject: BOOTSTRAP_ADMIN };
    },
  };
}
