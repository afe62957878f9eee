# HostDeployment messages (proto/ultracloud/system/v1/system.proto) as proto3 JSON, sorted by
# name: the `hostDeployments` of an ApplyHostDeploymentsRequest.
{ config, enums }:
let
  inherit (builtins) attrNames;
  inherit (import ./proto-json.nix) compact optional;

  deployment = name: d: compact {
    inherit name;
    selector = compact {
      inherit (d.selector) nodeIds pools matchLabels allNodes;
      nodeClasses = d.selector.classes;
    };
    target = compact { inherit (d.target) systemPath nodeSystemPaths flakeRef flakeAttr; };
    activationStrategy = enums.activationStrategy.${d.activationStrategy};
    healthCheck = if d.healthCheck == null then null else
      let h = d.healthCheck; in
      compact {
        command = if h.command == null then null else compact { inherit (h.command) argv env timeout; };
        http = if h.http == null then null else compact { inherit (h.http) url expectedStatus timeout; };
        inherit (h) interval;
      }
      # optional uint32: an explicit 0 (single attempt) differs from unset (3 retries).
      // optional "retries" h.retries;
    rollbackPolicy = if d.rollbackPolicy == null then null else
      compact { inherit (d.rollbackPolicy) activationTimeout confirmTimeout rebootTimeout; }
      // optional "autoRollback" d.rollbackPolicy.autoRollback;
    maxUnavailable = d.maxUnavailable;
    inherit (d) failureBudget drain drainTimeout paused substituters;
    rolloutOrder = if d.rolloutOrder == null then null else compact {
      byFailureDomain = enums.failureDomainOrdering.${d.rolloutOrder.byFailureDomain};
      inherit (d.rolloutOrder) failureDomains;
    };
  };
in
map (name: deployment name config.hostDeployments.${name}) (attrNames config.hostDeployments)
