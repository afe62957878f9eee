// Bootstrap storm (issue 3, item 11): N simulated installers, C at a time, each run Discover →
// FetchPlan → three ReportInstallProgress calls over real gRPC against the deployer served
// in-process on real PostgreSQL. In the same run, the yardstick: a bare @grpc/grpc-js unary
// server doing one PostgreSQL upsert per call, driven by the same number of calls at the same
// concurrency over the same kind of loopback channel. Goal: the deployer's RPCs/s at least half
// the baseline's calls/s (`ratio: <x>`, the last line printed). `reports` below 3 measures a
// part of the install (with 0, Discover and FetchPlan alone); such a run is not judged.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import { pino } from 'pino';
import { ClusterServiceDefinition } from '../gen/ts/ultracloud/deployer/v1/cluster_service.js';
import { ClusterState } from '../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import { createServiceClient, openChannel } from '../lib/grpc/client.js';
import { createLogger } from '../lib/log.js';
import { benchDaemonConfig } from './daemon-config.js';
import { serveComponents } from '../lib/serve.js';
import { deployerComponent, JOIN_TOKEN_FILE } from '../services/deployer/component.js';
import { BASELINE_SERVICE, type LatencySummary, PROGRESS_REPORTS, rpcsPerMachine, runLoad } from './storm-clients.js';

export type { LatencySummary };
import { type CredentialsBenchResult, formatCredentialsBench, runCredentialsBench } from './credentials.js';

export const BENCH_DATABASE_URL_VARIABLES = ['ULTRACLOUD_BENCH_DATABASE_URL', 'ULTRACLOUD_TEST_DATABASE_URL'] as const;
export const DEFAULT_BENCH_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';

/** Issue 3's goals. */
export const RATIO_GOAL = 0.5;
export const CREDENTIALS_RATIO_GOAL = 50;
export const DEFAULT_WARMUP_MACHINES = 1000;

export interface BootstrapStormOptions {
  /** Simulated installers, each one machine. Default 1,000. */
  readonly machines?: number;
  /** Installers in flight at once (and baseline calls in flight at once). Default 32. */
  readonly concurrency?: number;
  /**
   * Machines installed before the measured ones and not counted; the baseline first makes five
   * calls per warm-up machine. Default 1,000: by then V8 has optimised nearly all of the
   * deployer's code, as it has on a deployer that has served installs for a while (after 200,
   * `--trace-opt` still counted about 500 optimisations inside the measured run, 180 after
   * 1,000; docs/performance.md).
   */
  readonly warmup?: number;
  /** Server to create the scratch database on; default from the environment, see above. */
  readonly databaseUrl?: string;
  /**
   * ReportInstallProgress calls per installer, 0-3. Default 3, a whole install; fewer measure a
   * part of it (0: Discover and FetchPlan alone), with the baseline making as many calls per key.
   * Only a whole install is judged against the goal.
   */
  readonly reports?: number;
  /** Seconds per side of the credentials benchmark. Default 5. */
  readonly credentialSeconds?: number;
  /**
   * Run the simulated installers and the baseline's client on the server's own thread instead of
   * a worker thread (how the first figures were taken). Default false.
   */
  readonly inProcessClients?: boolean;
  /** Where result lines go. Default console.log. */
  readonly print?: (line: string) => void;
}

export interface BootstrapStormResult {
  readonly machines: number;
  readonly concurrency: number;
  readonly warmup: number;
  readonly reports: number;
  readonly deployer: {
    readonly rpcs: number;
    readonly seconds: number;
    readonly rpcsPerSecond: number;
    readonly machinesPerSecond: number;
    readonly discover: LatencySummary;
    readonly fetchPlan: LatencySummary;
    readonly reportInstallProgress: LatencySummary;
    /** Share of the load's wall time the server's event loop was busy (not waiting for I/O). */
    readonly serverThreadBusy: number;
  };
  readonly baseline: { readonly calls: number; readonly seconds: number; readonly callsPerSecond: number; readonly latency: LatencySummary; readonly serverThreadBusy: number };
  readonly credentials: CredentialsBenchResult;
  readonly ratio: number;
  readonly postgresVersion: string;
}


export async function runBootstrapStorm(options: BootstrapStormOptions = {}): Promise<BootstrapStormResult> {
  const machines = options.machines ?? 1000;
  const concurrency = options.concurrency ?? 32;
  const warmup = options.warmup ?? DEFAULT_WARMUP_MACHINES;
  const print = options.print ?? ((line: string) => console.log(line));
  if (!Number.isInteger(machines) || machines < 1) throw new Error(`machines must be a positive integer, got ${machines}`);
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error(`concurrency must be a positive integer, got ${concurrency}`);
  if (!Number.isInteger(warmup) || warmup < 1) throw new Error(`warmup must be a positive integer, got ${warmup}`);
  const reports = options.reports ?? PROGRESS_REPORTS;
  if (!Number.isInteger(reports) || reports < 0 || reports > PROGRESS_REPORTS) throw new Error(`reports must be a whole number from 0 to ${PROGRESS_REPORTS}, got ${reports}`);
  const whole = reports === PROGRESS_REPORTS;

  const scratch = await createScratchDatabase(options.databaseUrl ?? benchDatabaseUrl());
  const stateDir = await mkdtemp(join(tmpdir(), 'ultracloud-bench-'));
  try {
    print(`bootstrap-storm: ${machines} machines after ${warmup} not counted, concurrency ${concurrency}; ${scratch.serverVersion}; node ${process.version}; ${cpus().length} CPUs, load average ${loadavg()[0]?.toFixed(2)}`);
    const inProcess = options.inProcessClients ?? false;
    print(`load: simulated installers and the baseline's client ${inProcess ? "on the server's thread" : 'in a worker thread'}`);
    if (!whole) print(`part of an install: Discover, FetchPlan and ${reports} of ${PROGRESS_REPORTS} ReportInstallProgress per installer, the baseline ${rpcsPerMachine(reports)} calls per key; not judged against the goal`);
    const deployer = await stormDeployer({ url: scratch.url, stateDir, machines, warmup, concurrency, inProcess, reports });
    print(`deployer: ${deployer.rpcs} RPCs in ${deployer.seconds.toFixed(2)} s = ${deployer.rpcsPerSecond.toFixed(1)} RPCs/s, ${deployer.machinesPerSecond.toFixed(1)} machines/s`);
    print(`  Discover               ${formatLatency(deployer.discover)}`);
    print(`  FetchPlan              ${formatLatency(deployer.fetchPlan)}`);
    print(`  ReportInstallProgress  ${formatLatency(deployer.reportInstallProgress)}`);
    print(`  server thread busy ${(deployer.serverThreadBusy * 100).toFixed(0)} % of the run`);

    const baseline = await stormBaseline({ url: scratch.url, calls: deployer.rpcs, warmupCalls: warmup * rpcsPerMachine(reports), callsPerKey: rpcsPerMachine(reports), concurrency, inProcess });
    print(`baseline (bare grpc-js, one upsert per call): ${baseline.calls} calls in ${baseline.seconds.toFixed(2)} s = ${baseline.callsPerSecond.toFixed(1)} calls/s, ${formatLatency(baseline.latency)}, server thread busy ${(baseline.serverThreadBusy * 100).toFixed(0)} %`);

    const credentials = await runCredentialsBench({ seconds: options.credentialSeconds ?? 5 });
    print(formatCredentialsBench(credentials));

    const ratio = deployer.rpcsPerSecond / baseline.callsPerSecond;
    print(
      `goals: ratio >= ${RATIO_GOAL} ${whole ? (ratio >= RATIO_GOAL ? 'met' : 'NOT met') : `not judged (${reports} of ${PROGRESS_REPORTS} progress reports)`}; ` +
        `credential issuance >= ${CREDENTIALS_RATIO_GOAL}x node-forge ${credentials.ratio >= CREDENTIALS_RATIO_GOAL ? 'met' : 'NOT met'} (${credentials.ratio.toFixed(1)}x)`,
    );
    print(`ratio: ${ratio.toFixed(3)}`);
    return { machines, concurrency, warmup, reports, deployer, baseline, credentials, ratio, postgresVersion: scratch.serverVersion };
  } finally {
    await rm(stateDir, { recursive: true, force: true });
    await scratch.drop();
  }
}

export function benchDatabaseUrl(env: NodeJS.ProcessEnv = process.env): string {
  for (const name of BENCH_DATABASE_URL_VARIABLES) {
    const value = env[name];
    if (value !== undefined && value !== '') return value;
  }
  return DEFAULT_BENCH_DATABASE_URL;
}

// ---- the deployer side -----------------------------------------------------------------------

type DeployerStorm = BootstrapStormResult['deployer'];

async function stormDeployer(input: { url: string; stateDir: string; machines: number; warmup: number; concurrency: number; inProcess: boolean; reports: number }): Promise<DeployerStorm> {
  // Production logs at info; keep that cost in the measurement but write it to a file.
  const logPath = join(input.stateDir, 'deployer.log');
  const destination = pino.destination({ dest: logPath, sync: false, mkdir: true });
  const logger = createLogger({ level: 'info', destination: destination as unknown as NodeJS.WritableStream });
  const config = benchDaemonConfig({ stateDir: input.stateDir, databaseUrl: input.url, insecureLoopback: true });
  const serving = await serveComponents({ components: [deployerComponent()], config, logger });
  const channel = openChannel(serving.server.address);
  try {
    const adminToken = (await readFile(serving.adminTokenPath, 'utf8')).trim();
    const joinToken = (await readFile(join(input.stateDir, JOIN_TOKEN_FILE), 'utf8')).trim();
    const cluster = createServiceClient(ClusterServiceDefinition, channel, { token: adminToken });
    await cluster.applyClusterState({ state: benchClusterState(), dryRun: false, expectedGeneration: 0n });

    // Warm-up machines (JIT, pool connections, prepared plans) are installed but not counted.
    const before = performance.eventLoopUtilization();
    const load = await runLoad({ kind: 'installers', address: serving.server.address, joinToken, warmup: input.warmup, machines: input.machines, concurrency: input.concurrency, reports: input.reports }, input.inProcess);
    const serverThreadBusy = performance.eventLoopUtilization(before).utilization;
    const seconds = load.seconds;

    await assertAllInState(input.url, input.machines + input.warmup, input.reports === PROGRESS_REPORTS ? 'installed' : 'installing');
    const rpcs = input.machines * rpcsPerMachine(input.reports);
    return {
      rpcs,
      seconds,
      rpcsPerSecond: rpcs / seconds,
      machinesPerSecond: input.machines / seconds,
      discover: load.discover,
      fetchPlan: load.fetchPlan,
      reportInstallProgress: load.reportInstallProgress,
      serverThreadBusy,
    };
  } catch (err) {
    destination.flushSync();
    const tail = readFileSync(logPath, 'utf8').trimEnd().split('\n').slice(-20).join('\n');
    throw new Error(`bootstrap storm failed: ${(err as Error).message}\nlast deployer log lines:\n${tail}`, { cause: err });
  } finally {
    channel.close();
    await serving.stop();
    destination.flushSync();
    destination.end();
  }
}

/** lab6 with DHCP on its network (a STATIC pool of 79 addresses cannot take 1,000 workers). */
function benchClusterState(): ClusterState {
  const path = new URL('../test/fixtures/cluster-state/lab6.json', import.meta.url);
  const document = JSON.parse(readFileSync(path, 'utf8')) as {
    networks: Record<string, { addressMode: string; addressPool?: unknown }>;
    enrollmentRules: Record<string, { nodeIdTemplate: string; autoCommission: boolean; autoInstall: boolean }>;
  };
  for (const network of Object.values(document.networks)) {
    network.addressMode = 'ADDRESS_MODE_DHCP';
    delete network.addressPool;
  }
  const rule = document.enrollmentRules['optiplex-workers'];
  if (!rule) throw new Error('lab6.json has no optiplex-workers rule');
  Object.assign(rule, { nodeIdTemplate: 'worker-{index}', autoCommission: true, autoInstall: true });
  return ClusterState.fromJSON(document);
}

async function assertAllInState(url: string, expected: number, state: 'installed' | 'installing'): Promise<void> {
  const client = new pg.Client({ connectionString: url, application_name: 'ultracloud-bench-check' });
  await client.connect();
  try {
    const { rows } = await client.query<{ state: string; machines: string }>('SELECT state, count(*) AS machines FROM deployer.machines GROUP BY state');
    const inState = Number(rows.find((r) => r.state === state)?.machines ?? 0);
    const names = await client.query<{ n: string }>('SELECT count(DISTINCT node_id) AS n FROM deployer.assignments');
    if (inState !== expected || Number(names.rows[0]?.n) !== expected) {
      throw new Error(`expected ${expected} ${state} machines with distinct node_ids, found ${JSON.stringify(rows)} and ${names.rows[0]?.n} node_ids`);
    }
  } finally {
    await client.end();
  }
}

// ---- the baseline ----------------------------------------------------------------------------

async function stormBaseline(input: { url: string; calls: number; warmupCalls: number; callsPerKey: number; concurrency: number; inProcess: boolean }): Promise<BootstrapStormResult['baseline']> {
  // The same pool size as the deployer's database handle (lib/db default).
  const pool = new pg.Pool({ connectionString: input.url, max: 10, application_name: 'ultracloud-bench-baseline' });
  await pool.query(
    'CREATE TABLE bench_baseline (machine_key text PRIMARY KEY, payload bytea NOT NULL, calls integer NOT NULL, updated_at timestamptz NOT NULL)',
  );
  const server = new grpc.Server();
  server.addService(BASELINE_SERVICE, {
    upsert(call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
      const request = call.request;
      const key = request.subarray(0, 16).toString('hex');
      pool
        .query(
          `INSERT INTO bench_baseline (machine_key, payload, calls, updated_at) VALUES ($1, $2, 1, now())
           ON CONFLICT (machine_key) DO UPDATE SET payload = excluded.payload, calls = bench_baseline.calls + 1, updated_at = excluded.updated_at`,
          [key, request],
        )
        .then(
          () => callback(null, request.subarray(0, 16)),
          (err: Error) => callback({ code: grpc.status.INTERNAL, details: err.message }),
        );
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  try {
    const before = performance.eventLoopUtilization();
    const load = await runLoad({ kind: 'baseline', address: `127.0.0.1:${port}`, calls: input.calls, warmupCalls: input.warmupCalls, callsPerKey: input.callsPerKey, concurrency: input.concurrency }, input.inProcess);
    const serverThreadBusy = performance.eventLoopUtilization(before).utilization;
    const { rows } = await pool.query<{ calls: string }>('SELECT coalesce(sum(calls), 0) AS calls FROM bench_baseline');
    const expected = input.calls + input.warmupCalls;
    if (Number(rows[0]?.calls) !== expected) throw new Error(`baseline recorded ${rows[0]?.calls} upserts, expected ${expected}`);
    return { calls: input.calls, seconds: load.seconds, callsPerSecond: input.calls / load.seconds, latency: load.latency, serverThreadBusy };
  } finally {
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    await pool.end();
  }
}

// ---- shared ----------------------------------------------------------------------------------

function formatLatency(l: LatencySummary): string {
  return `p50 ${l.p50Ms.toFixed(2)} ms, p99 ${l.p99Ms.toFixed(2)} ms (${l.calls} calls)`;
}

interface ScratchDatabase {
  readonly url: string;
  readonly serverVersion: string;
  drop(): Promise<void>;
}

/** A fresh database on the server at `adminUrl` (as test/helpers/databases.ts does for tests). */
async function createScratchDatabase(adminUrl: string): Promise<ScratchDatabase> {
  const name = `ultracloud_bench_${randomBytes(6).toString('hex')}`;
  const withAdmin = async <T>(run: (admin: pg.Client) => Promise<T>): Promise<T> => {
    const admin = new pg.Client({ connectionString: adminUrl, application_name: 'ultracloud-bench-admin' });
    await admin.connect();
    try {
      return await run(admin);
    } finally {
      await admin.end();
    }
  };
  const { versionNumber, version } = await withAdmin(async (admin) => {
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
    const num = await admin.query<{ server_version_num: string }>('SHOW server_version_num');
    const text = await admin.query<{ server_version: string }>('SHOW server_version');
    return { versionNumber: Number(num.rows[0]?.server_version_num ?? 0), version: text.rows[0]?.server_version ?? 'unknown' };
  });
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  let dropped: Promise<void> | undefined;
  return {
    url: url.toString(),
    serverVersion: `PostgreSQL ${version.split(' ')[0]}`,
    drop() {
      // WITH (FORCE) exists from PostgreSQL 13.
      dropped ??= withAdmin(async (admin) => {
        await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)}${versionNumber >= 130000 ? ' WITH (FORCE)' : ''}`);
      });
      return dropped;
    },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await runBootstrapStorm({
    ...(process.env.BENCH_MACHINES ? { machines: Number(process.env.BENCH_MACHINES) } : {}),
    ...(process.env.BENCH_CONCURRENCY ? { concurrency: Number(process.env.BENCH_CONCURRENCY) } : {}),
  });
}
