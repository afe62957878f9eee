# Semantic validation of a structurally valid cluster: every rule the deployer applies to a
# ClusterState (services/deployer/domain/cluster-state.ts), with the same paths and wording, plus
# the rules only the whole file can check (hostDeployments and servicePolicies against the
# expected fleet, overlapping networks, partition sizes disko can render). Returns every problem
# as "path: message"; cluster-schema.nix throws them together.
{ config, claims, shorthands, fleet }:
let
  net = import ./net.nix;
  hints = import ./hints.nix;
  inherit (builtins) all any attrNames attrValues concatLists concatStringsSep elem elemAt filter
    genList groupBy hasAttr head isString length listToAttrs mapAttrs match split stringLength
    substring toJSON sort lessThan;

  str = toJSON;
  when = c: m: if c then [ m ] else [ ];
  each = attrs: fn: concatLists (map (k: fn k attrs.${k}) (attrNames attrs));
  eachI = list: fn: concatLists (genList (i: fn i (elemAt list i)) (length list));
  firstOf = l: let ps = filter (p: p != null) l; in if ps == [ ] then null else head ps;

  # Small maps list their names to make a typo obvious; large ones (nodes) would drown it.
  known = map': let names = attrNames map'; in
    if names == [ ] then " (none defined)" else if length names > 10 then "" else " (known: ${concatStringsSep ", " names})";

  nameProblems = mapPath: name:
    when (!net.isObjectName name) "${mapPath}.${name}: name ${str name} must be ${net.objectNameRule}";

  ref = path: name: kind: map': required:
    if name == "" then when required "${path}: required: name of a ${kind}"
    else when (!(hasAttr name map')) "${path}: unknown ${kind} ${str name}${known map'}";

  labelProblems = path: labels: each labels (k: v:
    let p = firstOf [ (net.labelKeyProblem k) (net.labelValueProblem v) ];
    in when (p != null) "${path}.${k}: ${p}");

  # Placeholders of a template ("{index}"), or a problem with its braces or names.
  templateInfo = template: knownNames:
    let
      found = map head (filter (x: !isString x) (split "[{]([^{}]*)[}]" template));
      unbalanced = match ".*[{}].*" (concatStringsSep "" (filter isString (split "[{][^{}]*[}]" template))) != null;
      unknown = filter (p: !(elem p knownNames)) found;
    in {
      placeholders = found;
      problem =
        if unbalanced then "${str template} has an unbalanced \"{\" or \"}\""
        else if unknown != [ ] then "unknown placeholder \"{${head unknown}}\" (known: ${concatStringsSep ", " (map (k: "{${k}}") knownNames)})"
        else null;
    };
  render = template: values: builtins.replaceStrings (map (k: "{${k}}") (attrNames values)) (attrValues values) template;

  # ------------------------------------------------------------------------------------------
  # cluster

  c = config.cluster;
  agentClasses = filter (n: config.nodeClasses.${n}.runNodeAgent) (attrNames config.nodeClasses);
  authorizedKey = "(.*[[:space:]])?(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh[.]com|sk-ecdsa-sha2-nistp256@openssh[.]com)[[:space:]]+[A-Za-z0-9+/]+={0,3}([[:space:]].*)?";
  clusterChecks =
    (if c.name == "" then [ "cluster.name: required" ] else when (!net.isObjectName c.name) "cluster.name: ${str c.name} must be ${net.objectNameRule}")
    ++ (if c.domain == "" then [ "cluster.domain: required" ] else when (!net.isDnsName c.domain) "cluster.domain: ${str c.domain} is not a lowercase DNS name")
    ++ concatLists (map (f: let p = if c.${f} == "" then null else net.hostPortProblem c.${f}; in when (p != null) "cluster.${f}: ${p}")
      [ "deployerAddress" "hostControllerAddress" "fleetSchedulerAddress" ])
    # Plans of node-agent classes carry this address; without it those agents cannot connect.
    ++ when (c.fleetSchedulerAddress == "" && agentClasses != [ ])
      "cluster.fleetSchedulerAddress: required because node class ${str (head agentClasses)} runs the node-agent"
    ++ eachI c.rescueSshAuthorizedKeys (i: line:
      when (match ".*\n.*" line != null || match authorizedKey line == null)
        "cluster.rescueSshAuthorizedKeys[${toString i}]: not an OpenSSH authorized_keys line (\"[options] <key type> <base64 key> [comment]\")");

  # ------------------------------------------------------------------------------------------
  # networks

  prefixes = mapAttrs (_: n: (net.parseCidr n.cidr).prefix or null) config.networks;
  gateways = mapAttrs (_: n: if n.gateway == "" then null else net.parseIp n.gateway) config.networks;

  rangeProblems = path: range: prefix: gateway:
    let
      endProblem = field:
        let text = range.${field}; ip = net.parseIp text; in
        if text == "" then "required"
        else if ip == null then "${str text} is not an IP address"
        else if prefix != null then net.hostAddressProblem prefix ip else null;
      problems = mapAttrs (f: _: endProblem f) { start = 0; end = 0; };
      start = net.parseIp range.start; end = net.parseIp range.end;
    in
    concatLists (map (f: when (problems.${f} != null) "${path}.${f}: ${problems.${f}}") [ "start" "end" ])
    ++ (if problems.start != null || problems.end != null then [ ]
        else if start.family != end.family || net.compareIp start end > 0 then [ "${path}: start ${range.start} is after end ${range.end}" ]
        else when (gateway != null && gateway.family == start.family && net.compareIp gateway start >= 0 && net.compareIp gateway end <= 0)
          "${path}: contains the gateway ${gateway.text}");

  networkChecks = each config.networks (name: n:
    let
      path = "networks.${name}";
      parsed = net.parseCidr n.cidr;
      prefix = prefixes.${name};
      gw = gateways.${name};
      minMtu = if prefix != null && prefix.family == 6 then 1280 else 68;
    in
    nameProblems "networks" name
    ++ (if n.cidr == "" then [ "${path}.cidr: required" ] else when (parsed ? error) "${path}.cidr: ${parsed.error or ""}")
    ++ (if n.gateway == "" then [ ]
        else if gw == null then [ "${path}.gateway: ${str n.gateway} is not an IP address" ]
        else let p = if prefix == null then null else net.hostAddressProblem prefix gw; in when (p != null) "${path}.gateway: ${p}")
    ++ eachI n.dnsServers (i: s: when (net.parseIp s == null) "${path}.dnsServers[${toString i}]: ${str s} is not an IP address")
    ++ eachI n.searchDomains (i: d: when (!net.isDnsName d) "${path}.searchDomains[${toString i}]: ${str d} is not a lowercase DNS name")
    ++ eachI n.ntpServers (i: s: when (net.parseIp s == null && !net.isDnsName s) "${path}.ntpServers[${toString i}]: ${str s} is neither an IP address nor a DNS name")
    ++ when (n.addressMode == "static" && n.addressPool == null) "${path}.addressPool: required when addressMode is \"static\""
    ++ (if n.addressPool == null then [ ] else rangeProblems "${path}.addressPool" n.addressPool prefix gw)
    ++ when (n.mtu != 0 && (n.mtu < minMtu || n.mtu > 65535)) "${path}.mtu: must be 0 (default) or between ${toString minMtu} and 65535, got ${toString n.mtu}");

  # Two networks sharing addresses would make static addresses and routes ambiguous.
  networkOverlaps =
    let names = filter (n: prefixes.${n} != null) (attrNames config.networks);
    in concatLists (genList (i: let a = elemAt names i; in concatLists (map (b:
      when (net.prefixesOverlap prefixes.${a} prefixes.${b})
        "networks.${b}.cidr: ${config.networks.${b}.cidr} overlaps networks.${a}.cidr ${config.networks.${a}.cidr}")
      (genList (j: elemAt names (i + 1 + j)) (length names - i - 1)))) (length names));

  # ------------------------------------------------------------------------------------------
  # install profiles

  flakeAttrPlaceholders = [ "node_id" "hostname" "class" "pool" ];
  installProfileChecks = each config.installProfiles (name: p:
    let
      path = "installProfiles.${name}";
      t = templateInfo p.flakeAttr flakeAttrPlaceholders;
      sample = render p.flakeAttr { node_id = "n"; hostname = "h"; class = "c"; pool = "p"; };
      attrProblem = if t.problem != null then t.problem
        else if match ".*[[:space:]#].*" p.flakeAttr != null || any (s: s == "") (filter isString (split "\\." sample))
        then "${str p.flakeAttr} is not a flake attribute path (e.g. \"nixosConfigurations.{hostname}\")" else null;
    in
    nameProblems "installProfiles" name
    ++ (if p.flakeRef == "" then [ "${path}.flakeRef: required" ]
        else if match ".*[[:space:]].*" p.flakeRef != null then [ "${path}.flakeRef: ${str p.flakeRef} contains whitespace" ]
        else when (match ".*#.*" p.flakeRef != null) "${path}.flakeRef: ${str p.flakeRef} contains \"#\": put the attribute in flakeAttr")
    ++ (if p.flakeAttr == "" then [ "${path}.flakeAttr: required" ] else when (attrProblem != null) "${path}.flakeAttr: ${attrProblem}")
    ++ ref "${path}.diskPolicy" p.diskPolicy "disk policy" config.diskPolicies true
    ++ ref "${path}.network" p.network "network" config.networks true
    ++ when (p.bundleUrl != "" && !net.isHttpUrl p.bundleUrl) "${path}.bundleUrl: ${str p.bundleUrl} is not an absolute http(s) URL"
    ++ (if p.bundleSha256 == "" then when (p.bundleUrl != "") "${path}.bundleSha256: required when bundleUrl is set"
        else if match "[0-9a-f]{64}" p.bundleSha256 == null then [ "${path}.bundleSha256: must be 64 lowercase hex digits (SHA-256)" ]
        else when (p.bundleUrl == "") "${path}.bundleSha256: set without bundleUrl"));

  # ------------------------------------------------------------------------------------------
  # disk policies

  filesystems = [ "vfat" "ext4" "xfs" "btrfs" "swap" ];
  # mkfs refuses longer labels; catching it here beats a failed install.
  labelLimits = { vfat = 11; ext4 = 16; xfs = 12; btrfs = 255; swap = 15; };
  mib = 1024 * 1024;

  layoutChecks = path: layout:
    let
      parts = layout.partitions;
      msdos = layout.partitionTable == "msdos";
      pp = "${path}.partitions";
      last = length parts - 1;
      firstIndex = field: value: i: length (filter (j: (elemAt parts j).${field} == value) (genList (x: x) i)) > 0;
      indexOf = field: value: head (filter (j: (elemAt parts j).${field} == value) (genList (x: x) (length parts)));
      types = map (p: p.type) parts;
      espCount = length (filter (t: t == "esp") types);
      rootMounted = any (p: p.mountpoint == "/") parts;
    in
    eachI parts (i: part:
      let at = field: "${pp}[${toString i}]${if field == "" then "" else ".${field}"}";
          fs = part.filesystem; mp = part.mountpoint;
      in
      (if part.name == "" then [ "${at "name"}: required" ]
       else if match "[A-Za-z0-9][A-Za-z0-9_-]{0,35}" part.name == null then [ "${at "name"}: ${str part.name} must be 1-36 characters of [A-Za-z0-9_-] starting with a letter or digit" ]
       else when (firstIndex "name" part.name i) "${at "name"}: ${str part.name} is also the name of ${pp}[${toString (indexOf "name" part.name)}]")
      ++ when (part.size == 0 && i != last) "${at "size"}: 0 (\"rest of the disk\") is allowed only on the last partition"
      # sgdisk aligns partitions to 1 MiB; disko sizes are written in MiB.
      ++ when (part.size != 0 && part.size - (builtins.div part.size mib) * mib != 0) "${at "size"}: ${toString part.size} bytes is not a whole number of MiB"
      ++ when (fs != "" && !(elem fs filesystems)) "${at "filesystem"}: unknown filesystem ${str fs} (use vfat, ext4, xfs, btrfs or swap)"
      ++ when (part.type == "esp" && fs != "vfat") "${at "filesystem"}: an ESP must be \"vfat\""
      ++ when (part.type == "swap" && fs != "swap") "${at "filesystem"}: a SWAP partition must be \"swap\""
      ++ when (part.type == "bios-boot" && fs != "") "${at "filesystem"}: a BIOS_BOOT partition has no filesystem"
      ++ when (part.type == "bios-boot" && msdos) "${at "type"}: \"bios-boot\" needs a GPT partition table"
      ++ when (part.type == "esp" && msdos) "${at "type"}: \"esp\" needs a GPT partition table (MSDOS is BIOS only)"
      ++ (if mp == "" then [ ] else
          (if mp != "/" && match "(/[^/[:space:]]+)+" mp == null then [ "${at "mountpoint"}: ${str mp} is not an absolute path without a trailing \"/\"" ]
           else if any (s: s == "." || s == "..") (filter isString (split "/" mp)) then [ "${at "mountpoint"}: ${str mp} contains \".\" or \"..\"" ]
           else when (firstIndex "mountpoint" mp i) "${at "mountpoint"}: ${str mp} is also the mountpoint of ${pp}[${toString (indexOf "mountpoint" mp)}]")
          ++ when (fs == "" || fs == "swap") "${at "mountpoint"}: ${if fs == "" then "a mounted partition needs a filesystem" else "swap is not mounted"}")
      ++ when (part.type == "root" && mp != "/") "${at "mountpoint"}: a ROOT partition is mounted at \"/\""
      ++ when (hasAttr fs labelLimits && stringLength part.label > labelLimits.${fs}) "${at "label"}: ${str part.label} is longer than ${toString labelLimits.${fs}} characters, the ${fs} limit"
      ++ eachI part.mountOptions (j: o: when (o == "" || match ".*[[:space:],].*" o != null) "${at "mountOptions"}[${toString j}]: ${str o} must be one non-empty option (list options separately)")
      ++ eachI part.formatOptions (j: o: when (o == "") "${at "formatOptions"}[${toString j}]: empty argument"))
    ++ when (!rootMounted) "${pp}: no partition is mounted at \"/\""
    ++ when (espCount > 1) "${pp}: ${toString espCount} ESPs; a layout has at most one"
    ++ when (!msdos && espCount == 0 && !(elem "bios-boot" types)) "${pp}: a GPT layout needs an \"esp\" partition (UEFI) or a \"bios-boot\" partition (BIOS) to boot"
    ++ when (msdos && length parts > 4) "${pp}: an MSDOS table holds at most 4 primary partitions";

  diskPolicyChecks = each config.diskPolicies (name: d:
    let path = "diskPolicies.${name}"; in
    nameProblems "diskPolicies" name
    # The proto lets empty hints match "the only disk", but a policy shared by several machines
    # must not silently depend on each having one disk, and the installer stick is a disk too.
    ++ when (!hints.hasAnyHint d.rootDeviceHints) "${path}.rootDeviceHints: at least one root device hint is required (e.g. wwn, serial, model or size)"
    ++ hints.hintProblems "${path}.rootDeviceHints" d.rootDeviceHints
    ++ layoutChecks "${path}.layout" d.layout);

  # ------------------------------------------------------------------------------------------
  # node classes and pools

  nodeClassChecks = each config.nodeClasses (name: k:
    let path = "nodeClasses.${name}"; caps = k.runtimeCapabilities; in
    nameProblems "nodeClasses" name
    ++ ref "${path}.installProfile" k.installProfile "install profile" config.installProfiles true
    ++ labelProblems "${path}.defaultLabels" k.defaultLabels
    ++ eachI caps (i: cap:
      if !net.isObjectName cap then [ "${path}.runtimeCapabilities[${toString i}]: ${str cap} must be ${net.objectNameRule}" ]
      else when (elem cap (genList (j: elemAt caps j) i)) "${path}.runtimeCapabilities[${toString i}]: ${str cap} is listed twice"));

  poolChecks = each config.pools (name: p: nameProblems "pools" name ++ labelProblems "pools.${name}.labels" p.labels);

  # ------------------------------------------------------------------------------------------
  # enrollment rules

  namePlaceholders = [ "index" "pool" "class" "serial" "mac" "machine_id" ];
  # Placeholders whose value differs between machines; without one, a template names every
  # machine the same and the second enrollment collides.
  perMachine = [ "index" "serial" "mac" "machine_id" ];

  selectorChecks = path: s:
    eachI s.machineIds (i: id: when (hints.trim id == "") "${path}.machineIds[${toString i}]: empty machine_id")
    ++ eachI s.macAddresses (i: m: let p = net.macProblem m; in when (p != null) "${path}.macAddresses[${toString i}]: ${p}")
    ++ eachI s.macPatterns (i: m: let p = net.macPatternProblem m; in when (p != null) "${path}.macPatterns[${toString i}]: ${p}")
    ++ concatLists (map (f: eachI s.${f} (i: v: when (hints.trim v == "") "${path}.${f}[${toString i}]: empty pattern")) [ "vendors" "products" "serialNumbers" ]);

  ruleChecks = each config.enrollmentRules (name: r:
    let
      path = "enrollmentRules.${name}";
      sample = { index = "1"; pool = if r.pool == "" then "pool" else r.pool; class = if r.class == "" then "class" else r.class;
                 serial = "abc123"; mac = "525400123456"; machine_id = "m1"; };
      templateProblems = field:
        let t = r.${field}; info = templateInfo t namePlaceholders; rendered = render t sample; in
        if t == "" then [ ]
        else if info.problem != null then [ "${path}.${field}: ${info.problem}" ]
        else if !(any (p: elem p perMachine) info.placeholders) then [ "${path}.${field}: ${str t} yields the same name for every machine; use {index}, {serial}, {mac} or {machine_id}" ]
        else when (!net.isObjectName rendered) "${path}.${field}: ${str t} yields names like ${str rendered}, which must be ${net.objectNameRule}";
      fdProblem = if r.failureDomainLabel == "" then null else net.labelKeyProblem r.failureDomainLabel;
    in
    nameProblems "enrollmentRules" name
    ++ selectorChecks "${path}.selector" r.selector
    ++ ref "${path}.class" r.class "node class" config.nodeClasses true
    ++ ref "${path}.pool" r.pool "pool" config.pools true
    ++ ref "${path}.installProfile" r.installProfile "install profile" config.installProfiles false
    ++ labelProblems "${path}.labels" r.labels
    ++ templateProblems "nodeIdTemplate"
    ++ templateProblems "hostnameTemplate"
    ++ when (fdProblem != null) "${path}.failureDomainLabel: ${fdProblem}"
    ++ when (r.autoInstall && !r.autoCommission) "${path}.autoInstall: requires autoCommission");

  isCatchAll = s:
    all (f: s.${f} == [ ]) [ "machineIds" "macAddresses" "macPatterns" "vendors" "products" "serialNumbers" ]
    # A present (even empty) disks/nics record still demands at least one disk/NIC.
    && s.disks == null && s.nics == null && s.minCpuCores == 0 && s.minMemoryBytes == 0;

  # Rules ordered after a catch-all (by priority, then name) can never match.
  reachabilityChecks =
    let
      ordered = sort (a: b: let pa = config.enrollmentRules.${a}.priority; pb = config.enrollmentRules.${b}.priority;
                            in if pa == pb then lessThan a b else pa < pb) (attrNames config.enrollmentRules);
      catchAlls = filter (n: isCatchAll config.enrollmentRules.${n}.selector) ordered;
      first = head catchAlls;
      after = let go = l: if l == [ ] then [ ] else if head l == first then builtins.tail l else go (builtins.tail l); in go ordered;
    in if catchAlls == [ ] then [ ]
       else map (n: "enrollmentRules.${n}.priority: never matches: catch-all rule enrollmentRules.${first} (empty selector, priority ${toString config.enrollmentRules.${first}.priority}) is tried first") after;

  # ------------------------------------------------------------------------------------------
  # fixed nodes

  uuidPattern = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
  # Values cheap firmware ships on every board; matching on them would grab the wrong machine.
  placeholderUuids = [ "00000000-0000-0000-0000-000000000000" "ffffffff-ffff-ffff-ffff-ffffffffffff" "03000200-0400-0500-0006-000700080009" ];
  placeholderSerials = [ "to be filled by o.e.m." "default string" "system serial number" "not specified" "n/a" "none" "0" "0123456789" ];

  claimChecks = id: cl:
    let
      at = cl.at;
      ip = if cl.address == "" then null else net.parseIp cl.address;
      n = config.networks.${cl.network} or null;
      prefix = prefixes.${cl.network} or null;
      gw = if n == null then null else gateways.${cl.network};
      pool = if n == null then null else n.addressPool;
      ps = if pool == null then null else net.parseIp pool.start;
      pe = if pool == null then null else net.parseIp pool.end;
      # The `mac` shorthand is checked once, as the node's identity; here only its absence.
      macP = if cl.macAddress == "" then (if cl.shorthand then "required: address needs mac, the interface to configure" else "required")
        else if cl.shorthand then null else net.macProblem cl.macAddress;
      addressP =
        if cl.address == "" then "required"
        else if ip == null then "${str cl.address} is not an IP address"
        else if prefix == null then null
        else firstOf [
          (net.hostAddressProblem prefix ip)
          (if gw != null && gw.family == ip.family && net.compareIp gw ip == 0 then "${cl.address} is the gateway of networks.${cl.network}" else null)
          (if ps != null && pe != null && ps.family == ip.family && pe.family == ip.family && net.compareIp ip ps >= 0 && net.compareIp ip pe <= 0
           then "${cl.address} lies inside networks.${cl.network}.addressPool (${pool.start}-${pool.end}), which the deployer allocates from" else null)
        ];
    in
    when (macP != null) "${at.macAddress}: ${macP}"
    ++ (if cl.shorthand && cl.network == "" then [ "${at.network}: required: the node's install profile gives no network to default to" ]
        else ref at.network cl.network "network" config.networks true)
    ++ when (addressP != null) "${at.address}: ${addressP}";

  nodeChecks = each config.nodes (id: node:
    let
      path = "nodes.${id}";
      m = node.match;
      sh = shorthands.${id};
      fdProblem = net.labelValueProblem node.failureDomain;
      matchMacs = m.macAddresses;
      # Paths of the MACs the author wrote: the `mac` shorthand, then match.macAddresses.
      authoredMatch = filter (x: !(sh.mac != null && x == sh.mac)) matchMacs;
    in
    nameProblems "nodes" id
    ++ when (node.hostname != id && !net.isObjectName node.hostname) "${path}.hostname: ${str node.hostname} must be ${net.objectNameRule}"
    ++ ref "${path}.class" node.class "node class" config.nodeClasses true
    ++ ref "${path}.pool" node.pool "pool" config.pools true
    ++ ref "${path}.installProfile" node.installProfile "install profile" config.installProfiles false
    ++ labelProblems "${path}.labels" node.labels
    ++ when (fdProblem != null) "${path}.failureDomain: ${fdProblem}"
    ++ (if matchMacs == [ ] && m.systemUuid == "" && m.serialNumber == ""
        then [ "${path}.match: required: at least one of mac, match.macAddresses, match.systemUuid or match.serialNumber" ]
        else
          (if sh.mac == null then [ ] else let p = net.macProblem sh.mac; in when (p != null) "${path}.mac: ${p}")
          ++ eachI authoredMatch (i: mac: let p = net.macProblem mac; in when (p != null) "${path}.match.macAddresses[${toString i}]: ${p}")
          ++ (if m.systemUuid == "" then [ ]
              else if match uuidPattern m.systemUuid == null then [ "${path}.match.systemUuid: ${str m.systemUuid} is not a UUID in lowercase canonical form" ]
              else when (elem m.systemUuid placeholderUuids) "${path}.match.systemUuid: ${str m.systemUuid} is a firmware placeholder shared by many machines; match by MAC instead")
          ++ when (m.serialNumber != "" && elem (hints.toLower (hints.trim m.serialNumber)) placeholderSerials)
            "${path}.match.serialNumber: ${str m.serialNumber} is a firmware placeholder shared by many machines; match by MAC instead")
    ++ when (sh.network != null && sh.address == null) "${path}.network: only used together with address"
    ++ concatLists (map (claimChecks id) claims.${id})
    ++ when (node.autoInstall && !node.autoCommission) "${path}.autoInstall: requires autoCommission");

  # Values claimed by more than one node: every claimant is told who else claims it.
  shared = entries: describe:
    let groups = groupBy (e: e.key) entries;
    in concatLists (map (key:
      let g = groups.${key}; owners = builtins.foldl' (acc: e: acc // { ${e.owner} = true; }) { } g; in
      if length (attrNames owners) < 2 then [ ]
      else map (e: "${e.path}: ${describe e (map (o: o.label) (filter (o: o.owner != e.owner) g))}") g)
      (attrNames groups));

  uniq = l: attrNames (listToAttrs (map (x: { name = x; value = true; }) l));

  uniquenessChecks =
    let
      ids = attrNames config.nodes;
      hostnames = map (id: { key = config.nodes.${id}.hostname; owner = id; path = "nodes.${id}.hostname"; label = "nodes.${id}"; }) ids;
      # Each MAC is one NIC, so it may appear in one node only (its match and static addresses).
      macs = concatLists (map (id:
        let
          node = config.nodes.${id}; sh = shorthands.${id};
          fromMatch = (if sh.mac == null then [ ] else [{ key = sh.mac; path = "nodes.${id}.mac"; }])
            ++ (let l = filter (x: !(sh.mac != null && x == sh.mac)) node.match.macAddresses;
                in genList (i: { key = elemAt l i; path = "nodes.${id}.match.macAddresses[${toString i}]"; }) (length l));
          fromStatic = map (cl: { key = cl.macAddress; path = cl.at.macAddress; })
            (filter (cl: cl.macAddress != "" && !(elem cl.macAddress node.match.macAddresses)) claims.${id});
          firstPerMac = builtins.foldl' (acc: e: if any (x: x.key == e.key) acc then acc else acc ++ [ e ]) [ ] (fromMatch ++ fromStatic);
        in map (e: e // { owner = id; label = "nodes.${id}"; }) (filter (e: net.isMac e.key) firstPerMac)) ids);
      uuids = map (id: { key = config.nodes.${id}.match.systemUuid; owner = id; path = "nodes.${id}.match.systemUuid"; label = "nodes.${id}"; })
        (filter (id: config.nodes.${id}.match.systemUuid != "") ids);
      serials = map (id: { key = config.nodes.${id}.match.serialNumber; owner = id; path = "nodes.${id}.match.serialNumber"; label = "nodes.${id}"; })
        (filter (id: config.nodes.${id}.match.serialNumber != "") ids);
      # Static addresses are claimed per entry, so the same IP twice on one node is caught too.
      addresses = concatLists (map (id: map (cl: let ip = net.parseIp cl.address; in {
          key = net.ipKey ip; owner = cl.at.address; path = cl.at.address;
          label = builtins.replaceStrings [ ".address" ] [ "" ] cl.at.address; text = cl.address; })
        (filter (cl: net.parseIp cl.address != null && (prefixes.${cl.network} or null) != null) claims.${id})) ids);
    in
    shared hostnames (e: others: "${str e.key} is also the hostname of ${concatStringsSep ", " others}")
    ++ shared macs (e: others: "${str e.key} is also claimed by ${concatStringsSep ", " (uniq others)}")
    ++ shared uuids (e: others: "${str e.key} is also claimed by ${concatStringsSep ", " others}")
    ++ shared serials (e: others: "${str e.key} is also claimed by ${concatStringsSep ", " others}")
    ++ shared addresses (e: others: "${e.text} is also assigned to ${concatStringsSep ", " others}");

  # ------------------------------------------------------------------------------------------
  # host deployments and service policies, against the expected fleet

  describeIds = ids: let n = length ids; shown = genList (i: elemAt ids i) (if n > 8 then 8 else n); in
    if n == 0 then "none" else concatStringsSep ", " shown + (if n > 8 then ", … (${toString n} in all)" else "");

  selectorRefChecks = path: sel:
    eachI sel.classes (i: v: ref "${path}.classes[${toString i}]" v "node class" config.nodeClasses true)
    ++ eachI sel.pools (i: v: ref "${path}.pools[${toString i}]" v "pool" config.pools true)
    ++ labelProblems "${path}.matchLabels" sel.matchLabels
    ++ eachI sel.nodeIds (i: id: when (fleet.idsComplete && !(elem id fleet.knownIds))
      "${path}.nodeIds[${toString i}]: unknown node ${str id} (known: ${describeIds fleet.knownIds})");

  storePath = p: match "/nix/store/[0-9a-df-np-sv-z]{32}-[^/]+" p != null;

  hostDeploymentChecks = each config.hostDeployments (name: d:
    let
      path = "hostDeployments.${name}";
      sel = d.selector; t = d.target;
      selEmpty = sel.nodeIds == [ ] && sel.classes == [ ] && sel.pools == [ ] && sel.matchLabels == { };
      count = fleet.total sel (_: true);
      fa = templateInfo t.flakeAttr [ "node_id" "hostname" ];
      hc = d.healthCheck;
      mu = d.maxUnavailable;
      refProblems = selectorRefChecks "${path}.selector" sel;
    in
    nameProblems "hostDeployments" name
    # The proto rejects an empty selector unless allNodes is set, so a typo cannot target the
    # whole fleet.
    ++ when (selEmpty && !sel.allNodes) "${path}.selector: empty; name nodeIds, classes, pools or matchLabels, or set allNodes = true"
    ++ refProblems
    ++ when (refProblems == [ ] && !(selEmpty && !sel.allNodes) && count == 0)
      "${path}.selector: selects no node (fixed nodes and enrollment rules with their class, pool and labels)"
    ++ when (t.systemPath == "" && t.nodeSystemPaths == { } && t.flakeRef == "") "${path}.target: set systemPath, nodeSystemPaths or flakeRef"
    ++ when (t.systemPath != "" && !storePath t.systemPath) "${path}.target.systemPath: ${str t.systemPath} is not a /nix/store path"
    ++ each t.nodeSystemPaths (id: p:
      when (!storePath p) "${path}.target.nodeSystemPaths.${id}: ${str p} is not a /nix/store path"
      ++ when (fleet.idsComplete && !(elem id fleet.knownIds)) "${path}.target.nodeSystemPaths.${id}: unknown node ${str id}")
    ++ when (t.flakeRef != "" && match ".*[[:space:]#].*" t.flakeRef != null) "${path}.target.flakeRef: ${str t.flakeRef} must not contain whitespace or \"#\""
    ++ when (t.flakeAttr != "" && fa.problem != null) "${path}.target.flakeAttr: ${fa.problem}"
    ++ (if hc == null then [ ] else
        when ((if hc.command == null then 0 else 1) + (if hc.http == null then 0 else 1) != 1) "${path}.healthCheck: set exactly one of command or http"
        ++ when (hc.command != null && hc.command.argv == [ ]) "${path}.healthCheck.command.argv: must name a program"
        ++ when (hc.http != null && !net.isHttpUrl hc.http.url) "${path}.healthCheck.http.url: ${str hc.http.url} is not an absolute http(s) URL")
    ++ when (mu ? count && mu.count < 1) "${path}.maxUnavailable: must be at least 1 node"
    ++ when (mu ? percent && (mu.percent < 1 || mu.percent > 100)) "${path}.maxUnavailable: a percentage must be between 1% and 100%"
    ++ when (d.drainTimeout != null && !d.drain) "${path}.drainTimeout: set without drain = true"
    ++ (if d.rolloutOrder == null then [ ] else eachI d.rolloutOrder.failureDomains (i: fd:
        when (elem fd (genList (j: elemAt d.rolloutOrder.failureDomains j) i)) "${path}.rolloutOrder.failureDomains[${toString i}]: ${str fd} is listed twice"))
    ++ eachI d.substituters (i: s: when (!net.isHttpUrl s && match "(file|s3|ssh|ssh-ng)://.+" s == null)
      "${path}.substituters[${toString i}]: ${str s} is not a substituter URL"));

  # A node follows one deployment: two deployments selecting it would fight over its system.
  hostDeploymentOverlaps =
    let
      names = attrNames config.hostDeployments;
      sel = n: config.hostDeployments.${n}.selector;
      # Only certain overlaps: a shape with an unknown class or pool is reported on its own.
      overlap = a: b: filter (s: !s.uncertain && fleet.matchCount (sel a) s != 0 && fleet.matchCount (sel b) s != 0
          && (let ia = fleet.matchedIds (sel a) s; ib = fleet.matchedIds (sel b) s;
              in ((sel a).nodeIds == [ ] && (sel b).nodeIds == [ ]) || (ia != null && ib != null && any (x: elem x ib) ia))) fleet.shapes;
    in concatLists (genList (i: let a = elemAt names i; in concatLists (map (b:
      let o = overlap a b; in when (o != [ ])
        "hostDeployments.${b}.selector: also selects ${(head o).source} (selected by hostDeployments.${a}); a node follows one deployment")
      (genList (j: elemAt names (i + 1 + j)) (length names - i - 1)))) (length names));

  envName = k: match "[A-Za-z_][A-Za-z0-9_]*" k != null;

  servicePolicyChecks = each config.servicePolicies (name: s:
    let
      path = "servicePolicies.${name}";
      sel = s.selector;
      refProblems = selectorRefChecks "${path}.selector" sel;
      matching = filter (sh: fleet.matchCount sel sh != 0) fleet.shapes;
      eligible = filter (sh: sh.runNodeAgent) matching;
      hasKey = sh: key: sh.uncertain || (if key == "failure_domain" || key == "" then sh.failureDomain != "" else hasAttr key sh.labels);
      spreadable = filter (sh: all (c: hasKey sh c.key) s.spread) eligible;
      capacity = fleet.sumCounts (map (fleet.matchCount sel) spreadable);
      tpl = s.template;
      hc = tpl.healthCheck;
      probes = if hc == null then 0 else builtins.foldl' (a: p: a + (if hc.${p} == null then 0 else 1)) 0 [ "command" "http" "tcp" ];
    in
    nameProblems "servicePolicies" name
    ++ refProblems
    ++ (if refProblems != [ ] || s.replicas == 0 then [ ]
        else if matching == [ ] then [ "${path}.selector: selects no node" ]
        else if eligible == [ ] then [ "${path}.selector: selects only nodes whose class does not run the node-agent (runNodeAgent = false): ${concatStringsSep ", " (map (x: x.source) matching)}" ]
        else if spreadable == [ ] then [ "${path}.spread: no selected node has ${concatStringsSep " and " (map (c: if c.key == "failure_domain" || c.key == "" then "a failure domain" else "label ${str c.key}") s.spread)}, and nodes without the spread key get no replicas; set failureDomain / failureDomainLabel or `spread = [ ]`" ]
        # Nix asks for one replica per node: two replicas sharing a node share its failure.
        else when (capacity != null && s.replicas > capacity)
          "${path}.replicas: ${toString s.replicas} replicas but at most ${toString capacity} matching node${if capacity == 1 then "" else "s"} can run them (${concatStringsSep ", " (map (x: x.source) spreadable)})")
    ++ eachI s.spread (i: c: when (c.key != "failure_domain" && c.key != "" && net.labelKeyProblem c.key != null) "${path}.spread[${toString i}].key: ${net.labelKeyProblem c.key}")
    ++ when (tpl.command == [ ]) "${path}.template.command: must name a program"
    ++ when (tpl.command != [ ] && substring 0 1 (head tpl.command) != "/") "${path}.template.command[0]: ${str (head tpl.command)} must be an absolute path (e.g. a /nix/store path)"
    ++ each tpl.env (k: _: when (!envName k) "${path}.template.env.${k}: not a valid environment variable name")
    ++ when (tpl.workingDir != "" && substring 0 1 tpl.workingDir != "/") "${path}.template.workingDir: ${str tpl.workingDir} must be an absolute path"
    ++ (if hc == null then [ ] else
        when (probes != 1) "${path}.template.healthCheck: set exactly one of command, http or tcp"
        ++ when (hc.command != null && hc.command.argv == [ ]) "${path}.template.healthCheck.command.argv: must name a program"
        ++ when (hc.http != null && !net.isHttpUrl hc.http.url) "${path}.template.healthCheck.http.url: ${str hc.http.url} is not an absolute http(s) URL"
        ++ when (hc.tcp != null && (hc.tcp.port < 1 || hc.tcp.port > 65535)) "${path}.template.healthCheck.tcp.port: must be between 1 and 65535"));
in
clusterChecks
++ networkChecks ++ networkOverlaps
++ installProfileChecks
++ diskPolicyChecks
++ nodeClassChecks
++ poolChecks
++ ruleChecks ++ reachabilityChecks
++ nodeChecks ++ uniquenessChecks
++ hostDeploymentChecks ++ hostDeploymentOverlaps
++ servicePolicyChecks
