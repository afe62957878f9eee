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
      deployerCaFile = common.secretFile "PEM CA bundle verifying the deployer, normally the cluster CA (ULTRACLOUD_DEPLOYER_CA); unset: plaintext, loopback only.";
      tokenFile = common.secretFile "Operator token for calls to the deployer and fleet-scheduler (ULTRACLOUD_DEPLOYER_TOKEN_FILE).";
      installerImage = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "/etc/ultracloud/installer-kexec.json";
        description = ''
          JSON file describing the installer kernel and initrd (URLs the hosts fetch, SHA-256s, kernel
          command line) that reinstall and rescue boot by kexec (ULTRACLOUD_INSTALLER_IMAGE). Unset:
          such requests are reported as not relayable and the installer is booted by hand.
        '';
      };
    };

  config = lib.mkIf cfg.enable (lib.mkMerge [
    (common.daemonConfig {
      component = "host-controller";
      inherit cfg;
      description = "UltraCloud host-controller";
      environment = {
        ULTRACLOUD_DEPLOYER = cfg.deployerAddress;
        ULTRACLOUD_FLEET_SCHEDULER = cfg.fleetSchedulerAddress;
      } // common.streamServerEnvironment // lib.optionalAttrs (cfg.installerImage != null) {
        ULTRACLOUD_INSTALLER_IMAGE = cfg.installerImage;
      };
      credentials = common.serverCredentials cfg // {
        "token" = { file = cfg.tokenFile; env = "ULTRACLOUD_DEPLOYER_TOKEN_FILE"; };
        "deployer-ca.pem" = { file = cfg.deployerCaFile; env = "ULTRACLOUD_DEPLOYER_CA"; };
      };
      serviceConfig = common.serviceHardening;
    })
    {
      systemd.services.ultracloud-host-controller.after =
        lib.optional config.services.postgresql.enable "postgresql.service";
    }
  ]);
}
