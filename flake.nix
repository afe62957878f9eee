# UltraCloud as a flake.
#
#   lib                           nix/lib/cluster-schema.nix: `lib.evalCluster cluster` validates a
#                                 cluster and returns clusterState, hostDeployments,
#                                 servicePolicies, nodeConfigs, classConfigs, installPlans,
#                                 testTopology.
#   nixosModules.<name>           services.ultracloud.{deployer,host-controller,fleet-scheduler,
#                                 nix-agent,node-agent} and the `ultracloud-cluster` exporter;
#   nixosModules.default          all of them, plus the overlay providing pkgs.ultracloud.
#   overlays.default, packages    the `ultracloud` and `deployer-ctl` binaries.
#   nixosConfigurations.<node>    one system per fixed node of nix/examples/lab6 (what its install
#                                 profile's flakeAttr `nixosConfigurations.{hostname}` names).
#   nixosConfigurations.<class>   one generic system per node class of the lab that enrollment
#                                 rules fill (`worker`): node identity from
#                                 /var/lib/ultracloud/node.json at boot, see docs/nix-schema.md.
#
# Your own cluster, in your flake:
#
#   inputs.ultracloud.url = "github:ultracloud/ultracloud";
#   outputs = { ultracloud, ... }: {
#     nixosConfigurations.cp-1 = ultracloud.inputs.nixpkgs.lib.nixosSystem {
#       system = "x86_64-linux";
#       modules = [
#         ultracloud.inputs.disko.nixosModules.disko
#         ultracloud.nixosModules.default
#         { ultracloud.cluster = import ./cluster.nix; ultracloud.nodeId = "cp-1"; }
#       ];
#     };
#   };
#
# The deployer's document comes from the same cluster file, with or without the flake:
#   nix-instantiate --eval --strict --json -A clusterState nix/examples/lab6
#   deployer-ctl apply -f nix/examples/lab6
# Everything under `lib` is pure builtins and evaluates without nixpkgs; the rest needs nixpkgs.
{
  description = "UltraCloud: bare-metal provisioning for NixOS clusters";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";
    disko = {
      url = "github:nix-community/disko";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs = { self, nixpkgs, disko }:
    let
      schema = import ./nix/lib/cluster-schema.nix;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # The npm package as it is: tsx runs the TypeScript sources, so there is no build step.
      # importNpmLock reads package-lock.json, so no dependency hash has to be kept in sync.
      ultracloudPackage = pkgs:
        pkgs.buildNpmPackage {
          pname = "ultracloud";
          version = (builtins.fromJSON (builtins.readFile ./package.json)).version;
          src = self;
          nodejs = pkgs.nodejs_22;
          npmDeps = pkgs.importNpmLock { npmRoot = self; };
          npmConfigHook = pkgs.importNpmLock.npmConfigHook;
          dontNpmBuild = true;
          meta = {
            description = "UltraCloud control plane, agents and deployer-ctl";
            license = pkgs.lib.licenses.asl20;
            mainProgram = "ultracloud";
          };
        };

      lab6 = import ./nix/examples/lab6/cluster.nix;

      lab6Evaluated = schema.evalCluster lab6;

      # One system of `cluster`: `mode` is { nodeId = …; } for a fixed node (the exporter sets
      # hostname, network, disks and agents) or { nodeClass = …; } for a class's generic system
      # (the exporter sets domain, disks and agents; identity comes at boot). Only the boot
      # loader and state version are chosen here.
      clusterSystem = cluster: mode:
        nixpkgs.lib.nixosSystem {
          system = "x86_64-linux";
          modules = [
            disko.nixosModules.disko
            self.nixosModules.default
            ({ modulesPath, ... }: {
              imports = [ (modulesPath + "/installer/scan/not-detected.nix") ];
              ultracloud = { inherit cluster; } // mode;
              boot.loader.systemd-boot.enable = true;
              boot.loader.efi.canTouchEfiVariables = true;
              hardware.enableRedistributableFirmware = true;
              system.stateVersion = "25.05";
            })
          ];
        };
    in
    {
      lib = schema;

      overlays.default = final: _prev: { ultracloud = ultracloudPackage final; };

      # Per system: the package; on x86_64-linux also the one generic installer image
      # (`nix build .#iso`, see docs/installer.md).
      packages = nixpkgs.lib.recursiveUpdate
        (forAllSystems (pkgs: rec {
          ultracloud = ultracloudPackage pkgs;
          default = ultracloud;
        }))
        {
          x86_64-linux.iso = (nixpkgs.lib.nixosSystem {
            system = "x86_64-linux";
            modules = [
              { nixpkgs.overlays = [ self.overlays.default ]; }
              ./iso/ultracloud-iso.nix
            ];
          }).config.system.build.isoImage;
        };

      nixosModules = {
        deployer = ./nix/modules/deployer.nix;
        host-controller = ./nix/modules/host-controller.nix;
        fleet-scheduler = ./nix/modules/fleet-scheduler.nix;
        nix-agent = ./nix/modules/nix-agent.nix;
        node-agent = ./nix/modules/node-agent.nix;
        ultracloud-cluster = ./nix/modules/ultracloud-cluster.nix;
        default = {
          imports = [ ./nix/modules ];
          nixpkgs.overlays = [ self.overlays.default ];
        };
      };

      nixosConfigurations =
        nixpkgs.lib.genAttrs (builtins.attrNames lab6Evaluated.nodeConfigs) (nodeId: clusterSystem lab6 { inherit nodeId; })
        // nixpkgs.lib.genAttrs
          (builtins.filter (c: lab6Evaluated.classConfigs.${c}.enrollmentRules != [ ]) (builtins.attrNames lab6Evaluated.classConfigs))
          (nodeClass: clusterSystem lab6 { inherit nodeClass; });
    };
}
