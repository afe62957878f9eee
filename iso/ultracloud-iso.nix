# The one generic UltraCloud installer image (docs/installer.md, "The ISO"). Every machine boots
# the same ISO; which deployer it reports to and the join token are read at boot by
# installer-launch.sh from the kernel command line or /iso/ultracloud/installer.env on the stick,
# never built in. Needs nixpkgs: the flake builds it as `nix build .#iso`, with the overlay that
# provides pkgs.ultracloud.
{ config, lib, pkgs, modulesPath, ... }:

let
  cfg = config.ultracloud.iso;
  launcher = pkgs.writeShellScript "ultracloud-installer-launch" (builtins.readFile ./installer-launch.sh);
in
{
  imports = [ "${modulesPath}/installer/cd-dvd/installation-cd-minimal.nix" ];

  options.ultracloud.iso.package = lib.mkOption {
    type = lib.types.package;
    default = pkgs.ultracloud;
    defaultText = lib.literalExpression "pkgs.ultracloud";
    description = "Package providing the `ultracloud` binary the installer service runs.";
  };

  config = {
    # root=LABEL=<volumeID> on the ISO's kernel command line is how the facts collector finds the
    # stick it booted from when /iso is not mounted, so the label is fixed and recognisable.
    isoImage.volumeID = lib.mkForce "ULTRACLOUD-INSTALLER";

    # Everything the installer runs: facts (lsblk, ip, ethtool, dmidecode, efibootmgr), the
    # install (disko, nixos-install) and reinstall/rescue without a BMC (kexec).
    environment.systemPackages = [ cfg.package ] ++ (with pkgs; [ disko nixos-install-tools kexec-tools ethtool dmidecode util-linux iproute2 efibootmgr ]);

    systemd.services.ultracloud-installer = {
      description = "UltraCloud installer: discover, fetch the install plan, install";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      path = [ cfg.package config.nix.package ] ++ (with pkgs; [ disko nixos-install-tools kexec-tools ethtool dmidecode util-linux iproute2 efibootmgr coreutils gnutar gzip openssh systemd ]);
      serviceConfig = {
        ExecStart = "${launcher} ${lib.getExe cfg.package} installer";
        # The installer polls the deployer itself; a restart covers a crash or a stick whose
        # installer.env was not readable yet.
        Restart = "always";
        RestartSec = 10;
        StandardOutput = "journal+console";
      };
    };

    # sshd is installed but not started: only a rescue plan starts it, with the operator keys the
    # plan carries. No passwords over SSH either way.
    services.openssh.enable = true;
    services.openssh.settings.PasswordAuthentication = false;
    services.openssh.settings.PermitRootLogin = "prohibit-password";
    systemd.services.sshd.wantedBy = lib.mkForce [ ];

    networking.useDHCP = lib.mkDefault true;
  };
}
