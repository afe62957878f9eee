#!/usr/bin/env bash
# Writes the lab's generated documents into ./generated, so a machine without Nix can start the
# lab (`npm start`) from them. test/integration/nix-schema.test.ts fails when they differ from
# the evaluation, so run this after every change to cluster.nix or nix/lib.
#
#   nix/examples/lab6/generate.sh           regenerate
#   nix/examples/lab6/generate.sh --check   exit 1 (and name the files) if any is out of date
#
# cluster-state.json      ClusterState, for ClusterService.ApplyClusterState
# host-deployments.json   ApplyHostDeploymentsRequest body: { "hostDeployments": [...] }
# service-policies.json   ApplyServiceSpecsRequest body: { "serviceSpecs": [...] }
# test-topology.json      nodes, MACs, addresses and networks for the end-to-end lab
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/generated"
check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

for tool in nix-instantiate node; do
  command -v "$tool" >/dev/null || { echo "generate.sh: $tool not found (Nix: apt-get install nix-bin)" >&2; exit 1; }
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# One evaluation for all four documents: validation runs once and either all files change or none.
nix-instantiate --eval --strict --json --argstr dir "$here" --expr '
  { dir }:
  let lab = import (/. + dir);
  in {
    "cluster-state.json" = lab.clusterState;
    "host-deployments.json" = { hostDeployments = lab.hostDeployments; };
    "service-policies.json" = { serviceSpecs = lab.servicePolicies; };
    "test-topology.json" = lab.testTopology;
  }' > "$tmp/all.json"

# Two-space JSON with a final newline; nix-instantiate already sorts object keys.
node -e '
  const fs = require("fs");
  const [all, dir] = process.argv.slice(1);
  for (const [name, value] of Object.entries(JSON.parse(fs.readFileSync(all, "utf8")))) {
    fs.writeFileSync(`${dir}/${name}`, JSON.stringify(value, null, 2) + "\n");
  }' "$tmp/all.json" "$tmp"

stale=()
for f in cluster-state.json host-deployments.json service-policies.json test-topology.json; do
  if ! cmp -s "$tmp/$f" "$out/$f" 2>/dev/null; then stale+=("$f"); fi
done

if $check; then
  if ((${#stale[@]} > 0)); then
    echo "out of date in $out: ${stale[*]} (run $0)" >&2
    exit 1
  fi
  exit 0
fi

mkdir -p "$out"
for f in "${stale[@]}"; do cp "$tmp/$f" "$out/$f"; echo "wrote $out/$f"; done
((${#stale[@]} > 0)) || echo "up to date: $out"
