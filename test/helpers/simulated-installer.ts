// TEST-ONLY: an installer ISO reduced to its conversation with the deployer. It reports a
// realistic MachineInventory (DMI identity, CPU, memory, disks from a captured lsblk fixture, NICs)
// and walks Discover -> FetchPlan -> ReportInstallProgress with the credential each step needs:
// the ISO's join token, then the per-boot session secret, then the install token, each as
// `authorization: Bearer …` on a client of its own.
import { randomBytes, randomUUID } from 'node:crypto';
import type { Channel } from 'nice-grpc';
import {
  BootstrapServiceDefinition,
  type DiscoverResponse,
  type FetchPlanResponse,
  type ReportInstallProgressRequest,
  type ReportInstallProgressResponse,
} from '../../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import { BootFirmware, type Disk, type MachineInventory, PowerInterface } from '../../gen/ts/ultracloud/inventory/v1/inventory.js';
import { InstallOutcome, InstallPhase } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { createServiceClient, type ServiceClient } from '../../lib/grpc/client.js';
import { loadLsblkFixture } from './lsblk-fixtures.js';

const GIB = 2n ** 30n;

/** The hardware facts a test varies; everything else is a plausible Dell OptiPlex 7070. */
export interface MachineFacts {
  /** DMI system UUID; '' when the firmware reports none usable. */
  readonly systemUuid: string;
  readonly serialNumber: string;
  readonly vendor: string;
  readonly productName: string;
  /** Permanent MACs, one NIC each (eno1, enp2s0, …). */
  readonly macs: readonly string[];
  readonly disks: readonly Disk[];
  readonly cpuCores: number;
  readonly memoryBytes: bigint;
  readonly nicSpeedMbps: number;
}

/** A random locally administered unicast MAC (02:…), unique enough for one test run. */
export function randomMac(): string {
  const bytes = randomBytes(6);
  bytes[0] = ((bytes[0] as number) & 0xfc) | 0x02;
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** A Dell service tag: 7 characters of [0-9A-Z]. */
function randomServiceTag(): string {
  const alphabet = '0123456789BCDFGHJKLMNPQRSTVWXYZ';
  return [...randomBytes(7)].map((b) => alphabet[b % alphabet.length]).join('');
}

/**
 * A new OptiPlex 7070 with 16 GiB, 8 cores, one 1 GbE NIC and the disks of the
 * `nvme-workstation` fixture (Samsung 980 PRO, WD SN850X, the installer's USB stick): a machine
 * the lab6 rule `optiplex-workers` enrols and installs. Each call is a different machine.
 */
export function optiplexFacts(overrides: Partial<MachineFacts> = {}): MachineFacts {
  return {
    systemUuid: randomUUID(),
    serialNumber: randomServiceTag(),
    vendor: 'Dell Inc.',
    productName: 'OptiPlex 7070',
    macs: [randomMac()],
    disks: loadLsblkFixture('nvme-workstation'),
    cpuCores: 8,
    memoryBytes: 16n * GIB,
    nicSpeedMbps: 1000,
    ...overrides,
  };
}

/** The MachineInventory an installer would report for `facts`, as the contract describes it. */
export function machineInventory(facts: MachineFacts): MachineInventory {
  const nicNames = ['eno1', 'enp2s0', 'enp3s0', 'enp4s0'];
  const nics = facts.macs.map((mac, i) => ({
    name: nicNames[i] ?? `enp${i + 1}s0`,
    macAddress: mac,
    permanentMacAddress: '',
    driver: i === 0 ? 'e1000e' : 'igb',
    speedMbps: facts.nicSpeedMbps,
    linkUp: i === 0,
    pciAddress: i === 0 ? '0000:00:1f.6' : `0000:0${i + 1}:00.0`,
    mtu: 1500,
  }));
  return {
    machineId: '',
    identity: {
      systemUuid: facts.systemUuid,
      serialNumber: facts.serialNumber,
      vendor: facts.vendor,
      productName: facts.productName,
      boardSerial: `/${facts.serialNumber}/CNCMK0099A00SK/`,
      boardVendor: facts.vendor,
      boardProduct: '0YNVJG',
      macAddresses: [...facts.macs],
    },
    cpu: {
      model: 'Intel(R) Core(TM) i7-9700 CPU @ 3.00GHz',
      vendor: 'GenuineIntel',
      sockets: 1,
      cores: facts.cpuCores,
      threads: facts.cpuCores,
      architecture: 'x86_64',
    },
    memoryBytes: facts.memoryBytes,
    disks: facts.disks.map((d) => ({ ...d })),
    nics,
    network: {
      addresses: [{ interface: nics[0]?.name ?? '', address: '10.44.0.142/24', dynamic: true }],
      defaultGateway: '10.44.0.1',
      defaultGatewayInterface: nics[0]?.name ?? '',
      dnsServers: ['10.44.0.1'],
      searchDomains: [],
      deployerInterface: nics[0]?.name ?? '',
      deployerSourceAddress: '10.44.0.142',
    },
    boot: { firmware: BootFirmware.BOOT_FIRMWARE_UEFI, secureBoot: false, pxeCapable: true, firmwareVendor: 'Dell Inc.', firmwareVersion: '1.24.0' },
    power: { interface: PowerInterface.POWER_INTERFACE_NONE, address: '', macAddress: '' },
    inventoryHash: '',
    collectedAt: new Date(),
  };
}

/** One progress report: phase and percent while in progress. */
export interface ProgressStep {
  readonly phase: InstallPhase;
  readonly percent: number;
  readonly message: string;
}

/** The phases a real install reports, in order. */
export const INSTALL_STEPS: readonly ProgressStep[] = [
  { phase: InstallPhase.INSTALL_PHASE_FETCH_BUNDLE, percent: 5, message: 'fetching github:ultracloud/ultracloud' },
  { phase: InstallPhase.INSTALL_PHASE_VERIFY_DISK, percent: 15, message: 'root disk matches the plan' },
  { phase: InstallPhase.INSTALL_PHASE_PARTITION, percent: 25, message: 'GPT: ESP 1 GiB, root' },
  { phase: InstallPhase.INSTALL_PHASE_INSTALL, percent: 60, message: 'nixos-install' },
  { phase: InstallPhase.INSTALL_PHASE_WRITE_SECRETS, percent: 90, message: 'host keys and certificates written' },
  { phase: InstallPhase.INSTALL_PHASE_FINALIZE, percent: 98, message: 'bootloader installed' },
];

export interface InstallerConnection {
  readonly channel: Channel;
  readonly joinToken: string;
}

/**
 * One machine's installer. Credentials are kept as the real installer keeps them: the session
 * secret of the latest Discover and the install token of the latest FetchPlan.
 */
export class SimulatedInstaller {
  machineId = '';
  sessionSecret = '';
  installToken = '';
  bootId: string = randomUUID();

  constructor(
    private readonly connection: InstallerConnection,
    public inventory: MachineInventory,
    private readonly installerVersion = 'ultracloud-installer 0.1.0 (test)',
  ) {}

  /** A BootstrapService client sending `token`; none: anonymous. */
  bootstrap(token?: string): ServiceClient<typeof BootstrapServiceDefinition> {
    return createServiceClient(BootstrapServiceDefinition, this.connection.channel, { defaultDeadlineMs: 30_000, ...(token ? { token } : {}) });
  }

  /** Discover with the join token; remembers the machine_id and the new session secret. */
  async discover(): Promise<DiscoverResponse> {
    const response = await this.bootstrap(this.connection.joinToken).discover({ inventory: this.inventory, bootId: this.bootId, installerVersion: this.installerVersion });
    this.machineId = response.machineId;
    this.sessionSecret = response.sessionSecret;
    return response;
  }

  /** FetchPlan with the session secret; remembers the install token. */
  async fetchPlan(machineId = this.machineId): Promise<FetchPlanResponse> {
    const response = await this.bootstrap(this.sessionSecret).fetchPlan({ machineId });
    this.installToken = response.secrets?.installToken ?? '';
    return response;
  }

  /** ReportInstallProgress with the install token; machine_id defaults to this machine's. */
  report(request: Partial<ReportInstallProgressRequest>): Promise<ReportInstallProgressResponse> {
    return this.bootstrap(this.installToken).reportInstallProgress({
      machineId: this.machineId,
      phase: InstallPhase.INSTALL_PHASE_UNSPECIFIED,
      percent: 0,
      message: '',
      logTail: '',
      outcome: InstallOutcome.INSTALL_OUTCOME_IN_PROGRESS,
      ...request,
    });
  }

  /** Reports every step in progress, then success; returns each response in order. */
  async install(steps: readonly ProgressStep[] = INSTALL_STEPS): Promise<ReportInstallProgressResponse[]> {
    const responses: ReportInstallProgressResponse[] = [];
    for (const step of steps) responses.push(await this.report({ ...step, outcome: InstallOutcome.INSTALL_OUTCOME_IN_PROGRESS }));
    responses.push(await this.report({ phase: InstallPhase.INSTALL_PHASE_FINALIZE, percent: 100, message: 'installed; rebooting', outcome: InstallOutcome.INSTALL_OUTCOME_SUCCEEDED }));
    return responses;
  }

  /** The machine restarts into the installer: a new boot id, credentials forgotten. */
  reboot(): void {
    this.bootId = randomUUID();
    this.sessionSecret = '';
    this.installToken = '';
  }
}
