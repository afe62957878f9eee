# ClusterState (proto/ultracloud/deployer/v1/cluster_state.proto) as proto3 JSON.
{ config, enums }:
let
  inherit (builtins) mapAttrs;
  inherit (import ./proto-json.nix) compact optional;

  hints = h: compact {
    inherit (h) name byPath wwn wwnWithExtension wwnVendorExtension serial model vendor size hctl;
  } // optional "rotational" h.rotational;

  layout = l: {
    partitionTable = enums.partitionTableType.${l.partitionTable};
    partitions = map (p: compact {
      inherit (p) name filesystem mountpoint mountOptions formatOptions label;
      sizeBytes = p.size;
      type = enums.partitionType.${p.type};
    }) l.partitions;
  };

  selector = s: compact {
    inherit (s) machineIds macAddresses macPatterns vendors products serialNumbers minCpuCores minMemoryBytes;
  }
  # Present-but-empty disks/nics still demand one disk/NIC, so they are kept even when empty.
  // optional "disks" (if s.disks == null then null else compact { inherit (s.disks) minCount minSizeBytes model; } // optional "rotational" s.disks.rotational)
  // optional "nics" (if s.nics == null then null else compact { inherit (s.nics) minCount minSpeedMbps driver; });
in
compact {
  cluster = compact {
    inherit (config.cluster) name domain deployerAddress hostControllerAddress fleetSchedulerAddress rescueSshAuthorizedKeys;
  };
  networks = mapAttrs (_: n: compact {
    inherit (n) cidr gateway dnsServers searchDomains ntpServers mtu description;
    addressMode = enums.addressMode.${n.addressMode};
    addressPool = if n.addressPool == null then null else { inherit (n.addressPool) start end; };
  }) config.networks;
  installProfiles = mapAttrs (_: p: compact {
    inherit (p) flakeRef flakeAttr diskPolicy network bundleUrl bundleSha256 description;
  }) config.installProfiles;
  diskPolicies = mapAttrs (_: d: compact {
    rootDeviceHints = hints d.rootDeviceHints;
    layout = layout d.layout;
    wipePolicy = enums.wipePolicy.${d.wipePolicy};
    inherit (d) description;
  }) config.diskPolicies;
  nodeClasses = mapAttrs (_: k: compact {
    inherit (k) installProfile defaultLabels runNodeAgent runtimeCapabilities description;
    minimumHardware = if k.minimumHardware == null then null else compact k.minimumHardware;
  }) config.nodeClasses;
  pools = mapAttrs (_: p: compact { inherit (p) labels description; }) config.pools;
  enrollmentRules = mapAttrs (_: r: compact {
    inherit (r) priority pool labels installProfile nodeIdTemplate hostnameTemplate failureDomainLabel
      autoCommission autoInstall description;
    selector = selector r.selector;
    nodeClass = r.class;
  }) config.enrollmentRules;
  nodes = mapAttrs (_: n: compact {
    inherit (n) hostname pool labels failureDomain installProfile autoCommission autoInstall description;
    nodeClass = n.class;
    match = compact { inherit (n.match) macAddresses systemUuid serialNumber; };
    staticAddresses = map (s: compact { inherit (s) macAddress network address; }) n.staticAddresses;
  }) config.nodes;
}
