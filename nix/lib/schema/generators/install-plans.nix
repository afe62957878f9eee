# Install-plan data per install profile: what the deployer's plan renderer combines with a
# machine's assignment and disks to produce an InstallPlan (flake ref and attribute template,
# disk hints, layout and wipe policy, network bootstrap), plus the disko rendering of the
# layout with the placeholder device. JSON-able, so the installer and tests can read it.
{ config, enums, net, disko, clusterState }:
let
  inherit (builtins) any attrNames filter mapAttrs match;

  profileOf = n: if n.installProfile != "" then n.installProfile else config.nodeClasses.${n.class}.installProfile;
  ruleProfile = r: if r.installProfile != "" then r.installProfile else config.nodeClasses.${r.class}.installProfile;

  plan = name: p:
    let
      policy = config.diskPolicies.${p.diskPolicy};
      network = config.networks.${p.network};
      domain = config.cluster.domain;
      classes = filter (c: config.nodeClasses.${c}.installProfile == name) (attrNames config.nodeClasses);
      nodes = filter (id: profileOf config.nodes.${id} == name) (attrNames config.nodes);
      rules = filter (r: ruleProfile config.enrollmentRules.${r} == name) (attrNames config.enrollmentRules);
      usersRunNodeAgent = any (c: config.nodeClasses.${c}.runNodeAgent)
        (classes ++ map (id: config.nodes.${id}.class) nodes ++ map (r: config.enrollmentRules.${r}.class) rules);
      pinned = disko.pinnedDevice policy.rootDeviceHints;
    in
    {
      installProfile = name;
      inherit (p) flakeRef flakeAttr bundleUrl bundleSha256;
      # True when every node gets its own system (the attribute names the node).
      flakeAttrPerNode = match ".*[{](node_id|hostname)[}].*" p.flakeAttr != null;
      disk = {
        policy = p.diskPolicy;
        rootDeviceHints = clusterState.diskPolicies.${p.diskPolicy}.rootDeviceHints or { };
        layout = clusterState.diskPolicies.${p.diskPolicy}.layout;
        wipePolicy = enums.wipePolicy.${policy.wipePolicy};
        disko = disko.disk (if pinned == null then disko.placeholder else pinned) policy.layout;
        devicePlaceholder = disko.placeholder;
      };
      network = {
        name = p.network;
        inherit domain;
        inherit (network) cidr gateway dnsServers ntpServers mtu;
        prefixLength = (net.parseCidr network.cidr).prefix.length;
        searchDomains = [ domain ] ++ filter (d: d != domain) network.searchDomains;
        addressMode = enums.addressMode.${network.addressMode};
        addressPool = network.addressPool;
      };
      agent = {
        inherit (config.cluster) deployerAddress hostControllerAddress;
        # Only plans of node-agent classes carry the scheduler address (InstallPlan.agent).
        fleetSchedulerAddress = if usersRunNodeAgent then config.cluster.fleetSchedulerAddress else "";
      };
      inherit classes nodes rules;
    };
in
mapAttrs plan config.installProfiles
