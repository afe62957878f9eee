// Contract: docs/operators.md works as written. Every `sh` block of the walkthrough is run, in
// order, in a bash session like an operator's terminal (variables such as $MACHINE carry over
// from step to step), next to the state dir of a real `ultracloud up` serving TLS as `npm start`
// does. The walkthrough runs twice on that lab: once with the `deployer-ctl` blocks, then with the
// `buf curl` blocks, each time with a simulated HP EliteDesk (the serial the guide names) driven
// into the state each step starts from. Each block's exit code and output are checked; a step of
// the guide without a check here, or a command outside a step, fails the test.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { InstallPhase, MachineState } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import type { Channel } from 'nice-grpc';
import { MachineServiceDefinition } from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { createServiceClient, openChannel, type ServiceClient } from '../../lib/grpc/client.js';
import { BUF_BIN, REPO_ROOT } from '../helpers/buf.js';
import { INSTALL_STEPS, machineInventory, optiplexFacts, SimulatedInstaller } from '../helpers/simulated-installer.js';
import { cleanEnv, DEPLOYER_CTL_BIN, startUltracloud, type UltracloudProcess } from '../helpers/ultracloud-process.js';

const DOC = join(REPO_ROOT, 'docs/operators.md');
/** The address the guide's commands use; each run substitutes its server's. */
const DOC_ADDRESS = '127.0.0.1:7000';
/** The machine of the walkthrough, as the guide names it. */
const HP = { vendor: 'HP', productName: 'EliteDesk 800 G5', serialNumber: 'CZC9281KQ7', macs: ['80:e8:2c:4f:1a:07'] } as const;
const OPERATOR_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq3hQ0m0v8gq2cXbq7xqO0ZpYkq4s8yTt1q2w3e4r5t operator@laptop';

// ---- the guide, parsed ---------------------------------------------------------------------------

interface Block {
  readonly step: string | undefined;
  readonly lang: string;
  readonly text: string;
}

function parseGuide(markdown: string): Block[] {
  const blocks: Block[] = [];
  let step: string | undefined;
  let open: { lang: string; lines: string[] } | undefined;
  for (const line of markdown.split('\n')) {
    if (open) {
      if (line.startsWith('```')) {
        blocks.push({ step, lang: open.lang, text: open.lines.join('\n') });
        open = undefined;
      } else {
        open.lines.push(line);
      }
      continue;
    }
    const marker = /^<!-- step: ([a-z-]+) -->$/.exec(line);
    if (marker) step = marker[1];
    else if (/^## /.test(line)) step = undefined;
    const fence = /^```(\w*)$/.exec(line);
    if (fence) open = { lang: fence[1] ?? '', lines: [] };
  }
  return blocks;
}

const blocks = parseGuide(readFileSync(DOC, 'utf8'));
const isBuf = (b: Block) => b.lang === 'sh' && b.text.includes('buf curl');
const isCtl = (b: Block) => b.lang === 'sh' && !isBuf(b) && b.text.includes('deployer-ctl');
const steps = [...new Set(blocks.flatMap((b) => (b.step ? [b.step] : [])))];

// ---- a terminal ----------------------------------------------------------------------------------

interface BlockRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * One bash process for a whole walkthrough. `npx` stands in for what it does in a checkout of
 * this repository: `npx buf` is @bufbuild/buf's binary, `npx deployer-ctl` this package's CLI.
 */
class Terminal {
  private readonly child;
  private readonly outDir: string;
  private buffer = '';
  private waiting: { marker: string; resolve: (code: number) => void } | undefined;
  private count = 0;

  constructor(cwd: string, home: string, private readonly address: string) {
    this.outDir = mkdtempSync(join(tmpdir(), 'operators-doc-out-'));
    this.child = spawn('bash', ['--noprofile', '--norc'], {
      cwd,
      env: cleanEnv({ HOME: home, BUF_BIN, DEPLOYER_CTL_BIN, NODE: process.execPath, NO_COLOR: '1' }),
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    this.child.stdout.on('data', (chunk: Buffer) => {
      this.buffer += chunk.toString();
      const waiting = this.waiting;
      if (!waiting) return;
      const m = new RegExp(`${waiting.marker} (\\d+)\\n`).exec(this.buffer);
      if (m) {
        this.waiting = undefined;
        this.buffer = '';
        waiting.resolve(Number(m[1]));
      }
    });
    this.child.stdin.write(
      [
        'set -o pipefail',
        'npx() { case "$1" in buf) shift; "$BUF_BIN" "$@" ;; deployer-ctl) shift; "$NODE" "$DEPLOYER_CTL_BIN" "$@" ;; *) echo "npx $1: not part of this test" >&2; return 127 ;; esac; }',
        '',
      ].join('\n'),
    );
  }

  /** Runs `text` as typed (with this server's address), returns its exit code and output. */
  async run(text: string, timeoutMs = 120_000): Promise<BlockRun> {
    const n = (this.count += 1);
    const out = join(this.outDir, `${n}.out`);
    const err = join(this.outDir, `${n}.err`);
    const marker = `__block_${n}_done__`;
    const done = new Promise<number>((resolve, reject) => {
      this.waiting = { marker, resolve };
      setTimeout(() => reject(new Error(`block still running after ${timeoutMs} ms:\n${text}`)), timeoutMs).unref();
    });
    // A group, not a subshell: assignments stay for the next block, as in a terminal.
    this.child.stdin.write(`{\n${text.replaceAll(DOC_ADDRESS, this.address)}\n} </dev/null >${out} 2>${err}\necho "${marker} $?"\n`);
    const code = await done;
    return { code, stdout: readFileSync(out, 'utf8'), stderr: readFileSync(err, 'utf8') };
  }

  close(): void {
    this.child.stdin.end();
    rmSync(this.outDir, { recursive: true, force: true });
  }
}

// ---- the lab, and one walkthrough on it: a terminal and a machine -------------------------------

/** One `ultracloud up` as `npm start` runs it, its state dir `.ultracloud` in the operator's directory. */
interface Lab {
  readonly dir: string;
  readonly server: UltracloudProcess;
  readonly channel: Channel;
  readonly joinToken: string;
  readonly machines: ServiceClient<typeof MachineServiceDefinition>;
  close(): Promise<void>;
}

async function startLab(): Promise<Lab> {
  const dir = mkdtempSync(join(tmpdir(), 'operators-doc-'));
  // Starting takes a while on a loaded machine; the guide's steps are what is timed here.
  const server = await startUltracloud('up', { stateDir: join(dir, '.ultracloud'), tls: true, timeoutMs: 240_000 });
  const channel = openChannel(server.address, { tls: { caFile: join(server.stateDir, 'ca.pem') } });
  const adminToken = readFileSync(join(server.stateDir, 'admin.token'), 'utf8').trim();
  return {
    dir,
    server,
    channel,
    joinToken: readFileSync(join(server.stateDir, 'join.token'), 'utf8').trim(),
    machines: createServiceClient(MachineServiceDefinition, channel, { token: adminToken, defaultDeadlineMs: 60_000 }),
    async close() {
      channel.close();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

interface Walk {
  readonly lab: Lab;
  readonly terminal: Terminal;
  /** The guide's HP EliteDesk. */
  readonly hp: SimulatedInstaller;
  /** An OptiPlex the lab's rule enrols on its own. */
  readonly worker: SimulatedInstaller;
}

function walkOn(lab: Lab, name: string): Walk {
  const home = join(lab.dir, `home-${name}`);
  mkdirSync(join(home, '.ssh'), { recursive: true });
  writeFileSync(join(home, '.ssh/id_ed25519.pub'), `${OPERATOR_KEY}\n`);
  const installer = (facts: Parameters<typeof optiplexFacts>[0] = {}) => new SimulatedInstaller({ channel: lab.channel, joinToken: lab.joinToken }, machineInventory(optiplexFacts(facts)));
  return { lab, terminal: new Terminal(lab.dir, home, lab.server.address), hp: installer(HP), worker: installer() };
}

// ---- what each step needs beforehand, and what its blocks must do -------------------------------

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

interface Step {
  /** Drives the simulated machine into the state the step starts from. */
  readonly prepare?: (walk: Walk) => Promise<void>;
  /** Checks the step's `deployer-ctl` blocks (stdout of each, in order). */
  readonly ctl: (t: ExecutionContext, runs: readonly BlockRun[], walk: Walk) => unknown;
  /** Checks the step's `buf curl` blocks (JSON answer of each, in order). */
  readonly buf: (t: ExecutionContext, runs: readonly BlockRun[], walk: Walk) => unknown;
}

const json = (run: BlockRun | undefined): Json => JSON.parse(run?.stdout || 'null') as Json;
const REASONS = ['lab expansion: HP under desk 4', 'first install', 'disk swap', 'check SMART after the disk swap', 'disks healthy'];

async function machineVariable(t: ExecutionContext, walk: Walk): Promise<void> {
  const echo = await walk.terminal.run('printf %s "$MACHINE"');
  t.is(echo.stdout, walk.hp.machineId, '$MACHINE holds the HP machine id');
}

const STEPS: Record<string, Step> = {
  status: {
    ctl: (t, [status]) => t.regex(status?.stdout ?? '', /^deployer\s+ultracloud\.deployer\.v1\.MachineService\s+127\.0\.0\.1:\d+\s+serving$/m),
    buf: (t, [health]) => t.deepEqual(json(health), { status: 'SERVING' }),
  },
  inventory: {
    async prepare(walk) {
      await walk.worker.discover();
      setupCheck((await walk.hp.discover()).state === MachineState.MACHINE_STATE_INSPECTED, 'the HP waits in inspected');
    },
    ctl(t, [lists], walk) {
      t.regex(lists?.stdout ?? '', /^HOSTNAME\s+NODE ID\s+STATE/m);
      t.regex(lists?.stdout ?? '', /^worker-1\s+worker-1\s+install-pending\s+worker\s+workers\s/m);
      t.regex(lists?.stdout ?? '', new RegExp(`^-\\s+-\\s+inspected\\s+.*${walk.hp.machineId}$`, 'm'));
    },
    buf(t, [list], walk) {
      const machines = json(list).machines as Json[];
      t.deepEqual(machines.map((m) => m.machineId), [walk.hp.machineId]);
      t.is(machines[0]?.state, 'MACHINE_STATE_INSPECTED');
    },
  },
  find: {
    async ctl(t, [show], walk) {
      t.regex(show?.stdout ?? '', new RegExp(`^machine id\\s+${walk.hp.machineId}$`, 'm'));
      t.regex(show?.stdout ?? '', /^serial\s+CZC9281KQ7$/m);
      t.regex(show?.stdout ?? '', /^vendor \/ product\s+HP \/ EliteDesk 800 G5$/m);
      await machineVariable(t, walk);
    },
    async buf(t, [assign, get], walk) {
      t.is(assign?.stdout, '');
      await machineVariable(t, walk);
      const found = json(get);
      t.like(found.machine, { machineId: walk.hp.machineId, state: 'MACHINE_STATE_INSPECTED', inventory: { identity: { serialNumber: 'CZC9281KQ7' } } });
      t.true((found.recentEvents as Json[]).length >= 2);
    },
  },
  commission: {
    ctl: (t, [run], walk) => t.regex(run?.stdout ?? '', new RegExp(`^hp-1 \\(${walk.hp.machineId}\\): inspected -> commissioned \\(resource version \\d+\\)$`, 'm')),
    buf: (t, [run]) =>
      t.like(json(run).machine, {
        state: 'MACHINE_STATE_COMMISSIONED',
        assignment: { nodeId: 'hp-1', hostname: 'hp-1', nodeClass: 'worker', pool: 'workers', labels: { rack: 'desk-4' } },
      }),
  },
  deploy: {
    ctl: (t, [run]) => t.regex(run?.stdout ?? '', /^hp-1 \(m-\S+\): commissioned -> install-pending/m),
    buf(t, [run]) {
      const machine = json(run).machine as Json;
      t.is(machine.state, 'MACHINE_STATE_INSTALL_PENDING');
      t.regex(machine.plan?.rootDiskByIdPath ?? '', /^\/dev\/disk\/by-id\//);
    },
  },
  'watch-install': {
    async prepare(walk) {
      setupCheck((await walk.hp.discover()).planReady, 'the installer sees the plan');
      await walk.hp.fetchPlan();
      for (const step of INSTALL_STEPS.slice(0, 4)) await walk.hp.report(step);
    },
    ctl(t, [run]) {
      t.regex(run?.stdout ?? '', /^state\s+installing$/m);
      t.regex(run?.stdout ?? '', /^install\s+60% install: nixos-install$/m);
    },
    buf: (t, [run]) => t.like(json(run).machine, { state: 'MACHINE_STATE_INSTALLING', installProgress: { percent: 60, phase: InstallPhase[InstallPhase.INSTALL_PHASE_INSTALL] } }),
  },
  reinstall: {
    async prepare(walk) {
      await walk.hp.install(INSTALL_STEPS.slice(4));
    },
    ctl: (t, [run]) => t.regex(run?.stdout ?? '', /^hp-1 \(m-\S+\): installed -> reprovisioning/m),
    buf: (t, [run]) => t.is(json(run).machine?.state, 'MACHINE_STATE_REPROVISIONING'),
  },
  rescue: {
    async prepare(walk) {
      // The installer boots (kexec or the stick) and installs afresh.
      walk.hp.reboot();
      setupCheck((await walk.hp.discover()).state === MachineState.MACHINE_STATE_INSTALL_PENDING, 'reprovisioning -> install-pending on boot');
      await walk.hp.fetchPlan();
      await walk.hp.install();
    },
    ctl(t, [rescue, exit]) {
      t.regex(rescue?.stdout ?? '', /^hp-1 \(m-\S+\): installed -> rescue/m);
      t.regex(exit?.stdout ?? '', /^hp-1 \(m-\S+\): rescue -> installed/m);
    },
    buf(t, [rescue, exit]) {
      t.like(json(rescue).machine, { state: 'MACHINE_STATE_RESCUE', previousState: 'MACHINE_STATE_INSTALLED' });
      t.is(json(exit).machine?.state, 'MACHINE_STATE_INSTALLED');
    },
  },
  audit: {
    ctl(t, [run], walk) {
      const out = run?.stdout ?? '';
      let at = 0;
      for (const reason of REASONS) {
        const found = out.indexOf(reason, at);
        t.true(found >= at, `"${reason}" in order:\n${out}`);
        at = found;
      }
      t.regex(out, new RegExp(`- -> discovered`), 'the whole history, from the first Discover');
      t.true(out.includes(walk.hp.machineId) || out.includes('hp-1'));
    },
    buf(t, [run], walk) {
      const events = json(run).events as Json[];
      t.true(events.every((e) => e.machineId === walk.hp.machineId));
      t.deepEqual(
        events.filter((e) => e.actorKind === 'ACTOR_KIND_OPERATOR').map((e) => e.reason).reverse(),
        REASONS,
      );
    },
  },
};

/** A failed precondition of a walkthrough (not of the guide): stops the step with a message. */
function setupCheck(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`walkthrough setup: ${message}`);
}

// ---- the tests -----------------------------------------------------------------------------------

const hasJq = spawnSync('jq', ['--version']).status === 0;
const walkTest = hasJq || process.env.CI === 'true' ? test.serial : test.serial.skip;
if (!hasJq) console.error('operators-doc: jq is not installed; the walkthrough is skipped (CI fails instead)');

test('every step of the guide is checked here, and every buf curl command is in a step', (t) => {
  t.deepEqual(steps, Object.keys(STEPS), 'steps of the guide, in order, as checked by this test');
  const stray = blocks.filter((b) => !b.step && (isBuf(b) || isCtl(b)));
  t.deepEqual(stray.map((b) => b.text), [], 'commands outside a step are not run by this test');
  for (const step of steps) {
    const inStep = blocks.filter((b) => b.step === step);
    t.true(inStep.some(isBuf), `step ${step} shows the buf curl way`);
    t.true(inStep.some(isCtl), `step ${step} shows the deployer-ctl way`);
  }
  t.true(blocks.filter(isBuf).every((b) => b.text.includes(DOC_ADDRESS)), `buf curl commands use ${DOC_ADDRESS}`);
});

let lab: Promise<Lab> | undefined;
const walks = new Map<Pass, Walk>();
test.after.always(async () => {
  for (const walk of walks.values()) walk.terminal.close();
  await (await lab?.catch(() => undefined))?.close();
});

type Pass = 'ctl' | 'buf';
const PASSES: readonly { readonly pass: Pass; readonly title: string; readonly runs: (b: Block) => boolean }[] = [
  { pass: 'ctl', title: 'deployer-ctl', runs: isCtl },
  { pass: 'buf', title: 'buf curl', runs: isBuf },
];

/**
 * The walkthrough of a pass. Both passes use the one lab, one after the other: the second starts
 * once the first's HP is deleted, so the same hardware comes back as a new machine, as the guide
 * assumes (a new machine, serial CZC9281KQ7, free to become hp-1).
 */
async function walkOf(pass: Pass): Promise<Walk> {
  const existing = walks.get(pass);
  if (existing) return existing;
  const theLab = await (lab ??= startLab());
  for (const previous of walks.values()) {
    await theLab.machines.delete({ machineId: previous.hp.machineId, reason: 'the next walkthrough starts from a new machine', expectedResourceVersion: 0n });
  }
  const walk = walkOn(theLab, pass);
  walks.set(pass, walk);
  return walk;
}

async function runBlocks(t: ExecutionContext, walk: Walk, selected: readonly Block[]): Promise<BlockRun[]> {
  const runs: BlockRun[] = [];
  for (const block of selected) {
    const run = await walk.terminal.run(block.text);
    t.is(run.code, 0, `exit ${run.code}:\n${block.text}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
    runs.push(run);
  }
  return runs;
}

for (const { pass, title, runs } of PASSES) {
  for (const [index, step] of steps.entries()) {
    walkTest(`${title}, step ${index} (${step}): the guide's commands do what it says`, async (t) => {
      t.timeout(300_000);
      const check = STEPS[step];
      if (!check) return void t.fail(`no check for step ${step}`);
      const walk = await walkOf(pass);
      await check.prepare?.(walk);
      const results = await runBlocks(t, walk, blocks.filter((b) => b.step === step && runs(b)));
      await check[pass](t, results, walk);
    });
  }
  if (pass === 'ctl') {
    // After the deployer-ctl walkthrough, while its machine is installed, as the transcript assumes.
    walkTest("the guide's transcripts print what the guide shows", async (t) => {
      const walk = await walkOf('ctl');
      const transcripts = blocks.filter((b) => b.lang === 'text' && b.text.startsWith('$ '));
      t.true(transcripts.length > 0);
      for (const transcript of transcripts) {
        let last: BlockRun | undefined;
        for (const part of transcript.text.split(/^\$ /m).filter(Boolean)) {
          const [command = '', ...expected] = part.trimEnd().split('\n');
          if (command === 'echo $?') {
            t.is(String(last?.code), expected.join('\n'), `exit code of the command before, in:\n${transcript.text}`);
            continue;
          }
          last = await walk.terminal.run(command);
          t.is(`${last.stdout}${last.stderr}`.trimEnd(), expected.join('\n'), `output of ${command}`);
        }
      }
    });
  }
}

walkTest('the files the guide says are in the state dir are there', async (t) => {
  const { server } = await (lab ??= startLab());
  const files = readFileSync(DOC, 'utf8')
    .split('\n')
    .flatMap((l) => /^\| `([\w-]+\.\w+)` \|/.exec(l)?.[1] ?? []);
  t.deepEqual(files, ['endpoint.json', 'ca.pem', 'admin.token', 'join.token']);
  for (const file of files) t.true(existsSync(join(server.stateDir, file)), `${file} in ${server.stateDir}`);
  t.is((statSync(join(server.stateDir, 'admin.token')).mode & 0o777).toString(8), '600', 'admin.token is 0600 as the guide says');
});
