# The cluster exporter: turns the author's cluster attrset into this machine's NixOS settings,
# all computed by nix/lib/cluster-schema.nix; this module only copies them over. Two modes:
#   ultracloud.nodeId = "<node>"      a fixed node's own system: hostname, network, disko layout
#                                     and agents from nodeConfigs.<node>;
#   ultracloud.nodeClass = "<class>"  a class's generic system (rule-enrolled nodes): domain,
#                                     disko layout and agents from classConfigs.<class>; hostname
#                                     and network come at boot from the node identity file the
#                                     installer wrote (ultracloud-node-identity.service, see
#                                     docs/nix-schema.md, "Generic class systems").
# disko's NixOS module must be imported next to it (the flake does).
{ config, lib, pkgs, ... }:
let
  schema = import ../lib/cluster-schema.nix;
  cfg = config.ultracloud;
  evaluated = schema.evalCluster cfg.cluster;
  node =
    evaluated.nodeConfigs.${cfg.nodeId}
      or (throw "ultracloud.nodeId: \"${cfg.nodeId}\" is not a fixed node of cluster ultracloud.cluster (fixed nodes: ${lib.concatStringsSep ", " (builtins.attrNames evaluated.nodeConfigs)})");
  cls =
    evaluated.classConfigs.${cfg.nodeClass}
      or (throw "ultracloud.nodeClass: \"${cfg.nodeClass}\" is not a node class of cluster ultracloud.cluster (node classes: ${lib.concatStringsSep ", " (builtins.attrNames evaluated.classConfigs)})");
  # Both set is refused by the assertion below; neither mode applies then.
  nodeMode = cfg.nodeId != null && cfg.nodeClass == null;
  classMode = cfg.nodeClass != null && cfg.nodeId == null;
  agents = a: {
    services.ultracloud.nix-agent = {
      enable = a.nixAgent;
      hostController = a.hostControllerAddress;
    };
    services.ultracloud.node-agent = {
      enable = a.nodeAgent;
      fleetScheduler = a.fleetSchedulerAddress;
    };
  };
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
        Mutually exclusive with `nodeClass`.
      '';
    };
    nodeClass = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "worker";
      description = ''
        The node class (a key of `nodeClasses`) whose generic system this is, for machines that
        enrollment rules name only at enrollment. Applies the class's domain, disko layout and
        agents; the node's id, hostname and addresses are read at boot from
        /var/lib/ultracloud/node.json, written by the installer (docs/nix-schema.md, "Generic
        class systems"). Mutually exclusive with `nodeId`.
      '';
    };
    evaluated = lib.mkOption {
      type = lib.types.attrs;
      readOnly = true;
      description = ''
        The schema's outputs for `ultracloud.cluster`: clusterState, hostDeployments,
        servicePolicies, nodeConfigs, classConfigs, installPlans, testTopology. For example
        `pkgs.writeText "cluster-state.json" (builtins.toJSON config.ultracloud.evaluated.clusterState)`
        for `services.ultracloud.deployer.clusterFile`.
      '';
    };
  };

  config = lib.mkMerge [
    {
      ultracloud.evaluated = evaluated;
      assertions = [{
        assertion = cfg.nodeId == null || cfg.nodeClass == null;
        message = "ultracloud.nodeId (\"${toString cfg.nodeId}\") and ultracloud.nodeClass (\"${toString cfg.nodeClass}\") are mutually exclusive: set nodeId for a fixed node's own system, or nodeClass for a class's generic system whose identity comes from /var/lib/ultracloud/node.json.";
      }];
    }
    (lib.mkIf nodeMode (lib.mkMerge [
      {
        # hostName, domain, interfaces, defaultGateway, nameservers, search, timeServers, useDHCP.
        networking = node.networking;
        # Names the NIC by its permanent MAC (e.g. lan0), so `interfaces` does not depend on
        # kernel naming.
        systemd.network.links = node.systemd.network.links or { };
        disko.devices = node.disko.devices;
      }
      (agents node.ultracloud.agents)
    ]))
    (lib.mkIf classMode (lib.mkMerge [
      {
        # domain, nameservers, search, timeServers; no hostName (set at boot) and no interfaces
        # (networkd files written at boot). Without an identity file the unit falls back to DHCP.
        networking = cls.networking // {
          hostName = "";
          useNetworkd = true;
          useDHCP = false;
        };
        disko.devices = cls.disko.devices;
        systemd.services.ultracloud-node-identity = {
          description = "UltraCloud node identity: hostname and network from /var/lib/ultracloud/node.json";
          wantedBy = [ "systemd-networkd.service" "multi-user.target" ];
          wants = [ "network-pre.target" ];
          before = [ "network-pre.target" "systemd-networkd.service" "shutdown.target" ];
          after = [ "local-fs.target" ];
          conflicts = [ "shutdown.target" ];
          unitConfig.DefaultDependencies = false;
          path = [ pkgs.jq pkgs.coreutils ];
          serviceConfig = {
            Type = "oneshot";
            RemainAfterExit = true;
            ExecStart = pkgs.writeShellScript "ultracloud-node-identity" (builtins.readFile ./node-identity.sh);
          };
        };
      }
      (agents cls.ultracloud.agents)
    ]))
  ];
}
