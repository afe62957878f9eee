// The shared gRPC runtime on real sockets: access policy, status mapping, logging without
// secrets, client retries and keepalive, graceful stop.
import test from 'ava';
import { ClientError, createChannel, createClient, Status } from 'nice-grpc';
import { HealthDefinition } from '../../gen/ts/grpc/health/v1/health.js';
import {
  ClusterServiceDefinition,
  type ClusterServiceImplementation,
} from '../../gen/ts/ultracloud/deployer/v1/cluster_service.js';
import { ConflictError, InvalidArgumentError, UnauthenticatedError } from '../../lib/errors.js';
import type { Authenticator } from '../../lib/grpc/auth.js';
import { createServiceClient, openChannel } from '../../lib/grpc/client.js';
import { bindService, type HandlerContext, type RunningServer, startGrpcServer } from '../../lib/grpc/server.js';
import { captureLog } from '../helpers/log-capture.js';

const SECRET = 'ucop_test-secret-value-that-must-never-be-logged';

const capture = () => captureLog('debug');

const operatorToken: Authenticator = {
  async authenticate({ bearer }) {
    if (!bearer?.startsWith('ucop_')) return undefined;
    if (bearer !== SECRET) throw new UnauthenticatedError('operator token not recognised');
    return { kind: 'operator', role: 'viewer', subject: 'alice' };
  },
};

/** A ClusterService whose behaviour each test chooses: the middleware is what is under test. */
function clusterService(behaviour: { apply?: () => Promise<never>; get?: (ctx: HandlerContext) => Promise<void> }): ClusterServiceImplementation<HandlerContext> {
  return {
    async applyClusterState() {
      if (behaviour.apply) return behaviour.apply();
      return { generation: 1n, applied: true, changes: [] };
    },
    async getClusterState(_req, ctx) {
      await behaviour.get?.(ctx);
      return { state: undefined, generation: 7n, appliedAt: undefined, appliedBy: ctx.principal.kind === 'operator' ? ctx.principal.subject : '' };
    },
  };
}

async function serve(t: { teardown(fn: () => Promise<void>): void }, impl: ClusterServiceImplementation<HandlerContext>, logger = capture().logger, port = 0): Promise<RunningServer> {
  const server = await startGrpcServer({
    logger,
    listen: { host: '127.0.0.1', port },
    services: [bindService(ClusterServiceDefinition, impl)],
    // ApplyClusterState is deliberately absent: the policy must deny it.
    policy: { '/ultracloud.deployer.v1.ClusterService/GetClusterState': { operator: 'viewer' } },
    authenticators: [operatorToken],
    shutdownGraceMs: 2_000,
  });
  t.teardown(() => server.stop());
  return server;
}

test('an RPC missing from the access policy is denied even to an authenticated operator', async (t) => {
  const server = await serve(t, clusterService({}));
  const client = createServiceClient(ClusterServiceDefinition, openChannel(server.address), { token: SECRET });
  const err = await t.throwsAsync(client.applyClusterState({ state: undefined, dryRun: true, expectedGeneration: 0n }), { instanceOf: ClientError });
  t.is(err?.code, Status.PERMISSION_DENIED);
  t.regex(err?.details ?? '', /not in the access policy/);
});

test('no credential is UNAUTHENTICATED, a wrong one too, a valid one reaches the handler with its principal', async (t) => {
  const server = await serve(t, clusterService({}));
  const anonymous = createServiceClient(ClusterServiceDefinition, openChannel(server.address));
  t.is((await t.throwsAsync(anonymous.getClusterState({}), { instanceOf: ClientError }))?.code, Status.UNAUTHENTICATED);
  const wrong = createServiceClient(ClusterServiceDefinition, openChannel(server.address), { token: 'ucop_wrong' });
  t.is((await t.throwsAsync(wrong.getClusterState({}), { instanceOf: ClientError }))?.code, Status.UNAUTHENTICATED);
  const unknownKind = createServiceClient(ClusterServiceDefinition, openChannel(server.address), { token: 'something-else' });
  t.is((await t.throwsAsync(unknownKind.getClusterState({}), { instanceOf: ClientError }))?.code, Status.UNAUTHENTICATED);
  const alice = createServiceClient(ClusterServiceDefinition, openChannel(server.address), { token: SECRET });
  const res = await alice.getClusterState({});
  t.is(res.appliedBy, 'alice');
  t.is(res.generation, 7n);
});

test('health and reflection need no credential', async (t) => {
  const server = await serve(t, clusterService({}));
  const health = createClient(HealthDefinition, createChannel(server.address));
  t.is((await health.check({ service: ClusterServiceDefinition.fullName })).status, 1);
});

test('domain errors keep their status and message; unexpected errors become INTERNAL and are logged, not leaked', async (t) => {
  const { lines, logger } = capture();
  let mode: 'invalid' | 'conflict' | 'crash' = 'invalid';
  const server = await serve(
    t,
    clusterService({
      get: async () => {
        if (mode === 'invalid') throw new InvalidArgumentError([{ field: 'state.nodes.cp-1.hostname', description: 'duplicate' }]);
        if (mode === 'conflict') throw new ConflictError('expected_generation 3 is stale');
        throw new Error('database password=hunter2 rejected');
      },
    }),
    logger,
  );
  const client = createServiceClient(ClusterServiceDefinition, openChannel(server.address), { token: SECRET });
  const invalid = await t.throwsAsync(client.getClusterState({}), { instanceOf: ClientError });
  t.is(invalid?.code, Status.INVALID_ARGUMENT);
  t.is(invalid?.details, 'state.nodes.cp-1.hostname: duplicate');
  mode = 'conflict';
  t.is((await t.throwsAsync(client.getClusterState({}), { instanceOf: ClientError }))?.code, Status.ABORTED);
  mode = 'crash';
  // INTERNAL is retryable for side-effect-free RPCs; one attempt is enough to see the mapping.
  const crash = await t.throwsAsync(client.getClusterState({}, { retry: false }), { instanceOf: ClientError });
  t.is(crash?.code, Status.INTERNAL);
  t.is(crash?.details, 'internal error');
  const log = lines.join('');
  t.regex(log, /"event":"rpc.failed".*"code":"INTERNAL"/);
  t.regex(log, /hunter2/, 'the unexpected error is in the log for the operator');
  t.regex(log, /"event":"rpc.rejected".*"code":"INVALID_ARGUMENT"/);
  t.false(log.includes(SECRET), 'the bearer token never reaches the log');
});

test('a denial is logged with the rpc and principal but without the credential', async (t) => {
  const { lines, logger } = capture();
  const server = await serve(t, clusterService({}), logger);
  const client = createServiceClient(ClusterServiceDefinition, openChannel(server.address), { token: SECRET });
  await t.throwsAsync(client.applyClusterState({ state: undefined, dryRun: false, expectedGeneration: 0n }));
  const log = lines.join('');
  t.regex(log, /"event":"access.denied".*"rpc":"\/ultracloud.deployer.v1.ClusterService\/ApplyClusterState".*"principal":"operator:alice\(viewer\)"/);
  t.false(log.includes(SECRET));
});

test('the client retries a side-effect-free RPC with backoff until a late server comes up', async (t) => {
  // Find a free port, release it, and start the server there only after the first attempts fail.
  const probe = await serve({ teardown: () => undefined }, clusterService({}));
  const port = probe.port;
  await probe.stop();
  const client = createServiceClient(ClusterServiceDefinition, openChannel(`127.0.0.1:${port}`), { token: SECRET });
  const late = new Promise<RunningServer>((resolve) => setTimeout(() => resolve(serve(t, clusterService({}), capture().logger, port)), 400));
  // GetClusterState is marked NO_SIDE_EFFECTS in the contract, so it is retried without asking.
  const res = await client.getClusterState({}, { retryMaxAttempts: 8 });
  await late;
  t.is(res.generation, 7n);
});

test('grpc-js servers accept the clients keepalive pings, even far more frequent ones', async (t) => {
  const server = await serve(t, clusterService({}));
  const channel = createChannel(server.address, undefined, {
    'grpc.keepalive_time_ms': 100,
    'grpc.keepalive_timeout_ms': 1_000,
    'grpc.keepalive_permit_without_calls': 1,
  });
  t.teardown(() => channel.close());
  const health = createClient(HealthDefinition, channel);
  for (let i = 0; i < 15; i++) {
    t.is((await health.check({ service: '' })).status, 1);
    await new Promise((r) => setTimeout(r, 100));
  }
});

test('stop lets an in-flight unary call finish and then refuses new connections', async (t) => {
  let release: () => void = () => undefined;
  let entered: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  const inHandler = new Promise<void>((r) => (entered = r));
  const server = await serve(
    t,
    clusterService({
      get: () => {
        entered();
        return gate;
      },
    }),
  );
  const client = createServiceClient(ClusterServiceDefinition, openChannel(server.address), { token: SECRET });
  const inFlight = client.getClusterState({});
  await inHandler;
  const stopped = server.stop();
  setTimeout(release, 100);
  t.is((await inFlight).generation, 7n);
  await stopped;
  const after = createClient(HealthDefinition, createChannel(server.address));
  const err = await t.throwsAsync(after.check({ service: '' }, { deadline: 1_000 } as never), { instanceOf: ClientError });
  t.true(err?.code === Status.UNAVAILABLE || err?.code === Status.DEADLINE_EXCEEDED);
});
