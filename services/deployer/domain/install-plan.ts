// Renders a node's InstallPlan from its assignment, its reported hardware and the applied
// cluster state. Pure: the caller supplies the addresses already taken and persists the result.
import type { ClusterState, Network } from '../../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import type { NodeAssignment } from '../../../gen/ts/ultracloud/assignment/v1/assignment.js';
import {
  AddressMode,
  type InstallPlan,
  type InterfaceConfig,
  PlanMode,
  RootDeviceHints,
  WipePolicy,
} from '../../../gen/ts/ultracloud/installplan/v1/installplan.js';
import type { MachineInventory, NetworkInterface } from '../../../gen/ts/ultracloud/inventory/v1/inventory.js';
import { FailedPreconditionError } from '../../../lib/errors.js';
import { resolveRootDevice } from './root-device.js';

export interface PlanInputs {
  readonly machineId: string;
  readonly inventory: MachineInventory;
  readonly assignment: NodeAssignment;
  readonly cluster: ClusterState;
  readonly generation: bigint;
  readonly mode: PlanMode;
  /** Addresses already allocated to other machines, per network name. */
  readonly allocated: ReadonlyMap<string, ReadonlySet<string>>;
  /** Extra rescue keys given with the Rescue call, added to the cluster's. */
  readonly extraRescueKeys?: readonly string[];
  readonly now: Date;
}

export interface RenderedPlan {
  readonly plan: InstallPlan;
  /** A static address this plan allocated from the network's pool, to be recorded. */
  readonly allocation?: { readonly network: string; readonly address: string };
}

function substitute(template: string, values: Readonly<Record<string, string>>): string {
  return template.replace(/\{([a-z_]+)\}/g, (whole, key: string) => values[key] ?? whole);
}

/**
 * The interface the node is configured on: the one that reached the deployer, else the one
 * holding the default route, else the first NIC with link, else the first NIC.
 */
export function primaryInterface(inventory: MachineInventory): NetworkInterface | undefined {
  const nics = inventory.nics;
  const byName = (name: string | undefined) => (name ? nics.find((n) => n.name === name) : undefined);
  return (
    byName(inventory.network?.deployerInterface) ??
    byName(inventory.network?.defaultGatewayInterface) ??
    nics.find((n) => n.linkUp) ??
    nics[0]
  );
}

function nicMac(nic: NetworkInterface): string {
  return (nic.permanentMacAddress || nic.macAddress).toLowerCase();
}

function ipv4ToInt(address: string): number {
  return address.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
}

function intToIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}

function prefixLength(cidr: string): string {
  return cidr.split('/')[1] ?? '';
}

/** The lowest free address of the network's pool (IPv4 only). */
function allocateFromPool(networkName: string, network: Network, taken: ReadonlySet<string>): string {
  const pool = network.addressPool;
  if (!pool?.start || !pool.end) {
    throw new FailedPreconditionError(`network ${networkName} is STATIC but has no address pool`);
  }
  if (pool.start.includes(':')) {
    throw new FailedPreconditionError(`network ${networkName}: allocating from IPv6 address pools is not supported; give fixed nodes static addresses`);
  }
  for (let a = ipv4ToInt(pool.start); a <= ipv4ToInt(pool.end); a++) {
    const candidate = intToIpv4(a);
    if (!taken.has(candidate)) return candidate;
  }
  throw new FailedPreconditionError(`network ${networkName}: address pool ${pool.start}-${pool.end} is exhausted`);
}

function fixedAddressesFor(cluster: ClusterState, nodeId: string) {
  return cluster.nodes[nodeId]?.staticAddresses ?? [];
}

export function renderInstallPlan(inputs: PlanInputs): RenderedPlan {
  const { cluster, assignment, inventory } = inputs;
  const profileName = assignment.installProfile;
  const profile = cluster.installProfiles[profileName];
  if (!profile) throw new FailedPreconditionError(`install profile "${profileName}" is not in the applied cluster state`);
  const policy = cluster.diskPolicies[profile.diskPolicy];
  if (!policy) throw new FailedPreconditionError(`disk policy "${profile.diskPolicy}" of install profile "${profileName}" is not in the applied cluster state`);
  const networkName = profile.network;
  const network = cluster.networks[networkName];
  if (!network) throw new FailedPreconditionError(`network "${networkName}" of install profile "${profileName}" is not in the applied cluster state`);

  const values = {
    node_id: assignment.nodeId,
    hostname: assignment.hostname,
    class: assignment.nodeClass,
    pool: assignment.pool,
  };
  const rescue = inputs.mode === PlanMode.PLAN_MODE_RESCUE;
  // A rescue plan never touches disks, so an unresolvable disk must not block it.
  const resolved = rescue ? undefined : resolveRootDevice(inventory.disks, policy.rootDeviceHints ?? RootDeviceHints.fromPartial({}));

  const interfaces: InterfaceConfig[] = [];
  let allocation: RenderedPlan['allocation'];
  const fixed = fixedAddressesFor(cluster, assignment.nodeId);
  if (fixed.length > 0) {
    for (const s of fixed) {
      const net = cluster.networks[s.network];
      interfaces.push({
        macAddress: s.macAddress.toLowerCase(),
        name: inventory.nics.find((n) => nicMac(n) === s.macAddress.toLowerCase())?.name ?? '',
        mode: AddressMode.ADDRESS_MODE_STATIC,
        addresses: [`${s.address}/${net ? prefixLength(net.cidr) : ''}`],
        mtu: net?.mtu ?? 0,
      });
    }
  } else {
    const nic = primaryInterface(inventory);
    if (!nic) throw new FailedPreconditionError('the machine reported no network interface');
    if (network.addressMode === AddressMode.ADDRESS_MODE_STATIC) {
      const address = allocateFromPool(networkName, network, inputs.allocated.get(networkName) ?? new Set());
      allocation = { network: networkName, address };
      interfaces.push({ macAddress: nicMac(nic), name: nic.name, mode: AddressMode.ADDRESS_MODE_STATIC, addresses: [`${address}/${prefixLength(network.cidr)}`], mtu: network.mtu });
    } else {
      interfaces.push({ macAddress: nicMac(nic), name: nic.name, mode: AddressMode.ADDRESS_MODE_DHCP, addresses: [], mtu: network.mtu });
    }
  }

  const domain = cluster.cluster?.domain ?? '';
  const runsNodeAgent = cluster.nodeClasses[assignment.nodeClass]?.runNodeAgent ?? false;
  const plan: InstallPlan = {
    nodeId: assignment.nodeId,
    machineId: inputs.machineId,
    mode: inputs.mode,
    installProfile: profileName,
    flakeRef: profile.flakeRef,
    flakeAttr: substitute(profile.flakeAttr, values),
    disk: resolved
      ? {
          byIdPath: resolved.byIdPath,
          sizeBytes: resolved.sizeBytes,
          serial: resolved.serial,
          wwn: resolved.wwn,
          name: resolved.name,
          hints: resolved.hints,
          matchedHints: resolved.matchedHints,
          layout: policy.layout,
          wipePolicy: policy.wipePolicy === WipePolicy.WIPE_POLICY_UNSPECIFIED ? WipePolicy.WIPE_POLICY_METADATA : policy.wipePolicy,
        }
      : undefined,
    network: {
      hostname: assignment.hostname,
      domain,
      interfaces,
      gateway: network.gateway,
      dnsServers: network.dnsServers,
      searchDomains: [...(domain ? [domain] : []), ...network.searchDomains.filter((d) => d !== domain)],
      ntpServers: network.ntpServers,
    },
    bundleUrl: profile.bundleUrl,
    bundleSha256: profile.bundleSha256,
    agent: {
      deployerAddress: cluster.cluster?.deployerAddress ?? '',
      hostControllerAddress: cluster.cluster?.hostControllerAddress ?? '',
      fleetSchedulerAddress: runsNodeAgent ? (cluster.cluster?.fleetSchedulerAddress ?? '') : '',
    },
    rescue: rescue ? { sshAuthorizedKeys: [...(cluster.cluster?.rescueSshAuthorizedKeys ?? []), ...(inputs.extraRescueKeys ?? [])] } : undefined,
    createdAt: inputs.now,
    clusterGeneration: inputs.generation,
  };
  return allocation ? { plan, allocation } : { plan };
}
