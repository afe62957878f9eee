# The cluster exporter: turns the author's cluster attrset and this machine's node id into its
# NixOS settings (hostname, network, disko layout, agents), all computed by
# nix/lib/cluster-schema.nix. This module only copies them over. disko's NixOS module must be
# imported next to it (the flake does).
{ config, lib, ... }:
let
  schema = import ../lib/cluster-schema.nix;
  cfg = config.ultracloud;
  evaluated = schema.evalCluster cfg.cluster;
  node =
    evaluated.nodeConfigs.${cfg.nodeId}
      or (throw "ultracloud.nodeId: \"${cfg.nodeId}\" is not a fixed node of cluster ultracloud.cluster (fixed nodes: ${lib.concatStringsSep ", " (builtins.attrNames evaluated.nodeConfigs)})");
in
{
  imports = [ ./nix-agent.nix ./node-agent.nix ];

  options.ultracloud = {
    cluster = lib.mkOption {
      type = lib.types.attrs;
      example = lib.literalExpression "import ./nix/examples/lab6/cluster.nix";
      description = ''
        The cluster as its author wrote it (networks, installProfiles, diskPolicies, nodeClasses,
        pools, enrollmentRules, nodes, hostDeployments, servicePolicies; see docs/nix-schema.md).
        Validated by nix/lib/cluster-schema.nix: a mistake fails the build with the object and
        field it concerns.
      '';
    };
    nodeId = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "cp-1";
      description = ''
        The fixed node (a key of `nodes` in the cluster) this configuration is for. Null applies
        nothing to the machine, e.g. for a configuration that only reads `ultracloud.evaluated`.
      '';
    };
    evaluated = lib.mkOption {
      type = lib.types.attrs;
      readOnly = true;
      description = ''
        The schema's outputs for `ultracloud.cluster`: clusterState, hostDeployments,
        servicePolicies, nodeConfigs, installPlans, testTopology. For example
        `pkgs.writeText "cluster-state.json" (builtins.toJSON config.ultracloud.evaluated.clusterState)`
        for `services.ultracloud.deployer.clusterFile`.
      '';
    };
  };

  config = lib.mkMerge [
    { ultracloud.evaluated = evaluated; }
    (lib.mkIf (cfg.nodeId != null) {
      # hostName, domain, interfaces, defaultGateway, nameservers, search, timeServers, useDHCP.
      networking = node.networking;
      # Names the NIC by its permanent MAC (e.g. lan0), so `interfaces` does not depend on
      # kernel naming.
      systemd.network.links = node.systemd.network.links or { };
      disko.devices = node.disko.devices;
      services.ultracloud.nix-agent = {
        enable = node.ultracloud.agents.nixAgent;
        hostController = node.ultracloud.agents.hostControllerAddress;
      };
      services.ultracloud.node-agent = {
        enable = node.ultracloud.agents.nodeAgent;
        fleetScheduler = node.ultracloud.agents.fleetSchedulerAddress;
      };
    })
  ];
}
