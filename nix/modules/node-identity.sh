#!/usr/bin/env bash
# ultracloud-node-identity: applies the node identity file the installer wrote to a generic class
# system (docs/nix-schema.md, "Generic class systems"). Runs once per boot before networkd:
#   - sets the hostname (kernel hostname) to .hostname;
#   - writes one systemd-networkd file per entry of .interfaces, matched by MAC, to
#     /run/systemd/network/10-ultracloud-<mac without colons>.network;
#   - without a valid identity file, writes 99-ultracloud-fallback.network (DHCP on every Ethernet
#     interface, so the machine stays reachable) and exits 1, leaving the unit failed.
# The paths can be overridden for tests: ULTRACLOUD_NODE_IDENTITY, ULTRACLOUD_NETWORK_DIR,
# ULTRACLOUD_HOSTNAME_FILE. Needs jq and coreutils on PATH.
set -euo pipefail

identity="${ULTRACLOUD_NODE_IDENTITY:-/var/lib/ultracloud/node.json}"
netdir="${ULTRACLOUD_NETWORK_DIR:-/run/systemd/network}"
hostname_file="${ULTRACLOUD_HOSTNAME_FILE:-/proc/sys/kernel/hostname}"

mkdir -p "$netdir"
rm -f "$netdir"/10-ultracloud-*.network "$netdir"/99-ultracloud-fallback.network

fallback() {
  echo "ultracloud-node-identity: $1; falling back to DHCP on every Ethernet interface" >&2
  printf '%s\n' '# Written by ultracloud-node-identity: no valid node identity file.' \
    '[Match]' 'Type=ether' '' '[Network]' 'DHCP=yes' > "$netdir/99-ultracloud-fallback.network"
  exit 1
}

[ -r "$identity" ] || fallback "$identity is missing"

# The contract: nodeId and hostname non-empty (hostname a lowercase DNS label), every interface
# with a lowercase colon-separated macAddress. Optional fields may be absent (proto3 JSON).
valid='
  type == "object"
  and (.nodeId | type == "string" and . != "")
  and (.hostname | type == "string" and test("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))
  and ((.interfaces // []) | type == "array" and length > 0
       and all(.[]; (.macAddress | type == "string" and test("^[0-9a-f]{2}(:[0-9a-f]{2}){5}$"))))
'
jq -e "$valid" "$identity" > /dev/null 2>&1 || fallback "$identity is not a valid node identity"

printf '%s' "$(jq -r .hostname "$identity")" > "$hostname_file"

# The first STATIC interface (else the first one) carries the gateway, DNS, search domains and
# NTP servers; DHCP interfaces take the server's addresses and routes but never its hostname.
network='
  (.interfaces | map(.mode == "ADDRESS_MODE_STATIC") | index(true) // 0) as $primary
  | .interfaces[$i] as $nic
  | ($nic.mode == "ADDRESS_MODE_STATIC") as $static
  | "# Written by ultracloud-node-identity from \($file) (node \(.nodeId)).",
    "[Match]", "MACAddress=\($nic.macAddress)", "",
    (if ($nic.mtu // 0) > 0 then "[Link]", "MTUBytes=\($nic.mtu)", "" else empty end),
    "[Network]",
    (if $static then (($nic.addresses // [])[] | "Address=\(.)") else "DHCP=yes" end),
    (if $i == $primary then
       (if (.gateway // "") != "" and $static then "Gateway=\(.gateway)" else empty end),
       ((.dnsServers // [])[] | "DNS=\(.)"),
       (if ((.searchDomains // []) | length) > 0 then "Domains=\(.searchDomains | join(" "))" else empty end),
       ((.ntpServers // [])[] | "NTP=\(.)")
     else empty end),
    (if $static then empty else "", "[DHCPv4]", "UseHostname=no" end)
'
count="$(jq '.interfaces | length' "$identity")"
for ((i = 0; i < count; i++)); do
  mac="$(jq -r --argjson i "$i" '.interfaces[$i].macAddress' "$identity")"
  jq -r --argjson i "$i" --arg file "$identity" "$network" "$identity" > "$netdir/10-ultracloud-${mac//:/}.network"
done
