// Integration: `deployer-ctl rollouts …` and `agents list`, the real CLI as a child process against
// a live `ultracloud up` (the deployer and the host-controller in one process, seeded with the
// lab's host deployments) on a loopback socket, with one worker installed by a simulated
// installer so a rollout selects a node. Checks what it prints, --json, and the exit codes:
// 0 ok, 2 usage, 3 not found, 4 refused (bad document, wrong phase), 5 unreachable.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { JOIN_TOKEN_FILE } from '../../services/deployer/component.js';
import { openChannel } from '../../lib/grpc/client.js';
import { machineInventory, optiplexFacts, SimulatedInstaller } from '../helpers/simulated-installer.js';
import { cleanEnv, DEPLOYER_CTL_BIN, type NodeRun, runNode, startUltracloud, type UltracloudProcess } from '../helpers/ultracloud-process.js';

const LAB_HOST_DEPLOYMENTS = new URL('../../nix/examples/lab6/generated/host-deployments.json', import.meta.url);
const work = mkdtempSync(join(tmpdir(), 'deployer-ctl-rollouts-'));
test.after.always(() => rmSync(work, { recursive: true, force: true }));
const NEW_SYSTEM = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-worker-24.11';

let started: Promise<UltracloudProcess> | undefined;
function up(): Promise<UltracloudProcess> {
  started ??= (async () => {
    const server = await startUltracloud('up');
    // One worker, installed: the lab's rules commission and deploy an unknown machine into the workers pool.
    const channel = openChannel(server.address);
    try {
      const installer = new SimulatedInstaller({ channel, joinToken: readFileSync(join(server.stateDir, JOIN_TOKEN_FILE), 'utf8').trim() }, machineInventory(optiplexFacts()));
      await installer.discover();
      await installer.fetchPlan();
      await installer.install();
    } finally {
      channel.close();
    }
    return server;
  })();
  return started;
}
test.after.always(async () => {
  const server = await started?.catch(() => undefined);
  await server?.stop();
  if (server) rmSync(server.stateDir, { recursive: true, force: true });
});

async function ctl(args: readonly string[], extra: NodeJS.ProcessEnv = {}): Promise<NodeRun> {
  const server = await up();
  const { NO_COLOR: _n, FORCE_COLOR: _f, ...env } = cleanEnv();
  return runNode([DEPLOYER_CTL_BIN, ...args], { cwd: server.stateDir, env: { ...env, ULTRACLOUD_STATE_DIR: server.stateDir, ...extra } });
}

const show = (r: NodeRun) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

/** The lab's document with workers-os moved to one store path for every node, all at once. */
function changedDocument(): string {
  const doc = JSON.parse(readFileSync(LAB_HOST_DEPLOYMENTS, 'utf8')) as { hostDeployments: Record<string, unknown>[] };
  const workers = doc.hostDeployments.find((d) => d.name === 'workers-os') as Record<string, unknown>;
  workers.target = { systemPath: NEW_SYSTEM };
  workers.maxUnavailable = { percent: 100 };
  workers.drain = false;
  delete workers.drainTimeout;
  const file = join(work, 'host-deployments.json');
  writeFileSync(file, JSON.stringify(doc));
  return file;
}

test.serial('rollouts list shows the lab host deployments seeded by ultracloud up', async (t) => {
  const r = await ctl(['rollouts', 'list']);
  t.is(r.code, 0, show(r));
  const lines = r.stdout.trim().split('\n');
  t.regex(lines[0] ?? '', /^NAME\s+REVISION\s+PHASE\s+DONE/);
  t.truthy(lines.find((l) => /^control-plane-os\s+1\s/.test(l)), show(r));
  t.truthy(lines.find((l) => /^workers-os\s+1\s/.test(l)), show(r));

  const json = await ctl(['rollouts', 'list', '--json']);
  t.is(json.code, 0, show(json));
  const parsed = JSON.parse(json.stdout) as { rollouts: { hostDeployment: { name: string; drainTimeout?: string }; status: { phase: string } }[] };
  t.deepEqual(parsed.rollouts.map((x) => x.hostDeployment.name), ['control-plane-os', 'workers-os']);
  // Canonical proto3 JSON: durations as the document has them.
  t.is(parsed.rollouts[1]?.hostDeployment.drainTimeout, '300s');
  t.regex(parsed.rollouts[0]?.status.phase ?? '', /^HOST_DEPLOYMENT_PHASE_/);
});

test.serial('rollouts apply --dry-run shows the diff and writes nothing; apply starts a new revision; re-apply is unchanged', async (t) => {
  const file = changedDocument();
  const dry = await ctl(['rollouts', 'apply', file, '--dry-run']);
  t.is(dry.code, 0, show(dry));
  t.regex(dry.stdout, /^~ hostDeployment workers-os \(.*target\.systemPath.*\) revision 2 — would start a rollout$/m);
  t.regex(dry.stdout, /dry run, nothing written: 0 would be created, 1 would be updated, 0 would be deleted, 1 unchanged; 1 rollout would start/);
  const still = JSON.parse((await ctl(['rollouts', 'show', 'workers-os', '--json'])).stdout) as { hostDeployment: { revision: string } };
  t.is(still.hostDeployment.revision, '1');

  const applied = await ctl(['rollouts', 'apply', '-']);
  // stdin is not a terminal here and empty: an empty document is refused, nothing sent.
  t.is(applied.code, 4, show(applied));
  t.regex(applied.stderr, /^deployer-ctl: stdin: not valid JSON/m);

  const real = await ctl(['rollouts', 'apply', file]);
  t.is(real.code, 0, show(real));
  t.regex(real.stdout, /^~ hostDeployment workers-os .* revision 2 — starts a rollout$/m);
  t.regex(real.stdout, /applied: 0 created, 1 updated, 0 deleted, 1 unchanged; 1 rollout started/);

  const again = await ctl(['rollouts', 'apply', file, '--json']);
  t.is(again.code, 0, show(again));
  const diffs = (JSON.parse(again.stdout) as { diffs: { name: string; action: string }[] }).diffs;
  t.deepEqual(diffs.map((d) => d.action), ['DIFF_ACTION_UNCHANGED', 'DIFF_ACTION_UNCHANGED']);
});

test.serial('rollouts show prints the rollout and one row per selected node', async (t) => {
  const r = await ctl(['rollouts', 'show', 'workers-os']);
  t.is(r.code, 0, show(r));
  t.regex(r.stdout, /^name:\s+workers-os$/m);
  t.regex(r.stdout, /^revision:\s+2 /m);
  t.regex(r.stdout, /^nodes:\s+1 selected, /m);
  t.regex(r.stdout, new RegExp(`^system:\\s+${NEW_SYSTEM}$`, 'm'));
  const header = r.stdout.split('\n').find((l) => l.startsWith('NODE'));
  t.regex(header ?? '', /^NODE\s+HOSTNAME\s+DOMAIN\s+PHASE\s+GENERATION\s+SYSTEM/);
  // The worker has no nix-agent connected: it waits, and says so.
  t.regex(r.stdout, /^worker-1\s+worker-1\s+power-d\s+pending\s+-\s+-\s+\d+s ago\s+waiting for its nix-agent to connect$/m);

  const json = JSON.parse((await ctl(['rollouts', 'show', 'workers-os', '--json'])).stdout) as { status: { nodes: { nodeId: string; phase: string }[] } };
  t.is(json.status.nodes.length, 1);
  t.is(json.status.nodes[0]?.nodeId, 'worker-1');
  t.is(json.status.nodes[0]?.phase, 'NODE_ROLLOUT_PHASE_PENDING');
});

test.serial('rollouts pause, resume and abort change the phase; refusals exit 4', async (t) => {
  const paused = await ctl(['rollouts', 'pause', 'workers-os', '--reason', 'change freeze']);
  t.is(paused.code, 0, show(paused));
  t.regex(paused.stdout, /^paused workers-os \(revision 2\): phase paused — change freeze$/m);
  const list = await ctl(['rollouts', 'list']);
  t.regex(list.stdout, /^workers-os\s+2\s+paused \(operator\)\s/m);

  const resumed = await ctl(['rollouts', 'resume', 'workers-os', '--reason', 'freeze over', '--json']);
  t.is(resumed.code, 0, show(resumed));
  t.not((JSON.parse(resumed.stdout) as { status: { phase: string } }).status.phase, 'HOST_DEPLOYMENT_PHASE_PAUSED');

  const stale = await ctl(['rollouts', 'pause', 'workers-os', '--reason', 'x', '--expect-version', '1']);
  t.is(stale.code, 4, show(stale));
  t.regex(stale.stderr, /^deployer-ctl: ABORTED: /m);

  const aborted = await ctl(['rollouts', 'abort', 'workers-os', '--reason', 'wrong build']);
  t.is(aborted.code, 0, show(aborted));
  t.regex(aborted.stdout, /^aborted workers-os \(revision 2\): phase aborted — wrong build$/m);

  const again = await ctl(['rollouts', 'pause', 'workers-os', '--reason', 'too late']);
  t.is(again.code, 4, show(again));
  t.regex(again.stderr, /^deployer-ctl: FAILED_PRECONDITION: .*aborted/m);
});

test.serial('agents list answers with the agents the controller knows', async (t) => {
  const r = await ctl(['agents', 'list']);
  t.is(r.code, 0, show(r));
  t.is(r.stdout.trim(), 'no agents');
  const json = await ctl(['agents', 'list', '--json']);
  t.deepEqual((JSON.parse(json.stdout) as { agents: unknown[] }).agents, []);
});

test('exit codes: not found 3, bad document 4, missing --reason 2, unreachable controller 5', async (t) => {
  const missing = await ctl(['rollouts', 'show', 'no-such-deployment']);
  t.is(missing.code, 3, show(missing));
  t.regex(missing.stderr, /^deployer-ctl: NOT_FOUND: /m);

  const bad = join(work, 'bad.json');
  writeFileSync(bad, JSON.stringify({ hostDeployments: [{ name: 'x', maxUnavailabel: { count: 1 } }] }));
  const refused = await ctl(['rollouts', 'apply', bad]);
  t.is(refused.code, 4, show(refused));
  t.regex(refused.stderr, /hostDeployments\[0\]\.maxUnavailabel: unknown field/);

  const noReason = await ctl(['rollouts', 'pause', 'workers-os']);
  t.is(noReason.code, 2, show(noReason));
  t.regex(noReason.stderr, /required option '--reason <text>'/);

  const away = await ctl(['rollouts', 'list', '--controller', '127.0.0.1:1']);
  t.is(away.code, 5, show(away));
  const viaEnv = await ctl(['rollouts', 'list'], { ULTRACLOUD_CONTROLLER: '127.0.0.1:1' });
  t.is(viaEnv.code, 5, show(viaEnv));
});
