# Helpers for writing proto3 JSON: default values are omitted, as the canonical proto3 JSON
# printer does, so a generated document compares equal to what a service echoes back. Fields
# whose presence carries meaning (optional bools, sub-messages that demand something by being
# present) are added by the callers with `optional`.
let
  inherit (builtins) attrNames filter listToAttrs map;
  isDefault = v: v == null || v == "" || v == [ ] || v == { } || v == false || v == 0;
in
{
  compact = attrs: listToAttrs (filter (nv: !isDefault nv.value) (map (n: { name = n; value = attrs.${n}; }) (attrNames attrs)));
  optional = name: value: if value == null then { } else { ${name} = value; };
}
