# services.ultracloud.node-agent: runs the instances the fleet-scheduler places on this node as
# supervised child processes (`ultracloud node-agent`), under a dedicated user.
{ config, lib, pkgs, ... }:
let
  common = import ./common.nix { inherit lib pkgs; };
  cfg = config.services.ultracloud.node-agent;
in
{
  options.services.ultracloud.node-agent =
    common.processOptions {
      component = "node-agent";
      what = "the UltraCloud node-agent (service instances from the fleet-scheduler)";
    }
    // common.agentTlsOptions
    // {
      fleetScheduler = lib.mkOption {
        type = lib.types.str;
        example = "10.44.0.2:7000";
        description = "host:port of the fleet-scheduler the agent connects to (ULTRACLOUD_FLEET_SCHEDULER).";
      };
      user = lib.mkOption {
        type = lib.types.str;
        default = "ultracloud-node-agent";
        description = "User the agent and the instances it starts run as; created when left at the default.";
      };
    };

  config = lib.mkIf cfg.enable (lib.mkMerge [
    (common.daemonConfig {
      component = "node-agent";
      inherit cfg;
      description = "UltraCloud node-agent";
      environment.ULTRACLOUD_FLEET_SCHEDULER = cfg.fleetScheduler;
      credentials = common.agentCredentials cfg;
      serviceConfig = {
        User = cfg.user;
        Group = cfg.user;
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectControlGroups = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
      };
    })
    (lib.mkIf (cfg.user == "ultracloud-node-agent") {
      users.users.ultracloud-node-agent = {
        isSystemUser = true;
        group = "ultracloud-node-agent";
        description = "UltraCloud node-agent and its instances";
      };
      users.groups.ultracloud-node-agent = { };
    })
  ]);
}
