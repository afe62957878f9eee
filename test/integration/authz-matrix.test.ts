// The access matrix: every RPC of every service the deployer serves, called over real TLS sockets
// (server certificate from the cluster CA, client certificates asked for and verified) by every
// kind of caller — anonymous, issued operator tokens of each role, the bootstrap admin token, a
// token from the operator tokens file, a revoked and an expired token, each installer credential,
// a node's own certificate and a certificate from another CA — on PGlite and on PostgreSQL.
// Each call must be refused with exactly the expected status, or not refused at all (an allowed
// call may still fail later, e.g. NOT_FOUND for the made-up machine it names). Denials must reach
// the audit log.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { type Channel, ClientError, Status } from 'nice-grpc';
import type { CompatServiceDefinition } from 'nice-grpc/lib/service-definitions/index.js';
import { BootstrapServiceDefinition } from '../../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import { AccessServiceDefinition, Role } from '../../gen/ts/ultracloud/deployer/v1/access_service.js';
import { ClusterServiceDefinition } from '../../gen/ts/ultracloud/deployer/v1/cluster_service.js';
import { ClusterState } from '../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import { MachineServiceDefinition } from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { AuditEvent, AuditOutcome, InstallPhase } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { createServiceClient, openChannel } from '../../lib/grpc/client.js';
import { createClusterCa, issueNodeCredentials } from '../../lib/pki/index.js';
import { type DeployerServer, forEachDeployerTarget, sharedDeployer } from '../helpers/deployer-server.js';
import { eventually } from '../helpers/eventually.js';
import { machineInventory, optiplexFacts, SimulatedInstaller } from '../helpers/simulated-installer.js';

const LAB6: unknown = JSON.parse(readFileSync(new URL('../fixtures/cluster-state/lab6.json', import.meta.url), 'utf8'));

const SERVICES = [BootstrapServiceDefinition, ClusterServiceDefinition, MachineServiceDefinition, AccessServiceDefinition] as const;

type Caller =
  | 'anonymous'
  | 'viewer'
  | 'operator'
  | 'admin'
  | 'bootstrap-admin'
  | 'file-operator'
  | 'revoked'
  | 'expired'
  | 'join-token'
  | 'session-secret'
  | 'install-token'
  | 'agent-cert'
  | 'foreign-cert';

const CALLERS: readonly Caller[] = [
  'anonymous',
  'viewer',
  'operator',
  'admin',
  'bootstrap-admin',
  'file-operator',
  'revoked',
  'expired',
  'join-token',
  'session-secret',
  'install-token',
  'agent-cert',
  'foreign-cert',
];

/** Callers without a usable identity: refused with UNAUTHENTICATED wherever they call. */
const UNAUTHENTICATED: ReadonlySet<Caller> = new Set(['anonymous', 'revoked', 'expired', 'foreign-cert']);

const VIEWERS: readonly Caller[] = ['viewer', 'operator', 'admin', 'bootstrap-admin', 'file-operator'];
const OPERATORS: readonly Caller[] = ['operator', 'admin', 'bootstrap-admin', 'file-operator'];
const ADMINS: readonly Caller[] = ['admin', 'bootstrap-admin'];

/** Who may call what, as the contracts say (written out here, not read from policy.ts). */
const ALLOWED: Readonly<Record<string, readonly Caller[]>> = {
  '/ultracloud.bootstrap.v1.BootstrapService/Discover': ['join-token'],
  '/ultracloud.bootstrap.v1.BootstrapService/FetchPlan': ['session-secret'],
  '/ultracloud.bootstrap.v1.BootstrapService/ReportInstallProgress': ['install-token'],
  '/ultracloud.deployer.v1.ClusterService/ApplyClusterState': ADMINS,
  '/ultracloud.deployer.v1.ClusterService/GetClusterState': VIEWERS,
  '/ultracloud.deployer.v1.MachineService/ListMachines': VIEWERS,
  '/ultracloud.deployer.v1.MachineService/GetMachine': VIEWERS,
  '/ultracloud.deployer.v1.MachineService/WatchMachines': VIEWERS,
  '/ultracloud.deployer.v1.MachineService/ListAuditEvents': VIEWERS,
  '/ultracloud.deployer.v1.MachineService/Commission': OPERATORS,
  '/ultracloud.deployer.v1.MachineService/Release': OPERATORS,
  '/ultracloud.deployer.v1.MachineService/Deploy': OPERATORS,
  '/ultracloud.deployer.v1.MachineService/Reinstall': OPERATORS,
  '/ultracloud.deployer.v1.MachineService/Rescue': OPERATORS,
  '/ultracloud.deployer.v1.MachineService/ExitRescue': OPERATORS,
  '/ultracloud.deployer.v1.MachineService/Drain': OPERATORS,
  '/ultracloud.deployer.v1.MachineService/Undrain': OPERATORS,
  '/ultracloud.deployer.v1.MachineService/Activate': OPERATORS,
  '/ultracloud.deployer.v1.MachineService/MarkFailed': OPERATORS,
  '/ultracloud.deployer.v1.MachineService/Retry': OPERATORS,
  '/ultracloud.deployer.v1.MachineService/Delete': ADMINS,
  '/ultracloud.deployer.v1.AccessService/CreateToken': ADMINS,
  '/ultracloud.deployer.v1.AccessService/ListTokens': ADMINS,
  '/ultracloud.deployer.v1.AccessService/RevokeToken': ADMINS,
  '/ultracloud.deployer.v1.AccessService/WhoAmI': VIEWERS,
};

interface Rpc {
  readonly path: string;
  readonly definition: CompatServiceDefinition;
  /** The client method name (lowerCamel). */
  readonly key: string;
  readonly serverStream: boolean;
}

function rpcsOf(definition: (typeof SERVICES)[number]): Rpc[] {
  return Object.entries(definition.methods).map(([key, m]) => ({
    path: `/${definition.fullName}/${m.name}`,
    definition: definition as unknown as CompatServiceDefinition,
    key,
    serverStream: m.responseStream,
  }));
}

const RPCS: readonly Rpc[] = SERVICES.flatMap(rpcsOf);

/** A machine no caller can change by accident: every transition names it and gets NOT_FOUND. */
const NO_MACHINE = 'm-authz-matrix-none';

interface World {
  readonly server: DeployerServer;
  readonly dir: string;
  readonly machineId: string;
  readonly nodeId: string;
  readonly secrets: Readonly<Record<string, string>>;
  readonly channels: { readonly plain: Channel; readonly agent: Channel; readonly foreign: Channel };
}

/** The body each RPC is called with: harmless for whoever is let through. */
function requestFor(rpc: Rpc, world: World): unknown {
  const method = rpc.path.split('/').pop() as string;
  switch (method) {
    case 'Discover':
      // Another machine: an allowed Discover must not replace the session secret under test.
      return { inventory: machineInventory(optiplexFacts()), bootId: 'authz-matrix', installerVersion: 'test' };
    case 'FetchPlan':
      return { machineId: world.machineId };
    case 'ReportInstallProgress':
      return { machineId: world.machineId, phase: InstallPhase.INSTALL_PHASE_INSTALL, percent: 150 };
    case 'ApplyClusterState':
      return { state: ClusterState.fromJSON(LAB6), dryRun: true, expectedGeneration: 0n };
    case 'GetMachine':
      return { key: { $case: 'machineId', value: NO_MACHINE } };
    case 'ListAuditEvents':
      return { pageSize: 1 };
    case 'CreateToken':
      return { name: '', role: Role.ROLE_UNSPECIFIED };
    case 'RevokeToken':
      return { token: { $case: 'tokenId', value: 'tok-authz-matrix-none' }, reason: 'authz matrix' };
    case 'ListMachines':
    case 'WatchMachines':
    case 'GetClusterState':
    case 'ListTokens':
    case 'WhoAmI':
      return {};
    default:
      return { machineId: NO_MACHINE, reason: 'authz matrix', expectedResourceVersion: 0n };
  }
}

type AnyClient = Record<string, (request: unknown, options?: { signal?: AbortSignal }) => Promise<unknown> | AsyncIterable<unknown>>;

function clientFor(world: World, rpc: Rpc, caller: Caller): AnyClient {
  const channel = caller === 'agent-cert' ? world.channels.agent : caller === 'foreign-cert' ? world.channels.foreign : world.channels.plain;
  const token = world.secrets[caller];
  return createServiceClient(rpc.definition, channel, { defaultDeadlineMs: 30_000, ...(token ? { token } : {}) }) as unknown as AnyClient;
}

/** The status the call ended with; OK for a stream that delivered or stayed open. */
async function callStatus(world: World, rpc: Rpc, caller: Caller): Promise<{ code: Status; details: string }> {
  const call = clientFor(world, rpc, caller)[rpc.key];
  if (!call) throw new Error(`no client method ${rpc.key}`);
  const request = requestFor(rpc, world);
  const abort = new AbortController();
  try {
    if (rpc.serverStream) {
      const stream = call(request, { signal: abort.signal }) as AsyncIterable<unknown>;
      const first = stream[Symbol.asyncIterator]().next();
      first.catch(() => undefined);
      // A refusal arrives at once; an admitted watch may stay quiet until something changes.
      const quiet = new Promise<'open'>((resolve) => setTimeout(() => resolve('open'), 3_000).unref());
      await Promise.race([first, quiet]);
    } else {
      await call(request);
    }
    return { code: Status.OK, details: '' };
  } catch (err) {
    if (err instanceof ClientError) return { code: err.code, details: err.details };
    throw err;
  } finally {
    abort.abort();
  }
}

function expectedRefusal(rpc: Rpc, caller: Caller): Status | undefined {
  if ((ALLOWED[rpc.path] ?? []).includes(caller)) return undefined;
  return UNAUTHENTICATED.has(caller) ? Status.UNAUTHENTICATED : Status.PERMISSION_DENIED;
}

async function prepare(server: DeployerServer): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'ultracloud-authz-'));
  await server.cluster.applyClusterState({ state: ClusterState.fromJSON(LAB6), dryRun: false, expectedGeneration: 0n });
  const access = server.client(AccessServiceDefinition, server.adminToken);
  const issue = async (name: string, role: Role, ttlSeconds?: number) =>
    (await access.createToken({ name, role, description: 'authz matrix', ...(ttlSeconds ? { ttl: { seconds: BigInt(ttlSeconds), nanos: 0 } } : {}) })).secret;
  const viewer = await issue('matrix-viewer', Role.ROLE_VIEWER);
  const operator = await issue('matrix-operator', Role.ROLE_OPERATOR);
  const admin = await issue('matrix-admin', Role.ROLE_ADMIN);
  const revoked = await issue('matrix-revoked', Role.ROLE_ADMIN);
  await access.revokeToken({ token: { $case: 'name', value: 'matrix-revoked' }, reason: 'authz matrix' });
  const expired = await issue('matrix-expired', Role.ROLE_ADMIN, 1);

  const machine = new SimulatedInstaller({ channel: server.channel, joinToken: server.joinToken }, machineInventory(optiplexFacts()));
  await machine.discover();
  const plan = await machine.fetchPlan();
  const nodeId = plan.assignment?.nodeId ?? '';
  const nodeCert = join(dir, 'node.pem');
  const nodeKey = join(dir, 'node.key');
  writeFileSync(nodeCert, plan.secrets?.tlsCertificatePem ?? '');
  writeFileSync(nodeKey, plan.secrets?.tlsPrivateKeyPem ?? '', { mode: 0o600 });
  // The same node name, signed by somebody else's CA.
  const foreign = await issueNodeCredentials(await createClusterCa({ commonName: 'Not the cluster CA' }), { nodeId, hostname: nodeId });
  const foreignCert = join(dir, 'foreign.pem');
  const foreignKey = join(dir, 'foreign.key');
  writeFileSync(foreignCert, foreign.tlsCertificatePem);
  writeFileSync(foreignKey, foreign.tlsPrivateKeyPem, { mode: 0o600 });
  const caFile = join(server.stateDir, 'ca.pem');

  // Let the 1 s token lapse before anyone uses it.
  await new Promise((resolve) => setTimeout(resolve, 1_100));
  return {
    server,
    dir,
    machineId: machine.machineId,
    nodeId,
    secrets: {
      viewer,
      operator,
      admin,
      'bootstrap-admin': server.adminToken,
      'file-operator': FILE_OPERATOR_SECRET,
      revoked,
      expired,
      'join-token': server.joinToken,
      'session-secret': machine.sessionSecret,
      'install-token': machine.installToken,
    },
    channels: {
      plain: server.channel,
      agent: openChannel(server.address, { tls: { caFile, certFile: nodeCert, keyFile: nodeKey } }),
      foreign: openChannel(server.address, { tls: { caFile, certFile: foreignCert, keyFile: foreignKey } }),
    },
  };
}

const FILE_OPERATOR_SECRET = 'ucop_authz-matrix-file-operator-0123456789abcdefghijk';
const tokensDir = mkdtempSync(join(tmpdir(), 'ultracloud-authz-tokens-'));
const TOKENS_FILE = join(tokensDir, 'operator-tokens');
writeFileSync(TOKENS_FILE, `# test\noperator ${createHash('sha256').update(FILE_OPERATOR_SECRET).digest('hex')} matrix-file-operator\n`, { mode: 0o600 });
test.after.always(() => rmSync(tokensDir, { recursive: true, force: true }));

test('the matrix names every RPC of every service the deployer serves, and nothing else', (t) => {
  t.deepEqual(RPCS.map((r) => r.path).sort(), Object.keys(ALLOWED).sort());
});

forEachDeployerTarget('authz matrix', (target) => {
  const shared = sharedDeployer(() => target.start({ tls: true, flags: { 'operator-tokens-file': TOKENS_FILE } }));
  let world: Promise<World> | undefined;
  const ready = () => (world ??= shared.get().then(prepare));
  test.after.always(async () => {
    const w = await world?.catch(() => undefined);
    w?.channels.agent.close();
    w?.channels.foreign.close();
    if (w) rmSync(w.dir, { recursive: true, force: true });
    await shared.stop();
  });

  for (const caller of CALLERS) {
    test.serial(`authz matrix: ${caller} on every deployer RPC [${target.name}]`, async (t) => {
      const w = await ready();
      for (const rpc of RPCS) {
        const { code, details } = await callStatus(w, rpc, caller);
        const expected = expectedRefusal(rpc, caller);
        const label = `${caller} → ${rpc.path}: ${Status[code]} ${details}`;
        if (expected === undefined) t.true(code !== Status.UNAUTHENTICATED && code !== Status.PERMISSION_DENIED, `allowed, but ${label}`);
        else t.is(Status[code], Status[expected], label);
      }
    });
  }

  test.serial(`denied calls are in the audit log with who, what, from where and why [${target.name}]`, async (t) => {
    const w = await ready();
    const events = await eventually(async () => {
      const res = await w.server.machines.listAuditEvents({ outcome: AuditOutcome.AUDIT_OUTCOME_DENIED, pageSize: 1000 });
      const wanted = [`agent:${w.nodeId}`, 'matrix-viewer', 'anonymous', `installer:${w.machineId}`];
      return wanted.every((actor) => res.events.some((e) => e.actor === actor)) ? res.events : undefined;
    });
    const viewerDelete = events.find((e) => e.actor === 'matrix-viewer' && e.rpc === '/ultracloud.deployer.v1.MachineService/Delete');
    t.truthy(viewerDelete, 'the viewer token calling Delete');
    t.regex(viewerDelete?.reason ?? '', /^PERMISSION_DENIED: operator:matrix-viewer\(viewer\) may not call/);
    t.true((viewerDelete?.peer ?? '').includes('127.0.0.1'), `peer ${viewerDelete?.peer}`);
    const agent = events.find((e) => e.actor === `agent:${w.nodeId}`);
    t.is(agent?.nodeId, w.nodeId);
    const revoked = events.find((e) => e.reason.includes('matrix-revoked was revoked'));
    t.is(revoked?.actor, 'anonymous', 'a refused credential acts as anonymous');
    t.regex(revoked?.reason ?? '', /^UNAUTHENTICATED: /);
    const session = events.find((e) => e.actor === `installer:${w.machineId}`);
    t.is(session?.machineId, w.machineId);
    for (const e of events) {
      for (const secret of Object.values(w.secrets)) t.false(JSON.stringify(AuditEvent.toJSON(e)).includes(secret), `audit event ${e.id} carries a credential`);
    }
  });
});

