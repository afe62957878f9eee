// The cluster CA and each node's issued credentials. Private keys are stored sealed; install
// tokens and session secrets only as hashes.
import { StatementCache } from '../../../lib/db/statement-cache.js';
import type { DeployerDb } from './machines.js';
import type { DeployerDatabase } from './tables.js';

export interface StoredCa {
  readonly certificatePem: string;
  readonly privateKeySealed: string;
}

export async function getCa(db: DeployerDb): Promise<StoredCa | undefined> {
  const r = await db.selectFrom('certificate_authority').selectAll().where('id', '=', 1).executeTakeFirst();
  return r ? { certificatePem: r.certificate_pem, privateKeySealed: r.private_key_sealed } : undefined;
}

/** Inserts the CA unless another replica won the race; returns the one that is stored. */
export async function saveCaOnce(db: DeployerDb, ca: StoredCa, now: Date): Promise<StoredCa> {
  await db
    .insertInto('certificate_authority')
    .values({ id: 1, certificate_pem: ca.certificatePem, private_key_sealed: ca.privateKeySealed, created_at: now })
    .onConflict((oc) => oc.column('id').doNothing())
    .execute();
  return (await getCa(db)) as StoredCa;
}

export interface NodeCredentialRecord {
  readonly nodeId: string;
  readonly sshPublicKey: string;
  readonly sshPrivateKeySealed: string;
  readonly tlsCertificatePem: string;
  readonly tlsPrivateKeySealed: string;
  readonly tlsExpiresAt: Date;
  readonly issuedAt: Date;
}

export async function saveNodeCredentials(db: DeployerDb, machineId: string, c: NodeCredentialRecord): Promise<void> {
  const values = {
    node_id: c.nodeId,
    ssh_public_key: c.sshPublicKey,
    ssh_private_key_sealed: c.sshPrivateKeySealed,
    tls_certificate_pem: c.tlsCertificatePem,
    tls_private_key_sealed: c.tlsPrivateKeySealed,
    tls_expires_at: c.tlsExpiresAt,
    issued_at: c.issuedAt,
  };
  await db
    .insertInto('node_credentials')
    .values({ machine_id: machineId, ...values })
    .onConflict((oc) => oc.column('machine_id').doUpdateSet(values))
    .execute();
}

export async function deleteNodeCredentials(db: DeployerDb, machineId: string): Promise<void> {
  await db.deleteFrom('node_credentials').where('machine_id', '=', machineId).execute();
}

/** The install token of one install or rescue attempt; null revokes it. */
export async function setInstallToken(db: DeployerDb, machineId: string, token: { hash: string; expiresAt: Date } | null): Promise<void> {
  await db
    .updateTable('machines')
    .set({ install_token_hash: token?.hash ?? null, install_token_expires_at: token?.expiresAt ?? null })
    .where('machine_id', '=', machineId)
    .execute();
}

// Installers present these on every call: cached statements (see lib/db/statement-cache.ts).
const statements = new StatementCache();

export async function machineByInstallToken(db: DeployerDb, hash: string): Promise<{ machineId: string; expiresAt: Date | null } | undefined> {
  const r = await statements.execute<{ machine_id: string; install_token_expires_at: Date | null }, DeployerDatabase>(
    db,
    'machineByInstallToken',
    (p) => db.selectFrom('machines').select(['machine_id', 'install_token_expires_at']).where('install_token_hash', '=', p('hash')),
    { hash },
  );
  const row = r.rows[0];
  return row ? { machineId: row.machine_id, expiresAt: row.install_token_expires_at } : undefined;
}

export async function machineBySessionSecret(db: DeployerDb, hash: string): Promise<string | undefined> {
  const r = await statements.execute<{ machine_id: string }, DeployerDatabase>(
    db,
    'machineBySessionSecret',
    (p) => db.selectFrom('machines').select('machine_id').where('session_secret_hash', '=', p('hash')),
    { hash },
  );
  return r.rows[0]?.machine_id;
}
