import 'reflect-metadata'; // before @peculiar/x509 (tsyringe needs it at load time)
import * as x509 from '@peculiar/x509';
import test from 'ava';
import { execFile } from 'node:child_process';
import { createECDH, createHash, createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { promisify } from 'node:util';
import { InvalidArgumentError } from '../../lib/errors.js';
import {
  createClusterCa,
  encodeP256Key,
  ensureSecretsKey,
  exportClusterCa,
  generateSshHostKey,
  generateSshHostKeyAsync,
  generateToken,
  hashToken,
  issueControlPlaneCertificate,
  issueNodeCredentials,
  issueToken,
  loadClusterCa,
  openSealedSecret,
  openSealedSecretText,
  parseSecretsKey,
  readSecretsKeyFile,
  sealSecret,
  SealedSecretError,
  tokenKind,
  TOKEN_PREFIXES,
  verifyToken,
  type ClusterCa,
  type TokenKind,
} from '../../lib/pki/index.js';

const run = promisify(execFile);
const DAY_MS = 86_400_000;
const now = new Date('2026-03-01T12:00:00Z');

let caPromise: Promise<ClusterCa> | undefined;
function sharedCa(): Promise<ClusterCa> {
  caPromise ??= createClusterCa({ now });
  return caPromise;
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'ultracloud-pki-'));
}

// --- cluster CA -----------------------------------------------------------------------------

test('the cluster CA is a self-signed P-256 root with CA:true pathLen 0, keyCertSign+cRLSign and an SKI', async (t) => {
  const ca = await sharedCa();
  const cert = new X509Certificate(ca.certificatePem);
  t.true(cert.ca);
  t.is(cert.subject, cert.issuer);
  t.true(cert.verify(cert.publicKey));
  t.is(cert.publicKey.asymmetricKeyType, 'ec');
  t.is(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  const years = (Date.parse(cert.validTo) - now.getTime()) / (365 * DAY_MS);
  t.true(years > 9.9 && years < 10.1, `validity ${years} years`);
  t.true(Date.parse(cert.validFrom) < now.getTime(), 'backdated for clock skew');

  const parsed = new x509.X509Certificate(ca.certificatePem);
  const basic = parsed.getExtension(x509.BasicConstraintsExtension);
  t.true(basic?.ca);
  t.is(basic?.pathLength, 0);
  t.true(basic?.critical);
  const usage = parsed.getExtension(x509.KeyUsagesExtension);
  t.is(usage?.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
  t.is(parsed.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId, ca.subjectKeyId);
  t.regex(ca.subjectKeyId, /^[0-9a-f]{40}$/);
});

test('a CA exported, sealed, opened and loaded again issues certificates that chain to the original', async (t) => {
  const ca = await sharedCa();
  const exported = exportClusterCa(ca);
  t.true(exported.privateKeyPem.startsWith('-----BEGIN PRIVATE KEY-----'));
  const key = parseSecretsKey(Buffer.alloc(32, 7).toString('base64'));
  const sealed = sealSecret(key, exported.privateKeyPem, 'cluster-ca');
  t.false(sealed.includes('PRIVATE KEY'));
  const restored = await loadClusterCa({ certificatePem: exported.certificatePem, privateKeyPem: openSealedSecretText(key, sealed, 'cluster-ca') });
  t.is(restored.subject, ca.subject);
  t.is(restored.subjectKeyId, ca.subjectKeyId);
  const node = await issueNodeCredentials(restored, { nodeId: 'worker-07', hostname: 'worker-07' });
  t.true(new X509Certificate(node.tlsCertificatePem).verify(new X509Certificate(ca.certificatePem).publicKey));
});

test('loading a CA refuses a key that does not match the certificate, and a certificate that is not a CA', async (t) => {
  const ca = await sharedCa();
  const other = exportClusterCa(await createClusterCa());
  await t.throwsAsync(loadClusterCa({ certificatePem: ca.certificatePem, privateKeyPem: other.privateKeyPem }), {
    message: /does not match/,
  });
  const leaf = await issueNodeCredentials(ca, { nodeId: 'n1', hostname: 'n1' });
  await t.throwsAsync(loadClusterCa({ certificatePem: leaf.tlsCertificatePem, privateKeyPem: leaf.tlsPrivateKeyPem }), { message: /CA:true/ });
});

// --- node TLS certificate -------------------------------------------------------------------

test('a node certificate has CN = node_id, SANs hostname, FQDN and node_id, and is signed by the CA', async (t) => {
  const ca = await sharedCa();
  const creds = await issueNodeCredentials(ca, { nodeId: 'worker-01', hostname: 'rack1-node3', domain: 'lab.example', now });
  const cert = new X509Certificate(creds.tlsCertificatePem);
  const caCert = new X509Certificate(ca.certificatePem);

  t.is(cert.subject, 'CN=worker-01');
  t.is(cert.subjectAltName, 'DNS:rack1-node3, DNS:rack1-node3.lab.example, DNS:worker-01');
  t.is(cert.issuer, caCert.subject);
  t.true(cert.checkIssued(caCert));
  t.true(cert.verify(caCert.publicKey));
  t.false(cert.verify(createPublicKey((await createClusterCa()).privateKey)));
  t.false(cert.ca);
  for (const host of ['rack1-node3', 'rack1-node3.lab.example', 'worker-01']) t.is(cert.checkHost(host), host);
  t.is(cert.checkHost('worker-02'), undefined);

  // Valid from a few minutes before issue (clock skew) for one year.
  t.is(Date.parse(cert.validFrom), now.getTime() - 5 * 60_000);
  t.is(Date.parse(cert.validTo), now.getTime() + 365 * DAY_MS);
  t.is(creds.tlsCertificateExpiresAt.getTime(), Date.parse(cert.validTo));
  t.is(creds.issuedAt.getTime(), now.getTime());

  // The key is a P-256 PKCS#8 key and belongs to the certificate.
  t.true(creds.tlsPrivateKeyPem.startsWith('-----BEGIN PRIVATE KEY-----\n'));
  const key = createPrivateKey(creds.tlsPrivateKeyPem);
  t.is(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  t.true(cert.checkPrivateKey(key));
  t.is(creds.caChainPem, ca.certificatePem);
  t.is(cert.serialNumber.toLowerCase(), creds.tlsCertificateSerialNumber);

  const parsed = new x509.X509Certificate(creds.tlsCertificatePem);
  t.deepEqual([...(parsed.getExtension(x509.ExtendedKeyUsageExtension)?.usages ?? [])], [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]);
  t.is(parsed.getExtension(x509.KeyUsagesExtension)?.usages, x509.KeyUsageFlags.digitalSignature);
  t.false(parsed.getExtension(x509.BasicConstraintsExtension)?.ca);
  t.is(parsed.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId, ca.subjectKeyId);
  const spki = createPublicKey(creds.tlsPrivateKeyPem).export({ type: 'spki', format: 'der' });
  t.is(parsed.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId, createHash('sha1').update(spki.subarray(-65)).digest('hex'));
  t.true(await parsed.verify({ publicKey: await new x509.X509Certificate(ca.certificatePem).publicKey.export() }));
});

test('without a domain the SANs are hostname and node_id, and a hostname equal to node_id appears once', async (t) => {
  const ca = await sharedCa();
  const a = new X509Certificate((await issueNodeCredentials(ca, { nodeId: 'n-1', hostname: 'host-1' })).tlsCertificatePem);
  t.is(a.subjectAltName, 'DNS:host-1, DNS:n-1');
  const b = new X509Certificate((await issueNodeCredentials(ca, { nodeId: 'n-1', hostname: 'n-1' })).tlsCertificatePem);
  t.is(b.subjectAltName, 'DNS:n-1');
});

test('each issue has a fresh key and a distinct random serial', async (t) => {
  const ca = await sharedCa();
  const [a, b] = await Promise.all([1, 2].map(() => issueNodeCredentials(ca, { nodeId: 'n1', hostname: 'n1' })));
  t.not(a!.tlsCertificateSerialNumber, b!.tlsCertificateSerialNumber);
  t.regex(a!.tlsCertificateSerialNumber, /^[4-7][0-9a-f]{31}$/);
  t.not(a!.tlsPrivateKeyPem, b!.tlsPrivateKeyPem);
  t.not(a!.sshHostEd25519PublicKey, b!.sshHostEd25519PublicKey);
});

test('names that cannot be DNS SANs are rejected, naming every bad field', async (t) => {
  const ca = await sharedCa();
  const error = await t.throwsAsync(issueNodeCredentials(ca, { nodeId: 'node_1', hostname: '-bad', domain: 'ok.example' }), {
    instanceOf: InvalidArgumentError,
  });
  t.deepEqual(
    error?.violations.map((v) => v.field),
    ['node_id', 'hostname'],
  );
  t.regex(error?.message ?? '', /node_id: "node_1" is not a valid DNS name/);
  await t.throwsAsync(issueNodeCredentials(ca, { nodeId: 'n1', hostname: 'h1', domain: 'bad..example' }), { message: /^domain:/ });
});

test('certificates pass OpenSSL strict X.509 verification against the CA', async (t) => {
  const dir = tempDir();
  const ca = await sharedCa();
  const node = await issueNodeCredentials(ca, { nodeId: 'worker-01', hostname: 'worker-01', domain: 'lab.example', now });
  const server = await issueControlPlaneCertificate(ca, { ipAddresses: ['fd00::1:2'], now });
  writeFileSync(join(dir, 'ca.pem'), ca.certificatePem);
  writeFileSync(join(dir, 'node.pem'), node.tlsCertificatePem);
  writeFileSync(join(dir, 'server.pem'), server.certificatePem);
  // -attime: everything here is dated `now`; check an hour later, inside every validity window.
  const at = String(Math.floor(now.getTime() / 1000) + 3600);
  const purposes = [['sslclient', 'node.pem'], ['sslserver', 'node.pem'], ['sslserver', 'server.pem']];
  for (const [purpose, file] of purposes) {
    const { stdout } = await run('openssl', ['verify', '-x509_strict', '-attime', at, '-purpose', purpose!, '-CAfile', join(dir, 'ca.pem'), join(dir, file!)]);
    t.regex(stdout, /: OK\n$/, `${file} as ${purpose}`);
  }
});

test('validity past 2049 is encoded as GeneralizedTime and read back exactly', async (t) => {
  const ca = await createClusterCa({ now: new Date('2045-01-01T00:00:00Z') });
  const issuedAt = new Date('2049-12-01T00:00:00Z');
  const creds = await issueNodeCredentials(ca, { nodeId: 'n1', hostname: 'n1', now: issuedAt, validityDays: 60 });
  const cert = new X509Certificate(creds.tlsCertificatePem);
  t.is(Date.parse(cert.validFrom), issuedAt.getTime() - 5 * 60_000); // UTCTime, 2049
  t.is(Date.parse(cert.validTo), issuedAt.getTime() + 60 * DAY_MS); // GeneralizedTime, 2050
  t.is(new x509.X509Certificate(creds.tlsCertificatePem).notAfter.toISOString(), '2050-01-30T00:00:00.000Z');
  t.true(cert.verify(new X509Certificate(ca.certificatePem).publicKey));
});

test('the control-plane certificate covers localhost, 127.0.0.1, ::1 and the given names', async (t) => {
  const ca = await sharedCa();
  const issued = await issueControlPlaneCertificate(ca, { dnsNames: ['deployer.lab.example'], ipAddresses: ['10.0.0.5', 'fd00::1:2', '::ffff:10.1.2.3'] });
  const cert = new X509Certificate(issued.certificatePem);
  t.is(
    cert.subjectAltName,
    'DNS:localhost, DNS:deployer.lab.example, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, IP Address:10.0.0.5, ' +
      'IP Address:FD00:0:0:0:0:0:1:2, IP Address:0:0:0:0:0:FFFF:A01:203',
  );
  t.is(cert.checkIP('fd00::1:2'), 'fd00::1:2');
  t.is(cert.checkHost('localhost'), 'localhost');
  t.is(cert.checkIP('127.0.0.1'), '127.0.0.1');
  t.is(cert.checkIP('::1'), '::1');
  t.is(cert.checkIP('10.0.0.6'), undefined);
  t.true(cert.verify(new X509Certificate(ca.certificatePem).publicKey));
});

test('the issued certificates work for mutual TLS: control-plane server, node client, both verified against the CA', async (t) => {
  const ca = await sharedCa();
  const server = await issueControlPlaneCertificate(ca);
  const node = await issueNodeCredentials(ca, { nodeId: 'worker-01', hostname: 'worker-01' });
  let served = 0;
  const tlsServer = tls.createServer({ key: server.privateKeyPem, cert: server.certificatePem, ca: ca.certificatePem, requestCert: true, rejectUnauthorized: true }, (socket) => {
    served += 1;
    const peer = socket.getPeerCertificate();
    socket.end(`hello ${peer.subject.CN} authorized=${socket.authorized}`);
  });
  tlsServer.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
  t.teardown(() => tlsServer.close());
  const { port } = tlsServer.address() as AddressInfo;

  const connect = (options: tls.ConnectionOptions): Promise<{ reply: string; peerCn: string | string[] | undefined }> =>
    new Promise((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, ca: node.caChainPem, ...options }, () => {
        const peerCn = socket.getPeerCertificate().subject.CN;
        let reply = '';
        socket.on('data', (chunk: Buffer) => (reply += chunk.toString('utf8')));
        socket.on('end', () => resolve({ reply, peerCn }));
      });
      socket.on('error', reject);
    });

  // The client checks the server's IP SAN (127.0.0.1) and chain; the server checks the client's chain.
  const ok = await connect({ key: node.tlsPrivateKeyPem, cert: node.tlsCertificatePem });
  t.is(ok.reply, 'hello worker-01 authorized=true');
  t.is(ok.peerCn, 'ultracloud-control-plane');

  // A client certificate from another CA, or none, is refused by the server.
  const stranger = await issueNodeCredentials(await createClusterCa(), { nodeId: 'worker-01', hostname: 'worker-01' });
  await t.throwsAsync(connect({ key: stranger.tlsPrivateKeyPem, cert: stranger.tlsCertificatePem }).then(({ reply }) => {
    if (reply === '') throw new Error('closed without a reply');
    return reply;
  }));
  await t.throwsAsync(connect({}).then(({ reply }) => {
    if (reply === '') throw new Error('closed without a reply');
    return reply;
  }));
  // And a client that trusts another CA refuses the server.
  await t.throwsAsync(connect({ ca: stranger.caChainPem, key: node.tlsPrivateKeyPem, cert: node.tlsCertificatePem }), {
    message: /self-signed|unable to verify|certificate/i,
  });
  t.is(served, 1, 'only the node with a CA-issued certificate got through');
});

// --- SSH host key ---------------------------------------------------------------------------

/** Splits an unencrypted openssh-key-v1 file into its fields (PROTOCOL.key). */
function decodeOpenSshPrivateKey(pem: string): { publicBlob: Buffer; checks: [number, number]; seed: Buffer; pub: Buffer; comment: string; padding: Buffer; section: Buffer } {
  const body = Buffer.from(pem.replace(/-----(BEGIN|END) OPENSSH PRIVATE KEY-----/g, '').replace(/\s+/g, ''), 'base64');
  let offset = 0;
  const fixed = (n: number): Buffer => {
    const out = body.subarray(offset, offset + n);
    offset += n;
    return out;
  };
  const u32 = (): number => fixed(4).readUInt32BE(0);
  const str = (): Buffer => fixed(u32());
  if (fixed(15).toString('latin1') !== 'openssh-key-v1\0') throw new Error('bad magic');
  const header = [str(), str(), str()].map((b) => b.toString());
  if (header.join('|') !== 'none|none|') throw new Error(`unexpected cipher/kdf ${header.join('|')}`);
  if (u32() !== 1) throw new Error('expected one key');
  const publicBlob = str();
  const section = str();
  if (offset !== body.length) throw new Error('trailing bytes');
  let p = 0;
  const sFixed = (n: number): Buffer => {
    const out = section.subarray(p, p + n);
    p += n;
    return out;
  };
  const sU32 = (): number => sFixed(4).readUInt32BE(0);
  const sStr = (): Buffer => sFixed(sU32());
  const checks: [number, number] = [sU32(), sU32()];
  if (sStr().toString() !== 'ssh-ed25519') throw new Error('not ed25519');
  const pub = sStr();
  const secret = sStr();
  const comment = sStr().toString();
  if (!secret.subarray(32).equals(pub)) throw new Error('private part must be seed || public key');
  return { publicBlob, checks, seed: secret.subarray(0, 32), pub, comment, padding: section.subarray(p), section };
}

test('node TLS keys are encoded byte for byte as OpenSSL writes them, including scalars with leading zero bytes', async (t) => {
  const ca = await sharedCa();
  for (let i = 0; i < 20; i++) {
    const creds = await issueNodeCredentials(ca, { nodeId: `worker-${i}`, hostname: `worker-${i}`, now });
    const key = createPrivateKey(creds.tlsPrivateKeyPem);
    t.is(key.export({ type: 'pkcs8', format: 'pem' }), creds.tlsPrivateKeyPem);
    // The certificate carries the key's own SubjectPublicKeyInfo.
    t.deepEqual(new X509Certificate(creds.tlsCertificatePem).publicKey.export({ type: 'spki', format: 'der' }), createPublicKey(key).export({ type: 'spki', format: 'der' }));
  }
  // Scalars 1 (31 leading zero bytes), one with a single leading zero byte, and one with the top bit set.
  for (const hex of ['01', `00${'7f'.repeat(31)}`, `${'ab'.repeat(31)}cd`]) {
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(Buffer.from(hex, 'hex'));
    const point = ecdh.getPublicKey();
    const encoded = encodeP256Key(ecdh.getPrivateKey(), point);
    const key = createPrivateKey(encoded.pkcs8Pem);
    t.is(key.export({ type: 'pkcs8', format: 'pem' }), encoded.pkcs8Pem, hex);
    t.deepEqual(createPublicKey(key).export({ type: 'spki', format: 'der' }), encoded.spki, hex);
    t.is(BigInt(`0x${(key.export({ type: 'pkcs8', format: 'der' }) as Buffer).subarray(-(65 + 3 + 2 + 32), -(65 + 3 + 2)).toString('hex')}`), BigInt(`0x${hex}`), hex);
  }
  t.throws(() => encodeP256Key(Buffer.alloc(33, 1), Buffer.alloc(65, 4)), { message: /not a P-256/ });
  t.throws(() => encodeP256Key(Buffer.alloc(32, 1), Buffer.alloc(33, 2)), { message: /not a P-256/ });
});

test('SSH host keys issued off the server thread have the same shape and a seed that derives their public key', async (t) => {
  const keys = await Promise.all(Array.from({ length: 8 }, (_, i) => generateSshHostKeyAsync(`worker-${i}`)));
  t.is(new Set(keys.map((k) => k.publicKey)).size, 8);
  for (const [i, key] of keys.entries()) {
    t.regex(key.publicKey, new RegExp(`^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]{43} worker-${i}$`));
    const decoded = decodeOpenSshPrivateKey(key.privateKey);
    t.is(decoded.comment, `worker-${i}`);
    t.is(decoded.publicBlob.toString('base64'), key.publicKey.split(' ')[1] ?? '');
    const pkcs8 = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), decoded.seed]);
    t.deepEqual(createPublicKey(createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })).export({ type: 'spki', format: 'der' }).subarray(-32), decoded.pub);
  }
});

test('the SSH host key is a well-formed openssh-key-v1 file whose seed derives its public key', (t) => {
  const key = generateSshHostKey('worker-01');
  t.regex(key.privateKey, /^-----BEGIN OPENSSH PRIVATE KEY-----\n([A-Za-z0-9+/=]{1,70}\n)+-----END OPENSSH PRIVATE KEY-----\n$/);
  t.regex(key.publicKey, /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]{43} worker-01$/);
  const decoded = decodeOpenSshPrivateKey(key.privateKey);
  t.is(decoded.checks[0], decoded.checks[1]);
  t.is(decoded.comment, 'worker-01');
  t.is(decoded.section.length % 8, 0);
  t.deepEqual([...decoded.padding], Array.from({ length: decoded.padding.length }, (_, i) => i + 1));
  t.is(decoded.publicBlob.toString('base64'), key.publicKey.split(' ')[1] ?? '');
  // Independent check of the seed: PKCS#8-wrap it, let OpenSSL derive the public key.
  const pkcs8 = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), decoded.seed]);
  const derived = createPublicKey(createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })).export({ type: 'spki', format: 'der' });
  t.deepEqual(derived.subarray(-32), decoded.pub);
});

test('ssh-keygen reads the private key, derives the same public line, and signs with it', async (t) => {
  const dir = tempDir();
  const ca = await sharedCa();
  const creds = await issueNodeCredentials(ca, { nodeId: 'worker-01', hostname: 'worker-01' });
  const keyFile = join(dir, 'ssh_host_ed25519_key');
  writeFileSync(keyFile, creds.sshHostEd25519PrivateKey, { mode: 0o600 });

  const { stdout: derived } = await run('ssh-keygen', ['-y', '-f', keyFile]);
  t.is(derived.trim(), creds.sshHostEd25519PublicKey);
  const { stdout: fingerprint } = await run('ssh-keygen', ['-l', '-f', keyFile]);
  t.regex(fingerprint, /^256 SHA256:\S+ worker-01 \(ED25519\)/);

  // A signature made by ssh-keygen with our private key verifies: the seed and public key agree.
  const data = join(dir, 'data');
  writeFileSync(data, 'attest');
  await run('ssh-keygen', ['-Y', 'sign', '-q', '-f', keyFile, '-n', 'ultracloud-test', data]);
  const signature = readFileSync(`${data}.sig`, 'utf8');
  const check = execFile('ssh-keygen', ['-Y', 'check-novalidate', '-n', 'ultracloud-test', '-s', `${data}.sig`]);
  check.stdin?.end('attest');
  const code = await new Promise<number | null>((resolve) => check.on('close', resolve));
  t.is(code, 0, signature);
});

// --- tokens ---------------------------------------------------------------------------------

test('tokens carry the prefix of their kind and 256 random bits, and never repeat', (t) => {
  const kinds: [TokenKind, string][] = [
    ['join', 'ucjoin_'],
    ['session', 'ucsess_'],
    ['install', 'ucinst_'],
    ['operator', 'ucop_'],
  ];
  for (const [kind, prefix] of kinds) {
    t.is(TOKEN_PREFIXES[kind] as string, prefix);
    const token = generateToken(kind);
    t.regex(token, new RegExp(`^${prefix}[A-Za-z0-9_-]{43}$`));
    t.is(Buffer.from(token.slice(prefix.length), 'base64url').length, 32);
    t.is(tokenKind(token), kind);
  }
  t.is(tokenKind('ghp_abc'), undefined);
  const many = new Set(Array.from({ length: 2000 }, () => generateToken('session')));
  t.is(many.size, 2000);
});

test('a token verifies against its stored SHA-256 hash only, in its own kind only', (t) => {
  const { token, hash, expiresAt } = issueToken('install', { ttlMs: 3_600_000, now });
  t.is(hash, createHash('sha256').update(token).digest('hex'));
  t.is(hashToken(token), hash);
  t.is(expiresAt?.getTime(), now.getTime() + 3_600_000);
  t.true(verifyToken(token, hash));
  t.true(verifyToken(token, hash, 'install'));
  t.false(verifyToken(token, hash, 'session'));
  t.false(verifyToken(`${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`, hash));
  t.false(verifyToken(generateToken('install'), hash));
  t.false(verifyToken(token, 'not-hex'));
  t.false(verifyToken(token, hash.slice(0, 32)));
  t.is(issueToken('join').expiresAt, undefined);
});

// --- sealed secrets -------------------------------------------------------------------------

const key = Buffer.alloc(32, 1);

test('a sealed secret is a v1 envelope that opens with the same key and context', (t) => {
  const envelope = sealSecret(key, 'private key material', 'machine-1');
  t.regex(envelope, /^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/);
  t.false(envelope.includes('private'));
  t.is(openSealedSecretText(key, envelope, 'machine-1'), 'private key material');
  t.deepEqual(openSealedSecret(key, sealSecret(key, Buffer.from([0, 1, 2]))), Buffer.from([0, 1, 2]));
  t.not(sealSecret(key, 'same'), sealSecret(key, 'same'), 'fresh nonce each time');
});

test('opening fails clearly with a wrong key, a wrong context, tampered parts or a malformed envelope', (t) => {
  const envelope = sealSecret(key, 'secret', 'machine-1');
  const wrongKey = t.throws(() => openSealedSecret(Buffer.alloc(32, 2), envelope, 'machine-1'), { instanceOf: SealedSecretError });
  t.regex(wrongKey?.message ?? '', /secrets key .* is not the one it was sealed with/);
  t.false((wrongKey?.message ?? '').includes('secret\''));
  t.throws(() => openSealedSecret(key, envelope, 'machine-2'), { instanceOf: SealedSecretError });

  const parts = envelope.split('.');
  for (const index of [1, 2, 3]) {
    const bytes = Buffer.from(parts[index]!, 'base64url');
    bytes[0] = bytes[0]! ^ 1;
    const tampered = parts.map((p, i) => (i === index ? bytes.toString('base64url') : p)).join('.');
    t.throws(() => openSealedSecret(key, tampered, 'machine-1'), { instanceOf: SealedSecretError }, `part ${index}`);
  }
  t.throws(() => openSealedSecret(key, `v2.${parts.slice(1).join('.')}`, 'machine-1'), { message: /not a sealed secret/ });
  t.throws(() => openSealedSecret(key, 'plaintext', 'machine-1'), { message: /not a sealed secret/ });
  t.throws(() => sealSecret(Buffer.alloc(16), 'x'), { message: /32 bytes/ });
});

test('secrets keys parse from base64 and are rejected without echoing a wrong-length value', (t) => {
  t.deepEqual(parseSecretsKey(key.toString('base64')), key);
  t.deepEqual(parseSecretsKey(`${key.toString('base64url')}\n`), key);
  const short = Buffer.alloc(16, 9).toString('base64');
  const error = t.throws(() => parseSecretsKey(short));
  t.regex(error?.message ?? '', /^ULTRACLOUD_SECRETS_KEY: must be 32 random bytes/);
  t.false((error?.message ?? '').includes(short));
  t.throws(() => parseSecretsKey('not base64 at all!'));
});

test('the state-dir secrets key is created once with mode 0600 and read back after', (t) => {
  const dir = join(tempDir(), 'state');
  const first = ensureSecretsKey(dir);
  t.true(first.created);
  t.is(statSync(first.path).mode & 0o777, 0o600);
  const second = ensureSecretsKey(dir);
  t.false(second.created);
  t.deepEqual(second.key, first.key);
  t.deepEqual(readSecretsKeyFile(first.path), first.key);
  chmodSync(first.path, 0o644);
  t.throws(() => readSecretsKeyFile(first.path), { message: /chmod 600/ });
});
