// Agents authenticate by mTLS: a server from startGrpcServer, serving TLS that asks for (but does
// not require) client certificates, admits a caller as `agent:<CN>` only when its certificate
// chains to the server's CA, and a rule can hold an agent to the node its request names — the
// shape of HostAgentService.Connect ("hello.node_id must equal the certificate CN"). The stream
// cases run twice: against a nice-grpc implementation and against the same method served
// directly on grpc-js (lib/grpc/direct-stream.ts), which must behave alike. Real TLS sockets,
// certificates from lib/pki.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import test from 'ava';
import { ClientError, Metadata, Status } from 'nice-grpc';
import { type ConnectRequest, type ConnectResponse, HostAgentServiceDefinition } from '../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import { type CordonNodeRequest, SchedulerServiceDefinition } from '../../gen/ts/ultracloud/runtime/v1/scheduler_service.js';
import { UnauthenticatedError } from '../../lib/errors.js';
import { type AccessDenial, type AccessPolicy, type Authenticator, describePrincipal, sameNode } from '../../lib/grpc/auth.js';
import { CLIENT_CERTIFICATE_CN_KEY } from '../../lib/grpc/client-certificate.js';
import { createServiceClient, openChannel } from '../../lib/grpc/client.js';
import { bindDirectService, bindService, type HandlerContext, type RunningServer, startGrpcServer } from '../../lib/grpc/server.js';
import { ServerTlsCredentials } from '../../lib/grpc/server-tls.js';
import { createLogger } from '../../lib/log.js';
import { createClusterCa, issueControlPlaneCertificate, issueNodeCredentials } from '../../lib/pki/index.js';

const OPERATOR_SECRET = 'ucop_agent-mtls-test-operator-secret';
const operatorAuthenticator: Authenticator = {
  async authenticate({ bearer }) {
    if (!bearer?.startsWith('ucop_')) return undefined;
    if (bearer !== OPERATOR_SECRET) throw new UnauthenticatedError('operator token not recognised');
    return { kind: 'operator', role: 'admin', subject: 'alice' };
  },
};

const CONNECT = '/ultracloud.host.v1.HostAgentService/Connect';
const CORDON = '/ultracloud.runtime.v1.SchedulerService/CordonNode';
const LIST_NODES = '/ultracloud.runtime.v1.SchedulerService/ListSchedulerNodes';

const policy: AccessPolicy = {
  [CONNECT]: { agent: sameNode((m: ConnectRequest) => (m.payload?.$case === 'hello' ? m.payload.value.nodeId : undefined)) },
  [CORDON]: { agent: sameNode((r: CordonNodeRequest) => r.nodeId) },
  [LIST_NODES]: { operator: 'viewer', agent: true },
};

type Served = 'nice-grpc' | 'direct';

interface Fixture {
  server: RunningServer;
  /** The same, with Connect served directly on grpc-js. */
  direct: RunningServer;
  dir: string;
  files: Record<'ca' | 'node' | 'nodeKey' | 'other' | 'otherKey' | 'foreign' | 'foreignKey', string>;
  denials: AccessDenial[];
  /** Principals the handlers saw. */
  seen: string[];
  log: string[];
}

let f: Fixture;

test.before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ultracloud-mtls-'));
  const ca = await createClusterCa();
  const foreignCa = await createClusterCa({ commonName: 'Somebody else CA' });
  const serverCert = await issueControlPlaneCertificate(ca);
  const node = await issueNodeCredentials(ca, { nodeId: 'worker-7', hostname: 'worker-7' });
  const other = await issueNodeCredentials(ca, { nodeId: 'worker-8', hostname: 'worker-8' });
  // Same CN as the real node, but from a CA the server does not trust.
  const foreign = await issueNodeCredentials(foreignCa, { nodeId: 'worker-7', hostname: 'worker-7' });
  const files = {
    ca: join(dir, 'ca.pem'),
    node: join(dir, 'node.pem'),
    nodeKey: join(dir, 'node.key'),
    other: join(dir, 'other.pem'),
    otherKey: join(dir, 'other.key'),
    foreign: join(dir, 'foreign.pem'),
    foreignKey: join(dir, 'foreign.key'),
  };
  writeFileSync(files.ca, ca.certificatePem);
  writeFileSync(files.node, node.tlsCertificatePem);
  writeFileSync(files.nodeKey, node.tlsPrivateKeyPem, { mode: 0o600 });
  writeFileSync(files.other, other.tlsCertificatePem);
  writeFileSync(files.otherKey, other.tlsPrivateKeyPem, { mode: 0o600 });
  writeFileSync(files.foreign, foreign.tlsCertificatePem);
  writeFileSync(files.foreignKey, foreign.tlsPrivateKeyPem, { mode: 0o600 });

  const denials: AccessDenial[] = [];
  const seen: string[] = [];
  const log: string[] = [];
  const destination = new PassThrough();
  destination.on('data', (chunk: Buffer) => log.push(chunk.toString()));
  const scheduler = new Proxy(
    {},
    {
      get: (_target, method) => async (_request: unknown, context: HandlerContext) => {
        seen.push(`${String(method)} ${describePrincipal(context.principal)}`);
        return {};
      },
    },
  );
  const common = {
    logger: createLogger({ level: 'info', destination }),
    listen: { host: '127.0.0.1', port: 0 },
    credentials: new ServerTlsCredentials(serverCert, ca.certificatePem),
    policy,
    authenticators: [operatorAuthenticator],
    onDenied: (d: AccessDenial) => {
      denials.push(d);
    },
  };
  const scheduling = bindService(SchedulerServiceDefinition, scheduler as never);
  const server = await startGrpcServer({
    ...common,
    services: [
      bindService(HostAgentServiceDefinition, {
        async *connect(requests: AsyncIterable<ConnectRequest>, context: HandlerContext): AsyncGenerator<ConnectResponse> {
          seen.push(`connect ${describePrincipal(context.principal)}`);
          for await (const r of requests) yield { payload: { $case: 'ack', value: { sequence: r.sequence } } };
        },
      }),
      scheduling,
    ],
  });
  const direct = await startGrpcServer({
    ...common,
    services: [
      bindDirectService(HostAgentServiceDefinition, {
        async connect(call) {
          seen.push(`connect ${describePrincipal(call.principal)}`);
          for (let r = await call.read(); r !== undefined; r = await call.read()) call.write({ payload: { $case: 'ack', value: { sequence: r.sequence, serverTime: undefined, heartbeatInterval: undefined } } });
        },
      }),
      scheduling,
    ],
  });
  f = { server, direct, dir, files, denials, seen, log };
});

test.after.always(async () => {
  await f?.server.stop();
  await f?.direct.stop();
  if (f) rmSync(f.dir, { recursive: true, force: true });
});

type Who = 'node' | 'other' | 'foreign' | 'none';

function channelAs(who: Who, served: Served = 'nice-grpc') {
  const tls = who === 'none' ? { caFile: f.files.ca } : { caFile: f.files.ca, certFile: f.files[who], keyFile: f.files[`${who}Key`] };
  return openChannel((served === 'direct' ? f.direct : f.server).address, { tls });
}

async function* agentMessages(nodeId: string, extra: ConnectRequest[] = []): AsyncGenerator<ConnectRequest> {
  yield { sequence: 1n, payload: { $case: 'hello', value: { nodeId, bootId: 'b-1', agentVersion: 'test', systemProfile: '', currentSystem: '', journal: undefined } as never } };
  yield { sequence: 2n, payload: { $case: 'heartbeat', value: {} as never } };
  for (const m of extra) yield m;
}

async function connect(who: Who, nodeId: string, extra: ConnectRequest[] = [], token?: string, served: Served = 'nice-grpc'): Promise<bigint[]> {
  const channel = channelAs(who, served);
  try {
    const client = createServiceClient(HostAgentServiceDefinition, channel, token ? { token } : {});
    const acks: bigint[] = [];
    for await (const r of client.connect(agentMessages(nodeId, extra))) if (r.payload?.$case === 'ack') acks.push(r.payload.value.sequence);
    return acks;
  } finally {
    channel.close();
  }
}

async function refused(t: import('ava').ExecutionContext, call: Promise<unknown>, code: Status, text: RegExp): Promise<void> {
  const err = await t.throwsAsync(call);
  t.true(err instanceof ClientError, String(err));
  t.is((err as ClientError).code, code, `${Status[(err as ClientError).code]}: ${(err as ClientError).details}`);
  t.regex((err as ClientError).details, text);
}

for (const served of ['nice-grpc', 'direct'] as const) {
  test.serial(`a node certificate from the cluster CA opens its own node stream as agent:<CN> [${served}]`, async (t) => {
    const acks = await connect('node', 'worker-7', [], undefined, served);
    t.deepEqual(acks, [1n, 2n]);
    t.true(f.seen.includes('connect agent:worker-7'));
  });
}

for (const served of ['nice-grpc', 'direct'] as const) {
  test.serial(`a stream whose hello names another node is refused with PERMISSION_DENIED, and the denial is reported [${served}]`, async (t) => {
    const before = f.denials.length;
    await refused(t, connect('node', 'worker-8', [], undefined, served), Status.PERMISSION_DENIED, /agent:worker-7 may not call .*Connect for node worker-8/);
    const denial = f.denials.at(-1);
    t.is(f.denials.length, before + 1);
    t.is(denial?.method, CONNECT);
    t.is(denial?.code, 'PERMISSION_DENIED');
    t.deepEqual(denial?.principal, { kind: 'agent', nodeId: 'worker-7' });
  });
}

for (const served of ['nice-grpc', 'direct'] as const) {
  test.serial(`a later message that names another node ends the stream too [${served}]`, async (t) => {
    const intruder: ConnectRequest = { sequence: 3n, payload: { $case: 'hello', value: { nodeId: 'worker-8' } as never } };
    await refused(t, connect('node', 'worker-7', [intruder], undefined, served), Status.PERMISSION_DENIED, /for node worker-8/);
  });
}

for (const served of ['nice-grpc', 'direct'] as const) {
  test.serial(`another node of the same CA cannot speak for worker-7 [${served}]`, async (t) => {
    await refused(t, connect('other', 'worker-7', [], undefined, served), Status.PERMISSION_DENIED, /agent:worker-8 may not call/);
  });
}

for (const served of ['nice-grpc', 'direct'] as const) {
  test.serial(`a certificate from another CA is no identity: UNAUTHENTICATED, even with the right CN [${served}]`, async (t) => {
    await refused(t, connect('foreign', 'worker-7', [], undefined, served), Status.UNAUTHENTICATED, /credential is required/);
    t.is(f.denials.at(-1)?.principal?.kind, 'anonymous');
  });
}

for (const served of ['nice-grpc', 'direct'] as const) {
  test.serial(`without a certificate the TLS handshake still succeeds, and the call is UNAUTHENTICATED [${served}]`, async (t) => {
    await refused(t, connect('none', 'worker-7', [], undefined, served), Status.UNAUTHENTICATED, /credential is required/);
  });
}

test.serial('a client cannot forge the certificate metadata the server derives from TLS', async (t) => {
  const channel = channelAs('none');
  t.teardown(() => channel.close());
  const client = createServiceClient(SchedulerServiceDefinition, channel);
  const forged = Metadata({ [CLIENT_CERTIFICATE_CN_KEY]: 'worker-7' });
  await refused(t, client.cordonNode({ nodeId: 'worker-7', owner: 'x', reason: 'x' }, { metadata: forged }), Status.UNAUTHENTICATED, /credential is required/);
  const withCert = channelAs('other');
  t.teardown(() => withCert.close());
  // The real certificate says worker-8; a header claiming worker-7 changes nothing.
  const asOther = createServiceClient(SchedulerServiceDefinition, withCert);
  await refused(t, asOther.cordonNode({ nodeId: 'worker-7', owner: 'x', reason: 'x' }, { metadata: forged }), Status.PERMISSION_DENIED, /agent:worker-8/);
});

test.serial('a unary agent rule needs the request to name the caller own node', async (t) => {
  const channel = channelAs('node');
  t.teardown(() => channel.close());
  const client = createServiceClient(SchedulerServiceDefinition, channel);
  await client.cordonNode({ nodeId: 'worker-7', owner: 'agent', reason: 'maintenance' });
  t.true(f.seen.includes('cordonNode agent:worker-7'));
  await refused(t, client.cordonNode({ nodeId: 'worker-8', owner: 'agent', reason: 'x' }), Status.PERMISSION_DENIED, /for node worker-8/);
  await refused(t, client.cordonNode({ nodeId: '', owner: 'agent', reason: 'x' }), Status.PERMISSION_DENIED, /must name its own node/);
});

test.serial('a bearer token wins over a client certificate', async (t) => {
  const channel = channelAs('node');
  t.teardown(() => channel.close());
  const asOperator = createServiceClient(SchedulerServiceDefinition, channel, { token: OPERATOR_SECRET });
  await asOperator.listSchedulerNodes({});
  t.true(f.seen.includes('listSchedulerNodes operator:alice(admin)'));
  // Connect admits agents only: an operator token on the agent's connection is refused.
  await refused(t, connect('node', 'worker-7', [], OPERATOR_SECRET), Status.PERMISSION_DENIED, /operator:alice\(admin\) may not call/);
  await refused(t, connect('node', 'worker-7', [], OPERATOR_SECRET, 'direct'), Status.PERMISSION_DENIED, /operator:alice\(admin\) may not call/);
});

test.serial('an agent rule of `true` admits any verified node certificate', async (t) => {
  const channel = channelAs('other');
  t.teardown(() => channel.close());
  await createServiceClient(SchedulerServiceDefinition, channel).listSchedulerNodes({});
  t.true(f.seen.includes('listSchedulerNodes agent:worker-8'));
});

test.serial('denials are logged as access.denied with the principal, without any credential', (t) => {
  const lines = f.log.join('').split('\n').filter((l) => l.includes('"access.denied"'));
  t.true(lines.some((l) => l.includes('"principal":"agent:worker-7"') && l.includes(CONNECT)));
  t.false(f.log.join('').includes(OPERATOR_SECRET));
});
