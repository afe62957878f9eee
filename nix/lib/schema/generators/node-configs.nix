# Per fixed node, the inputs of its NixOS configuration (`nixosConfigurations.<node>`): identity,
# static network, the disko layout of its disk policy, and which UltraCloud agents run with which
# control-plane addresses. `networking`, `systemd`, `disko` and `ultracloud` are NixOS option
# trees a module can merge as they are; the other attributes are plain data.
{ config, net, disko }:
let
  inherit (builtins) attrNames concatLists elem elemAt filter genList head length listToAttrs mapAttrs;

  profileName = n: if n.installProfile != "" then n.installProfile else config.nodeClasses.${n.class}.installProfile;

  render = template: values: builtins.replaceStrings (map (k: "{${k}}") (attrNames values)) (builtins.attrValues values) template;

  prefixLength = network: (net.parseCidr network.cidr).prefix.length;

  nodeConfig = id: n:
    let
      cls = config.nodeClasses.${n.class};
      pname = profileName n;
      profile = config.installProfiles.${pname};
      policy = config.diskPolicies.${profile.diskPolicy};
      primary = config.networks.${profile.network};
      domain = config.cluster.domain;

      # One interface per MAC, in the order the MACs first appear; each gets a stable name,
      # assigned by a udev link rule on the permanent MAC so kernel naming cannot move it.
      macs = builtins.foldl' (acc: s: if elem s.macAddress acc then acc else acc ++ [ s.macAddress ]) [ ] n.staticAddresses;
      dhcpMac = if macs == [ ] && n.match.macAddresses != [ ] then [ (head n.match.macAddresses) ] else [ ];
      allMacs = macs ++ dhcpMac;
      ifName = i: "lan${toString i}";
      ifOf = mac: ifName (head (filter (i: elemAt allMacs i == mac) (genList (i: i) (length allMacs))));
      addressesOf = mac: family: map (s: { address = s.address; prefixLength = prefixLength config.networks.${s.network}; })
        (filter (s: s.macAddress == mac && (net.parseIp s.address).family == family) n.staticAddresses);
      mtuOf = mac: let nets = map (s: config.networks.${s.network}.mtu) (filter (s: s.macAddress == mac) n.staticAddresses);
                   in if nets == [ ] then primary.mtu else head nets;

      interfaces = listToAttrs (genList (i: let mac = elemAt allMacs i; in {
        name = ifName i;
        value = {
          useDHCP = elem mac dhcpMac;
          ipv4.addresses = addressesOf mac 4;
          ipv6.addresses = addressesOf mac 6;
        } // (if mtuOf mac == 0 then { } else { mtu = mtuOf mac; });
      }) (length allMacs));

      # The default route goes out of the interface holding an address on the profile's network,
      # as in the deployer's install plan.
      onPrimary = filter (s: s.network == profile.network) n.staticAddresses;
      gatewayIf = if onPrimary != [ ] then ifOf (head onPrimary).macAddress else if allMacs != [ ] then ifName 0 else null;
      gw = if primary.gateway == "" then null else net.parseIp primary.gateway;
      static = macs != [ ];

      agents = {
        nixAgent = true;
        nodeAgent = cls.runNodeAgent;
        inherit (config.cluster) deployerAddress hostControllerAddress;
        fleetSchedulerAddress = if cls.runNodeAgent then config.cluster.fleetSchedulerAddress else "";
      };
      device = let pinned = disko.pinnedDevice policy.rootDeviceHints; in if pinned == null then disko.placeholder else pinned;
    in
    {
      nodeId = id;
      hostName = n.hostname;
      inherit domain;
      fqdn = "${n.hostname}.${domain}";
      inherit (n) class pool failureDomain;
      labels = cls.defaultLabels // config.pools.${n.pool}.labels // n.labels;
      installProfile = pname;
      inherit (profile) flakeRef;
      flakeAttr = render profile.flakeAttr { node_id = id; hostname = n.hostname; class = n.class; pool = n.pool; };
      diskPolicy = profile.diskPolicy;
      # The placeholder device is replaced by the installer; see generators/disko.nix.
      rootDevicePlaceholder = device == disko.placeholder;

      networking = {
        hostName = n.hostname;
        inherit domain;
        useDHCP = !static && allMacs == [ ];
        inherit interfaces;
        nameservers = if static then primary.dnsServers else [ ];
        search = [ domain ] ++ filter (d: d != domain) primary.searchDomains;
        timeServers = primary.ntpServers;
      }
      // (if static && gw != null && gw.family == 4 && gatewayIf != null then { defaultGateway = { address = primary.gateway; interface = gatewayIf; }; } else { })
      // (if static && gw != null && gw.family == 6 && gatewayIf != null then { defaultGateway6 = { address = primary.gateway; interface = gatewayIf; }; } else { });

      systemd.network.links = listToAttrs (genList (i: {
        name = "10-${ifName i}";
        value = { matchConfig.PermanentMACAddress = elemAt allMacs i; linkConfig.Name = ifName i; };
      }) (length allMacs));

      disko.devices.disk.root = disko.disk device policy.layout;

      ultracloud.agents = agents;
    };
in
mapAttrs nodeConfig config.nodes
