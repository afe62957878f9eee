# The lab as an end-to-end test sees it: one bridge per network and one simulated machine per
# expected node, each with the identity the deployer will recognise (fixed nodes by their MACs,
# rule-enrolled machines with DMI facts and MACs that satisfy the rule's selector) and the
# address it will end up with. Rule-enrolled machines exist only for rules with expectedNodes;
# their node ids and pool addresses are predictions (lowest free index and address, in rule
# and index order), which hold when machines enrol one after another in that order. Disks are
# not modelled here: the e2e lab supplies disk facts that satisfy the disk policy.
{ config, net, fleet }:
let
  inherit (builtins) attrNames concatLists concatStringsSep elemAt filter foldl' genList head length
    listToAttrs match replaceStrings sort lessThan stringLength substring hashString;

  domain = config.cluster.domain;
  prefixLength = network: (net.parseCidr network.cidr).prefix.length;
  labelsOf = cls: pool: extra: config.nodeClasses.${cls}.defaultLabels // config.pools.${pool}.labels // extra;

  # Linux interface names are at most 15 bytes.
  bridgeName = name: substring 0 15 "uc-${name}";

  hex2 = n: let d = "0123456789abcdef"; in substring (builtins.div n 16) 1 d + substring (n - builtins.div n 16 * 16) 1 d;

  fixedNodes = map (id:
    let n = config.nodes.${id}; profile = if n.installProfile != "" then n.installProfile else config.nodeClasses.${n.class}.installProfile;
        pnet = config.installProfiles.${profile}.network;
        known = builtins.foldl' (a: m: if builtins.elem m a then a else a ++ [ m ]) [ ] (n.match.macAddresses ++ map (s: s.macAddress) n.staticAddresses);
        # A node recognised by UUID or serial alone still needs a NIC in the lab.
        macs = if known == [ ] then [ (localMac "nodes.${id}" 0) ] else known;
    in {
      nodeId = id;
      inherit (n) hostname class pool failureDomain autoCommission autoInstall;
      fqdn = "${n.hostname}.${domain}";
      source = "nodes.${id}";
      labels = labelsOf n.class n.pool n.labels;
      installProfile = profile;
      runNodeAgent = config.nodeClasses.${n.class}.runNodeAgent;
      machine = {
        macAddresses = macs;
        inherit (n.match) systemUuid serialNumber;
        vendor = ""; product = "";
      };
      interfaces = genList (i: let mac = elemAt macs i; st = filter (s: s.macAddress == mac) n.staticAddresses; in
        if st == [ ] then { name = "eth${toString i}"; macAddress = mac; network = pnet; mode = "dhcp"; address = null; prefixLength = null; }
        else { name = "eth${toString i}"; macAddress = mac; network = (head st).network; mode = "static"; address = (head st).address;
               prefixLength = prefixLength config.networks.${(head st).network}; })
        (length macs);
    }) (attrNames config.nodes);

  chars = s: genList (i: substring i 1 s) (stringLength s);
  upper = replaceStrings (chars "abcdefghijklmnopqrstuvwxyz") (chars "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
  lower = replaceStrings (chars "ABCDEFGHIJKLMNOPQRSTUVWXYZ") (chars "abcdefghijklmnopqrstuvwxyz");
  # {serial} as the deployer renders it: lowercased, characters outside [a-z0-9-] replaced by "-".
  sanitise = s: concatStringsSep "" (map (c: if match "[a-z0-9-]" c != null then c else "-") (chars (lower s)));

  # A concrete value a glob matches: "?" becomes "0", "*" disappears.
  concretise = glob: replaceStrings [ "?" "*" ] [ "0" "" ] glob;

  # A MAC the rule's selector accepts: a listed MAC, else the first pattern with wildcards filled
  # from the rule name and index, else a locally administered address (02:…).
  synthMac = ruleName: r: i:
    let
      seed = hashString "sha256" "${ruleName}/${toString i}";
      fill = genList (k: substring (k * 2) 2 seed) 6;
      octets = p: filter builtins.isString (builtins.split ":" p);
      pattern = head r.selector.macPatterns;
      # Expand "*" to as many octets as are missing, then replace each "?" digit.
      expanded =
        let parts = octets (replaceStrings [ "*" ] [ "" ] pattern);
            fixedParts = filter (x: x != "") parts;
        in genList (k: if k < length fixedParts then elemAt fixedParts k else "*") 6;
      digit = k: j: c: if c == "?" then substring j 1 (elemAt fill k) else c;
      octet = k: o: if o == "*" then elemAt fill k
        else concatStringsSep "" (genList (j: digit k j (substring j 1 o)) (stringLength o));
    in
    if i < length r.selector.macAddresses then elemAt r.selector.macAddresses i
    else if r.selector.macPatterns != [ ] && match "([0-9A-Fa-f?]{2}:)*[0-9A-Fa-f?]{2}:?[*]" pattern != null
    then builtins.replaceStrings [ "A" "B" "C" "D" "E" "F" ] [ "a" "b" "c" "d" "e" "f" ] (concatStringsSep ":" (genList (k: octet k (elemAt expanded k)) 6))
    else localMac ruleName i;

  # A locally administered unicast MAC (02:75:63 = "uc"), distinct per source and index.
  localMac = source: i:
    "02:75:63:${substring 0 2 (hashString "sha256" source)}:${hex2 (builtins.div i 256)}:${hex2 (i - builtins.div i 256 * 256)}";

  ruleNames = filter (r: config.enrollmentRules.${r}.expectedNodes != null) (attrNames config.enrollmentRules);

  # Pool addresses handed out in rule then index order, lowest first, as the deployer does.
  poolCursor = foldl' (acc: r:
    let rule = config.enrollmentRules.${r};
        profile = if rule.installProfile != "" then rule.installProfile else config.nodeClasses.${rule.class}.installProfile;
        pnet = config.installProfiles.${profile}.network;
        n = config.networks.${pnet};
        start = acc.next.${pnet} or 0;
    in acc // {
      offsets = acc.offsets // { ${r} = { network = pnet; first = start; static = n.addressMode == "static"; }; };
      next = acc.next // { ${pnet} = start + rule.expectedNodes; };
    }) { offsets = { }; next = { }; } ruleNames;

  poolAddress = network: k:
    let pool = config.networks.${network}.addressPool; s = net.parseIp pool.start; e = net.parseIp pool.end;
        value = ip: foldl' (a: g: a * 256 + g) 0 ip.groups;
        v = value s + k;
        text = concatStringsSep "." (map toString [ (builtins.div v 16777216) (builtins.bitAnd (builtins.div v 65536) 255) (builtins.bitAnd (builtins.div v 256) 255) (builtins.bitAnd v 255) ]);
    in if pool == null || s == null || s.family != 4 || v > value e then null else text;

  ruleNodes = concatLists (map (r:
    let
      rule = config.enrollmentRules.${r};
      shape = head (filter (s: s.source == "enrollmentRules.${r}") fleet.shapes);
      cur = poolCursor.offsets.${r};
      profile = if rule.installProfile != "" then rule.installProfile else config.nodeClasses.${rule.class}.installProfile;
      labels = labelsOf rule.class rule.pool rule.labels;
    in genList (i:
      let
        mac = synthMac r rule i;
        serialNumber = if rule.selector.serialNumbers != [ ] then concretise (head rule.selector.serialNumbers)
          else "UC${toString (i + 1)}${upper (substring 0 5 (hashString "sha256" r))}";
        # Names from {mac} or {serial} follow from the synthesized facts; {machine_id} is the
        # deployer's own and cannot be predicted.
        template = if rule.nodeIdTemplate != "" then rule.nodeIdTemplate else if rule.hostnameTemplate != "" then rule.hostnameTemplate else "{class}-{index}";
        rendered = replaceStrings [ "{index}" "{pool}" "{class}" "{mac}" "{serial}" ]
          [ (toString (i + 1)) rule.pool rule.class (replaceStrings [ ":" ] [ "" ] mac) (sanitise serialNumber) ] template;
        nodeId = if shape.nodeIds != null then elemAt shape.nodeIds i
          else if match ".*[{]machine_id[}].*" template == null then rendered
          else "${r}-${toString (i + 1)}";
        address = if cur.static then poolAddress cur.network (cur.first + i) else null;
      in {
        inherit nodeId;
        hostname = nodeId;
        fqdn = "${nodeId}.${domain}";
        source = "enrollmentRules.${r}";
        predicted = true;
        inherit (rule) class pool autoCommission autoInstall;
        inherit labels;
        failureDomain = shape.failureDomain;
        installProfile = profile;
        runNodeAgent = config.nodeClasses.${rule.class}.runNodeAgent;
        machine = {
          macAddresses = [ mac ];
          systemUuid = "";
          inherit serialNumber;
          vendor = if rule.selector.vendors != [ ] then concretise (head rule.selector.vendors) else "";
          product = if rule.selector.products != [ ] then concretise (head rule.selector.products) else "";
        };
        minimumHardware = config.nodeClasses.${rule.class}.minimumHardware;
        interfaces = [{
          name = "eth0"; macAddress = mac; network = cur.network;
          mode = if cur.static then "static" else "dhcp";
          inherit address;
          prefixLength = if address == null then null else prefixLength config.networks.${cur.network};
        }];
      }) rule.expectedNodes) ruleNames);
in
{
  cluster = { inherit (config.cluster) name domain; };
  controlPlane = { inherit (config.cluster) deployerAddress hostControllerAddress fleetSchedulerAddress; };
  networks = builtins.mapAttrs (name: n: {
    bridge = bridgeName name;
    inherit (n) cidr gateway dnsServers ntpServers mtu addressPool;
    prefixLength = prefixLength n;
    addressMode = n.addressMode;
  }) config.networks;
  nodes = sort (a: b: lessThan a.nodeId b.nodeId)
    (map (n: n // { predicted = false; minimumHardware = config.nodeClasses.${n.class}.minimumHardware; }) fixedNodes ++ ruleNodes);
}
