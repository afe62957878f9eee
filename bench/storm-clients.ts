// The load side of the bootstrap storm: simulated installers driving the deployer, and the
// baseline's client. It runs in a worker thread of its own (see bootstrap-storm.ts), as installers
// run on machines of their own, so the server under test has its event loop to itself; with
// `inProcess` it runs on the server's thread instead, as the first figures were taken.
import { randomBytes, randomUUID } from 'node:crypto';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import * as grpc from '@grpc/grpc-js';
import { Metadata } from 'nice-grpc';
import { BootstrapServiceDefinition } from '../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import { BootFirmware, type Disk, MachineInventory } from '../gen/ts/ultracloud/inventory/v1/inventory.js';
import { InstallOutcome, InstallPhase, MachineState } from '../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { createServiceClient, openChannel } from '../lib/grpc/client.js';
import { loadLsblkFixture } from '../test/helpers/lsblk-fixtures.js';

/** ReportInstallProgress calls of a whole install: partition, install, finalize (the last ends it). */
export const PROGRESS_REPORTS = 3;

/** RPCs one installer makes: Discover, FetchPlan and `reports` progress reports. */
export function rpcsPerMachine(reports: number): number {
  return 2 + reports;
}

export interface LatencySummary {
  readonly calls: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

export interface InstallersInput {
  readonly kind: 'installers';
  readonly address: string;
  readonly joinToken: string;
  /** Machines installed first and not counted (JIT, pool connections). */
  readonly warmup: number;
  readonly machines: number;
  readonly concurrency: number;
  /** Progress reports per installer, 0 to PROGRESS_REPORTS; fewer leave the install unfinished. */
  readonly reports: number;
}

export interface InstallersResult {
  readonly seconds: number;
  readonly discover: LatencySummary;
  readonly fetchPlan: LatencySummary;
  readonly reportInstallProgress: LatencySummary;
}

export interface BaselineInput {
  readonly kind: 'baseline';
  readonly address: string;
  readonly calls: number;
  /** Calls made first and not counted. */
  readonly warmupCalls: number;
  readonly concurrency: number;
  /** Calls per key, as many as an installer's RPCs. */
  readonly callsPerKey: number;
}

export interface BaselineResult {
  readonly seconds: number;
  readonly latency: LatencySummary;
}

type Input = InstallersInput | BaselineInput;
type Result<I extends Input> = I extends InstallersInput ? InstallersResult : BaselineResult;

/** Runs the load in a worker thread (default) or on this thread, and returns its measurements. */
export async function runLoad<I extends Input>(input: I, inProcess = false): Promise<Result<I>> {
  if (inProcess) return (await (input.kind === 'installers' ? runInstallers(input) : runBaselineClient(input))) as Result<I>;
  const worker = new Worker(new URL('./storm-worker.mjs', import.meta.url), { workerData: { stormLoad: input } });
  try {
    return await new Promise<Result<I>>((resolve, reject) => {
      worker.once('message', (message: { result?: Result<I>; error?: string }) => (message.error !== undefined ? reject(new Error(message.error)) : resolve(message.result as Result<I>)));
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`load worker exited with code ${code} before reporting`)));
    });
  } finally {
    await worker.terminate();
  }
}

// ---- installers ------------------------------------------------------------------------------

async function runInstallers(input: InstallersInput): Promise<InstallersResult> {
  const channel = openChannel(input.address);
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
    const found = await timed(sink('discover'), () => bootstrap.discover({ inventory, bootId: randomUUID(), installerVersion: 'bootstrap-storm' }, bearer(input.joinToken)));
    if (!found.planReady || found.state !== MachineState.MACHINE_STATE_INSTALL_PENDING) {
      throw new Error(`installer ${index}: Discover left machine ${found.machineId} ${MachineState[found.state]} without a plan: ${found.message}`);
    }
    const fetched = await timed(sink('fetchPlan'), () => bootstrap.fetchPlan({ machineId: found.machineId }, bearer(found.sessionSecret)));
    const installToken = fetched.secrets?.installToken ?? '';
    if (!fetched.plan?.disk?.byIdPath || installToken === '') throw new Error(`installer ${index}: FetchPlan returned no root disk or install token`);
    let last = MachineState.MACHINE_STATE_INSTALLING;
    for (const report of progressReports(fetched.plan.disk.byIdPath).slice(0, input.reports)) {
      const answer = await timed(sink('reportInstallProgress'), () => bootstrap.reportInstallProgress({ machineId: found.machineId, ...report }, bearer(installToken)));
      last = answer.state;
    }
    const expected = input.reports === PROGRESS_REPORTS ? MachineState.MACHINE_STATE_INSTALLED : MachineState.MACHINE_STATE_INSTALLING;
    if (last !== expected) throw new Error(`installer ${index}: machine ended ${MachineState[last]}, not ${MachineState[expected]}`);
  };
  try {
    await runConcurrently(input.warmup, Math.min(input.warmup, input.concurrency), (i) => installOne(i, false));
    const started = performance.now();
    await runConcurrently(input.machines, input.concurrency, (i) => installOne(input.warmup + i, true));
    const seconds = (performance.now() - started) / 1000;
    return { seconds, discover: summarise(latencies.discover), fetchPlan: summarise(latencies.fetchPlan), reportInstallProgress: summarise(latencies.reportInstallProgress) };
  } finally {
    channel.close();
  }
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

// ---- the baseline's client -------------------------------------------------------------------

const identity = (b: Buffer): Buffer => b;

// A hand-built grpc-js service definition with raw Buffer (de)serializers: no protobuf codec,
// no nice-grpc, no middleware.
export const BASELINE_SERVICE: grpc.ServiceDefinition = {
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

async function runBaselineClient(input: BaselineInput): Promise<BaselineResult> {
  const Client = grpc.makeGenericClientConstructor(BASELINE_SERVICE, 'Baseline');
  const client = new Client(input.address, grpc.credentials.createInsecure()) as unknown as BaselineClient;
  // Each call's key is one of N "machines" (as many calls each as an installer makes RPCs), with a
  // payload about the size of a progress report. Warm-up keys are separate from the measured ones.
  const warmup = input.warmupCalls;
  const keys = Array.from({ length: Math.ceil(input.calls / input.callsPerKey) }, () => randomBytes(16));
  const warmKeys = Array.from({ length: Math.ceil(warmup / input.callsPerKey) }, () => randomBytes(16));
  const call = (key: Buffer) =>
    new Promise<void>((resolve, reject) => {
      client.upsert(Buffer.concat([key, randomBytes(240)]), (err) => (err ? reject(err) : resolve()));
    });
  const latencies: number[] = [];
  try {
    await runConcurrently(warmup, input.concurrency, (i) => call(warmKeys[i % warmKeys.length] as Buffer));
    const started = performance.now();
    await runConcurrently(input.calls, input.concurrency, async (i) => {
      const t = performance.now();
      await call(keys[i % keys.length] as Buffer);
      latencies.push(performance.now() - t);
    });
    return { seconds: (performance.now() - started) / 1000, latency: summarise(latencies) };
  } finally {
    client.close();
  }
}

// ---- shared ----------------------------------------------------------------------------------

/** Runs `task(0..count-1)` with at most `concurrency` in flight; the first failure stops it. */
export async function runConcurrently(count: number, concurrency: number, task: (index: number) => Promise<void>): Promise<void> {
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

export function summarise(samples: number[]): LatencySummary {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? 0;
  return { calls: sorted.length, p50Ms: at(0.5), p99Ms: at(0.99) };
}

// In the load worker (storm-worker.mjs): run what the main thread asked for and report back.
if (!isMainThread && parentPort && (workerData as { stormLoad?: Input } | undefined)?.stormLoad) {
  const input = (workerData as { stormLoad: Input }).stormLoad;
  const port = parentPort;
  (input.kind === 'installers' ? runInstallers(input) : runBaselineClient(input)).then(
    (result) => port.postMessage({ result }),
    (err: unknown) => port.postMessage({ error: err instanceof Error ? err.message : String(err) }),
  );
}
