# services.ultracloud.nix-agent: the per-host rollout agent (`ultracloud nix-agent`). It realises
# the target system, sets the system profile and runs switch-to-configuration, so it runs as root
# and is never restarted by the switch it is performing.
{ config, lib, pkgs, ... }:
let
  common = import ./common.nix { inherit lib pkgs; };
  cfg = config.services.ultracloud.nix-agent;
in
{
  options.services.ultracloud.nix-agent =
    common.processOptions {
      component = "nix-agent";
      what = "the UltraCloud nix-agent (host rollouts from the host-controller)";
    }
    // common.agentTlsOptions
    // {
      hostController = lib.mkOption {
        type = lib.types.str;
        example = "10.44.0.2:7000";
        description = "host:port of the host-controller the agent connects to (ULTRACLOUD_HOST_CONTROLLER).";
      };
      systemProfile = lib.mkOption {
        type = lib.types.str;
        default = "/nix/var/nix/profiles/system";
        description = "Nix profile holding the system generations (ULTRACLOUD_SYSTEM_PROFILE).";
      };
    };

  config = lib.mkIf cfg.enable (lib.mkMerge [
    (common.daemonConfig {
      component = "nix-agent";
      inherit cfg;
      description = "UltraCloud nix-agent";
      environment = {
        ULTRACLOUD_HOST_CONTROLLER = cfg.hostController;
        ULTRACLOUD_SYSTEM_PROFILE = cfg.systemProfile;
      };
      credentials = common.agentCredentials cfg;
      serviceConfig = {
        User = "root";
        # switch-to-configuration and a kexec into the installer outlive a stop of the agent.
        KillMode = "process";
        PrivateTmp = true;
        ProtectHome = "read-only";
      };
    })
    {
      systemd.services.ultracloud-nix-agent = {
        # A switch must not restart the agent performing it; the new agent starts on next boot
        # or when the agent re-executes itself after confirming the generation.
        restartIfChanged = false;
        path = [ config.nix.package config.systemd.package pkgs.kexec-tools ];
      };
    }
  ]);
}
