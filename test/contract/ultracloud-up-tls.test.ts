// Contract: the real `ultracloud up` binary serves TLS by default with a certificate it issues
// itself from the cluster CA into its state dir; deployer-ctl and a nice-grpc client verify it
// against the state dir's ca.pem; the certificate is reused across restarts and replaced near
// expiry; agents' client certificates from the same CA are accepted; plaintext stays loopback-only;
// /metrics is served on its own port and stops with the process.
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import test, { type ExecutionContext } from 'ava';
import { ClientError, Status } from 'nice-grpc';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from '../../gen/ts/grpc/health/v1/health.js';
import { MachineServiceDefinition } from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { openDatabase, serviceDatabase } from '../../lib/db/index.js';
import { createServiceClient, openChannel } from '../../lib/grpc/client.js';
import {
  type ClusterCa,
  createClusterCa,
  exportClusterCa,
  isDnsName,
  issueControlPlaneCertificate,
  issueNodeCredentials,
  loadClusterCa,
  openSealedSecretText,
  readSecretsKeyFile,
} from '../../lib/pki/index.js';
import { DEPLOYER_SCHEMA } from '../../services/deployer/migrations/index.js';
import { getCa } from '../../services/deployer/store/credentials.js';
import type { DeployerDatabase } from '../../services/deployer/store/tables.js';
import { cleanEnv, DEPLOYER_CTL_BIN, logEvents, runNode, startUltracloud, ULTRACLOUD_BIN, type UltracloudProcess } from '../helpers/ultracloud-process.js';

const DAY_MS = 86_400_000;

let workDir: string;
let stateDir: string;
let up: UltracloudProcess;
let scratch: string;

function startUp(): Promise<UltracloudProcess> {
  // `--no-cluster`: an empty deployer is enough here. The state dir is `<workDir>/.ultracloud`, as
  // `npm start` makes it, so deployer-ctl run from workDir finds endpoint, CA and token.
  return startUltracloud('up', { stateDir, tls: true, args: ['--no-cluster'], env: cleanEnv({ ULTRACLOUD_LOG_LEVEL: 'debug' }) });
}

/** The cluster CA as the deployer stored it: certificate and sealed key in its database. Process stopped. */
async function clusterCaOf(dir: string): Promise<ClusterCa> {
  const database = await openDatabase({ stateDir: dir });
  try {
    const stored = await getCa(serviceDatabase<DeployerDatabase>(database.db, DEPLOYER_SCHEMA));
    if (!stored) throw new Error('no cluster CA in the database');
    const key = readSecretsKeyFile(join(dir, 'secrets.key'));
    return await loadClusterCa({ certificatePem: stored.certificatePem, privateKeyPem: openSealedSecretText(key, stored.privateKeySealed, 'cluster-ca') });
  } finally {
    await database.close();
  }
}

/** The certificate the server presents in a TLS handshake (verified against `caPem`). */
function servedCertificate(address: string, caPem: string): Promise<X509Certificate> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, ca: caPem, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined }, () => {
      const raw = socket.getPeerCertificate().raw;
      socket.end();
      resolve(new X509Certificate(raw));
    });
    socket.once('error', reject);
  });
}

async function healthOver(address: string, tls?: { caFile: string; certFile?: string; keyFile?: string }): Promise<HealthCheckResponse_ServingStatus> {
  const channel = openChannel(address, tls ? { tls } : {});
  try {
    return (await createServiceClient(HealthDefinition, channel, { defaultDeadlineMs: 10_000 }).check({ service: '' }, { retry: false })).status;
  } finally {
    channel.close();
  }
}

async function refusedTransport(t: ExecutionContext, call: Promise<unknown>): Promise<void> {
  const error = await t.throwsAsync(call, { instanceOf: ClientError });
  t.is(error?.code, Status.UNAVAILABLE, error?.details);
}

function scrape(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A binary run expected to refuse its settings, in an empty directory. */
async function refusedRun(name: string, args: readonly string[]): Promise<{ code: number | null; stderr: string; dir: string; entries: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), `ultracloud-${name}-`));
  const run = await runNode([ULTRACLOUD_BIN, ...args, '--state-dir', join(dir, 'state')], { cwd: dir, env: cleanEnv() });
  return { code: run.code, stderr: run.stderr, dir, entries: await readdir(dir) };
}

test.before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'ultracloud-up-tls-'));
  scratch = await mkdtemp(join(tmpdir(), 'ultracloud-up-tls-scratch-'));
  stateDir = join(workDir, '.ultracloud');
  up = await startUp();
});

test.after.always(async () => {
  await up?.stop('SIGKILL');
  if (workDir) await rm(workDir, { recursive: true, force: true });
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

test.serial('on first start up issues its server certificate from the cluster CA into the state dir', (t) => {
  const caPem = readFileSync(join(stateDir, 'ca.pem'), 'utf8');
  const ca = new X509Certificate(caPem);
  const certPath = join(stateDir, 'tls.crt');
  const keyPath = join(stateDir, 'tls.key');
  t.is(statSync(keyPath).mode & 0o777, 0o600);
  t.is(statSync(certPath).mode & 0o777, 0o644);
  const cert = new X509Certificate(readFileSync(certPath));
  t.true(cert.checkIssued(ca) && cert.verify(ca.publicKey), 'tls.crt is not signed by the cluster CA in ca.pem');
  t.true(cert.checkPrivateKey(createPrivateKey(readFileSync(keyPath))), 'tls.key does not match tls.crt');
  for (const name of ['localhost', ...(isDnsName(hostname().toLowerCase()) ? [hostname().toLowerCase()] : [])]) {
    t.is(cert.checkHost(name, { wildcards: false }), name, `no SAN for ${name}: ${cert.subjectAltName}`);
  }
  for (const ip of ['127.0.0.1', '::1']) t.truthy(cert.checkIP(ip), `no SAN for ${ip}: ${cert.subjectAltName}`);
  const days = (new Date(cert.validTo).getTime() - Date.now()) / DAY_MS;
  t.true(days > 360 && days <= 366, `valid for ${days} days`);

  const events = logEvents(up.output);
  t.like(events.find((e) => e.event === 'server_certificate.issued'), { file: certPath, serial: cert.serialNumber.toLowerCase() });
  t.like(events.find((e) => e.event === 'ready'), { address: up.address, tls: true, ca_file: join(stateDir, 'ca.pem') });
  t.deepEqual(JSON.parse(readFileSync(join(stateDir, 'endpoint.json'), 'utf8')), { address: up.address, tls: true });
  const key = readFileSync(keyPath, 'utf8');
  const keyBody = key.split('\n').filter((l) => l && !l.startsWith('-----')).join('');
  t.false(up.output.join('').includes(keyBody), 'the server key must never be logged');
});

test.serial('a nice-grpc client verifies the server against .ultracloud/ca.pem; plaintext and other CAs are refused', async (t) => {
  const caFile = join(stateDir, 'ca.pem');
  t.is(up.caFile, caFile);
  t.is(await healthOver(up.address, { caFile }), HealthCheckResponse_ServingStatus.SERVING);

  // An operator call with the admin token over TLS, no client certificate (client certs are optional).
  const channel = openChannel(up.address, { tls: { caFile } });
  t.teardown(() => channel.close());
  const admin = readFileSync(join(stateDir, 'admin.token'), 'utf8').trim();
  const listed = await createServiceClient(MachineServiceDefinition, channel, { token: admin, defaultDeadlineMs: 10_000 }).listMachines({ pageSize: 10 });
  t.deepEqual(listed.machines, []);

  // The certificate on the wire is the one in the state dir.
  const served = await servedCertificate(up.address, readFileSync(caFile, 'utf8'));
  t.is(served.fingerprint256, new X509Certificate(readFileSync(join(stateDir, 'tls.crt'))).fingerprint256);

  await refusedTransport(t, healthOver(up.address));
  const foreign = join(scratch, 'foreign-ca.pem');
  writeFileSync(foreign, exportClusterCa(await createClusterCa({ commonName: 'Some other CA' })).certificatePem);
  await refusedTransport(t, healthOver(up.address, { caFile: foreign }));
});

test.serial('deployer-ctl verifies the server with no flags next to the state dir, and with --server/--token/--ca or their variables elsewhere', async (t) => {
  const local = await runNode([DEPLOYER_CTL_BIN, '--json', 'status'], { cwd: workDir, env: cleanEnv() });
  t.is(local.code, 0, `stdout:\n${local.stdout}\nstderr:\n${local.stderr}`);
  const report = JSON.parse(local.stdout) as { services: { service: string; address: string; health: string }[] };
  t.like(report.services.find((s) => s.service === 'ultracloud.deployer.v1.MachineService'), { address: up.address, health: 'serving' });
  t.is(local.stderr, '', 'nothing on stderr (no TLS deprecation noise)');

  const list = await runNode([DEPLOYER_CTL_BIN, 'machines', 'list'], { cwd: workDir, env: cleanEnv() });
  t.is(list.code, 0, list.stderr);

  // From another directory the state dir is out of reach: flags or variables say everything.
  const admin = readFileSync(join(stateDir, 'admin.token'), 'utf8').trim();
  const caFile = join(stateDir, 'ca.pem');
  const byFlags = await runNode([DEPLOYER_CTL_BIN, '--server', up.address, '--token', admin, '--ca', caFile, 'machines', 'list'], { cwd: scratch, env: cleanEnv() });
  t.is(byFlags.code, 0, byFlags.stderr);
  const byEnv = await runNode([DEPLOYER_CTL_BIN, 'machines', 'list'], {
    cwd: scratch,
    env: cleanEnv({ ULTRACLOUD_SERVER: up.address, ULTRACLOUD_TOKEN: admin, ULTRACLOUD_CA: caFile }),
  });
  t.is(byEnv.code, 0, byEnv.stderr);
  // Without the CA the client speaks plaintext, which a TLS server does not answer.
  const withoutCa = await runNode([DEPLOYER_CTL_BIN, '--server', up.address, '--token', admin, 'machines', 'list'], { cwd: scratch, env: cleanEnv() });
  t.not(withoutCa.code, 0);
  t.regex(withoutCa.stderr, /UNAVAILABLE|unreachable|connect/i);
});

test.serial('/metrics is served on its own port while up runs', async (t) => {
  const url = up.metricsUrl;
  if (!url) throw new Error(`no metrics URL in the ready event:\n${up.output.join('')}`);
  t.regex(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
  const { status, body } = await scrape(url);
  t.is(status, 200);
  t.regex(body, /^ultracloud_grpc_server_handled_total\{grpc_service="grpc\.health\.v1\.Health",grpc_method="Check",grpc_type="unary",grpc_code="OK"\} \d+$/m);
  t.regex(body, /^ultracloud_machines\{state="discovered"\} 0$/m);
  t.regex(body, /^process_cpu_user_seconds_total /m);
});

test.serial('the certificate is reused across a restart, and the metrics port closes on SIGTERM', async (t) => {
  const before = readFileSync(join(stateDir, 'tls.crt'), 'utf8');
  const metricsUrl = up.metricsUrl as string;
  t.is(await up.stop('SIGTERM'), 0, up.output.join(''));
  await t.throwsAsync(scrape(metricsUrl), { code: 'ECONNREFUSED' });

  up = await startUp();
  t.is(readFileSync(join(stateDir, 'tls.crt'), 'utf8'), before);
  t.like(logEvents(up.output).find((e) => e.event === 'server_certificate.reused'), { file: join(stateDir, 'tls.crt') });
  t.is(await healthOver(up.address, { caFile: join(stateDir, 'ca.pem') }), HealthCheckResponse_ServingStatus.SERVING);
});

test.serial('a certificate expiring within 30 days is replaced at start; agents with a node certificate from the CA connect', async (t) => {
  t.is(await up.stop('SIGTERM'), 0, up.output.join(''));
  const ca = await clusterCaOf(stateDir);
  // What a server started 355 days ago would have left behind: 10 days to go.
  const old = await issueControlPlaneCertificate(ca, { dnsNames: [hostname().toLowerCase()].filter(isDnsName), validityDays: 10 });
  writeFileSync(join(stateDir, 'tls.key'), old.privateKeyPem, { mode: 0o600 });
  writeFileSync(join(stateDir, 'tls.crt'), old.certificatePem);

  up = await startUp();
  const renewed = new X509Certificate(readFileSync(join(stateDir, 'tls.crt')));
  t.not(renewed.serialNumber.toLowerCase(), old.serialNumber);
  t.true(new Date(renewed.validTo).getTime() - Date.now() > 360 * DAY_MS);
  t.is(statSync(join(stateDir, 'tls.key')).mode & 0o777, 0o600);
  t.like(logEvents(up.output).find((e) => e.event === 'server_certificate.issued'), { replaced: 'expires within 30 days' });
  const caPem = readFileSync(join(stateDir, 'ca.pem'), 'utf8');
  t.is((await servedCertificate(up.address, caPem)).fingerprint256, renewed.fingerprint256);
  t.is(createHash('sha256').update(caPem).digest('hex'), createHash('sha256').update(ca.certificatePem).digest('hex'), 'the CA stays the single root');

  // mTLS: a node's certificate from the same CA is accepted as a client certificate.
  const node = await issueNodeCredentials(ca, { nodeId: 'worker-1', hostname: 'worker-1' });
  const certFile = join(scratch, 'node.crt');
  const keyFile = join(scratch, 'node.key');
  writeFileSync(certFile, node.tlsCertificatePem);
  writeFileSync(keyFile, node.tlsPrivateKeyPem, { mode: 0o600 });
  t.is(await healthOver(up.address, { caFile: join(stateDir, 'ca.pem'), certFile, keyFile }), HealthCheckResponse_ServingStatus.SERVING);
});

test('plaintext is refused off loopback with a message naming the setting, before anything is written', async (t) => {
  const [up0, deployer0] = await Promise.all([
    refusedRun('insecure-wildcard', ['up', '--insecure-loopback', '--listen', '0.0.0.0:0']),
    refusedRun('deployer-wildcard', ['deployer', '--listen', '0.0.0.0:0']),
  ]);
  t.teardown(() => Promise.all([up0, deployer0].map((r) => rm(r.dir, { recursive: true, force: true }))));
  t.is(up0.code, 2, up0.stderr);
  t.regex(up0.stderr, /ULTRACLOUD_LISTEN \(--listen\): plaintext gRPC is only allowed on loopback, got 0\.0\.0\.0/);
  t.regex(up0.stderr, /drop ULTRACLOUD_INSECURE_LOOPBACK \(--insecure-loopback\) to serve TLS with a certificate from the cluster CA/);
  t.deepEqual(up0.entries, []);
  t.is(deployer0.code, 2, deployer0.stderr);
  t.regex(deployer0.stderr, /plaintext gRPC is only allowed on loopback, got 0\.0\.0\.0; set ULTRACLOUD_TLS_CERT and ULTRACLOUD_TLS_KEY/);
  t.false(existsSync(join(deployer0.dir, 'state')));
});
