// Private keys at rest: AES-256-GCM under a 32-byte secrets key that lives outside the database
// (ULTRACLOUD_SECRETS_KEY or a key file), so a database dump alone discloses no key material.
// Envelope: `v1.<nonce>.<ciphertext>.<tag>`, each part base64url; the version lets the
// algorithm or key change later without guessing what old rows hold.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const SECRETS_KEY_BYTES = 32;
export const SECRETS_KEY_FILE = 'secrets.key';
const ENVELOPE_VERSION = 'v1';
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/** A sealed value that cannot be opened: wrong key, modified data or not an envelope. */
export class SealedSecretError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SealedSecretError';
  }
}

/**
 * Encrypts `plaintext`. `context` (e.g. "ca" or a machine id) is authenticated but not stored: the
 * envelope opens only with the same context, so a row's ciphertext cannot be swapped into another.
 */
export function sealSecret(key: Uint8Array, plaintext: string | Uint8Array, context = ''): string {
  assertKey(key);
  // Random 96-bit nonces are safe for far more than the 2^32 messages one key will ever seal here.
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(Buffer.from(`${ENVELOPE_VERSION}:${context}`, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext), cipher.final()]);
  const parts = [nonce, ciphertext, cipher.getAuthTag()].map((b) => b.toString('base64url'));
  return [ENVELOPE_VERSION, ...parts].join('.');
}

/** Decrypts and authenticates an envelope from `sealSecret`; throws SealedSecretError otherwise. */
export function openSealedSecret(key: Uint8Array, envelope: string, context = ''): Buffer {
  assertKey(key);
  const parts = envelope.split('.');
  if (parts.length !== 4 || parts[0] !== ENVELOPE_VERSION) {
    throw new SealedSecretError(`not a sealed secret: expected "${ENVELOPE_VERSION}.<nonce>.<ciphertext>.<tag>"`);
  }
  const [nonce, ciphertext, tag] = parts.slice(1).map((p) => Buffer.from(p, 'base64url')) as [Buffer, Buffer, Buffer];
  if (nonce.length !== NONCE_BYTES || tag.length !== TAG_BYTES) throw new SealedSecretError('sealed secret has a malformed nonce or tag');
  const decipher = createDecipheriv('aes-256-gcm', key, nonce);
  decipher.setAAD(Buffer.from(`${ENVELOPE_VERSION}:${context}`, 'utf8'));
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch {
    // GCM cannot tell a wrong key from tampering; name the likely cause first.
    throw new SealedSecretError(
      'cannot open sealed secret: the secrets key (ULTRACLOUD_SECRETS_KEY or key file) is not the one it was sealed with, or the stored data was modified',
    );
  }
}

export function openSealedSecretText(key: Uint8Array, envelope: string, context = ''): string {
  return openSealedSecret(key, envelope, context).toString('utf8');
}

/** Parses a base64 (or base64url) secrets key, e.g. ULTRACLOUD_SECRETS_KEY; `source` names it in errors. */
export function parseSecretsKey(text: string, source = 'ULTRACLOUD_SECRETS_KEY'): Buffer {
  const trimmed = text.trim();
  const key = Buffer.from(trimmed, /[-_]/.test(trimmed) ? 'base64url' : 'base64');
  if (!/^[A-Za-z0-9+/_-]+=*$/.test(trimmed) || key.length !== SECRETS_KEY_BYTES) {
    // Never echo the value: it may be a real key with a typo.
    throw new Error(`${source}: must be ${SECRETS_KEY_BYTES} random bytes, base64-encoded (e.g. \`openssl rand -base64 32\`)`);
  }
  return key;
}

/** Reads a key file (base64 text), refusing one that group or others may read. */
export function readSecretsKeyFile(path: string): Buffer {
  const mode = statSync(path).mode;
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    throw new Error(`${path}: secrets key file must not be accessible by group or others (chmod 600)`);
  }
  return parseSecretsKey(readFileSync(path, 'utf8'), path);
}

/**
 * For single-node `ultracloud up`: the key file in the state dir, created (mode 0600) on first
 * start. Written to a temporary file and hard-linked into place, so a concurrent start never sees
 * a half-written key and never replaces one that exists.
 */
export function ensureSecretsKey(stateDir: string): { key: Buffer; path: string; created: boolean } {
  const path = join(stateDir, SECRETS_KEY_FILE);
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const key = randomBytes(SECRETS_KEY_BYTES);
  const temporary = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(temporary, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  try {
    linkSync(temporary, path);
    return { key, path, created: true };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return { key: readSecretsKeyFile(path), path, created: false };
  } finally {
    unlinkSync(temporary);
  }
}

function assertKey(key: Uint8Array): void {
  if (key.length !== SECRETS_KEY_BYTES) throw new Error(`secrets key must be ${SECRETS_KEY_BYTES} bytes, got ${key.length}`);
}
