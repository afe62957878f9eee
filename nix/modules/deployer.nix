# services.ultracloud.deployer: discovery, enrollment, credentials and install plans
# (`ultracloud deployer`, default port 7001).
{ config, lib, pkgs, ... }:
let
  common = import ./common.nix { inherit lib pkgs; };
  cfg = config.services.ultracloud.deployer;
in
{
  options.services.ultracloud.deployer =
    common.processOptions {
      component = "deployer";
      what = "the UltraCloud deployer";
    }
    // common.serviceOptions {
      component = "deployer";
      defaultListen = "127.0.0.1:7001";
    }
    // common.serverTlsOptions
    // common.databaseOptions
    // {
      joinTokenFile = common.secretFile ''
        Installer join token (ULTRACLOUD_JOIN_TOKEN_FILE). Unset: the deployer creates
        join.token in its state directory on first start.
      '';
      secretsKeyFile = common.secretFile ''
        Base64 32-byte key sealing private keys at rest (ULTRACLOUD_SECRETS_KEY_FILE). Unset:
        secrets.key in the state directory, created on first start.
      '';
      installTimeout = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "30m";
        description = "An install silent this long fails (ULTRACLOUD_INSTALL_TIMEOUT; daemon default 60m).";
      };
      clusterFile = lib.mkOption {
        type = lib.types.nullOr lib.types.path;
        default = null;
        example = lib.literalExpression ''
          pkgs.writeText "cluster-state.json" (builtins.toJSON
            ((import "''${ultracloud}/nix/lib/cluster-schema.nix").evalCluster cluster).clusterState)
        '';
        description = ''
          ClusterState JSON document applied at start while the deployer holds no cluster state
          yet (ULTRACLOUD_CLUSTER_FILE). Later changes go through `deployer-ctl apply`.
        '';
      };
    };

  config = lib.mkIf cfg.enable (lib.mkMerge [
    (common.daemonConfig {
      component = "deployer";
      inherit cfg;
      description = "UltraCloud deployer";
      environment =
        lib.optionalAttrs (cfg.installTimeout != null) { ULTRACLOUD_INSTALL_TIMEOUT = cfg.installTimeout; }
        // lib.optionalAttrs (cfg.clusterFile != null) { ULTRACLOUD_CLUSTER_FILE = "${cfg.clusterFile}"; };
      credentials = common.serverCredentials cfg // {
        "join.token" = { file = cfg.joinTokenFile; env = "ULTRACLOUD_JOIN_TOKEN_FILE"; };
        "secrets.key" = { file = cfg.secretsKeyFile; env = "ULTRACLOUD_SECRETS_KEY_FILE"; };
      };
      serviceConfig = common.serviceHardening;
    })
    {
      systemd.services.ultracloud-deployer.after =
        lib.optional config.services.postgresql.enable "postgresql.service";
    }
  ]);
}
