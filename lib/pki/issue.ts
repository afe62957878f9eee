// Credential issuance: the per-node bundle of BootstrapSecrets (SSH host key and mTLS certificate)
// and the control plane's own server certificate, all signed by the cluster CA.
import { createECDH, createHash, generateKeyPairSync, randomBytes, sign, webcrypto } from 'node:crypto';
import { promisify } from 'node:util';

const signAsync = promisify(sign);
import { isIP } from 'node:net';
import { InvalidArgumentError, type FieldViolation } from '../errors.js';
import { certificateTime, NOT_BEFORE_BACKDATE_MS, randomSerialNumber, type ClusterCa } from './ca.js';

const DAY_MS = 86_400_000;
export const DEFAULT_LEAF_VALIDITY_DAYS = 365;

export type ExtendedKeyUsageName = 'serverAuth' | 'clientAuth';

export interface TlsCertificateRequest {
  /** Subject CN. */
  readonly commonName: string;
  /** SAN dNSName entries, in order; duplicates are dropped. */
  readonly dnsNames: readonly string[];
  /** SAN iPAddress entries (IPv4 or IPv6 literals). */
  readonly ipAddresses?: readonly string[];
  /** Defaults to both: node certs serve and dial mTLS, so one cert covers both directions. */
  readonly extendedKeyUsages?: readonly ExtendedKeyUsageName[];
  readonly validityDays?: number;
  readonly now?: Date;
}

export interface IssuedTlsCertificate {
  readonly certificatePem: string;
  /** PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----"). Secret. */
  readonly privateKeyPem: string;
  /** Hex, as in the certificate. */
  readonly serialNumber: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface SshHostKeyPair {
  /** OpenSSH private key file ("-----BEGIN OPENSSH PRIVATE KEY-----"), unencrypted. Secret. */
  readonly privateKey: string;
  /** One authorized_keys-style line: "ssh-ed25519 AAAA... <comment>". */
  readonly publicKey: string;
}

export interface NodeCredentialRequest {
  readonly nodeId: string;
  /** Short host name from the assignment. */
  readonly hostname: string;
  /** Cluster DNS domain; when set, the FQDN hostname.domain is added to the SANs. */
  readonly domain?: string;
  readonly validityDays?: number;
  readonly now?: Date;
}

/** The issued parts of BootstrapSecrets (field names as in ultracloud.secrets.v1); the install token comes from tokens.ts. */
export interface NodeCredentials {
  readonly nodeId: string;
  readonly sshHostEd25519PrivateKey: string;
  readonly sshHostEd25519PublicKey: string;
  readonly tlsCertificatePem: string;
  readonly tlsPrivateKeyPem: string;
  readonly caChainPem: string;
  readonly tlsCertificateSerialNumber: string;
  readonly tlsCertificateExpiresAt: Date;
  readonly issuedAt: Date;
}

export async function issueNodeCredentials(ca: ClusterCa, request: NodeCredentialRequest): Promise<NodeCredentials> {
  const problems = [
    ...dnsNameProblems('node_id', request.nodeId),
    ...dnsNameProblems('hostname', request.hostname),
    ...(request.domain === undefined ? [] : dnsNameProblems('domain', request.domain)),
  ];
  if (problems.length > 0) throw new InvalidArgumentError(problems);
  const now = request.now ?? new Date();
  const dnsNames = [request.hostname, ...(request.domain ? [`${request.hostname}.${request.domain}`] : []), request.nodeId];
  const sshKey = generateSshHostKeyAsync(request.nodeId);
  const tls = await issueTlsCertificate(ca, {
    commonName: request.nodeId,
    dnsNames,
    validityDays: request.validityDays ?? DEFAULT_LEAF_VALIDITY_DAYS,
    now,
  });
  const ssh = await sshKey;
  return {
    nodeId: request.nodeId,
    sshHostEd25519PrivateKey: ssh.privateKey,
    sshHostEd25519PublicKey: ssh.publicKey,
    tlsCertificatePem: tls.certificatePem,
    tlsPrivateKeyPem: tls.privateKeyPem,
    caChainPem: ca.certificatePem,
    tlsCertificateSerialNumber: tls.serialNumber,
    tlsCertificateExpiresAt: tls.notAfter,
    issuedAt: now,
  };
}

/** Server certificate for the control plane: always valid for loopback, plus the given names. */
export async function issueControlPlaneCertificate(
  ca: ClusterCa,
  options: { commonName?: string; dnsNames?: readonly string[]; ipAddresses?: readonly string[]; validityDays?: number; now?: Date } = {},
): Promise<IssuedTlsCertificate> {
  return issueTlsCertificate(ca, {
    commonName: options.commonName ?? 'ultracloud-control-plane',
    dnsNames: ['localhost', ...(options.dnsNames ?? [])],
    ipAddresses: ['127.0.0.1', '::1', ...(options.ipAddresses ?? [])],
    // clientAuth too: the services dial each other (host-controller watches the deployer).
    extendedKeyUsages: ['serverAuth', 'clientAuth'],
    ...(options.validityDays === undefined ? {} : { validityDays: options.validityDays }),
    ...(options.now === undefined ? {} : { now: options.now }),
  });
}

/**
 * Issues an ECDSA P-256 leaf certificate signed by the cluster CA.
 *
 * The DER is written here rather than by @peculiar/x509: this is the per-node hot path, and the
 * library's generic ASN.1 layer plus WebCrypto's thread-pool signing made it ~10x slower (about
 * 150 vs 1,500 certificates per CPU-second), below the issue's 50x-over-node-forge goal under
 * load. The certificate has one fixed shape, and the tests parse it with OpenSSL and
 * @peculiar/x509 and use it for real mTLS.
 */
export async function issueTlsCertificate(ca: ClusterCa, request: TlsCertificateRequest): Promise<IssuedTlsCertificate> {
  const dnsNames = [...new Set(request.dnsNames)];
  const ipAddresses = [...new Set(request.ipAddresses ?? [])];
  const problems: FieldViolation[] = [
    ...dnsNames.flatMap((name, i) => dnsNameProblems(`dns_names[${i}]`, name)),
    ...ipAddresses.flatMap((ip, i) => (isIP(ip) ? [] : [{ field: `ip_addresses[${i}]`, description: `"${ip}" is not an IP address` }])),
  ];
  if (request.commonName.length === 0 || request.commonName.length > 64) {
    problems.push({ field: 'common_name', description: 'must be 1 to 64 characters' });
  }
  if (dnsNames.length + ipAddresses.length === 0) problems.push({ field: 'dns_names', description: 'at least one name is required' });
  if (problems.length > 0) throw new InvalidArgumentError(problems);

  const now = (request.now ?? new Date()).getTime();
  const notBefore = certificateTime(now - NOT_BEFORE_BACKDATE_MS);
  const notAfter = certificateTime(now + (request.validityDays ?? DEFAULT_LEAF_VALIDITY_DAYS) * DAY_MS);
  const key = generateP256Key();
  const spki = key.spki;
  const serialNumber = randomSerialNumber();
  const usages = request.extendedKeyUsages ?? ['serverAuth', 'clientAuth'];

  const tbsCertificate = der.sequence(
    der.explicit(0, der.integer(Buffer.from([2]))), // v3
    der.integer(Buffer.from(serialNumber, 'hex')),
    ECDSA_WITH_SHA256,
    ca.subjectNameDer,
    der.sequence(der.time(notBefore), der.time(notAfter)),
    der.sequence(der.set(der.sequence(der.oid(OID.commonName), der.utf8(request.commonName)))),
    spki,
    der.explicit(
      3,
      der.sequence(
        extension(OID.basicConstraints, true, der.sequence()), // cA FALSE is the DER default: empty
        extension(OID.keyUsage, true, KEY_USAGE_DIGITAL_SIGNATURE),
        extension(OID.extKeyUsage, false, der.sequence(...usages.map((u) => der.oid(OID[u])))),
        extension(
          OID.subjectAltName,
          false,
          der.sequence(
            ...dnsNames.map((name) => der.tlv(0x82, Buffer.from(name, 'ascii'))), // [2] dNSName
            ...ipAddresses.map((ip) => der.tlv(0x87, ipAddressBytes(ip))), // [7] iPAddress
          ),
        ),
        // RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits (the last 65 bytes for P-256).
        extension(OID.subjectKeyIdentifier, false, der.octetString(createHash('sha1').update(spki.subarray(-65)).digest())),
        extension(OID.authorityKeyIdentifier, false, der.sequence(der.tlv(0x80, Buffer.from(ca.subjectKeyId, 'hex')))),
      ),
    ),
  );
  // The CA's signature runs on libuv's thread pool, off the server's thread.
  const signature = await signAsync('sha256', tbsCertificate, { key: ca.privateKey, dsaEncoding: 'der' });
  const certificate = der.sequence(tbsCertificate, ECDSA_WITH_SHA256, der.bitString(signature));
  return {
    certificatePem: pem('CERTIFICATE', certificate, 64),
    privateKeyPem: key.pkcs8Pem,
    serialNumber,
    notBefore,
    notAfter,
  };
}

/**
 * A fresh P-256 key pair as the certificate's SubjectPublicKeyInfo and the private key's PKCS#8
 * PEM, both written here. Node's generateKeyPair with encodings hands both to OpenSSL 3's
 * encoders, which take 250-300 µs of the calling thread per key pair even when the key itself is
 * generated on the thread pool; ECDH's key generation (the same EC key generation) takes about
 * 35 µs, and these two fixed DER shapes a few more. The tests check that OpenSSL reads both back and writes the
 * same bytes.
 */
function generateP256Key(): { spki: Buffer; pkcs8Pem: string } {
  const ecdh = createECDH('prime256v1');
  const point = ecdh.generateKeys();
  return encodeP256Key(ecdh.getPrivateKey(), point);
}

/**
 * A P-256 key's SubjectPublicKeyInfo (RFC 5480 §2: id-ecPublicKey, the named curve) and its
 * PKCS#8 PEM (RFC 5208 around an RFC 5915 ECPrivateKey: version 1, the 32-byte scalar, the
 * curve left to the AlgorithmIdentifier, the public key as [1]), as OpenSSL writes them.
 * `scalar` is big-endian (ECDH drops leading zero bytes), `point` uncompressed (0x04 || X || Y).
 */
export function encodeP256Key(scalar: Buffer, point: Buffer): { spki: Buffer; pkcs8Pem: string } {
  if (scalar.length > 32 || point.length !== 65 || point[0] !== 0x04) throw new Error('not a P-256 scalar and uncompressed point');
  const privateKey = Buffer.alloc(32);
  scalar.copy(privateKey, 32 - scalar.length);
  const algorithm = der.sequence(der.oid(OID.ecPublicKey), der.oid(OID.prime256v1));
  const ecPrivateKey = der.sequence(der.integer(Buffer.from([1])), der.octetString(privateKey), der.tlv(0xa1, der.bitString(point)));
  return {
    spki: der.sequence(algorithm, der.bitString(point)),
    pkcs8Pem: pem('PRIVATE KEY', der.sequence(der.integer(Buffer.from([0])), algorithm, der.octetString(ecPrivateKey)), 64),
  };
}

const OID = {
  ecPublicKey: '1.2.840.10045.2.1',
  prime256v1: '1.2.840.10045.3.1.7',
  commonName: '2.5.4.3',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
} as const;

function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  // critical DEFAULT FALSE: DER leaves it out unless true.
  return der.sequence(der.oid(oid), ...(critical ? [Buffer.from([0x01, 0x01, 0xff])] : []), der.octetString(value));
}

/** Minimal DER writer for the one certificate shape issued here (X.690 §8, §10). */
const der = {
  tlv(tag: number, content: Buffer): Buffer {
    return Buffer.concat([Buffer.from([tag]), derLength(content.length), content]);
  },
  sequence: (...items: Buffer[]): Buffer => der.tlv(0x30, Buffer.concat(items)),
  set: (...items: Buffer[]): Buffer => der.tlv(0x31, Buffer.concat(items)),
  explicit: (n: number, inner: Buffer): Buffer => der.tlv(0xa0 + n, inner),
  /** `unsigned` must already be minimal and positive (randomSerialNumber guarantees it). */
  integer: (unsigned: Buffer): Buffer => der.tlv(0x02, unsigned),
  octetString: (bytes: Buffer): Buffer => der.tlv(0x04, bytes),
  bitString: (bytes: Buffer): Buffer => der.tlv(0x03, Buffer.concat([Buffer.from([0]), bytes])),
  utf8: (text: string): Buffer => der.tlv(0x0c, Buffer.from(text, 'utf8')),
  /** Encoded once per OID: the certificate repeats the same dozen on every issue. */
  oid(dotted: string): Buffer {
    let encoded = encodedOids.get(dotted);
    if (encoded === undefined) {
      encoded = encodeOid(dotted);
      encodedOids.set(dotted, encoded);
    }
    return encoded;
  },
  /** UTCTime through 2049, GeneralizedTime after, as RFC 5280 §4.1.2.5 requires. */
  time(date: Date): Buffer {
    const digits = date.toISOString().replace(/[-:T]/g, '').slice(0, 14); // YYYYMMDDHHMMSS
    return date.getUTCFullYear() < 2050
      ? der.tlv(0x17, Buffer.from(`${digits.slice(2)}Z`, 'ascii'))
      : der.tlv(0x18, Buffer.from(`${digits}Z`, 'ascii'));
  },
};

const encodedOids = new Map<string, Buffer>();

function encodeOid(dotted: string): Buffer {
  const [a = 0, b = 0, ...rest] = dotted.split('.').map(Number);
  const bytes = [40 * a + b];
  for (const arc of rest) {
    const base128 = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) base128.unshift((v & 0x7f) | 0x80);
    bytes.push(...base128);
  }
  return der.tlv(0x06, Buffer.from(bytes));
}

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** AlgorithmIdentifier with parameters absent, as RFC 5758 §3.2 requires for ECDSA. */
const ECDSA_WITH_SHA256 = der.sequence(der.oid(OID.ecdsaWithSha256));
/** BIT STRING with only bit 0 (digitalSignature) set: 7 unused bits, 0x80. */
const KEY_USAGE_DIGITAL_SIGNATURE = Buffer.from([0x03, 0x02, 0x07, 0x80]);

/** 4 or 16 network-order bytes of a literal that isIP accepted. */
function ipAddressBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  let text = ip.split('%')[0] ?? ip;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4?.[1]) {
    const [a, b, c, d] = v4[1].split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, -v4[1].length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

function pem(label: string, bytes: Buffer, width: number): string {
  const lines = bytes.toString('base64').match(new RegExp(`.{1,${width}}`, 'g')) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** A fresh ed25519 SSH host key in the formats sshd reads (ssh_host_ed25519_key and its .pub). */
export function generateSshHostKey(comment: string): SshHostKeyPair {
  const keys = generateKeyPairSync('ed25519');
  // Raw parts from DER, not JWK: Node 20 holds the key's mutex while building a JWK object, and a GC
  // finalising the keygen job in between locks it again — an intermittent deadlock seen here.
  return sshHostKeyFromDer(keys.privateKey.export({ type: 'pkcs8', format: 'der' }), keys.publicKey.export({ type: 'spki', format: 'der' }), comment);
}

/**
 * generateSshHostKey with the key generated and exported on libuv's thread pool. WebCrypto exports
 * the public key raw (no encoder) and the private key's PKCS#8 in its job; node:crypto's
 * generateKeyPair would encode both on the calling thread (about 200 µs of it per key).
 */
export async function generateSshHostKeyAsync(comment: string): Promise<SshHostKeyPair> {
  const keys = (await webcrypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  // One after the other: the two halves share one key, and in profiles an export started while the
  // other ran held this thread until the pool thread had finished with it.
  const raw = await webcrypto.subtle.exportKey('raw', keys.publicKey);
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return sshHostKeyFromParts(ed25519Seed(Buffer.from(pkcs8)), Buffer.from(raw), comment);
}

/** RFC 8410 fixes both DER encodings of an ed25519 key, with the 32 raw bytes at the end. */
function sshHostKeyFromDer(pkcs8: Buffer, spki: Buffer, comment: string): SshHostKeyPair {
  if (spki.length !== 44) throw new Error('unexpected ed25519 key encoding');
  return sshHostKeyFromParts(ed25519Seed(pkcs8), spki.subarray(12), comment);
}

function ed25519Seed(pkcs8: Buffer): Buffer {
  if (pkcs8.length !== 48) throw new Error('unexpected ed25519 key encoding');
  return pkcs8.subarray(16);
}

function sshHostKeyFromParts(seed: Buffer, publicKey: Buffer, comment: string): SshHostKeyPair {
  return {
    privateKey: encodeOpenSshEd25519PrivateKey(seed, publicKey, comment),
    publicKey: encodeOpenSshEd25519PublicKey(publicKey, comment),
  };
}

const ED25519 = 'ssh-ed25519';

/** "ssh-ed25519 <base64 of string(type) string(key)> comment" (RFC 4253 §6.6, RFC 8709). */
export function encodeOpenSshEd25519PublicKey(publicKey: Buffer, comment: string): string {
  const line = `${ED25519} ${ed25519PublicBlob(publicKey).toString('base64')}`;
  return comment ? `${line} ${comment}` : line;
}

/**
 * Unencrypted "openssh-key-v1" file (openssh-portable PROTOCOL.key): magic, cipher and KDF
 * "none", one public key, then the private section — a repeated random check word, the key as
 * string(type) string(pub) string(seed||pub), the comment, and padding bytes 1,2,3… to the
 * cipher block size (8 for "none").
 */
export function encodeOpenSshEd25519PrivateKey(seed: Buffer, publicKey: Buffer, comment: string): string {
  if (seed.length !== 32 || publicKey.length !== 32) throw new Error('ed25519 seed and public key must be 32 bytes each');
  const check = randomBytes(4);
  const section = [check, check, sshString(ED25519), sshString(publicKey), sshString(Buffer.concat([seed, publicKey])), sshString(comment)];
  const unpadded = section.reduce((n, b) => n + b.length, 0);
  const padding = Buffer.from(Array.from({ length: (8 - (unpadded % 8)) % 8 }, (_, i) => i + 1));
  const body = Buffer.concat([
    Buffer.from('openssh-key-v1\0', 'latin1'),
    sshString('none'),
    sshString('none'),
    sshString(''),
    uint32(1),
    sshString(ed25519PublicBlob(publicKey)),
    sshString(Buffer.concat([...section, padding])),
  ]);
  return pem('OPENSSH PRIVATE KEY', body, 70); // ssh-keygen wraps at 70 columns
}

function ed25519PublicBlob(publicKey: Buffer): Buffer {
  return Buffer.concat([sshString(ED25519), sshString(publicKey)]);
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function sshString(value: Buffer | string): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  return Buffer.concat([uint32(bytes.length), bytes]);
}

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

/** RFC 1123 host names: what may go into a dNSName SAN and match a TLS server name. */
export function isDnsName(name: string): boolean {
  return name.length > 0 && name.length <= 253 && name.split('.').every((label) => DNS_LABEL.test(label));
}

function dnsNameProblems(field: string, name: string): FieldViolation[] {
  const ok = isDnsName(name);
  return ok ? [] : [{ field, description: `"${name}" is not a valid DNS name (RFC 1123 labels of letters, digits and hyphens)` }];
}
