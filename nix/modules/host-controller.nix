# services.ultracloud.host-controller: HostDeployments, desired systems and rollouts to the
# nix-agents (`ultracloud host-controller`, default port 7002).
{ config, lib, pkgs, ... }:
let
  common = import ./common.nix { inherit lib pkgs; };
  cfg = config.services.ultracloud.host-controller;
in
{
  options.services.ultracloud.host-controller =
    common.processOptions {
      component = "host-controller";
      what = "the UltraCloud host-controller";
    }
    // common.serviceOptions {
      component = "host-controller";
      defaultListen = "127.0.0.1:7002";
    }
    // common.serverTlsOptions
    // common.databaseOptions
    // {
      deployerAddress = lib.mkOption {
        type = lib.types.str;
        default = "127.0.0.1:7001";
        description = "host:port of the deployer, whose machines it watches (ULTRACLOUD_DEPLOYER).";
      };
      fleetSchedulerAddress = lib.mkOption {
        type = lib.types.str;
        default = "127.0.0.1:7003";
        description = "host:port of the fleet-scheduler, asked to drain nodes (ULTRACLOUD_FLEET_SCHEDULER).";
      };
      tokenFile = common.secretFile "Bearer token for calls to the deployer and fleet-scheduler (ULTRACLOUD_TOKEN_FILE).";
    };

  config = lib.mkIf cfg.enable (lib.mkMerge [
    (common.daemonConfig {
      component = "host-controller";
      inherit cfg;
      description = "UltraCloud host-controller";
      environment = {
        ULTRACLOUD_DEPLOYER = cfg.deployerAddress;
        ULTRACLOUD_FLEET_SCHEDULER = cfg.fleetSchedulerAddress;
      };
      credentials = common.serverCredentials cfg // {
        "token" = { file = cfg.tokenFile; env = "ULTRACLOUD_TOKEN_FILE"; };
      };
      serviceConfig = common.serviceHardening;
    })
    {
      systemd.services.ultracloud-host-controller.after =
        lib.optional config.services.postgresql.enable "postgresql.service";
    }
  ]);
}
