# Turns a structurally valid cluster into `config`: defaults that depend on other fields filled
# in (hostname = node id, partition type from its mountpoint, one control-plane address for all
# services) and the node shorthands (`mac`, `address`, `network`) expanded into the proto's
# `match` and `staticAddresses`. Also returns, per node, every static address with the source
# path it came from, so checks can point at what the author wrote.
raw:
let
  inherit (builtins) mapAttrs filter elem genList length elemAt;

  profileOfNode = n:
    let cls = raw.nodeClasses.${n.class} or null;
    in if n.installProfile != "" then n.installProfile else if cls == null then "" else cls.installProfile;
  networkOfProfile = p: (raw.installProfiles.${p} or { network = ""; }).network;

  dedupe = l: builtins.foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ] l;

  nodeClaims = id: n:
    (if n.address == null then [ ] else [{
      macAddress = if n.mac == null then "" else n.mac;
      network = if n.network != null then n.network else networkOfProfile (profileOfNode n);
      address = n.address;
      at = { macAddress = "nodes.${id}.mac"; network = "nodes.${id}.network"; address = "nodes.${id}.address"; };
      shorthand = true;
    }])
    ++ genList (i: let s = elemAt n.staticAddresses i; base = "nodes.${id}.staticAddresses[${toString i}]"; in {
      inherit (s) macAddress network address;
      at = { macAddress = "${base}.macAddress"; network = "${base}.network"; address = "${base}.address"; };
      shorthand = false;
    }) (length n.staticAddresses);

  claims = mapAttrs nodeClaims raw.nodes;

  node = id: n: removeAttrs n [ "mac" "address" "network" ] // {
    hostname = if n.hostname == null then id else n.hostname;
    match = n.match // {
      macAddresses = dedupe ((if n.mac == null then [ ] else [ n.mac ]) ++ n.match.macAddresses);
    };
    staticAddresses = map (c: { inherit (c) macAddress network address; }) claims.${id};
  };

  partition = p: p // {
    type = if p.type != null then p.type else if p.mountpoint == "/" then "root" else "linux";
  };

  cluster = raw.cluster // {
    hostControllerAddress = if raw.cluster.hostControllerAddress == null then raw.cluster.deployerAddress else raw.cluster.hostControllerAddress;
    fleetSchedulerAddress = if raw.cluster.fleetSchedulerAddress == null then raw.cluster.deployerAddress else raw.cluster.fleetSchedulerAddress;
  };
in
{
  inherit claims;
  shorthands = mapAttrs (_: n: { inherit (n) mac address network; }) raw.nodes;
  config = raw // {
    inherit cluster;
    nodes = mapAttrs node raw.nodes;
    diskPolicies = mapAttrs (_: d: d // { layout = d.layout // { partitions = map partition d.layout.partitions; }; }) raw.diskPolicies;
  };
}
