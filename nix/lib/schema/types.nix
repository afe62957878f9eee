# Structural types of the authoring schema: each type checks a Nix value's shape and returns the
# normalised value plus every problem found, so one evaluation reports all shape errors at once
# instead of stopping at the first. Semantic rules (references, addresses, uniqueness) live in
# checks.nix and run only on a structurally valid cluster, where they can trust the types.
let
  inherit (builtins)
    attrNames concatLists concatStringsSep filter genList hasAttr isAttrs isBool isFloat isInt
    isList isString length listToAttrs mapAttrs match toJSON typeOf elem;

  describe = v:
    if isString v || isInt v || isBool v || isFloat v || v == null then toJSON v
    else if isList v then "a list"
    else if isAttrs v then "an attribute set"
    else "a ${typeOf v}";

  # Error paths use the proto JSON spelling: `nodes.cp-1.match.macAddresses[0]`.
  sub = path: k: if path == "" then k else "${path}.${k}";

  ok = value: { inherit value; errors = [ ]; };
  bad = path: msg: { value = null; errors = [ "${path}: ${msg}" ]; };

  # A leaf type: `check` decides acceptance, `coerce` maps an accepted value to its normal form.
  leaf = { name, check, coerce ? (v: v), explain ? null }: {
    inherit name;
    normalise = path: v:
      if check v then ok (coerce v)
      else bad path (if explain != null then explain v else "expected ${name}, got ${describe v}");
  };

  intBetween = lo: hi: leaf {
    name = "an integer between ${toString lo} and ${toString hi}";
    check = v: isInt v && v >= lo && v <= hi;
  };

  pow = b: e: if e == 0 then 1 else b * pow b (e - 1);

  # Binary unit suffixes as disko/sgdisk read them; decimal "GB" is refused because disks are
  # sold in GB (10^9) and a silent factor of 1.07 would pick the wrong size.
  unitFactor = {
    "" = 1; B = 1;
    K = 1024; KiB = 1024;
    M = pow 1024 2; MiB = pow 1024 2;
    G = pow 1024 3; GiB = pow 1024 3;
    T = pow 1024 4; TiB = pow 1024 4;
  };
  parseBytes = s:
    let m = match "([0-9]+) ?([A-Za-z]*)" s;
    in if m == null || !(hasAttr (builtins.elemAt m 1) unitFactor) then null
       # fromJSON turns the digit run into an integer without a hand-written parser.
       else builtins.fromJSON (builtins.elemAt m 0) * unitFactor.${builtins.elemAt m 1};

  decimalHint = v: if isString v && match "[0-9]+ ?[kKMGT]B" v != null
    then " (decimal units are ambiguous: write GiB/MiB for binary sizes)" else "";

  durationFactor = { s = 1; m = 60; h = 3600; };
  parseDuration = s:
    let m = match "([0-9]+)(s|m|h)" s;
    in if m == null then null else builtins.fromJSON (builtins.elemAt m 0) * durationFactor.${builtins.elemAt m 1};
in
rec {
  inherit describe leaf sub;

  string = leaf { name = "a string"; check = isString; };
  bool = leaf { name = "a boolean"; check = isBool; };
  int = leaf { name = "an integer"; check = isInt; };
  int32 = intBetween (-2147483648) 2147483647;
  uint32 = intBetween 0 4294967295;
  # Nix integers are signed 64-bit, so the largest uint64 a Nix file can write is 2^63-1.
  uint64 = intBetween 0 9223372036854775807;
  inherit intBetween;

  # Lowercased on input: MACs are copied from stickers and BIOS screens in upper case, and the
  # proto wants lowercase colon-separated form. The format itself is checked in checks.nix.
  mac = leaf { name = "a MAC address string"; check = isString; coerce = builtins.replaceStrings
    [ "A" "B" "C" "D" "E" "F" ] [ "a" "b" "c" "d" "e" "f" ]; };

  # Bytes: an integer, or a string with a binary unit ("16GiB", "512M").
  bytes = leaf {
    name = "a byte count";
    check = v: (isInt v && v >= 0) || (isString v && parseBytes v != null);
    coerce = v: if isInt v then v else parseBytes v;
    explain = v: "expected a byte count (an integer, or a string like \"512MiB\", \"16G\"; K/M/G/T are binary), got ${describe v}${decimalHint v}";
  };

  # Partition size: bytes as above, or "rest"/"100%" (all remaining space), normalised to 0.
  partitionSize = leaf {
    name = "a partition size";
    check = v: (isInt v && v >= 0) || (isString v && (v == "rest" || v == "100%" || parseBytes v != null));
    coerce = v: if isInt v then v else if v == "rest" || v == "100%" then 0 else parseBytes v;
    explain = v: "expected a size (bytes, \"1GiB\", \"512M\", or \"rest\"), got ${describe v}${decimalHint v}";
  };

  # Durations: seconds as an integer, or "90s", "5m", "1h"; normalised to proto3 JSON ("300s").
  duration = leaf {
    name = "a duration";
    check = v: (isInt v && v >= 0) || (isString v && parseDuration v != null);
    coerce = v: "${toString (if isInt v then v else parseDuration v)}s";
    explain = v: "expected a duration (seconds as an integer, or \"90s\", \"5m\", \"1h\"), got ${describe v}";
  };

  # A short lowercase name mapped to the proto enum value name.
  enum = values: leaf {
    name = "one of ${concatStringsSep ", " (map toJSON (attrNames values))}";
    check = v: isString v && hasAttr v values;
    coerce = v: v;
  };

  nullOr = t: {
    name = "null or ${t.name}";
    inner = t;
    normalise = path: v: if v == null then ok null else t.normalise path v;
  };

  listOf = t: {
    name = "a list of ${t.name}";
    inner = t;
    shape = "[]";
    normalise = path: v:
      if !isList v then bad path "expected a list, got ${describe v}"
      else
        let rs = genList (i: t.normalise "${path}[${toString i}]" (builtins.elemAt v i)) (length v);
        in { value = map (r: r.value) rs; errors = concatLists (map (r: r.errors) rs); };
  };

  # Named objects: the attribute name is the object's name and appears in every error path.
  attrsOf = t: {
    name = "an attribute set of ${t.name}";
    inner = t;
    shape = ".<name>";
    normalise = path: v:
      if !isAttrs v then bad path "expected an attribute set, got ${describe v}"
      else
        let rs = mapAttrs (k: x: t.normalise (sub path k) x) v;
        in { value = mapAttrs (_: r: r.value) rs; errors = concatLists (map (k: rs.${k}.errors) (attrNames rs)); };
  };

  # A record with declared fields. Each field: { type; default ? …; required ? false; doc; }.
  # Unknown fields are errors, so a typo (`clas = "worker"`) cannot silently fall back to a
  # default.
  submodule = fields: {
    name = "an attribute set";
    inherit fields;
    normalise = path: v:
      if !isAttrs v then bad path "expected an attribute set, got ${describe v}"
      else
        let
          unknown = filter (k: !hasAttr k fields) (attrNames v);
          unknownErrors = map (k: "${sub path k}: unknown field (known: ${concatStringsSep ", " (attrNames fields)})") unknown;
          field = k: f:
            if hasAttr k v && !(v.${k} == null && (f.default or 0) == null) then f.type.normalise (sub path k) v.${k}
            else if f.required or false then bad (sub path k) "required"
            # Defaults go through the type too, so a defaulted record gets its own defaults.
            else if (f.default or null) == null then ok null
            else f.type.normalise (sub path k) f.default;
          rs = mapAttrs field fields;
        in {
          value = mapAttrs (_: r: r.value) rs;
          errors = unknownErrors ++ concatLists (map (k: rs.${k}.errors) (attrNames rs));
        };
  };
}
