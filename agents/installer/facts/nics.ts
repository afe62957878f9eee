// Physical network interfaces and the observed network, from `ip -j -d link`, `ip -j addr`,
// `ip -j route`, ethtool, sysfs and resolv.conf. Pure parsers: the caller runs the commands.

import type { InterfaceAddress, NetworkInterface, ObservedNetwork } from '../../../gen/ts/ultracloud/inventory/v1/inventory.js';

/** The `ip -j -d link` fields read here. */
export interface IpLink {
  readonly ifname: string;
  readonly flags?: readonly string[];
  readonly mtu?: number;
  readonly operstate?: string;
  readonly link_type?: string;
  readonly address?: string;
  readonly permaddr?: string;
  /** Only with `-d`: `info_kind` names a virtual driver; a bond member has only `info_slave_kind`. */
  readonly linkinfo?: { readonly info_kind?: string; readonly info_slave_kind?: string };
  /** Only with `-d` (iproute2 ≥ 5.x): the parent bus and device, e.g. "pci" / "0000:03:00.0". */
  readonly parentbus?: string;
  readonly parentdev?: string;
}

/** The `ip -j addr` fields read here. */
export interface IpAddrLink {
  readonly ifname: string;
  readonly addr_info?: readonly {
    readonly family?: string;
    readonly local?: string;
    readonly prefixlen?: number;
    readonly scope?: string;
    readonly dynamic?: boolean;
  }[];
}

/** The `ip -j route` fields read here. */
export interface IpRoute {
  readonly dst?: string;
  readonly gateway?: string;
  readonly dev?: string;
  readonly metric?: number;
  readonly prefsrc?: string;
}

function parseJsonArray<T>(json: string, what: string): T[] {
  const doc = JSON.parse(json) as unknown;
  if (!Array.isArray(doc)) throw new Error(`${what} output is not a JSON array`);
  return doc as T[];
}

export const parseIpLink = (json: string): IpLink[] => parseJsonArray<IpLink>(json, 'ip -j link');
export const parseIpAddr = (json: string): IpAddrLink[] => parseJsonArray<IpAddrLink>(json, 'ip -j addr');
export const parseIpRoute = (json: string): IpRoute[] => parseJsonArray<IpRoute>(json, 'ip -j route');

/**
 * Interface name → sysfs device path, from `ls -l /sys/class/net` output or readlink of its
 * entries (`../../devices/pci0000:00/0000:00:03.0/virtio2/net/eth0`).
 */
export function parseSysClassNetListing(listing: string): Map<string, string> {
  const links = new Map<string, string>();
  for (const line of listing.split('\n')) {
    const m = /^l\S*\s.*\s(\S+) -> (\S+)$/.exec(line.trim());
    if (m?.[1] && m[2]) links.set(m[1], m[2]);
  }
  return links;
}

// Names of software interfaces that can look like plain Ethernet when `-d` was not used.
const VIRTUAL_NAMES = /^(lo|docker\d*|veth|virbr|br-|vnet|tun|tap|ifb|dummy|wg|zt|flannel|cni|cali|vxlan|kube|tailscale)/;

/**
 * Whether a link is a physical NIC. With sysfs, physical means the interface has a device that is
 * not under /devices/virtual (the kernel's own definition). Without it, an Ethernet link with no
 * virtual driver kind (`linkinfo.info_kind`; bond members keep theirs) and no well-known software
 * name.
 */
export function isPhysicalLink(link: IpLink, sysfsDevicePath?: string): boolean {
  if (sysfsDevicePath !== undefined) return !sysfsDevicePath.includes('/virtual/');
  if (link.link_type !== 'ether') return false;
  if (link.linkinfo?.info_kind) return false;
  return !VIRTUAL_NAMES.test(link.ifname);
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

function mac(value: string | undefined): string {
  const lower = (value ?? '').trim().toLowerCase();
  return MAC.test(lower) ? lower : '';
}

/** `ethtool -P` output ("Permanent address: aa:bb:…"); empty when absent or all-zero (unknown). */
export function parseEthtoolPermanentAddress(text: string): string {
  const m = /Permanent address:\s*(\S+)/.exec(text);
  const value = mac(m?.[1]);
  return value === '00:00:00:00:00:00' ? '' : value;
}

/** `ethtool -i` output: driver and bus-info. */
export function parseEthtoolDriverInfo(text: string): { driver: string; busInfo: string } {
  return {
    driver: /^driver:\s*(\S+)/m.exec(text)?.[1] ?? '',
    busInfo: /^bus-info:\s*(\S+)/m.exec(text)?.[1] ?? '',
  };
}

/** `ethtool <if>` output: speed in Mb/s (0 when "Unknown!") and "Link detected". */
export function parseEthtoolSettings(text: string): { speedMbps: number; linkDetected: boolean | undefined } {
  const speed = /^\s*Speed:\s*(\d+)\s*Mb\/s/m.exec(text)?.[1];
  const link = /^\s*Link detected:\s*(yes|no)/m.exec(text)?.[1];
  return { speedMbps: speed ? Number(speed) : 0, linkDetected: link === undefined ? undefined : link === 'yes' };
}

const PCI_ADDRESS = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/i;

/** The PCI function nearest to the interface in its sysfs device path, empty when not PCI. */
export function pciAddressFromSysfsPath(path: string): string {
  const parts = path.split('/').filter((p) => PCI_ADDRESS.test(p));
  return (parts[parts.length - 1] ?? '').toLowerCase();
}

/** Everything known about one interface besides `ip -j link`; every field optional. */
export interface NicExtras {
  /** Target of /sys/class/net/<if> (device path), when sysfs or its listing is available. */
  readonly sysfsDevicePath?: string;
  readonly ethtool?: string;
  readonly ethtoolDriverInfo?: string;
  readonly ethtoolPermanentAddress?: string;
  /** /sys/class/net/<if>/addr_assign_type ("0" = permanent address in use). */
  readonly addrAssignType?: string;
  /** /sys/class/net/<if>/speed (Mb/s, -1 when unknown). */
  readonly sysfsSpeed?: string;
  /** readlink /sys/class/net/<if>/device/driver. */
  readonly sysfsDriverLink?: string;
}

/**
 * A NetworkInterface from its `ip -j link` entry and whatever else is known. The permanent MAC
 * comes from `ethtool -P`, else ip's `permaddr` (printed only when it differs from the current
 * address), else the current address when sysfs says it is the permanent one; empty otherwise.
 * Speed is only reported with carrier, as the contract says.
 */
export function nicFromLink(link: IpLink, extras: NicExtras = {}): NetworkInterface {
  const current = mac(link.address);
  const permanent =
    (extras.ethtoolPermanentAddress ? parseEthtoolPermanentAddress(extras.ethtoolPermanentAddress) : '') ||
    mac(link.permaddr) ||
    (extras.addrAssignType?.trim() === '0' ? current : '');
  const info = extras.ethtoolDriverInfo ? parseEthtoolDriverInfo(extras.ethtoolDriverInfo) : { driver: '', busInfo: '' };
  const settings = extras.ethtool ? parseEthtoolSettings(extras.ethtool) : { speedMbps: 0, linkDetected: undefined };
  const flags = link.flags ?? [];
  const linkUp = settings.linkDetected ?? (flags.includes('LOWER_UP') || link.operstate === 'UP');
  const sysfsSpeed = Number(extras.sysfsSpeed?.trim() ?? '');
  const speed = settings.speedMbps || (Number.isInteger(sysfsSpeed) && sysfsSpeed > 0 ? sysfsSpeed : 0);
  const pci =
    (PCI_ADDRESS.test(info.busInfo) ? info.busInfo.toLowerCase() : '') ||
    (link.parentbus === 'pci' && link.parentdev && PCI_ADDRESS.test(link.parentdev) ? link.parentdev.toLowerCase() : '') ||
    pciAddressFromSysfsPath(extras.sysfsDevicePath ?? '');
  const driverLink = extras.sysfsDriverLink?.trim() ?? '';
  return {
    name: link.ifname,
    macAddress: current,
    permanentMacAddress: permanent,
    driver: info.driver || driverLink.slice(driverLink.lastIndexOf('/') + 1),
    speedMbps: linkUp ? speed : 0,
    linkUp,
    pciAddress: pci,
    mtu: link.mtu ?? 0,
  };
}

/** `nameserver` and `search`/`domain` entries of a resolv.conf, in order. */
export function parseResolvConf(text: string): { dnsServers: string[]; searchDomains: string[] } {
  const dnsServers: string[] = [];
  let searchDomains: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [key, ...values] = line.split(/\s+/);
    if (key === 'nameserver' && values[0]) dnsServers.push(values[0]);
    // As in resolv.conf(5), the last search or domain line wins; systemd-resolved writes
    // "search ." for "no search domains".
    else if (key === 'search' || key === 'domain') searchDomains = values.filter((v) => v !== '.');
  }
  return { dnsServers, searchDomains };
}

/** Non-link-local addresses of the given interfaces, in `ip -j addr` order. */
export function addressesOf(addr: readonly IpAddrLink[], interfaces: ReadonlySet<string>): InterfaceAddress[] {
  const result: InterfaceAddress[] = [];
  for (const link of addr) {
    if (!interfaces.has(link.ifname)) continue;
    for (const a of link.addr_info ?? []) {
      if (!a.local || a.prefixlen === undefined) continue;
      if (a.family === 'inet6' && (a.scope === 'link' || /^fe[89ab]/i.test(a.local))) continue;
      result.push({ interface: link.ifname, address: `${a.local}/${a.prefixlen}`, dynamic: a.dynamic === true });
    }
  }
  return result;
}

/** The default route with the lowest metric, IPv4 routes before IPv6 ones. */
export function defaultRoute(...tables: readonly (readonly IpRoute[])[]): { gateway: string; interface: string } {
  for (const routes of tables) {
    const defaults = routes.filter((r) => r.dst === 'default' && r.gateway).sort((a, b) => (a.metric ?? 0) - (b.metric ?? 0));
    const best = defaults[0];
    if (best?.gateway) return { gateway: best.gateway, interface: best.dev ?? '' };
  }
  return { gateway: '', interface: '' };
}

/** ObservedNetwork from the parsed outputs; `routeToDeployer` is `ip -j route get <deployer>`. */
export function observedNetwork(input: {
  readonly addr: readonly IpAddrLink[];
  readonly physical: ReadonlySet<string>;
  readonly routes: readonly (readonly IpRoute[])[];
  readonly resolvConf?: string;
  readonly routeToDeployer?: readonly IpRoute[];
}): ObservedNetwork {
  const gw = defaultRoute(...input.routes);
  const dns = parseResolvConf(input.resolvConf ?? '');
  const toDeployer = input.routeToDeployer?.[0];
  return {
    addresses: addressesOf(input.addr, input.physical),
    defaultGateway: gw.gateway,
    defaultGatewayInterface: gw.interface,
    dnsServers: dns.dnsServers,
    searchDomains: dns.searchDomains,
    deployerInterface: toDeployer?.dev ?? '',
    deployerSourceAddress: toDeployer?.prefsrc ?? '',
  };
}
