// Operator tokens end to end: AccessService over real gRPC on PGlite and PostgreSQL (issue once,
// list without secrets, revoke at once, rotate, expire, audit), a revocation made on one deployer
// replica refusing the token on another at once (two servers on one PostgreSQL database), the
// operator tokens file, and `deployer-ctl tokens create|list|revoke` run as the real binary.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { ClientError, Status } from 'nice-grpc';
import { AccessServiceDefinition, ListTokensResponse, Role, type Token } from '../../gen/ts/ultracloud/deployer/v1/access_service.js';
import { MachineServiceDefinition } from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { AuditOutcome } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { daemonConfigSpec } from '../../lib/config/daemon.js';
import { loadConfig } from '../../lib/config/settings.js';
import { createServiceClient, openChannel } from '../../lib/grpc/client.js';
import { createLogger } from '../../lib/log.js';
import { serveComponents, type ServingProcess } from '../../lib/serve.js';
import { deployerComponent } from '../../services/deployer/component.js';
import { createTestDatabase, databaseTargets, unavailableTargetTest } from '../helpers/databases.js';
import { type DeployerServer, forEachDeployerTarget, sharedDeployer, startDeployerServer } from '../helpers/deployer-server.js';
import { eventually } from '../helpers/eventually.js';
import { DEPLOYER_CTL_BIN } from '../helpers/ultracloud-process.js';

const ACCESS = '/ultracloud.deployer.v1.AccessService';
const FILE_SECRET = 'ucop_tokens-test-file-viewer-secret-0123456789abcdefgh';
const work = mkdtempSync(join(tmpdir(), 'ultracloud-tokens-test-'));
const TOKENS_FILE = join(work, 'operator-tokens');
writeFileSync(TOKENS_FILE, `viewer ${createHash('sha256').update(FILE_SECRET).digest('hex')} dashboards\n`, { mode: 0o600 });
test.after.always(() => rmSync(work, { recursive: true, force: true }));

async function rejects(t: ExecutionContext, call: Promise<unknown>, code: Status, text?: RegExp): Promise<void> {
  const err = await t.throwsAsync(call, { instanceOf: ClientError });
  if (!(err instanceof ClientError)) return;
  t.is(Status[err.code], Status[code], err.details);
  if (text) t.regex(err.details, text);
}

function access(server: DeployerServer, token = server.adminToken) {
  return server.client(AccessServiceDefinition, token);
}

forEachDeployerTarget('operator tokens', (target) => {
  const shared = sharedDeployer(() => target.start({ flags: { 'operator-tokens-file': TOKENS_FILE } }));
  test.after.always(() => shared.stop());
  const title = (text: string) => `${text} [${target.name}]`;

  test(title('CreateToken returns the secret once; ListTokens shows metadata only; the token acts with its role'), async (t) => {
    const server = await shared.get();
    const created = await access(server).createToken({ name: 'alice-laptop', role: Role.ROLE_OPERATOR, description: 'Alice, lab laptop' });
    t.regex(created.secret, /^ucop_[A-Za-z0-9_-]{43}$/);
    t.like(created.token, { name: 'alice-laptop', role: Role.ROLE_OPERATOR, createdBy: 'bootstrap', description: 'Alice, lab laptop' });
    t.regex(created.token?.tokenId ?? '', /^tok-[0-9a-f]{16}$/);
    t.is(created.token?.expiresAt, undefined);

    const listed = await access(server).listTokens({});
    t.true(listed.tokens.some((x) => x.tokenId === created.token?.tokenId));
    t.false(JSON.stringify(ListTokensResponse.toJSON(listed)).includes(created.secret), 'ListTokens carries a secret');

    const asAlice = server.client(MachineServiceDefinition, created.secret);
    await asAlice.listMachines({});
    // WhoAmI: what another service learns about a token it was handed.
    t.deepEqual(await access(server, created.secret).whoAmI({}), { subject: 'alice-laptop', role: Role.ROLE_OPERATOR, tokenId: created.token?.tokenId ?? '' });
    t.deepEqual(await access(server).whoAmI({}), { subject: 'bootstrap', role: Role.ROLE_ADMIN, tokenId: '' });
    // operator < admin: token management is refused, naming who and what.
    await rejects(t, access(server, created.secret).listTokens({}), Status.PERMISSION_DENIED, /operator:alice-laptop\(operator\) may not call \/ultracloud.deployer.v1.AccessService\/ListTokens/);
  });

  test(title('CreateToken refuses bad input, naming each field, and writes nothing'), async (t) => {
    const server = await shared.get();
    await rejects(t, access(server).createToken({ name: 'Bad Name', role: Role.ROLE_UNSPECIFIED, ttl: { seconds: -1n, nanos: 0 } }), Status.INVALID_ARGUMENT, /name: .*\nrole: required.*\nttl: must not be negative/);
    await rejects(t, access(server).createToken({ name: 'dashboards', role: Role.ROLE_VIEWER }), Status.ALREADY_EXISTS, /operator tokens file/);
    await access(server).createToken({ name: 'ci-deploy', role: Role.ROLE_OPERATOR });
    await rejects(t, access(server).createToken({ name: 'ci-deploy', role: Role.ROLE_ADMIN }), Status.ALREADY_EXISTS, /a valid token named "ci-deploy" exists/);
    const names = (await access(server).listTokens({ includeRevoked: true })).tokens.map((x) => x.name);
    t.deepEqual(
      names.filter((n) => ['Bad Name', 'dashboards', 'ci-deploy'].includes(n)),
      ['ci-deploy'],
    );
  });

  test(title('RevokeToken applies at once, by name or id; revoking again changes nothing; unknown tokens are NOT_FOUND'), async (t) => {
    const server = await shared.get();
    const a = await access(server).createToken({ name: 'revoke-by-name', role: Role.ROLE_VIEWER });
    const b = await access(server).createToken({ name: 'revoke-by-id', role: Role.ROLE_VIEWER });
    await server.client(MachineServiceDefinition, a.secret).listMachines({});

    const revoked = await access(server).revokeToken({ token: { $case: 'name', value: 'revoke-by-name' }, reason: 'laptop lost' });
    t.truthy(revoked.token?.revokedAt);
    await rejects(t, server.client(MachineServiceDefinition, a.secret).listMachines({}), Status.UNAUTHENTICATED, /operator token revoke-by-name was revoked/);
    const again = await access(server).revokeToken({ token: { $case: 'name', value: 'revoke-by-name' }, reason: 'twice' });
    t.deepEqual(again.token?.revokedAt, revoked.token?.revokedAt);

    await access(server).revokeToken({ token: { $case: 'tokenId', value: b.token?.tokenId ?? '' }, reason: '' });
    await rejects(t, server.client(MachineServiceDefinition, b.secret).listMachines({}), Status.UNAUTHENTICATED);

    await rejects(t, access(server).revokeToken({ token: { $case: 'tokenId', value: 'tok-0000000000000000' }, reason: '' }), Status.NOT_FOUND, /no token has id/);
    await rejects(t, access(server).revokeToken({ token: { $case: 'name', value: 'dashboards' }, reason: '' }), Status.NOT_FOUND, /operator tokens file/);
    await rejects(t, access(server).revokeToken({ reason: 'which?' }), Status.INVALID_ARGUMENT, /^token: required/);

    const live = (await access(server).listTokens({})).tokens.map((x) => x.name);
    t.false(live.includes('revoke-by-name'));
    const all = (await access(server).listTokens({ includeRevoked: true })).tokens.map((x) => x.name);
    t.true(all.includes('revoke-by-name'));
  });

  test(title('rotation: a new token under the same name once the old one is revoked'), async (t) => {
    const server = await shared.get();
    const old = await access(server).createToken({ name: 'grafana', role: Role.ROLE_VIEWER });
    await rejects(t, access(server).createToken({ name: 'grafana', role: Role.ROLE_VIEWER }), Status.ALREADY_EXISTS);
    await access(server).revokeToken({ token: { $case: 'name', value: 'grafana' }, reason: 'rotation' });
    const next = await access(server).createToken({ name: 'grafana', role: Role.ROLE_VIEWER });
    await server.client(MachineServiceDefinition, next.secret).listMachines({});
    await rejects(t, server.client(MachineServiceDefinition, old.secret).listMachines({}), Status.UNAUTHENTICATED);
    // Revoking by name picks the valid one.
    const revoked = await access(server).revokeToken({ token: { $case: 'name', value: 'grafana' }, reason: 'done' });
    t.is(revoked.token?.tokenId, next.token?.tokenId);
  });

  test(title('a token past its expiry is refused and leaves the default list'), async (t) => {
    const server = await shared.get();
    const short = await access(server).createToken({ name: 'one-second', role: Role.ROLE_ADMIN, ttl: { seconds: 1n, nanos: 0 } });
    const expiresAt = short.token?.expiresAt?.getTime() ?? 0;
    t.true(expiresAt > Date.now() - 100 && expiresAt <= Date.now() + 1_000);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt - Date.now()) + 50));
    await rejects(t, access(server, short.secret).listTokens({}), Status.UNAUTHENTICATED, /operator token one-second expired/);
    t.false((await access(server).listTokens({})).tokens.some((x) => x.name === 'one-second'));
    t.true((await access(server).listTokens({ includeRevoked: true })).tokens.some((x) => x.name === 'one-second'));
  });

  test(title('token changes are audited with who and why; created_by names the creator; use is recorded'), async (t) => {
    const server = await shared.get();
    const admin = await access(server).createToken({ name: 'second-admin', role: Role.ROLE_ADMIN });
    const child = await access(server, admin.secret).createToken({ name: 'made-by-second-admin', role: Role.ROLE_VIEWER });
    t.is(child.token?.createdBy, 'second-admin');
    await access(server, admin.secret).revokeToken({ token: { $case: 'tokenId', value: child.token?.tokenId ?? '' }, reason: 'not needed' });

    const events = (await server.machines.listAuditEvents({ actor: 'second-admin', pageSize: 100 })).events;
    const create = events.find((e) => e.rpc === `${ACCESS}/CreateToken`);
    const revoke = events.find((e) => e.rpc === `${ACCESS}/RevokeToken`);
    t.regex(create?.reason ?? '', new RegExp(`^created token made-by-second-admin \\(${child.token?.tokenId}, role viewer, never expires\\)$`));
    t.is(create?.outcome, AuditOutcome.AUDIT_OUTCOME_ALLOWED);
    t.regex(revoke?.reason ?? '', /^revoked token made-by-second-admin \(tok-[0-9a-f]+\): not needed$/);
    for (const e of events) t.false(e.reason.includes(child.secret) || e.reason.includes(admin.secret));

    const used = await eventually(async () => {
      const found = (await access(server).listTokens({})).tokens.find((x) => x.name === 'second-admin');
      return found?.lastUsedAt ? found : undefined;
    });
    t.true((used.lastUsedAt?.getTime() ?? 0) <= Date.now());
  });

  test(title('a token from the operator tokens file acts with its role and name'), async (t) => {
    const server = await shared.get();
    await server.client(MachineServiceDefinition, FILE_SECRET).listMachines({});
    await rejects(t, server.client(MachineServiceDefinition, FILE_SECRET).delete({ machineId: 'm-x', reason: 'x' }), Status.PERMISSION_DENIED, /operator:dashboards\(viewer\)/);
  });
});

// Two deployers serving one PostgreSQL database (and one state dir, as replicas share their
// secrets key): verification reads the database, so there is nothing to invalidate.
const postgres = databaseTargets().find((d) => d.name === 'postgres');
if (postgres && !postgres.available) {
  unavailableTargetTest('a revocation on one replica refuses the token on the other at once [postgres]', postgres);
} else {
  test('a revocation on one replica refuses the token on the other at once [postgres]', async (t) => {
    const scratch = await createTestDatabase();
    const stateDir = await mkdtemp(join(tmpdir(), 'ultracloud-token-replicas-'));
    const replicas: ServingProcess[] = [];
    t.teardown(async () => {
      for (const r of replicas) await r.stop();
      await scratch.drop();
      await rm(stateDir, { recursive: true, force: true });
    });
    for (let i = 0; i < 2; i += 1) {
      const config = loadConfig(daemonConfigSpec(0), {
        env: { ULTRACLOUD_STATE_DIR: stateDir, ULTRACLOUD_LISTEN: '127.0.0.1:0', ULTRACLOUD_DATABASE_URL: scratch.url },
      });
      replicas.push(await serveComponents({ components: [deployerComponent()], config, logger: createLogger({ level: 'silent' }) }));
    }
    const [one, two] = replicas.map((r) => openChannel(r.server.address)) as [ReturnType<typeof openChannel>, ReturnType<typeof openChannel>];
    t.teardown(() => {
      one.close();
      two.close();
    });
    const adminToken = readFileSync(replicas[0]?.adminTokenPath ?? '', 'utf8').trim();
    const created = await createServiceClient(AccessServiceDefinition, one, { token: adminToken }).createToken({ name: 'shared', role: Role.ROLE_VIEWER });
    const onTwo = createServiceClient(MachineServiceDefinition, two, { token: created.secret });
    await onTwo.listMachines({});
    await createServiceClient(AccessServiceDefinition, one, { token: adminToken }).revokeToken({ token: { $case: 'name', value: 'shared' }, reason: 'replicas' });
    await rejects(t, onTwo.listMachines({}), Status.UNAUTHENTICATED, /was revoked/);
  });
}

// ---- deployer-ctl tokens ------------------------------------------------------------------------

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

let cliServer: Promise<DeployerServer> | undefined;
const cli = () => (cliServer ??= startDeployerServer('pglite', { tls: true }));
test.after.always(async () => (await cliServer?.catch(() => undefined))?.stop());

function ctl(server: DeployerServer, args: readonly string[], token = server.adminToken): Promise<Run> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ULTRACLOUD_')) env[k] = v;
  Object.assign(env, { ULTRACLOUD_SERVER: server.address, ULTRACLOUD_TOKEN: token, ULTRACLOUD_CA: join(server.stateDir, 'ca.pem'), NO_COLOR: '1' });
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [DEPLOYER_CTL_BIN, ...args], { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

test.serial('deployer-ctl tokens create prints the secret alone on stdout, once, and it works', async (t) => {
  const server = await cli();
  const run = await ctl(server, ['tokens', 'create', '--role', 'operator', '--name', 'bob-laptop', '--expires', '30d', '--description', 'Bob']);
  t.is(run.code, 0, run.stderr);
  t.regex(run.stdout, /^ucop_[A-Za-z0-9_-]{43}\n$/);
  t.regex(run.stderr, /created token bob-laptop \(tok-[0-9a-f]{16}, role operator, expires \d{4}-\d\d-\d\dT.*\); the secret is shown only now/);
  const secret = run.stdout.trim();
  const asBob = await ctl(server, ['machines', 'list'], secret);
  t.is(asBob.code, 0, asBob.stderr);
  const whoami = await ctl(server, ['tokens', 'whoami'], secret);
  t.is(whoami.code, 0, whoami.stderr);
  t.regex(whoami.stdout, /^bob-laptop \(role operator, token tok-[0-9a-f]{16}\)\n$/);

  const listed = await ctl(server, ['tokens', 'list']);
  t.is(listed.code, 0, listed.stderr);
  const [header, ...rows] = listed.stdout.trimEnd().split('\n');
  t.regex(header ?? '', /^NAME\s+ROLE\s+STATE\s+ID\s+CREATED BY\s+CREATED\s+EXPIRES\s+LAST USED$/);
  t.true(rows.some((r) => /^bob-laptop\s+operator\s+valid\s+tok-[0-9a-f]{16}\s+bootstrap\s/.test(r)), listed.stdout);
  t.false(listed.stdout.includes(secret));

  const json = await ctl(server, ['tokens', 'list', '--json']);
  t.is(json.code, 0, json.stderr);
  const parsed = ListTokensResponse.fromJSON(JSON.parse(json.stdout));
  const bob = parsed.tokens.find((x: Token) => x.name === 'bob-laptop');
  t.is(bob?.role, Role.ROLE_OPERATOR);
  t.is(bob?.description, 'Bob');
  t.false(json.stdout.includes(secret));
});

test.serial('deployer-ctl tokens revoke takes a name or an id, and the token stops working', async (t) => {
  const server = await cli();
  const made = await ctl(server, ['tokens', 'create', '--role', 'viewer', '--name', 'carol']);
  const carol = made.stdout.trim();
  const byName = await ctl(server, ['tokens', 'revoke', 'carol', '--reason', 'left the team']);
  t.is(byName.code, 0, byName.stderr);
  t.regex(byName.stdout, /^revoked token carol \(tok-[0-9a-f]{16}\) at \d{4}-/);
  const refused = await ctl(server, ['machines', 'list'], carol);
  t.not(refused.code, 0);
  t.regex(refused.stderr, /UNAUTHENTICATED: operator token carol was revoked/);

  const dave = await access(server).createToken({ name: 'dave', role: Role.ROLE_VIEWER });
  const byId = await ctl(server, ['tokens', 'revoke', dave.token?.tokenId ?? '']);
  t.is(byId.code, 0, byId.stderr);
  t.regex(byId.stdout, /^revoked token dave /);
  const all = await ctl(server, ['tokens', 'list', '--all']);
  t.regex(all.stdout, /\ncarol\s+viewer\s+revoked\s/);
  t.regex(all.stdout, /\ndave\s+viewer\s+revoked\s/);
});

test.serial('deployer-ctl tokens: bad usage exits 2 before anything is sent; refusals name the gRPC code', async (t) => {
  const server = await cli();
  const badRole = await ctl(server, ['tokens', 'create', '--role', 'boss', '--name', 'x']);
  t.is(badRole.code, 2);
  t.regex(badRole.stderr, /--role boss: expected viewer, operator or admin/);
  const badExpiry = await ctl(server, ['tokens', 'create', '--role', 'viewer', '--name', 'x', '--expires', 'soon']);
  t.is(badExpiry.code, 2);
  t.regex(badExpiry.stderr, /--expires soon: expected a lifetime/);
  const missing = await ctl(server, ['tokens', 'create', '--role', 'viewer']);
  t.is(missing.code, 2);
  await ctl(server, ['tokens', 'create', '--role', 'viewer', '--name', 'erin']);
  const twice = await ctl(server, ['tokens', 'create', '--role', 'viewer', '--name', 'erin']);
  t.not(twice.code, 0);
  t.regex(twice.stderr, /ALREADY_EXISTS: a valid token named "erin" exists/);
  const unknown = await ctl(server, ['tokens', 'revoke', 'nobody']);
  t.not(unknown.code, 0);
  t.regex(unknown.stderr, /NOT_FOUND: no token is named nobody/);
  const viewer = (await access(server).createToken({ name: 'frank', role: Role.ROLE_VIEWER })).secret;
  const notAdmin = await ctl(server, ['tokens', 'list'], viewer);
  t.not(notAdmin.code, 0);
  t.regex(notAdmin.stderr, /PERMISSION_DENIED: operator:frank\(viewer\) may not call/);
});
