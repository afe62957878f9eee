// No secret reaches the log. A deployer logging at debug level into a buffer is driven through a
// full flow — operator tokens issued, used, revoked and expired; a machine discovered, its plan
// and keys fetched, installed, reinstalled with rotated secrets and fetched again; every
// credential also used where it is refused, so each appears in a denial — and then the captured
// pino output is searched for every secret that was issued.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import test from 'ava';
import { ClientError } from 'nice-grpc';
import { BootstrapServiceDefinition } from '../../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import { AccessServiceDefinition, Role } from '../../gen/ts/ultracloud/deployer/v1/access_service.js';
import { ClusterState } from '../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import { MachineServiceDefinition } from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { forEachDeployerTarget } from '../helpers/deployer-server.js';
import { machineInventory, optiplexFacts, SimulatedInstaller } from '../helpers/simulated-installer.js';

const LAB6: unknown = JSON.parse(readFileSync(new URL('../fixtures/cluster-state/lab6.json', import.meta.url), 'utf8'));
const FILE_SECRET = `ucop_logs-test-file-admin-${createHash('sha256').update(String(Math.random())).digest('hex').slice(0, 32)}`;

/** The parts of a secret worth searching for: the whole value, and each long line of a PEM or key file. */
function fragments(secret: string): string[] {
  const lines = secret
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length >= 24 && !l.startsWith('-----'));
  return [secret.trim(), ...lines];
}

/** Calls that must fail; the failure itself is what puts the credential in front of the logger. */
async function refused(call: Promise<unknown>): Promise<void> {
  try {
    await call;
  } catch (err) {
    if (err instanceof ClientError) return;
    throw err;
  }
  throw new Error('call was expected to be refused');
}

forEachDeployerTarget('secrets never reach the log', (target) => {
  test(`secrets never reach the log through a full flow [${target.name}]`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'ultracloud-log-secrets-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const tokensFile = join(dir, 'operator-tokens');
    writeFileSync(tokensFile, `admin ${createHash('sha256').update(FILE_SECRET).digest('hex')} logs-file-admin\n`, { mode: 0o600 });
    const captured: string[] = [];
    const destination = new PassThrough();
    destination.on('data', (chunk: Buffer) => captured.push(chunk.toString()));
    const server = await target.start({ tls: true, logDestination: destination, flags: { 'operator-tokens-file': tokensFile } });
    const secrets: Record<string, string> = {
      'admin token': server.adminToken,
      'join token': server.joinToken,
      'operator tokens file token': FILE_SECRET,
      'secrets key': readFileSync(join(server.stateDir, 'secrets.key'), 'utf8'),
    };
    try {
      await server.cluster.applyClusterState({ state: ClusterState.fromJSON(LAB6), dryRun: false, expectedGeneration: 0n });
      const access = server.client(AccessServiceDefinition, server.adminToken);
      const operator = await access.createToken({ name: 'logs-operator', role: Role.ROLE_OPERATOR });
      const viewer = await access.createToken({ name: 'logs-viewer', role: Role.ROLE_VIEWER, ttl: { seconds: 3600n, nanos: 0 } });
      const doomed = await access.createToken({ name: 'logs-revoked', role: Role.ROLE_ADMIN });
      const fleeting = await access.createToken({ name: 'logs-expired', role: Role.ROLE_ADMIN, ttl: { seconds: 1n, nanos: 0 } });
      const byFileAdmin = await server.client(AccessServiceDefinition, FILE_SECRET).createToken({ name: 'logs-by-file-admin', role: Role.ROLE_VIEWER });
      Object.assign(secrets, {
        'operator token': operator.secret,
        'viewer token': viewer.secret,
        'revoked token': doomed.secret,
        'expired token': fleeting.secret,
        'token made by the file admin': byFileAdmin.secret,
      });

      // Installation: session secret, install token, SSH and TLS private keys.
      const machine = new SimulatedInstaller({ channel: server.channel, joinToken: server.joinToken }, machineInventory(optiplexFacts()));
      await machine.discover();
      secrets['session secret'] = machine.sessionSecret;
      const first = await machine.fetchPlan();
      secrets['install token'] = machine.installToken;
      secrets['SSH host private key'] = first.secrets?.sshHostEd25519PrivateKey ?? '';
      secrets['TLS private key'] = first.secrets?.tlsPrivateKeyPem ?? '';
      await machine.install();

      // A reinstall rotates everything; the new secrets are fetched too.
      const asOperator = server.client(MachineServiceDefinition, operator.secret);
      await asOperator.reinstall({ machineId: machine.machineId, reason: 'disk swap', expectedResourceVersion: 0n });
      machine.reboot();
      await machine.discover();
      secrets['second session secret'] = machine.sessionSecret;
      const second = await machine.fetchPlan();
      secrets['second install token'] = machine.installToken;
      secrets['second SSH host private key'] = second.secrets?.sshHostEd25519PrivateKey ?? '';
      secrets['second TLS private key'] = second.secrets?.tlsPrivateKeyPem ?? '';
      await machine.install();

      // Every credential where it is refused: wrong RPC, revoked, expired, used up, unknown.
      await access.revokeToken({ token: { $case: 'name', value: 'logs-revoked' }, reason: 'logs test' });
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      const bootstrap = (token: string) => server.client(BootstrapServiceDefinition, token);
      const machines = (token: string) => server.client(MachineServiceDefinition, token);
      for (const secret of Object.values(secrets)) {
        // Only installers with a live install token may report; every other credential is refused.
        if (!secret.includes('\n')) await refused(bootstrap(secret.trim()).reportInstallProgress({ machineId: machine.machineId, percent: 10 }));
      }
      await refused(bootstrap(secrets['session secret'] ?? '').fetchPlan({ machineId: machine.machineId }));
      await refused(bootstrap(secrets['second session secret'] ?? '').fetchPlan({ machineId: 'm-somebody-else' }));
      await refused(bootstrap(secrets['install token'] ?? '').reportInstallProgress({ machineId: machine.machineId, percent: 10 }));
      await refused(machines(`ucop_${'x'.repeat(43)}`).listMachines({}));
      await refused(server.client(AccessServiceDefinition, viewer.secret).createToken({ name: 'nope', role: Role.ROLE_ADMIN }));
    } finally {
      await server.stop();
    }

    const log = captured.join('');
    // The flow was logged: denials, token events, RPCs.
    t.regex(log, /"event":"access.denied"/);
    t.regex(log, /"event":"operator_token.created"/);
    t.regex(log, /"event":"operator_token.revoked"/);
    t.regex(log, /"event":"rpc.finished"/);
    for (const [what, secret] of Object.entries(secrets)) {
      t.true(secret.length > 20, `${what} was issued`);
      for (const fragment of fragments(secret)) t.false(log.includes(fragment), `the ${what} appears in the log`);
    }
  });
});
