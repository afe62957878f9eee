// The cluster certificate authority: one self-signed ECDSA P-256 root that signs every node's and
// service's TLS certificate. The deployer creates it on first start and persists it as PEM (the
// private key sealed, see sealed.ts); nodes get its certificate as their CA chain. The root is
// encoded by @peculiar/x509 — made once, so its speed does not matter; leaves, the hot path, are
// encoded in issue.ts.
import 'reflect-metadata'; // tsyringe, used inside @peculiar/x509, needs it loaded first
import * as x509 from '@peculiar/x509';
import { createPrivateKey, KeyObject, randomBytes, webcrypto, X509Certificate } from 'node:crypto';

// Node's WebCrypto (OpenSSL underneath) instead of a browser global; set once for the process.
x509.cryptoProvider.set(webcrypto);

const EC_KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const EC_SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;

const DAY_MS = 86_400_000;
/** Tolerance for clocks of freshly booted machines that are behind the deployer's. */
export const NOT_BEFORE_BACKDATE_MS = 5 * 60_000;

export interface ClusterCaOptions {
  /** Subject CN; defaults to "UltraCloud cluster CA". */
  readonly commonName?: string;
  /** Defaults to 10 years: rotating a root means re-issuing every node, so it is long-lived. */
  readonly validityDays?: number;
  readonly now?: Date;
}

/** A loaded CA: what issuing needs. Hold it in memory only; persist via `exportClusterCa`. */
export interface ClusterCa {
  /** The root certificate, PEM; also the CA chain handed to nodes. */
  readonly certificatePem: string;
  /** Subject DN as node's X509Certificate prints it. */
  readonly subject: string;
  /** The subject Name's DER bytes exactly as in the certificate; issued certs copy them as issuer. */
  readonly subjectNameDer: Buffer;
  /** Hex subject key identifier, copied into the authority key identifier of issued certs. */
  readonly subjectKeyId: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The CA's signing key (ECDSA P-256). Secret. */
  readonly privateKey: KeyObject;
}

/** Persistable form: certificate PEM and the unencrypted PKCS#8 PEM key (seal it before storing). */
export interface SerializedClusterCa {
  readonly certificatePem: string;
  readonly privateKeyPem: string;
}

export async function createClusterCa(options: ClusterCaOptions = {}): Promise<ClusterCa> {
  const now = options.now ?? new Date();
  const keys = (await webcrypto.subtle.generateKey(EC_KEY_ALGORITHM, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const ski = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialNumber(),
    name: [{ CN: [options.commonName ?? 'UltraCloud cluster CA'] }, { O: ['UltraCloud'] }],
    notBefore: certificateTime(now.getTime() - NOT_BEFORE_BACKDATE_MS),
    notAfter: certificateTime(now.getTime() + (options.validityDays ?? 3650) * DAY_MS),
    keys,
    signingAlgorithm: EC_SIGNING_ALGORITHM,
    extensions: [
      // pathLen 0: the root signs leaves only; there are no intermediates in this design.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      ski,
    ],
  });
  return describeCa(new X509Certificate(Buffer.from(cert.rawData)), KeyObject.from(keys.privateKey), ski.keyId);
}

export function exportClusterCa(ca: ClusterCa): SerializedClusterCa {
  return {
    certificatePem: ca.certificatePem,
    privateKeyPem: ca.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  };
}

/** Restores a persisted CA, refusing a certificate that is not a CA or does not match the key. */
export async function loadClusterCa(serialized: SerializedClusterCa): Promise<ClusterCa> {
  const cert = new X509Certificate(serialized.certificatePem);
  if (!cert.ca) throw new Error('cluster CA certificate lacks basicConstraints CA:true');
  const privateKey = parseP256PrivateKey(serialized.privateKeyPem);
  if (!cert.checkPrivateKey(privateKey)) throw new Error('cluster CA private key does not match its certificate');
  // Read the SKI as written rather than recomputing it: AKI in issued certs must match it exactly.
  const ski = new x509.X509Certificate(cert.raw).getExtension(x509.SubjectKeyIdentifierExtension);
  if (!ski) throw new Error('cluster CA certificate lacks a subject key identifier');
  return describeCa(cert, privateKey, ski.keyId);
}

function describeCa(cert: X509Certificate, privateKey: KeyObject, subjectKeyId: string): ClusterCa {
  return {
    certificatePem: cert.toString(),
    subject: cert.subject.replace(/\n/g, ', '),
    subjectNameDer: certificateSubjectDer(cert.raw),
    subjectKeyId,
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    privateKey,
  };
}

/** The subject Name TLV of a DER certificate: the sixth element of tbsCertificate (RFC 5280 §4.1). */
function certificateSubjectDer(der: Buffer): Buffer {
  const certificate = derElement(der, 0);
  const tbs = derElement(der, certificate.contentStart);
  let offset = tbs.contentStart;
  for (let field = 0; field < 5; field++) offset = derElement(der, offset).end;
  const subject = derElement(der, offset);
  return Buffer.from(der.subarray(subject.start, subject.end));
}

function derElement(der: Buffer, start: number): { start: number; contentStart: number; end: number } {
  const first = der[start + 1];
  if (first === undefined) throw new Error('truncated DER');
  let length = first;
  let contentStart = start + 2;
  if (first & 0x80) {
    length = 0;
    for (let i = 0; i < (first & 0x7f); i++) length = length * 256 + (der[contentStart + i] ?? 0);
    contentStart += first & 0x7f;
  }
  if (contentStart + length > der.length) throw new Error('truncated DER');
  return { start, contentStart, end: contentStart + length };
}

function parseP256PrivateKey(pem: string): KeyObject {
  const key = createPrivateKey(pem);
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new Error('cluster CA private key must be an ECDSA P-256 key');
  }
  return key;
}

/** Random positive 128-bit serial (CA/Browser Forum asks for ≥ 64 bits of entropy). */
export function randomSerialNumber(): string {
  const bytes = randomBytes(16);
  // Top bit clear keeps the DER INTEGER positive; the next bit set keeps it minimal-length.
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString('hex');
}

/** X.509 times have one-second resolution; rounding down keeps the returned dates exact. */
export function certificateTime(ms: number): Date {
  return new Date(Math.floor(ms / 1000) * 1000);
}
