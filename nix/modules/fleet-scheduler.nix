# services.ultracloud.fleet-scheduler: ServiceSpecs, placements and instance state, pushed to the
# node-agents (`ultracloud fleet-scheduler`, default port 7003).
{ config, lib, pkgs, ... }:
let
  common = import ./common.nix { inherit lib pkgs; };
  cfg = config.services.ultracloud.fleet-scheduler;
in
{
  options.services.ultracloud.fleet-scheduler =
    common.processOptions {
      component = "fleet-scheduler";
      what = "the UltraCloud fleet-scheduler";
    }
    // common.serviceOptions {
      component = "fleet-scheduler";
      defaultListen = "127.0.0.1:7003";
    }
    // common.serverTlsOptions
    // common.databaseOptions
    // {
      deployerAddress = lib.mkOption {
        type = lib.types.str;
        default = "127.0.0.1:7001";
        description = "host:port of the deployer, whose machines it watches (ULTRACLOUD_DEPLOYER).";
      };
      tokenFile = common.secretFile "Bearer token for calls to the deployer (ULTRACLOUD_TOKEN_FILE).";
    };

  config = lib.mkIf cfg.enable (lib.mkMerge [
    (common.daemonConfig {
      component = "fleet-scheduler";
      inherit cfg;
      description = "UltraCloud fleet-scheduler";
      environment = {
        ULTRACLOUD_DEPLOYER = cfg.deployerAddress;
      } // common.streamServerEnvironment;
      credentials = common.serverCredentials cfg // {
        "token" = { file = cfg.tokenFile; env = "ULTRACLOUD_TOKEN_FILE"; };
      };
      serviceConfig = common.serviceHardening;
    })
    {
      systemd.services.ultracloud-fleet-scheduler.after =
        lib.optional config.services.postgresql.enable "postgresql.service";
    }
  ]);
}
