# All UltraCloud NixOS modules. `imports = [ ./nix/modules ];` makes every
# services.ultracloud.* option and the ultracloud.cluster exporter available; each service is off
# until enabled. The ultracloud package comes from the flake's overlay (or set `package`).
{
  imports = [
    ./deployer.nix
    ./host-controller.nix
    ./fleet-scheduler.nix
    ./nix-agent.nix
    ./node-agent.nix
    ./ultracloud-cluster.nix
  ];
}
