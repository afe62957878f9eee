# Per node class, the inputs of its generic NixOS system (`nixosConfigurations.<class>`): what
# every node of the class shares, so one system can be installed on machines whose node id,
# hostname and addresses are only known at enrollment. The node's identity is not here: the
# installer writes it to /var/lib/ultracloud/node.json and the exporter module applies it at boot
# (docs/nix-schema.md, "Generic class systems"). `networking`, `disko` and `ultracloud` are NixOS
# option trees a module can merge as they are; the other attributes are plain data.
{ config, disko }:
let
  inherit (builtins) attrNames filter mapAttrs;

  classConfig = name: cls:
    let
      profile = config.installProfiles.${cls.installProfile};
      policy = config.diskPolicies.${profile.diskPolicy};
      network = config.networks.${profile.network};
      domain = config.cluster.domain;
      device = let pinned = disko.pinnedDevice policy.rootDeviceHints; in if pinned == null then disko.placeholder else pinned;
    in
    {
      nodeClass = name;
      inherit domain;
      labels = cls.defaultLabels;
      inherit (cls) installProfile;
      inherit (profile) flakeRef diskPolicy;
      # The enrollment rules that enrol machines into this class (the flake builds a generic
      # system for each class that has any).
      enrollmentRules = filter (r: config.enrollmentRules.${r}.class == name) (attrNames config.enrollmentRules);
      # The install profile's network, for the per-node .network files written at boot.
      network = {
        name = profile.network;
        inherit (network) mtu dnsServers ntpServers;
        searchDomains = [ domain ] ++ filter (d: d != domain) network.searchDomains;
      };
      # The placeholder device is replaced by the installer; see generators/disko.nix.
      rootDevicePlaceholder = device == disko.placeholder;

      # No hostName and no interfaces: both come from the node identity file at boot.
      networking = {
        inherit domain;
        nameservers = network.dnsServers;
        search = [ domain ] ++ filter (d: d != domain) network.searchDomains;
        timeServers = network.ntpServers;
      };

      disko.devices.disk.root = disko.disk device policy.layout;

      ultracloud.agents = {
        nixAgent = true;
        nodeAgent = cls.runNodeAgent;
        inherit (config.cluster) deployerAddress hostControllerAddress;
        fleetSchedulerAddress = if cls.runNodeAgent then config.cluster.fleetSchedulerAddress else "";
      };
    };
in
mapAttrs classConfig config.nodeClasses
