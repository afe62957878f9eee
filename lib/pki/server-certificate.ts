// The control plane's own server certificate for `ultracloud up`: issued by the cluster CA into the
// state dir on first start, reused across restarts, and replaced when it is close to expiry, was
// issued by another CA, or no longer names this machine. The cluster CA stays the single root:
// clients verify the server with the same `ca.pem` that nodes get as their chain.
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { ClusterCa } from './ca.js';
import { DEFAULT_LEAF_VALIDITY_DAYS, isDnsName, issueControlPlaneCertificate } from './issue.js';

export const SERVER_CERTIFICATE_FILE = 'tls.crt';
export const SERVER_KEY_FILE = 'tls.key';
/** A certificate expiring sooner than this is replaced (at start, and by the periodic check). */
export const RENEW_BEFORE_DAYS = 30;

const DAY_MS = 86_400_000;

/** The names a certificate must carry: loopback always, then this machine's name and listen host. */
export interface ServerNames {
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
}

/**
 * localhost, 127.0.0.1, ::1 and the machine's host name, plus the listen host when it is one
 * address or name (not a wildcard such as 0.0.0.0), so clients can dial whichever they use.
 */
export function controlPlaneNames(listenHost?: string, machineHostname = hostname()): ServerNames {
  const dnsNames = ['localhost'];
  const ipAddresses = ['127.0.0.1', '::1'];
  const host = machineHostname.toLowerCase();
  if (isDnsName(host)) dnsNames.push(host);
  if (listenHost && listenHost !== '0.0.0.0' && listenHost !== '::') {
    if (isIP(listenHost)) ipAddresses.push(listenHost);
    else if (isDnsName(listenHost)) dnsNames.push(listenHost.toLowerCase());
  }
  return { dnsNames: [...new Set(dnsNames)], ipAddresses: [...new Set(ipAddresses)] };
}

export interface ServerCertificate {
  readonly certFile: string;
  readonly keyFile: string;
  readonly certificatePem: string;
  /** Secret. */
  readonly privateKeyPem: string;
  readonly serialNumber: string;
  readonly notAfter: Date;
}

export interface EnsuredServerCertificate extends ServerCertificate {
  /** `reused` the files as they were, or `issued` new ones (first start or replacement). */
  readonly outcome: 'reused' | 'issued';
  /** Why the previous certificate was replaced; undefined on reuse and on first start. */
  readonly replaced: string | undefined;
}

export interface EnsureServerCertificateOptions {
  readonly stateDir: string;
  readonly names: ServerNames;
  readonly now?: Date;
  readonly renewBeforeDays?: number;
  readonly validityDays?: number;
}

/**
 * Why the certificate in the state dir cannot be served for `names` at `now`, or undefined when
 * it can: missing, unreadable, not issued by `ca`, not matching its key, lacking a name, or
 * expiring within the renewal window.
 */
export function serverCertificateProblem(
  ca: ClusterCa,
  certificatePem: string | undefined,
  privateKeyPem: string | undefined,
  names: ServerNames,
  now: Date,
  renewBeforeDays = RENEW_BEFORE_DAYS,
): string | undefined {
  if (certificatePem === undefined || privateKeyPem === undefined) return 'missing';
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certificatePem);
  } catch {
    return 'certificate unreadable';
  }
  const root = new X509Certificate(ca.certificatePem);
  if (!cert.checkIssued(root) || !cert.verify(root.publicKey)) return 'not issued by the cluster CA';
  try {
    if (!cert.checkPrivateKey(createPrivateKey(privateKeyPem))) return 'key does not match the certificate';
  } catch {
    return 'key unreadable';
  }
  for (const name of names.dnsNames) if (cert.checkHost(name, { wildcards: false }) === undefined) return `does not name ${name}`;
  for (const ip of names.ipAddresses) if (cert.checkIP(ip) === undefined) return `does not name ${ip}`;
  const notAfter = new Date(cert.validTo).getTime();
  if (notAfter - now.getTime() < renewBeforeDays * DAY_MS) {
    return notAfter <= now.getTime() ? 'expired' : `expires within ${renewBeforeDays} days`;
  }
  return undefined;
}

function readIfPresent(path: string): string | undefined {
  return existsSync(path) ? readFileSync(path, 'utf8') : undefined;
}

/** Writes next to `path` and renames over it, so a reader never sees half a file. */
function writeAtomically(path: string, content: string, mode: number): void {
  const temporary = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(temporary, content, { mode, flag: 'wx' });
  renameSync(temporary, path);
}

/**
 * Returns the state dir's server certificate (`tls.crt`, key `tls.key` mode 0600), issuing a new
 * one from `ca` when there is none or the existing one cannot be served (see serverCertificateProblem).
 */
export async function ensureServerCertificate(ca: ClusterCa, options: EnsureServerCertificateOptions): Promise<EnsuredServerCertificate> {
  const now = options.now ?? new Date();
  const certFile = join(options.stateDir, SERVER_CERTIFICATE_FILE);
  const keyFile = join(options.stateDir, SERVER_KEY_FILE);
  const existingCert = readIfPresent(certFile);
  const existingKey = readIfPresent(keyFile);
  const problem = serverCertificateProblem(ca, existingCert, existingKey, options.names, now, options.renewBeforeDays);
  if (problem === undefined && existingCert !== undefined && existingKey !== undefined) {
    const cert = new X509Certificate(existingCert);
    return {
      certFile,
      keyFile,
      certificatePem: existingCert,
      privateKeyPem: existingKey,
      serialNumber: cert.serialNumber.toLowerCase(),
      notAfter: new Date(cert.validTo),
      outcome: 'reused',
      replaced: undefined,
    };
  }
  const issued = await issueControlPlaneCertificate(ca, {
    dnsNames: options.names.dnsNames,
    ipAddresses: options.names.ipAddresses,
    validityDays: options.validityDays ?? DEFAULT_LEAF_VALIDITY_DAYS,
    now,
  });
  // Key first: a crash in between leaves a pair that does not match, which the next start replaces.
  writeAtomically(keyFile, issued.privateKeyPem, 0o600);
  writeAtomically(certFile, issued.certificatePem, 0o644);
  return {
    certFile,
    keyFile,
    certificatePem: issued.certificatePem,
    privateKeyPem: issued.privateKeyPem,
    serialNumber: issued.serialNumber,
    notAfter: issued.notAfter,
    outcome: 'issued',
    replaced: problem === 'missing' ? undefined : problem,
  };
}
