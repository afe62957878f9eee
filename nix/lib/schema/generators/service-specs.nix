# ServiceSpec messages (proto/ultracloud/service/v1/service.proto) as proto3 JSON, sorted by
# name: the `serviceSpecs` of an ApplyServiceSpecsRequest.
{ config, enums }:
let
  inherit (builtins) attrNames;
  inherit (import ./proto-json.nix) compact;

  spec = name: s:
    let t = s.template; h = t.healthCheck; in
    compact {
      inherit name;
      inherit (s) replicas;
      selector = compact {
        inherit (s.selector) pools matchLabels nodeIds;
        nodeClasses = s.selector.classes;
      };
      spread = map (c: compact { inherit (c) key maxSkew; }) s.spread;
      resources = if s.resources == null then null else compact s.resources;
      template = compact {
        inherit (t) command env workingDir stopGracePeriod;
        healthCheck = if h == null then null else compact {
          command = if h.command == null then null else compact { inherit (h.command) argv env; };
          http = if h.http == null then null else compact { inherit (h.http) url expectedStatus; };
          tcp = if h.tcp == null then null else compact { inherit (h.tcp) host port; };
          inherit (h) interval timeout failureThreshold initialDelay;
        };
        restartPolicy = enums.restartPolicy.${t.restartPolicy};
        restartBackoff = if t.restartBackoff == null then null else compact t.restartBackoff;
      };
    };
in
map (name: spec name config.servicePolicies.${name}) (attrNames config.servicePolicies)
