(import ../../lib/cluster-schema.nix).evalCluster (import ./cluster.nix)
