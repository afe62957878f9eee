# Parsers for the address formats the schema carries (IPv4/IPv6, CIDR, MAC, DNS names, label
# keys, host:port), written with builtins only. Each mirrors the deployer's rule in
# services/deployer/domain/cluster-state.ts, so a file that passes here passes there.
#
# An IP is { family = 4 | 6; groups; width; } with 4 groups of 8 bits or 8 groups of 16 bits:
# IPv6 does not fit a 64-bit Nix integer, and one group-wise representation serves both.
let
  inherit (builtins) all any concatStringsSep elemAt filter genList head isString length
    listToAttrs match split stringLength substring fromJSON;

  pow2 = genList (i: builtins.foldl' (a: _: a * 2) 1 (genList (x: x) i)) 17;
  p2 = n: elemAt pow2 n;

  hexDigit = listToAttrs (genList (i: { name = substring i 1 "0123456789abcdef"; value = i; }) 16)
    // listToAttrs (genList (i: { name = substring i 1 "ABCDEF"; value = i + 10; }) 6);
  parseHex = s: builtins.foldl' (acc: c: acc * 16 + hexDigit.${c}) 0
    (genList (i: substring i 1 s) (stringLength s));

  strings = l: filter isString l;
  splitOn = sep: s: strings (split sep s);

  parseIpv4Groups = s:
    let m = match "([0-9]{1,3})\\.([0-9]{1,3})\\.([0-9]{1,3})\\.([0-9]{1,3})" s;
        # Leading zeros are octal to some tools and decimal to others: refuse them.
        octet = t: if stringLength t > 1 && substring 0 1 t == "0" then null
                   else let n = fromJSON t; in if n > 255 then null else n;
        octets = if m == null then [ ] else map octet m;
    in if m == null || any (o: o == null) octets then null else octets;

  parseIpv6Groups = s:
    let
      halves = splitOn "::" s;
      groupsOf = t: if t == "" then [ ] else splitOn ":" t;
      raw = builtins.concatLists (map groupsOf halves);
      lastRaw = if raw == [ ] then "" else elemAt raw (length raw - 1);
      # An embedded IPv4 tail ("::ffff:10.0.0.1") stands for the last two groups.
      v4 = if match ".*\\..*" lastRaw != null then parseIpv4Groups lastRaw else null;
      hasV4 = match ".*\\..*" lastRaw != null;
      v4Groups = if v4 == null then [ ] else [ (elemAt v4 0 * 256 + elemAt v4 1) (elemAt v4 2 * 256 + elemAt v4 3) ];
      dropLast = l: genList (i: elemAt l i) (length l - 1);
      hexParts = l: if hasV4 && l != [ ] then dropLast l else l;
      headG = map parseHex (hexParts (groupsOf (head halves)));
      tailG = if length halves == 2 then map parseHex (hexParts (groupsOf (elemAt halves 1))) else [ ];
      v4InHead = length halves == 1;
      headAll = headG ++ (if v4InHead then v4Groups else [ ]);
      tailAll = tailG ++ (if v4InHead then [ ] else v4Groups);
      count = length headAll + length tailAll;
      hexOk = all (g: match "[0-9A-Fa-f]{1,4}" g != null) (if hasV4 then dropLast raw else raw);
    in
    if match "[0-9A-Fa-f:.]+" s == null || length halves > 2 || (hasV4 && v4 == null) || !hexOk then null
    else if length halves == 1 && match ".*::.*" s == null then (if count == 8 then headAll else null)
    else if count > 7 then null
    else headAll ++ genList (_: 0) (8 - count) ++ tailAll;
in
rec {
  parseIp = s:
    if !isString s then null
    else
      let v4 = parseIpv4Groups s; v6 = if v4 == null then parseIpv6Groups s else null;
      in if v4 != null then { family = 4; groups = v4; width = 8; text = s; }
         else if v6 != null then { family = 6; groups = v6; width = 16; text = s; }
         else null;

  bitsOf = ip: ip.width * length ip.groups;

  # A canonical key, equal for equal addresses however they are spelled.
  ipKey = ip: "${toString ip.family}/${concatStringsSep ":" (map toString ip.groups)}";

  # The part of group i that lies inside the first `len` bits (the network part).
  netPart = ip: len: i:
    let covered = let c = len - i * ip.width; in if c < 0 then 0 else if c > ip.width then ip.width else c;
    in builtins.div (elemAt ip.groups i) (p2 (ip.width - covered));
  hostPart = ip: len: i:
    let covered = let c = len - i * ip.width; in if c < 0 then 0 else if c > ip.width then ip.width else c;
        g = elemAt ip.groups i; m = p2 (ip.width - covered);
    in g - (builtins.div g m) * m;
  hostMax = ip: len: i:
    let covered = let c = len - i * ip.width; in if c < 0 then 0 else if c > ip.width then ip.width else c;
    in p2 (ip.width - covered) - 1;

  indices = ip: genList (i: i) (length ip.groups);

  samePrefix = len: a: b: a.family == b.family && all (i: netPart a len i == netPart b len i) (indices a);

  # -1, 0, 1 comparing two addresses of one family.
  compareIp = a: b:
    let go = i: if i == length a.groups then 0
                else let x = elemAt a.groups i; y = elemAt b.groups i;
                     in if x < y then -1 else if x > y then 1 else go (i + 1);
    in go 0;

  # { prefix } or { error } for "a.b.c.d/len".
  parseCidr = s:
    let
      m = if isString s then match "([^/]+)/([0-9]{1,3})" s else null;
      ip = if m == null then null else parseIp (head m);
      len = if m == null then 0 else fromJSON (elemAt m 1);
      bad = { error = "\"${s}\" is not an IPv4 or IPv6 prefix in CIDR notation (e.g. \"10.0.0.0/24\")"; };
    in
    if ip == null || len > bitsOf ip then bad
    else if any (i: hostPart ip len i != 0) (indices ip) then
      { error = "\"${s}\" has host bits set; the prefix is ${formatIp (ip // { groups = map (i: netPart ip len i * p2 (ip.width - (let c = len - i * ip.width; in if c < 0 then 0 else if c > ip.width then ip.width else c))) (indices ip); })}/${toString len}"; }
    else { prefix = ip // { length = len; inherit (ip) text; cidr = s; }; };

  formatIp = ip:
    if ip.family == 4 then concatStringsSep "." (map toString ip.groups)
    else concatStringsSep ":" (map toHex ip.groups);
  toHex = n: let d = builtins.div n 16; c = substring (n - d * 16) 1 "0123456789abcdef";
             in if d == 0 then c else toHex d + c;

  prefixContains = prefix: ip: samePrefix prefix.length prefix ip;

  # Why `ip` cannot be a host address in `prefix`, or null.
  hostAddressProblem = prefix: ip:
    let hostBits = bitsOf ip - prefix.length;
    in if !(prefixContains prefix ip) then "${ip.text} is outside the network's cidr ${prefix.cidr}"
       else if hostBits >= 2 && all (i: hostPart ip prefix.length i == 0) (indices ip) then "${ip.text} is the network address of ${prefix.cidr}"
       else if ip.family == 4 && hostBits >= 2 && all (i: hostPart ip prefix.length i == hostMax ip prefix.length i) (indices ip)
       then "${ip.text} is the broadcast address of ${prefix.cidr}"
       else null;

  prefixesOverlap = a: b:
    a.family == b.family && samePrefix (if a.length < b.length then a.length else b.length) a b;

  isMac = s: match "[0-9a-f]{2}(:[0-9a-f]{2}){5}" s != null;

  macProblem = mac:
    if !isMac mac then "\"${mac}\" is not a MAC address in colon-separated form (e.g. \"52:54:00:12:34:56\")"
    else if mac == "00:00:00:00:00:00" then "\"${mac}\" is the all-zero MAC address"
    # A set low bit of the first octet marks a group address, which no NIC owns.
    else if builtins.bitAnd (parseHex (substring 0 2 mac)) 1 == 1 then "\"${mac}\" is a multicast address, not a NIC's address"
    else null;

  # A glob that cannot line up with xx:xx:xx:xx:xx:xx silently matches nothing: check that the
  # literal text before the first and after the last "*" fits the MAC shape.
  macPatternProblem = pattern:
    let
      chars = s: genList (i: substring i 1 s) (stringLength s);
      fits = c: i: c == "?" || (if builtins.div i 3 * 3 + 2 == i then c == ":" else match "[0-9A-Fa-f]" c != null);
      never = "\"${pattern}\" can never match a MAC address (xx:xx:xx:xx:xx:xx)";
      parts = splitOn "\\*" pattern;
      starred = length parts > 1;
      prefix = head parts;
      suffix = elemAt parts (length parts - 1);
      literal = builtins.replaceStrings [ "*" ] [ "" ] pattern;
      fitsAt = s: offset: all (i: fits (substring i 1 s) (i + offset)) (genList (i: i) (stringLength s));
    in
    if pattern == "" then "empty pattern"
    else if match "[0-9A-Fa-f:*?]+" pattern == null then "\"${pattern}\" may only contain hex digits, \":\", \"*\" and \"?\" (e.g. \"52:54:00:*\")"
    else if !starred then (if stringLength pattern == 17 && fitsAt pattern 0 then null else never)
    else if stringLength literal > 17 || !(fitsAt prefix 0) || !(fitsAt suffix (17 - stringLength suffix)) then never
    else null;

  isObjectName = s: isString s && stringLength s <= 63 && match "[a-z0-9]([-a-z0-9]*[a-z0-9])?" s != null;
  objectNameRule = "a lowercase RFC 1123 label ([a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters)";
  isDnsName = s: stringLength s <= 253 && all isObjectName (splitOn "\\." s);

  # Kubernetes label syntax, which is what operators of label-driven schedulers expect.
  labelName = s: stringLength s <= 63 && match "[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?" s != null;
  labelKeyProblem = key:
    let m = match "([^/]*)/(.*)" key;
        prefixOk = m == null || isDnsName (head m);
        nameOk = labelName (if m == null then key else elemAt m 1);
    in if prefixOk && nameOk then null
       else "label key \"${key}\" must be [prefix/]name: prefix a lowercase DNS name, name at most 63 characters of [A-Za-z0-9-_.] starting and ending with a letter or digit";
  labelValueProblem = value:
    if value == "" || labelName value then null
    else "label value \"${value}\" must be empty or at most 63 characters of [A-Za-z0-9-_.] starting and ending with a letter or digit";

  hostPortProblem = text:
    let
      m6 = match "[[]([0-9A-Fa-f:.]+)[]]:([0-9]{1,5})" text;
      m = match "([A-Za-z0-9_.-]+):([0-9]{1,5})" text;
      lower = builtins.replaceStrings (chars "ABCDEFGHIJKLMNOPQRSTUVWXYZ") (chars "abcdefghijklmnopqrstuvwxyz");
      chars = s: genList (i: substring i 1 s) (stringLength s);
      ok = if m6 != null then (let ip = parseIp (head m6); in ip != null && ip.family == 6) && portOk (elemAt m6 1)
           else m != null && (isDnsName (lower (head m)) || parseIpv4Groups (head m) != null) && portOk (elemAt m 1);
      portOk = p: let n = fromJSON p; in n >= 1 && n <= 65535;
    in if ok then null else "\"${text}\" is not \"host:port\" (e.g. \"deployer.lab.example.org:7001\" or \"10.0.0.2:7001\")";

  isHttpUrl = s: match "https?://[^/[:space:]?#]+([/?#][^[:space:]]*)?" s != null;
}
