# UltraCloud's canonical cluster schema: the one place static intent is authored. Pure builtins,
# so it evaluates on a bare `nix-instantiate` without nixpkgs:
#
#   nix-instantiate --eval --strict --json -A clusterState nix/examples/lab6
#
# `evalCluster` validates an author's cluster file and generates, from that one input, every
# document the services and the NixOS configurations consume. docs/nix-schema.md describes each
# object and field; the proto files define the generated documents.
let
  inherit (builtins) attrNames concatLists concatStringsSep length mapAttrs;

  types = import ./schema/types.nix;
  fields = import ./schema/fields.nix types;
  enums = import ./schema/enums.nix;
  net = import ./schema/net.nix;
  disko = import ./schema/generators/disko.nix;

  # Structural problems (types, unknown fields, required fields) come first and alone: the
  # semantic checks assume well-typed input and would otherwise report noise.
  analyse = cluster:
    let shape = fields.clusterFile.normalise "" cluster;
    in if shape.errors != [ ] then { problems = shape.errors; }
       else
         let
           completed = import ./schema/complete.nix shape.value;
           fleet = import ./schema/fleet.nix completed.config;
         in {
           inherit (completed) config;
           inherit fleet;
           problems = import ./schema/checks.nix {
             inherit (completed) config claims shorthands;
             inherit fleet;
           };
         };

  fail = problems: throw (concatStringsSep "\n"
    ([ "invalid cluster (${toString (length problems)} problem${if length problems == 1 then "" else "s"}):" ] ++ problems));

  # Field paths of the authoring schema ("nodes.<name>.match.macAddresses"), for documentation
  # and the test that keeps docs/nix-schema.md complete.
  paths = path: type:
    if type ? fields then concatLists (map (k: [ "${path}.${k}" ] ++ paths "${path}.${k}" type.fields.${k}.type) (attrNames type.fields))
    else if type ? inner then paths "${path}${type.shape or ""}" type.inner
    else [ ];
  fieldPaths = concatLists (map (k: [ k ] ++ paths k fields.clusterFile.fields.${k}.type) (attrNames fields.clusterFile.fields));
in
rec {
  inherit enums;

  # Every problem of a cluster file as "path: message" lines; [ ] when it is valid.
  problems = cluster: (analyse cluster).problems;

  # The normalised cluster (defaults filled in, shorthands expanded), or a throw listing every
  # problem, one per line.
  validate = cluster:
    let a = analyse cluster; in if a.problems == [ ] then a.config else fail a.problems;

  # Default value of every optional field, per object (null: unset, the service's default).
  # Required fields have no default and are left out.
  defaults = mapAttrs (_: t: builtins.listToAttrs (map (k: { name = k; value = t.fields.${k}.default or null; })
    (builtins.filter (k: !(t.fields.${k}.required or false)) (attrNames t.fields)))) {
    inherit (fields) cluster network installProfile diskPolicy partition nodeClass pool machineSelector
      enrollmentRule node staticAddress hostDeployment servicePolicy;
  };

  # Byte-size helpers for cluster files (`memoryBytes = 16 * units.GiB`).
  units = rec { KiB = 1024; MiB = 1024 * KiB; GiB = 1024 * MiB; TiB = 1024 * GiB; };

  inherit fieldPaths;

  rootDevicePlaceholder = disko.placeholder;

  evalCluster = cluster:
    let
      a = analyse cluster;
      config = if a.problems == [ ] then a.config else fail a.problems;
      fleet = if a.problems == [ ] then a.fleet else fail a.problems;
    in
    rec {
      inherit config;
      clusterState = import ./schema/generators/cluster-state.nix { inherit config enums; };
      hostDeployments = import ./schema/generators/host-deployments.nix { inherit config enums; };
      servicePolicies = import ./schema/generators/service-specs.nix { inherit config enums; };
      nodeConfigs = import ./schema/generators/node-configs.nix { inherit config net disko; };
      classConfigs = import ./schema/generators/class-configs.nix { inherit config disko; };
      installPlans = import ./schema/generators/install-plans.nix { inherit config enums net disko clusterState; };
      testTopology = import ./schema/generators/test-topology.nix { inherit config net fleet; };
    };
}
