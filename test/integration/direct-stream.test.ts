// A bidi method served directly on grpc-js (lib/grpc/direct-stream.ts), over a real socket: it
// must keep every promise the middleware makes for other methods — policy, status mapping, one
// log line and the RPC metrics per call, UNAVAILABLE on server stop — and deliver messages in
// order both ways, also past its read-ahead while the handler is slow.
import { Client as GrpcClient, Metadata as GrpcMetadata, credentials } from '@grpc/grpc-js';
import test from 'ava';
import { ClientError, Status } from 'nice-grpc';
import type { Registry } from 'prom-client';
import { ConnectRequest, ConnectResponse, HostAgentServiceDefinition } from '../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import { InvalidArgumentError, UnauthenticatedError } from '../../lib/errors.js';
import type { Authenticator } from '../../lib/grpc/auth.js';
import { createServiceClient, openChannel } from '../../lib/grpc/client.js';
import type { DirectBidiHandler } from '../../lib/grpc/direct-stream.js';
import { bindDirectService, type RunningServer, startGrpcServer } from '../../lib/grpc/server.js';
import { createMetricsRegistry } from '../../lib/metrics.js';
import { eventually } from '../helpers/eventually.js';
import { type CapturedLog, captureLog } from '../helpers/log-capture.js';

const TOKEN = 'ucop_direct-stream-test-token';
const CONNECT = '/ultracloud.host.v1.HostAgentService/Connect';
const operator: Authenticator = {
  async authenticate({ bearer }) {
    if (bearer !== TOKEN) throw new UnauthenticatedError('operator token not recognised');
    return { kind: 'operator', role: 'viewer', subject: 'alice' };
  },
};

type Handler = DirectBidiHandler<ConnectRequest, ConnectResponse>;

interface Served {
  server: RunningServer;
  log: CapturedLog;
  registry: Registry;
  client: ReturnType<typeof createServiceClient<typeof HostAgentServiceDefinition>>;
}

async function serve(t: import('ava').ExecutionContext, handler: Handler, authenticator: Authenticator = operator): Promise<Served> {
  const log = captureLog('debug');
  const registry = createMetricsRegistry();
  const server = await startGrpcServer({
    logger: log.logger,
    listen: { host: '127.0.0.1', port: 0 },
    services: [bindDirectService(HostAgentServiceDefinition, { connect: handler })],
    policy: { [CONNECT]: { operator: 'viewer' } },
    authenticators: [authenticator],
    metrics: registry,
    shutdownGraceMs: 1_000,
  });
  const channel = openChannel(server.address);
  t.teardown(async () => {
    channel.close();
    await server.stop();
  });
  return { server, log, registry, client: createServiceClient(HostAgentServiceDefinition, channel, { token: TOKEN }) };
}

function heartbeat(sequence: number): ConnectRequest {
  return { sequence: BigInt(sequence), payload: { $case: 'heartbeat', value: { systemState: 'running' } as never } };
}

async function* messages(count: number): AsyncGenerator<ConnectRequest> {
  for (let i = 1; i <= count; i++) yield heartbeat(i);
}

/** Acks each message it reads, after `delayMs`. */
const echo =
  (delayMs = 0): Handler =>
  async (call) => {
    for (let m = await call.read(); m !== undefined; m = await call.read()) {
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
      call.write({ payload: { $case: 'ack', value: { sequence: m.sequence, serverTime: undefined, heartbeatInterval: undefined } } });
    }
  };

async function metric(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const found = (await registry.getSingleMetric(name)?.get())?.values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x));
  return found?.reduce((sum, v) => sum + v.value, 0);
}

/** Waits until `condition` holds. */
const until = (condition: () => boolean | Promise<boolean>) => eventually(async () => ((await condition()) ? true : undefined));

const labels = (code: string) => ({ grpc_service: 'ultracloud.host.v1.HostAgentService', grpc_method: 'Connect', grpc_type: 'bidi_stream', grpc_code: code });

test('messages arrive in order both ways, past the read-ahead while the handler is slow; the call is counted and logged once', async (t) => {
  const s = await serve(t, echo(2));
  const acks: bigint[] = [];
  for await (const r of s.client.connect(messages(60))) if (r.payload?.$case === 'ack') acks.push(r.payload.value.sequence);
  t.deepEqual(acks, Array.from({ length: 60 }, (_, i) => BigInt(i + 1)));
  await until(async () => (await metric(s.registry, 'ultracloud_grpc_server_handled_total', labels('OK'))) === 1);
  t.is(await metric(s.registry, 'ultracloud_grpc_server_open_streams', { grpc_method: 'Connect' }), 0);
  const finished = s.log.events().filter((e) => e.event === 'rpc.finished' && e.rpc === CONNECT);
  t.is(finished.length, 1);
  t.false(s.log.lines.join('').includes(TOKEN));
});

test('a domain error ends the stream with its status and message; anything else is INTERNAL, its stack in the log only', async (t) => {
  const s = await serve(t, async (call) => {
    const m = await call.read();
    if (m?.sequence === 1n) throw new InvalidArgumentError({ field: 'payload', description: 'not a hello' });
    throw new Error('disk on fire');
  });
  const first = await t.throwsAsync(async () => {
    for await (const _ of s.client.connect(messages(1))) void _;
  });
  t.true(first instanceof ClientError);
  t.is((first as ClientError).code, Status.INVALID_ARGUMENT);
  t.regex((first as ClientError).details, /payload: not a hello/);
  const second = await t.throwsAsync(async () => {
    async function* two() {
      yield heartbeat(2);
    }
    for await (const _ of s.client.connect(two())) void _;
  });
  t.is((second as ClientError).code, Status.INTERNAL);
  t.is((second as ClientError).details, 'internal error');
  await until(async () => (await metric(s.registry, 'ultracloud_grpc_server_handled_total', labels('INTERNAL'))) === 1);
  t.is(await metric(s.registry, 'ultracloud_grpc_server_handled_total', labels('INVALID_ARGUMENT')), 1);
  const failed = s.log.events().find((e) => e.event === 'rpc.failed');
  t.regex(JSON.stringify(failed?.err), /disk on fire/);
  t.truthy(s.log.events().find((e) => e.event === 'rpc.rejected' && e.code === 'INVALID_ARGUMENT'));
});

test('a caller without a credential never reaches the handler', async (t) => {
  let reached = false;
  const s = await serve(t, async () => {
    reached = true;
  });
  const anonymous = createServiceClient(HostAgentServiceDefinition, openChannel(s.server.address));
  const err = await t.throwsAsync(async () => {
    for await (const _ of anonymous.connect(messages(1))) void _;
  });
  t.is((err as ClientError).code, Status.UNAUTHENTICATED);
  t.false(reached);
  await until(async () => (await metric(s.registry, 'ultracloud_grpc_server_handled_total', labels('UNAUTHENTICATED'))) === 1);
});

test('stopping the server ends open streams with UNAVAILABLE, and the handler reads the end', async (t) => {
  let readEnd = false;
  const s = await serve(t, async (call) => {
    await echo()(call);
    readEnd = true;
  });
  const results: (ClientError | 'ended')[] = [];
  const streams = Array.from({ length: 3 }, async () => {
    async function* forever() {
      yield heartbeat(1);
      await new Promise(() => undefined);
    }
    try {
      for await (const _ of s.client.connect(forever())) void _;
      results.push('ended');
    } catch (err) {
      results.push(err as ClientError);
    }
  });
  await until(async () => (await metric(s.registry, 'ultracloud_grpc_server_open_streams', { grpc_method: 'Connect' })) === 3);
  await s.server.stop();
  await Promise.all(streams);
  t.deepEqual(
    results.map((r) => (r === 'ended' ? r : Status[r.code])),
    ['UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE'],
  );
  t.true(readEnd);
  t.is(await metric(s.registry, 'ultracloud_grpc_server_handled_total', labels('UNAVAILABLE')), 3);
});

test('a client that resets its stream ends the handler read; the call is counted once and no longer open', async (t) => {
  let handlerDone = false;
  const s = await serve(t, async (call) => {
    await echo()(call);
    handlerDone = true;
  });
  // A plain grpc-js client: cancel() resets the stream without closing the client's side first.
  const client = new GrpcClient(s.server.address, credentials.createInsecure());
  t.teardown(() => client.close());
  const metadata = new GrpcMetadata();
  metadata.set('authorization', `Bearer ${TOKEN}`);
  const call = client.makeBidiStreamRequest(CONNECT, (m: ConnectRequest) => Buffer.from(ConnectRequest.encode(m).finish()), (b: Buffer) => ConnectResponse.decode(b), metadata);
  const first = new Promise<ConnectResponse>((resolve) => call.once('data', resolve));
  const ended = new Promise<{ code: number }>((resolve) => call.once('status', resolve));
  call.on('error', () => undefined);
  call.write(heartbeat(1));
  t.is((await first).payload?.$case, 'ack');
  call.cancel();
  t.is((await ended).code, Status.CANCELLED);
  await until(() => handlerDone);
  // The reset reaches grpc-js as the end of the client's messages, then as a cancellation: the
  // handler may finish on the first before the second is known. Either way it counts once.
  const counted = async () => ((await metric(s.registry, 'ultracloud_grpc_server_handled_total', labels('OK'))) ?? 0) + ((await metric(s.registry, 'ultracloud_grpc_server_handled_total', labels('CANCELLED'))) ?? 0);
  await until(async () => (await counted()) === 1);
  t.is(await metric(s.registry, 'ultracloud_grpc_server_open_streams', { grpc_method: 'Connect' }), 0);
  t.is(s.log.events().filter((e) => (e.event === 'rpc.cancelled' || e.event === 'rpc.finished') && e.rpc === CONNECT).length, 1);
});

test('a client that goes away while its call is being authorised is counted once, and its handler never runs', async (t) => {
  let reached = false;
  let authorising: () => void = () => undefined;
  const slow: Authenticator = {
    async authenticate(request) {
      authorising();
      await new Promise((r) => setTimeout(r, 300));
      return operator.authenticate(request);
    },
  };
  const s = await serve(
    t,
    async () => {
      reached = true;
    },
    slow,
  );
  const client = new GrpcClient(s.server.address, credentials.createInsecure());
  t.teardown(() => client.close());
  const metadata = new GrpcMetadata();
  metadata.set('authorization', `Bearer ${TOKEN}`);
  const started = new Promise<void>((resolve) => (authorising = resolve));
  const call = client.makeBidiStreamRequest(CONNECT, (m: ConnectRequest) => Buffer.from(ConnectRequest.encode(m).finish()), (b: Buffer) => ConnectResponse.decode(b), metadata);
  call.on('error', () => undefined);
  call.write(heartbeat(1));
  await started;
  call.cancel();
  await until(async () => (await metric(s.registry, 'ultracloud_grpc_server_handled_total', labels('CANCELLED'))) === 1);
  await new Promise((r) => setTimeout(r, 500));
  t.false(reached, 'the handler never ran for a caller that was gone');
  t.is(await metric(s.registry, 'ultracloud_grpc_server_open_streams', { grpc_method: 'Connect' }), 0);
  t.is(await metric(s.registry, 'ultracloud_grpc_server_handled_total', labels('CANCELLED')), 1);
});
