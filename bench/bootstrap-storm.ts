// Bootstrap storm (issue 3, item 11): N simulated installers, C at a time, each run Discover →
// FetchPlan → three ReportInstallProgress calls over real gRPC against the deployer served
// in-process on real PostgreSQL. In the same run, the yardstick: a bare @grpc/grpc-js unary
// server doing one PostgreSQL upsert per call, driven by the same number of calls at the same
// concurrency over the same kind of loopback channel. Goal: the deployer's RPCs/s at least half
// the baseline's calls/s (`ratio: <x>`, the last line printed).
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { Metadata } from 'nice-grpc';
import pg from 'pg';
import { pino } from 'pino';
import { BootstrapServiceDefinition } from '../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import { ClusterServiceDefinition } from '../gen/ts/ultracloud/deployer/v1/cluster_service.js';
import { ClusterState } from '../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import { BootFirmware, type Disk, MachineInventory } from '../gen/ts/ultracloud/inventory/v1/inventory.js';
import { InstallOutcome, InstallPhase, MachineState } from '../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import type { DaemonConfig } from '../lib/config/daemon.js';
import { createServiceClient, openChannel } from '../lib/grpc/client.js';
import { createLogger } from '../lib/log.js';
import { serveComponents } from '../lib/serve.js';
import { deployerComponent, JOIN_TOKEN_FILE } from '../services/deployer/component.js';
import { loadLsblkFixture } from '../test/helpers/lsblk-fixtures.js';
import { type CredentialsBenchResult, formatCredentialsBench, runCredentialsBench } from './credentials.js';

export const BENCH_DATABASE_URL_VARIABLES = ['ULTRACLOUD_BENCH_DATABASE_URL', 'ULTRACLOUD_TEST_DATABASE_URL'] as const;
export const DEFAULT_BENCH_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';

/** Issue 3's goals. */
export const RATIO_GOAL = 0.5;
export const CREDENTIALS_RATIO_GOAL = 50;

export interface BootstrapStormOptions {
  /** Simulated installers, each one machine. Default 1,000. */
  readonly machines?: number;
  /** Installers in flight at once (and baseline calls in flight at once). Default 32. */
  readonly concurrency?: number;
  /** Server to create the scratch database on; default from the environment, see above. */
  readonly databaseUrl?: string;
  /** Seconds per side of the credentials benchmark. Default 5. */
  readonly credentialSeconds?: number;
  /** Where result lines go. Default console.log. */
  readonly print?: (line: string) => void;
}

export interface LatencySummary {
  readonly calls: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

export interface BootstrapStormResult {
  readonly machines: number;
  readonly concurrency: number;
  readonly deployer: {
    readonly rpcs: number;
    readonly seconds: number;
    readonly rpcsPerSecond: number;
    readonly machinesPerSecond: number;
    readonly discover: LatencySummary;
    readonly fetchPlan: LatencySummary;
    readonly reportInstallProgress: LatencySummary;
  };
  readonly baseline: { readonly calls: number; readonly seconds: number; readonly callsPerSecond: number; readonly latency: LatencySummary };
  readonly credentials: CredentialsBenchResult;
  readonly ratio: number;
  readonly postgresVersion: string;
}

const RPCS_PER_MACHINE = 5;

export async function runBootstrapStorm(options: BootstrapStormOptions = {}): Promise<BootstrapStormResult> {
  const machines = options.machines ?? 1000;
  const concurrency = options.concurrency ?? 32;
  const print = options.print ?? ((line: string) => console.log(line));
  if (!Number.isInteger(machines) || machines < 1) throw new Error(`machines must be a positive integer, got ${machines}`);
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error(`concurrency must be a positive integer, got ${concurrency}`);

  const scratch = await createScratchDatabase(options.databaseUrl ?? benchDatabaseUrl());
  const stateDir = await mkdtemp(join(tmpdir(), 'ultracloud-bench-'));
  try {
    print(`bootstrap-storm: ${machines} machines, concurrency ${concurrency}; ${scratch.serverVersion}; node ${process.version}; ${cpus().length} CPUs, load average ${loadavg()[0]?.toFixed(2)}`);
    const deployer = await stormDeployer({ url: scratch.url, stateDir, machines, concurrency });
    print(`deployer: ${deployer.rpcs} RPCs in ${deployer.seconds.toFixed(2)} s = ${deployer.rpcsPerSecond.toFixed(1)} RPCs/s, ${deployer.machinesPerSecond.toFixed(1)} machines/s`);
    print(`  Discover               ${formatLatency(deployer.discover)}`);
    print(`  FetchPlan              ${formatLatency(deployer.fetchPlan)}`);
    print(`  ReportInstallProgress  ${formatLatency(deployer.reportInstallProgress)}`);

    const baseline = await stormBaseline({ url: scratch.url, calls: deployer.rpcs, concurrency });
    print(`baseline (bare grpc-js, one upsert per call): ${baseline.calls} calls in ${baseline.seconds.toFixed(2)} s = ${baseline.callsPerSecond.toFixed(1)} calls/s, ${formatLatency(baseline.latency)}`);

    const credentials = await runCredentialsBench({ seconds: options.credentialSeconds ?? 5 });
    print(formatCredentialsBench(credentials));

    const ratio = deployer.rpcsPerSecond / baseline.callsPerSecond;
    print(
      `goals: ratio >= ${RATIO_GOAL} ${ratio >= RATIO_GOAL ? 'met' : 'NOT met'}; ` +
        `credential issuance >= ${CREDENTIALS_RATIO_GOAL}x node-forge ${credentials.ratio >= CREDENTIALS_RATIO_GOAL ? 'met' : 'NOT met'} (${credentials.ratio.toFixed(1)}x)`,
    );
    print(`ratio: ${ratio.toFixed(3)}`);
    return { machines, concurrency, deployer, baseline, credentials, ratio, postgresVersion: scratch.serverVersion };
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

async function stormDeployer(input: { url: string; stateDir: string; machines: number; concurrency: number }): Promise<DeployerStorm> {
  // Production logs at info; keep that cost in the measurement but write it to a file.
  const logPath = join(input.stateDir, 'deployer.log');
  const destination = pino.destination({ dest: logPath, sync: false, mkdir: true });
  const logger = createLogger({ level: 'info', destination: destination as unknown as NodeJS.WritableStream });
  const config: DaemonConfig = {
    listen: { host: '127.0.0.1', port: 0 },
    stateDir: input.stateDir,
    databaseUrl: input.url,
    logLevel: 'info',
    tlsCertFile: undefined,
    tlsKeyFile: undefined,
    tlsCaFile: undefined,
    insecureLoopback: true,
    metricsListen: undefined,
  };
  const serving = await serveComponents({ components: [deployerComponent()], config, logger });
  const channel = openChannel(serving.server.address);
  try {
    const adminToken = (await readFile(serving.adminTokenPath, 'utf8')).trim();
    const joinToken = (await readFile(join(input.stateDir, JOIN_TOKEN_FILE), 'utf8')).trim();
    const cluster = createServiceClient(ClusterServiceDefinition, channel, { token: adminToken });
    await cluster.applyClusterState({ state: benchClusterState(), dryRun: false, expectedGeneration: 0n });

    const bootstrap = createServiceClient(BootstrapServiceDefinition, channel);
    const hardware = new InstallerHardware();
    const latencies = { discover: [] as number[], fetchPlan: [] as number[], reportInstallProgress: [] as number[] };
    const bearer = (token: string) => ({ metadata: Metadata({ authorization: `Bearer ${token}` }) });
    const timed = async <T>(into: number[], call: () => Promise<T>): Promise<T> => {
      const started = performance.now();
      const result = await call();
      into.push(performance.now() - started);
      return result;
    };

    const installOne = async (index: number, record: boolean): Promise<void> => {
      const sink = (kind: keyof typeof latencies) => (record ? latencies[kind] : []);
      const inventory = hardware.inventory(index);
      const found = await timed(sink('discover'), () =>
        bootstrap.discover({ inventory, bootId: randomUUID(), installerVersion: 'bootstrap-storm' }, bearer(joinToken)),
      );
      if (!found.planReady || found.state !== MachineState.MACHINE_STATE_INSTALL_PENDING) {
        throw new Error(`installer ${index}: Discover left machine ${found.machineId} ${MachineState[found.state]} without a plan: ${found.message}`);
      }
      const fetched = await timed(sink('fetchPlan'), () => bootstrap.fetchPlan({ machineId: found.machineId }, bearer(found.sessionSecret)));
      const installToken = fetched.secrets?.installToken ?? '';
      if (!fetched.plan?.disk?.byIdPath || installToken === '') throw new Error(`installer ${index}: FetchPlan returned no root disk or install token`);
      let last = MachineState.MACHINE_STATE_UNSPECIFIED;
      for (const report of progressReports(fetched.plan.disk.byIdPath)) {
        const answer = await timed(sink('reportInstallProgress'), () =>
          bootstrap.reportInstallProgress({ machineId: found.machineId, ...report }, bearer(installToken)),
        );
        last = answer.state;
      }
      if (last !== MachineState.MACHINE_STATE_INSTALLED) throw new Error(`installer ${index}: machine ended ${MachineState[last]}, not INSTALLED`);
    };

    // Warm-up machines (JIT, pool connections, prepared plans) are installed but not counted.
    const warmup = Math.min(input.concurrency, 16);
    await runConcurrently(warmup, Math.min(warmup, input.concurrency), (i) => installOne(i, false));
    const started = performance.now();
    await runConcurrently(input.machines, input.concurrency, (i) => installOne(warmup + i, true));
    const seconds = (performance.now() - started) / 1000;

    await assertAllInstalled(input.url, input.machines + warmup);
    const rpcs = input.machines * RPCS_PER_MACHINE;
    return {
      rpcs,
      seconds,
      rpcsPerSecond: rpcs / seconds,
      machinesPerSecond: input.machines / seconds,
      discover: summarise(latencies.discover),
      fetchPlan: summarise(latencies.fetchPlan),
      reportInstallProgress: summarise(latencies.reportInstallProgress),
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

function progressReports(rootDisk: string) {
  const log = (line: string) => `${new Date().toISOString()} ${line}\n`;
  return [
    { phase: InstallPhase.INSTALL_PHASE_PARTITION, percent: 10, outcome: InstallOutcome.INSTALL_OUTCOME_IN_PROGRESS, message: `partitioning ${rootDisk}`, logTail: log(`sgdisk --zap-all ${rootDisk}`) + log('created ESP (1 GiB) and root') },
    { phase: InstallPhase.INSTALL_PHASE_INSTALL, percent: 60, outcome: InstallOutcome.INSTALL_OUTCOME_IN_PROGRESS, message: 'nixos-install: copying the closure', logTail: log('copying path /nix/store/…-nixos-system-worker (1843 paths)') },
    { phase: InstallPhase.INSTALL_PHASE_FINALIZE, percent: 100, outcome: InstallOutcome.INSTALL_OUTCOME_SUCCEEDED, message: 'installed; rebooting', logTail: log('installing the boot loader') + log('installation finished') },
  ];
}

/**
 * Hardware of a Dell OptiPlex 7050/7060/7070 as the installer reports it: the NVMe workstation
 * disks of test/fixtures/lsblk (Samsung 980 PRO system SSD, WD SN850X data SSD, USB installer
 * stick) with serials and EUI-64s made unique per machine, the onboard Intel I219-LM plus an
 * Intel I210 add-in NIC, DMI identity with a fresh system UUID and service tag.
 */
class InstallerHardware {
  private readonly disks: Disk[] = loadLsblkFixture('nvme-workstation');
  private readonly run = randomBytes(2).readUInt16BE(0);

  inventory(index: number): MachineInventory {
    // 24 bits of the index (plus a per-run salt in serials) keep every identity fact unique.
    const n = index + 1;
    // Offset past the lab's real MACs (d8:9e:f3:3a:…, d8:9e:f3:41:…) so no fixed node matches.
    const hex6 = ((0x500000 + n) & 0xffffff).toString(16).padStart(6, '0');
    const mac = (oui: string) => `${oui}:${hex6.slice(0, 2)}:${hex6.slice(2, 4)}:${hex6.slice(4, 6)}`;
    const onboard = mac('d8:9e:f3');
    const addIn = mac('a0:36:9f');
    const serial = `${this.run.toString(36).toUpperCase().padStart(3, '0')}${n.toString(36).toUpperCase().padStart(4, '0')}`.slice(-7);
    const product = ['OptiPlex 7050', 'OptiPlex 7060', 'OptiPlex 7070'][index % 3] as string;
    return MachineInventory.fromPartial({
      identity: {
        systemUuid: randomUUID(),
        serialNumber: serial,
        vendor: 'Dell Inc.',
        productName: product,
        boardVendor: 'Dell Inc.',
        boardProduct: '0YNVJG',
        boardSerial: `/${serial}/CNFCW00${hex6.toUpperCase()}/`,
        macAddresses: [onboard, addIn],
      },
      cpu: { model: 'Intel(R) Core(TM) i7-9700 CPU @ 3.00GHz', vendor: 'GenuineIntel', sockets: 1, cores: 8, threads: 8, architecture: 'x86_64' },
      memoryBytes: BigInt(index % 2 === 0 ? 32 : 16) * 2n ** 30n,
      disks: this.disks.map((disk) => uniqueDisk(disk, hex6)),
      nics: [
        { name: 'eno1', macAddress: onboard, permanentMacAddress: onboard, driver: 'e1000e', speedMbps: 1000, linkUp: true, pciAddress: '0000:00:1f.6', mtu: 1500 },
        { name: 'enp3s0', macAddress: addIn, permanentMacAddress: addIn, driver: 'igb', speedMbps: 0, linkUp: false, pciAddress: '0000:03:00.0', mtu: 1500 },
      ],
      network: {
        addresses: [{ interface: 'eno1', address: `10.44.${(n >> 8) & 0xff}.${n & 0xff}/16`, dynamic: true }],
        defaultGateway: '10.44.0.1',
        defaultGatewayInterface: 'eno1',
        dnsServers: ['10.44.0.1'],
        searchDomains: ['lab6.internal'],
        deployerInterface: 'eno1',
        deployerSourceAddress: `10.44.${(n >> 8) & 0xff}.${n & 0xff}`,
      },
      boot: { firmware: BootFirmware.BOOT_FIRMWARE_UEFI, secureBoot: false, pxeCapable: true, firmwareVendor: 'Dell Inc.', firmwareVersion: '1.21.0' },
      collectedAt: new Date(),
    });
  }
}

/** The fixture disk with its serial and the last 24 bits of its WWN replaced, links included. */
function uniqueDisk(disk: Disk, hex6: string): Disk {
  const serialSuffix = hex6.toUpperCase();
  const newSerial = disk.serial ? `${disk.serial.slice(0, -6)}${serialSuffix}` : '';
  // Keep the OUI (Samsung's 002538 is what the disk policy's wwn hint looks for).
  const newWwn = disk.wwn ? `${disk.wwn.slice(0, -6)}${hex6}` : '';
  const swap = (text: string) => {
    let out = text;
    if (disk.serial) out = out.split(disk.serial).join(newSerial);
    if (disk.wwn) out = out.split(disk.wwn.replace(/^eui\./, '')).join(newWwn.replace(/^eui\./, ''));
    return out;
  };
  return {
    ...disk,
    serial: newSerial,
    wwn: newWwn,
    wwnWithExtension: swap(disk.wwnWithExtension),
    byIdLinks: disk.byIdLinks.map(swap),
  };
}

async function assertAllInstalled(url: string, expected: number): Promise<void> {
  const client = new pg.Client({ connectionString: url, application_name: 'ultracloud-bench-check' });
  await client.connect();
  try {
    const { rows } = await client.query<{ state: string; machines: string }>('SELECT state, count(*) AS machines FROM deployer.machines GROUP BY state');
    const installed = Number(rows.find((r) => r.state === 'installed')?.machines ?? 0);
    const names = await client.query<{ n: string }>('SELECT count(DISTINCT node_id) AS n FROM deployer.assignments');
    if (installed !== expected || Number(names.rows[0]?.n) !== expected) {
      throw new Error(`expected ${expected} installed machines with distinct node_ids, found ${JSON.stringify(rows)} and ${names.rows[0]?.n} node_ids`);
    }
  } finally {
    await client.end();
  }
}

// ---- the baseline ----------------------------------------------------------------------------

const identity = (b: Buffer): Buffer => b;

// A hand-built grpc-js service definition with raw Buffer (de)serializers: no protobuf codec,
// no nice-grpc, no middleware.
const BASELINE_SERVICE: grpc.ServiceDefinition = {
  upsert: {
    path: '/ultracloud.bench.Baseline/Upsert',
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};

interface BaselineClient extends grpc.Client {
  upsert(request: Buffer, callback: (err: grpc.ServiceError | null, response?: Buffer) => void): grpc.ClientUnaryCall;
}

async function stormBaseline(input: { url: string; calls: number; concurrency: number }): Promise<BootstrapStormResult['baseline']> {
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
  const Client = grpc.makeGenericClientConstructor(BASELINE_SERVICE, 'Baseline');
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as BaselineClient;
  // Each call's key is one of N "machines" (five calls each, like the deployer), with a payload
  // about the size of a progress report.
  const keys = Array.from({ length: Math.ceil(input.calls / RPCS_PER_MACHINE) }, () => randomBytes(16));
  const call = (i: number) =>
    new Promise<void>((resolve, reject) => {
      const request = Buffer.concat([keys[i % keys.length] as Buffer, randomBytes(240)]);
      client.upsert(request, (err) => (err ? reject(err) : resolve()));
    });
  const latencies: number[] = [];
  try {
    await runConcurrently(Math.min(input.concurrency, 16) * RPCS_PER_MACHINE, input.concurrency, call);
    await pool.query('TRUNCATE bench_baseline');
    const started = performance.now();
    await runConcurrently(input.calls, input.concurrency, async (i) => {
      const t = performance.now();
      await call(i);
      latencies.push(performance.now() - t);
    });
    const seconds = (performance.now() - started) / 1000;
    const { rows } = await pool.query<{ calls: string }>('SELECT coalesce(sum(calls), 0) AS calls FROM bench_baseline');
    if (Number(rows[0]?.calls) !== input.calls) throw new Error(`baseline recorded ${rows[0]?.calls} upserts, expected ${input.calls}`);
    return { calls: input.calls, seconds, callsPerSecond: input.calls / seconds, latency: summarise(latencies) };
  } finally {
    client.close();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    await pool.end();
  }
}

// ---- shared ----------------------------------------------------------------------------------

/** Runs `task(0..count-1)` with at most `concurrency` in flight; the first failure stops it. */
async function runConcurrently(count: number, concurrency: number, task: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (failed === undefined && next < count) {
      const index = next++;
      try {
        await task(index);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  if (failed !== undefined) throw failed;
}

function summarise(samples: number[]): LatencySummary {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? 0;
  return { calls: sorted.length, p50Ms: at(0.5), p99Ms: at(0.99) };
}

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
