// Integration: the server side of TLS on real sockets. ServerTlsCredentials asks for a client
// certificate and verifies it against the CA bundle without requiring one (operators with tokens
// and agents with node certificates share a port), and swaps its certificate for new connections.
// ensureServerCertificate keeps, or replaces, the state dir's certificate for the right reasons.
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { experimental, ServerInterceptingCall, type ServerInterceptor } from '@grpc/grpc-js';
import test from 'ava';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from '../../gen/ts/grpc/health/v1/health.js';
import { createServiceClient, openChannel } from '../../lib/grpc/client.js';
import { startGrpcServer } from '../../lib/grpc/server.js';
import { ServerTlsCredentials } from '../../lib/grpc/server-tls.js';
import { createLogger } from '../../lib/log.js';
import {
  type ClusterCa,
  controlPlaneNames,
  createClusterCa,
  ensureServerCertificate,
  issueControlPlaneCertificate,
  issueNodeCredentials,
  serverCertificateProblem,
} from '../../lib/pki/index.js';

const DAY_MS = 86_400_000;
const logger = createLogger({ level: 'silent' });

let ca: ClusterCa;
let otherCa: ClusterCa;
let dir: string;

test.before(async () => {
  [ca, otherCa] = await Promise.all([createClusterCa(), createClusterCa({ commonName: 'Another cluster CA' })]);
  dir = await mkdtemp(join(tmpdir(), 'ultracloud-server-tls-'));
});

test.after.always(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

function write(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content, { mode: 0o600 });
  return path;
}

/** The certificate a new TLS connection to `port` is served. */
function served(port: number): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca: ca.certificatePem, ALPNProtocols: ['h2'], servername: 'localhost' }, () => {
      const cert = new X509Certificate(socket.getPeerCertificate().raw);
      socket.end();
      resolve(cert);
    });
    socket.once('error', reject);
  });
}

test('client certificates are optional, and only those from the CA bundle reach handlers as verified', async (t) => {
  const identity = await issueControlPlaneCertificate(ca);
  const credentials = new ServerTlsCredentials(identity, ca.certificatePem);
  // What a grpc-js interceptor learns about the peer: the verified certificate's CN, or nothing.
  const seen: (string | undefined)[] = [];
  const recordPeer: ServerInterceptor = (_method, call) =>
    new ServerInterceptingCall(call, {
      start(next) {
        const cn = call.getAuthContext().sslPeerCertificate?.subject?.CN;
        seen.push(typeof cn === 'string' ? cn : undefined);
        next();
      },
    });
  const server = await startGrpcServer({
    logger,
    listen: { host: '127.0.0.1', port: 0 },
    services: [],
    policy: {},
    credentials: experimental.createServerCredentialsWithInterceptors(credentials, [recordPeer]),
  });
  t.teardown(() => server.stop());

  const caFile = write('ca.pem', ca.certificatePem);
  const node = await issueNodeCredentials(ca, { nodeId: 'worker-1', hostname: 'worker-1' });
  const stranger = await issueNodeCredentials(otherCa, { nodeId: 'worker-1', hostname: 'worker-1' });
  const clients = {
    none: { caFile },
    node: { caFile, certFile: write('node.crt', node.tlsCertificatePem), keyFile: write('node.key', node.tlsPrivateKeyPem) },
    stranger: { caFile, certFile: write('stranger.crt', stranger.tlsCertificatePem), keyFile: write('stranger.key', stranger.tlsPrivateKeyPem) },
  };
  for (const [name, tls] of Object.entries(clients)) {
    const channel = openChannel(server.address, { tls });
    try {
      const health = await createServiceClient(HealthDefinition, channel, { defaultDeadlineMs: 10_000 }).check({ service: '' });
      t.is(health.status, HealthCheckResponse_ServingStatus.SERVING, name);
    } finally {
      channel.close();
    }
  }
  t.deepEqual(seen, [undefined, 'worker-1', undefined]);
});

test('replaceIdentity serves the new certificate to new connections without a restart', async (t) => {
  const first = await issueControlPlaneCertificate(ca);
  const credentials = new ServerTlsCredentials(first, ca.certificatePem);
  const server = await startGrpcServer({ logger, listen: { host: '127.0.0.1', port: 0 }, services: [], policy: {}, credentials });
  t.teardown(() => server.stop());
  t.is((await served(server.port)).serialNumber.toLowerCase(), first.serialNumber);
  const second = await issueControlPlaneCertificate(ca);
  credentials.replaceIdentity(second);
  t.is((await served(server.port)).serialNumber.toLowerCase(), second.serialNumber);
});

test('ensureServerCertificate issues once, reuses, and replaces near expiry, for another CA, a lost name or a foreign key', async (t) => {
  const stateDir = await mkdtemp(join(dir, 'state-'));
  const names = controlPlaneNames('127.0.0.1', 'control-1');
  t.deepEqual(names, { dnsNames: ['localhost', 'control-1'], ipAddresses: ['127.0.0.1', '::1'] });
  const now = new Date('2026-01-10T00:00:00Z');

  const first = await ensureServerCertificate(ca, { stateDir, names, now });
  t.like(first, { outcome: 'issued', replaced: undefined });
  t.is(statSync(first.keyFile).mode & 0o777, 0o600);
  t.is(first.notAfter.getTime(), Math.floor((now.getTime() + 365 * DAY_MS) / 1000) * 1000);

  const again = await ensureServerCertificate(ca, { stateDir, names, now: new Date(now.getTime() + 300 * DAY_MS) });
  t.like(again, { outcome: 'reused', serialNumber: first.serialNumber });

  const late = await ensureServerCertificate(ca, { stateDir, names, now: new Date(now.getTime() + 336 * DAY_MS) });
  t.like(late, { outcome: 'issued', replaced: 'expires within 30 days' });
  t.not(late.serialNumber, first.serialNumber);
  t.is(readFileSync(late.certFile, 'utf8'), late.certificatePem);

  const moved = await ensureServerCertificate(ca, { stateDir, names: controlPlaneNames('10.44.0.2', 'control-2'), now: new Date(now.getTime() + 336 * DAY_MS) });
  t.like(moved, { outcome: 'issued', replaced: 'does not name control-2' });
  t.is(new X509Certificate(moved.certificatePem).checkIP('10.44.0.2'), '10.44.0.2');

  const rotated = await ensureServerCertificate(otherCa, { stateDir, names, now });
  t.like(rotated, { outcome: 'issued', replaced: 'not issued by the cluster CA' });

  const swapped = await issueControlPlaneCertificate(otherCa, { dnsNames: ['control-1'] });
  t.is(serverCertificateProblem(otherCa, rotated.certificatePem, swapped.privateKeyPem, names, now), 'key does not match the certificate');
  t.is(serverCertificateProblem(otherCa, rotated.certificatePem, rotated.privateKeyPem, names, new Date(now.getTime() + 400 * DAY_MS)), 'expired');
  t.is(serverCertificateProblem(otherCa, 'not a certificate', rotated.privateKeyPem, names, now), 'certificate unreadable');
});
