// Agent streams (issue 7, item 6): N simulated nix-agents hold HostAgentService.Connect streams
// over mTLS to one host-controller (a process of its own, as `ultracloud host-controller` runs,
// watching the deployer in this process; `--same-process` serves both here as `ultracloud up`
// does; real PostgreSQL); one HostDeployment apply (a new system path for all N nodes,
// max_unavailable 100%) fans out to all. Measured: per-agent delay from the Apply being sent to
// the agent receiving its DesiredSystem (p50/p99), and the host-controller's RSS per stream ((RSS
// with N streams - RSS before) / N). In the same run, the yardstick: a bare @grpc/grpc-js bidi
// server holding the same N mTLS streams from the same agents and pushing one message of the same
// size to each on a trigger. Goal: RSS per stream <= 1.5x and fan-out p99 <= 2x the baseline's.
//
// The nodes are real: N machines go through the deployer's install flow first (Discover,
// FetchPlan, install reports), and each agent dials with the certificate FetchPlan issued it.
// Each agent has its own connection (a connection's client certificate is one node). The agents
// run in a child process (bench/agent-streams-load.ts), so no RSS measured is theirs.
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { ClusterServiceDefinition } from '../gen/ts/ultracloud/deployer/v1/cluster_service.js';
import { ClusterState } from '../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import { HostDeploymentServiceDefinition } from '../gen/ts/ultracloud/host/v1/host_deployment_service.js';
import { HostDeployment } from '../gen/ts/ultracloud/system/v1/system.js';
import { createServiceClient, openChannel } from '../lib/grpc/client.js';
import { createLogger } from '../lib/log.js';
import { createClusterCa, issueControlPlaneCertificate } from '../lib/pki/index.js';
import { serveComponents } from '../lib/serve.js';
import { CA_BUNDLE_FILE, deployerComponent, JOIN_TOKEN_FILE } from '../services/deployer/component.js';
import { hostControllerComponent } from '../services/host-controller/component.js';
import { machineInventory, optiplexFacts, SimulatedInstaller } from '../test/helpers/simulated-installer.js';
import type { AgentCredentials, ReceivedReport } from './agent-streams-load.js';
import { benchDatabaseUrl } from './bootstrap-storm.js';
import { benchDaemonConfig } from './daemon-config.js';
import { collectedMemory } from './collected-memory.js';

export const RSS_RATIO_GOAL = 1.5;
export const P99_RATIO_GOAL = 2;

/**
 * What the host-controller's NixOS unit sets for the C library (nix/modules/common.nix,
 * streamServerEnvironment): the controller's process gets it here too, unless
 * `glibcDefaults` asks for the allocator's defaults.
 */
export const STREAM_SERVER_ENVIRONMENT: Readonly<Record<string, string>> = JSON.parse(readFileSync(new URL('../nix/modules/stream-server-environment.json', import.meta.url), 'utf8'));

/** lab6 with DHCP on its networks: its STATIC pool of 79 addresses cannot take thousands of workers. */
function benchClusterState(): ClusterState {
  const document = JSON.parse(readFileSync(new URL('../test/fixtures/cluster-state/lab6.json', import.meta.url), 'utf8')) as { networks: Record<string, { addressMode: string; addressPool?: unknown }> };
  for (const network of Object.values(document.networks)) {
    network.addressMode = 'ADDRESS_MODE_DHCP';
    delete network.addressPool;
  }
  return ClusterState.fromJSON(document);
}
const OLD_SYSTEM = '/nix/store/4q3ajqmd5ydcnfwf7n0hqjyf6ghgvx6s-nixos-system-worker-24.05';
const NEW_SYSTEM = '/nix/store/9v1lr4cx7l3y0fs0kc0bz6k1a3mm2kdh-nixos-system-worker-24.11';
const HEARTBEAT_MS = 10_000;
/**
 * Between a server's RSS reading and the timed fan-out, on both sides. The reading forces three
 * full collections (200-480 ms each in the host-controller at 10,000 streams), which a server in
 * service never runs; an Apply sent 200 ms after them took the controller twice as long to its
 * first send (docs/performance.md).
 */
const SETTLE_MS = 2_000;

export interface AgentStreamsOptions {
  /** Simulated agents (and installed nodes). Default 10,000. */
  readonly agents?: number;
  /** Installers and connection handshakes in flight at once. Default 16. */
  readonly concurrency?: number;
  readonly databaseUrl?: string;
  /**
   * Serve the host-controller in the benchmark's process with the deployer, as `ultracloud up`
   * does, instead of in a process of its own as `ultracloud host-controller` runs it (the
   * default). Its RSS per stream then includes what the deployer does for each agent.
   */
  readonly sameProcess?: boolean;
  /**
   * Run the host-controller's own process with the C library's allocator defaults instead of the
   * environment its NixOS unit sets (STREAM_SERVER_ENVIRONMENT). Default false.
   */
  readonly glibcDefaults?: boolean;
  readonly print?: (line: string) => void;
}

export interface FanOut {
  readonly rssPerStreamBytes: number;
  readonly memory: MemoryGrowth;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly received: number;
  readonly missing: number;
  readonly connectSeconds: number;
}

export interface AgentStreamsResult {
  readonly agents: number;
  readonly controller: FanOut;
  readonly baseline: FanOut;
  readonly rssRatio: number;
  readonly p99Ratio: number;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

/** Per stream, where the growth between two readings is: V8's heap, buffers it tracks, the rest. */
function growthPerStream(before: NodeJS.MemoryUsage, after: NodeJS.MemoryUsage, streams: number): MemoryGrowth {
  const per = (bytes: number) => bytes / streams;
  const heap = per(after.heapTotal - before.heapTotal);
  const external = per(after.external - before.external);
  const rss = per(after.rss - before.rss);
  return { rss, heap, external, outside: rss - heap - external };
}

export interface MemoryGrowth {
  /** RSS growth per stream, and its parts: V8's heap (heapTotal), memory V8 tracks outside it (external, Buffers), and the rest (native: TLS, HTTP/2, allocator). */
  readonly rss: number;
  readonly heap: number;
  readonly external: number;
  readonly outside: number;
}

function formatGrowth(g: MemoryGrowth): string {
  const k = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
  return `per stream: V8 heap ${k(g.heap)}, external ${k(g.external)}, outside V8 ${k(g.outside)}`;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.timeOrigin + performance.now();

/** A child process (the agents, or the baseline server) driven over IPC. */
class LoadProcess {
  private readonly child: ChildProcess;
  private readonly waiting = new Map<string, { resolve: (m: Record<string, unknown>) => void; reject: (e: Error) => void }>();
  /** Messages that arrived before anyone asked for them. */
  private readonly early = new Map<string, Record<string, unknown>>();
  private failure: Error | undefined;

  constructor(module = './agent-streams-load.ts', environment: Readonly<Record<string, string>> = {}) {
    this.child = fork(new URL('./agent-streams-load.mjs', import.meta.url), [module], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [], env: { ...process.env, ...environment } });
    this.child.on('message', (m: Record<string, unknown>) => {
      if (m.kind === 'error') return this.fail(new Error(`agent load process: ${String(m.error)}`));
      const kind = String(m.kind);
      const waiter = this.waiting.get(kind);
      this.waiting.delete(kind);
      if (waiter) waiter.resolve(m);
      else this.early.set(kind, m);
    });
    this.child.once('exit', (code) => this.fail(new Error(`agent load process exited with ${code}`)));
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }

  next<T>(kind: string): Promise<T> {
    const early = this.early.get(kind);
    if (early) {
      this.early.delete(kind);
      return Promise.resolve(early as T);
    }
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiting.set(kind, { resolve: (m) => resolve(m as T), reject }));
  }

  send(message: unknown): void {
    this.child.send(message as never);
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.send({ kind: 'close' });
    await Promise.race([exited, sleep(10_000)]);
    this.child.kill('SIGKILL');
  }
}

async function connectAgents(load: LoadProcess, input: { address: string; caPem: string; serverName?: string; agents: readonly AgentCredentials[]; concurrency: number }): Promise<number> {
  await load.next('started');
  const started = now();
  const connected = load.next<{ agents: number }>('connected');
  load.send({ kind: 'connect', ...input, heartbeatMs: HEARTBEAT_MS, currentSystemPath: OLD_SYSTEM });
  await connected;
  return (now() - started) / 1000;
}

function summarise(report: ReceivedReport, t0: number): { p50Ms: number; p99Ms: number } {
  const delays = report.times.map((t) => Math.max(0, t - t0)).sort((a, b) => a - b);
  return { p50Ms: percentile(delays, 50), p99Ms: percentile(delays, 99) };
}

/**
 * When the leader decided the activations: the start time (wall-clock ms) of each tick that
 * decided some, with how many, from the rollout event log. A fan-out's tail is either decided
 * late (a later tick) or written and sent late (one early tick).
 */
async function decisionTicks(url: string, deployment: string): Promise<{ atMs: number; activations: number }[]> {
  const client = new pg.Client({ connectionString: url, application_name: 'ultracloud-bench-check' });
  await client.connect();
  try {
    // A large decision's events are written once its intents are written out, after the sends.
    for (let i = 0; i < 100; i++) {
      const pending = await client.query<{ n: string }>('SELECT count(*) AS n FROM hosts.activation_intents');
      if (pending.rows[0]?.n === '0') break;
      await sleep(100);
    }
    const { rows } = await client.query<{ at_ms: string; activations: string }>(
      `SELECT extract(epoch FROM at) * 1000 AS at_ms, count(*) AS activations FROM hosts.rollout_events
       WHERE deployment = $1 AND kind = 'decision.activate' GROUP BY at ORDER BY at`,
      [deployment],
    );
    return rows.map((r) => ({ atMs: Number(r.at_ms), activations: Number(r.activations) }));
  } finally {
    await client.end();
  }
}

function formatDecisions(ticks: readonly { atMs: number; activations: number }[], t0: number): string {
  const total = ticks.reduce((n, t) => n + t.activations, 0);
  const shown = ticks.slice(0, 5).map((t) => `${t.activations} at +${(t.atMs - t0).toFixed(0)} ms`);
  return `decided: ${total} activations by ${ticks.length} tick(s) of the leader (${shown.join(', ')}${ticks.length > 5 ? ', ...' : ''}; a tick's start, from the Apply)`;
}

async function scratchDatabase(adminUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `ultracloud_bench_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create database ${pg.escapeIdentifier(name)}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      await c.query(`drop database if exists ${pg.escapeIdentifier(name)} with (force)`);
      await c.end();
    },
  };
}

async function runConcurrently(count: number, concurrency: number, run: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) await run(next++);
    }),
  );
}

// ---- the host-controller ---------------------------------------------------------------------

/** The host-controller the agents connect to, as the benchmark drives it. */
interface ControllerUnderTest {
  readonly address: string;
  /** The CA the agents and the benchmark's client verify the controller's certificate with. */
  readonly serverCaPem: string;
  readonly serverCaFile: string;
  readonly adminToken: string;
  /** The controller process's memory after a full collection. */
  measure(): Promise<NodeJS.MemoryUsage>;
  close(): Promise<void>;
}

/**
 * `ultracloud host-controller` in a child process of its own (bench/agent-streams-controller.ts),
 * watching the deployer in this process over TLS with the deployer's admin token, serving its own
 * control-plane certificate and verifying agents against the cluster CA.
 */
async function separateController(input: { url: string; stateDir: string; deployerAddress: string; clusterCaFile: string; deployerTokenFile: string; environment: Readonly<Record<string, string>> }): Promise<ControllerUnderTest> {
  const dir = join(input.stateDir, 'host-controller');
  mkdirSync(dir, { recursive: true });
  const serverCa = await createClusterCa({ commonName: 'agent-streams host-controller CA' });
  const cert = await issueControlPlaneCertificate(serverCa);
  const files = { ca: join(dir, 'server-ca.pem'), cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') };
  writeFileSync(files.ca, serverCa.certificatePem);
  writeFileSync(files.cert, cert.certificatePem);
  writeFileSync(files.key, cert.privateKeyPem, { mode: 0o600 });
  const child = new LoadProcess('./agent-streams-controller.ts', input.environment);
  try {
    await child.next('started');
    const listening = child.next<{ address: string; adminTokenPath: string }>('listening');
    child.send({
      kind: 'start',
      databaseUrl: input.url,
      stateDir: dir,
      certFile: files.cert,
      keyFile: files.key,
      clientCaFile: input.clusterCaFile,
      flags: { ...CONTROLLER_FLAGS, deployer: input.deployerAddress, 'deployer-ca': input.clusterCaFile, 'deployer-token-file': input.deployerTokenFile, 'instance-id': 'bench-host-controller' },
    });
    const { address, adminTokenPath } = await listening;
    // It refuses hellos until it has the deployer's machines.
    for (let i = 0; i < 600 && !readFileSync(join(dir, 'server.log'), 'utf8').includes('"event":"inventory.synced"'); i++) await sleep(100);
    return {
      address,
      serverCaPem: serverCa.certificatePem,
      serverCaFile: files.ca,
      adminToken: readFileSync(adminTokenPath, 'utf8').trim(),
      async measure() {
        const answer = child.next<{ memory: NodeJS.MemoryUsage }>('rss');
        child.send({ kind: 'measure' });
        return (await answer).memory;
      },
      close: () => child.close(),
    };
  } catch (err) {
    await child.close();
    throw err;
  }
}

const CONTROLLER_FLAGS = { 'heartbeat-interval': `${HEARTBEAT_MS / 1000}s`, 'reconcile-interval': '2s' };

async function controllerSide(input: { url: string; stateDir: string; agents: number; concurrency: number; sameProcess: boolean; environment: Readonly<Record<string, string>>; print: (l: string) => void }): Promise<{ fanOut: FanOut; credentials: AgentCredentials[]; clusterCaPem: string; sampleBytes: number }> {
  const destination = pino.destination({ dest: join(input.stateDir, 'server.log'), sync: false, mkdir: true });
  const logger = createLogger({ level: 'info', destination: destination as unknown as NodeJS.WritableStream });
  const config = benchDaemonConfig({ stateDir: input.stateDir, databaseUrl: input.url });
  const serving = await serveComponents({
    components: input.sameProcess ? [deployerComponent(CONTROLLER_FLAGS), hostControllerComponent(CONTROLLER_FLAGS, { sameProcessDeployer: true })] : [deployerComponent()],
    config,
    logger,
    transport: { kind: 'cluster-ca', clientCaFile: undefined },
  });
  const address = serving.server.address;
  const clusterCaFile = join(input.stateDir, CA_BUNDLE_FILE);
  const clusterCaPem = readFileSync(clusterCaFile, 'utf8');
  const channel = openChannel(address, { tls: { caFile: clusterCaFile } });
  const load = new LoadProcess();
  let controller: ControllerUnderTest | undefined;
  let controllerChannel: ReturnType<typeof openChannel> | undefined;
  try {
    const adminToken = readFileSync(serving.adminTokenPath, 'utf8').trim();
    await createServiceClient(ClusterServiceDefinition, channel, { token: adminToken }).applyClusterState({ state: benchClusterState(), dryRun: false, expectedGeneration: 0n });
    const joinToken = readFileSync(join(input.stateDir, JOIN_TOKEN_FILE), 'utf8').trim();
    const credentials: AgentCredentials[] = [];
    const installStarted = now();
    const refused = new Map<string, number>();
    await runConcurrently(input.agents, input.concurrency, async () => {
      // Simulated hardware is random; a rare identity clash fails that machine, which is left out.
      try {
        const installer = new SimulatedInstaller({ channel, joinToken }, machineInventory(optiplexFacts()));
        await installer.discover();
        const plan = await installer.fetchPlan();
        await installer.install();
        credentials.push({ nodeId: plan.assignment?.nodeId ?? '', certPem: plan.secrets?.tlsCertificatePem ?? '', keyPem: plan.secrets?.tlsPrivateKeyPem ?? '' });
      } catch (err) {
        const reason = (err as Error).message;
        refused.set(reason, (refused.get(reason) ?? 0) + 1);
      }
    });
    input.print(`  installed ${credentials.length} nodes through the deployer in ${((now() - installStarted) / 1000).toFixed(1)} s (setup, not measured)`);
    for (const [reason, count] of refused) input.print(`  ${count} machine(s) not installed, left out: ${reason}`);
    if (credentials.length === 0) throw new Error('no node could be installed');

    controller = input.sameProcess
      ? { address, serverCaPem: clusterCaPem, serverCaFile: clusterCaFile, adminToken, measure: collectedMemory, close: async () => undefined }
      : await separateController({ url: input.url, stateDir: input.stateDir, deployerAddress: address, clusterCaFile, deployerTokenFile: serving.adminTokenPath, environment: input.environment });
    controllerChannel = input.sameProcess ? channel : openChannel(controller.address, { tls: { caFile: controller.serverCaFile } });
    await sleep(3_000);

    const rollouts = createServiceClient(HostDeploymentServiceDefinition, controllerChannel, { token: controller.adminToken, defaultDeadlineMs: 120_000 });
    const before = await controller.measure();
    const connectSeconds = await connectAgents(load, { address: controller.address, caPem: controller.serverCaPem, agents: credentials, concurrency: input.concurrency });
    // Until every agent's stream is recorded as connected.
    for (let i = 0; i < 60; i++) {
      const listed = await rollouts.listHostAgents({ pageSize: 1000, pageToken: '', nodeIds: [], staleOnly: false });
      let connected = listed.agents.filter((a) => a.connected).length;
      let token = listed.nextPageToken;
      while (token) {
        const page = await rollouts.listHostAgents({ pageSize: 1000, pageToken: token, nodeIds: [], staleOnly: false });
        connected += page.agents.filter((a) => a.connected).length;
        token = page.nextPageToken;
      }
      if (connected >= credentials.length) break;
      await sleep(1_000);
    }
    await sleep(2_000);
    const after = await controller.measure();
    const growth = growthPerStream(before, after, credentials.length);
    input.print(`  ${credentials.length} agents connected over mTLS in ${connectSeconds.toFixed(1)} s; host-controller RSS ${(before.rss / 2 ** 20).toFixed(0)} MiB -> ${(after.rss / 2 ** 20).toFixed(0)} MiB; ${formatGrowth(growth)}`);

    const received = load.next<ReceivedReport>('received');
    load.send({ kind: 'mark', mode: 'desired', timeoutMs: 120_000 });
    await sleep(SETTLE_MS);
    // Fan-out is timed from the moment the operator's Apply is sent, so it includes the Apply.
    const t0 = now();
    await rollouts.applyHostDeployments({
      hostDeployments: [
        HostDeployment.fromPartial({
          name: 'bench-fleet',
          selector: { allNodes: true },
          target: { systemPath: NEW_SYSTEM },
          maxUnavailable: { value: { $case: 'percent', value: 100 } },
          failureBudget: credentials.length,
        }),
      ],
      dryRun: false,
      prune: false,
      reason: 'agent-streams benchmark',
    });
    const applySeconds = (now() - t0) / 1000;
    const report = await received;
    const { p50Ms, p99Ms } = summarise(report, t0);
    input.print(`  ApplyHostDeployments answered in ${(applySeconds * 1000).toFixed(1)} ms`);
    input.print(`  ${formatDecisions(await decisionTicks(input.url, 'bench-fleet'), t0)}`);
    return {
      fanOut: { rssPerStreamBytes: growth.rss, memory: growth, p50Ms, p99Ms, received: report.times.length, missing: report.missing, connectSeconds },
      credentials,
      clusterCaPem,
      sampleBytes: Number(report.sampleBytes),
    };
  } finally {
    await load.close();
    if (controllerChannel !== channel) controllerChannel?.close();
    await controller?.close();
    channel.close();
    await serving.stop();
  }
}

// ---- the baseline ----------------------------------------------------------------------------

async function baselineSide(input: { clusterCaPem: string; credentials: readonly AgentCredentials[]; payloadBytes: number; concurrency: number }): Promise<FanOut> {
  const server = new LoadProcess('./agent-streams-baseline.ts');
  const load = new LoadProcess();
  try {
    await server.next('started');
    const listening = server.next<{ port: number; caPem: string }>('listening');
    server.send({ kind: 'start', clusterCaPem: input.clusterCaPem });
    const { port, caPem } = await listening;
    const measure = async () => {
      const answer = server.next<{ memory: NodeJS.MemoryUsage; streams: number }>('rss');
      server.send({ kind: 'measure' });
      return answer;
    };
    const before = (await measure()).memory;
    const connectSeconds = await connectAgents(load, { address: `127.0.0.1:${port}`, caPem, agents: input.credentials, concurrency: input.concurrency });
    let after = await measure();
    for (let i = 0; i < 60 && after.streams < input.credentials.length; i++) {
      await sleep(500);
      after = await measure();
    }
    await sleep(2_000);
    after = await measure();
    const received = load.next<ReceivedReport>('received');
    load.send({ kind: 'mark', mode: 'any', timeoutMs: 120_000 });
    await sleep(SETTLE_MS);
    const pushed = server.next<{ at: number }>('pushed');
    server.send({ kind: 'push', bytes: input.payloadBytes });
    const t0 = (await pushed).at;
    const report = await received;
    const { p50Ms, p99Ms } = summarise(report, t0);
    const growth = growthPerStream(before, after.memory, input.credentials.length);
    return { rssPerStreamBytes: growth.rss, memory: growth, p50Ms, p99Ms, received: report.times.length, missing: report.missing, connectSeconds };
  } finally {
    await load.close();
    await server.close();
  }
}

function format(f: FanOut): string {
  return `RSS per stream ${(f.rssPerStreamBytes / 1024).toFixed(1)} KiB (${formatGrowth(f.memory)}); fan-out p50 ${f.p50Ms.toFixed(1)} ms, p99 ${f.p99Ms.toFixed(1)} ms (${f.received} received, ${f.missing} missing); connect ${f.connectSeconds.toFixed(1)} s`;
}

export async function runAgentStreams(options: AgentStreamsOptions = {}): Promise<AgentStreamsResult> {
  const agents = options.agents ?? 10_000;
  const concurrency = options.concurrency ?? 16;
  const print = options.print ?? ((line: string) => console.log(line));
  const scratch = await scratchDatabase(options.databaseUrl ?? benchDatabaseUrl());
  const stateDir = await mkdtemp(join(tmpdir(), 'ultracloud-agent-streams-'));
  try {
    print(`agent-streams: N = ${agents} agents, one mTLS connection each; node ${process.version}; ${cpus().length} CPUs, load average ${loadavg()[0]?.toFixed(2)}`);
    const sameProcess = options.sameProcess ?? false;
    print(`  host-controller: ${sameProcess ? 'in this process with the deployer (ultracloud up)' : 'a process of its own (ultracloud host-controller), the deployer in this one'}`);
    const environment = sameProcess || options.glibcDefaults ? {} : STREAM_SERVER_ENVIRONMENT;
    if (!sameProcess) {
      const shown = Object.entries(environment).map(([name, value]) => `${name}=${value}`).join(' ');
      print(`  host-controller environment: ${shown === '' ? "the C library's defaults" : `${shown} (as its NixOS unit sets it)`}`);
    }
    const controller = await controllerSide({ url: scratch.url, stateDir, agents, concurrency, sameProcess, environment, print });
    print(`host-controller: ${format(controller.fanOut)}; DesiredSystem ${controller.sampleBytes} bytes`);
    const baseline = await baselineSide({ clusterCaPem: controller.clusterCaPem, credentials: controller.credentials, payloadBytes: controller.sampleBytes || 200, concurrency });
    print(`baseline (bare grpc-js bidi, one push each): ${format(baseline)}`);
    // A baseline that grew by nothing measurable gives no ratio rather than a flattering one.
    const rssRatio = baseline.rssPerStreamBytes > 0 ? controller.fanOut.rssPerStreamBytes / baseline.rssPerStreamBytes : Number.NaN;
    const p99Ratio = controller.fanOut.p99Ms / Math.max(baseline.p99Ms, 0.001);
    print(`goals: rss ratio <= ${RSS_RATIO_GOAL} ${Number.isNaN(rssRatio) ? 'not measurable (baseline RSS did not grow)' : rssRatio <= RSS_RATIO_GOAL ? 'met' : 'NOT met'}; p99 ratio <= ${P99_RATIO_GOAL} ${p99Ratio <= P99_RATIO_GOAL ? 'met' : 'NOT met'}`);
    print(`rss ratio: ${rssRatio.toFixed(2)}`);
    print(`p99 ratio: ${p99Ratio.toFixed(2)}`);
    return { agents, controller: controller.fanOut, baseline, rssRatio, p99Ratio };
  } finally {
    await rm(stateDir, { recursive: true, force: true });
    await scratch.drop();
  }
}
