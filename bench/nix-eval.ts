// Nix schema at scale (issue 4, item 8): a generated 1,000-node cluster file evaluated with
// `nix-instantiate --eval --strict --json -A clusterState` (every validation rule runs: the
// document is only produced for a valid cluster), against evaluating the empty attribute set `{}`
// in the same run, which is what starting nix-instantiate costs. Runs alternate so both sides see
// the same machine load. Goal: the cluster evaluation's median under 5 s. Prints the medians and
// `ratio: <cluster / empty>` last.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const NIX_EVAL_GOAL_SECONDS = 5;

const SCHEMA = fileURLToPath(new URL('../nix/lib/cluster-schema.nix', import.meta.url));

export interface NixEvalBenchOptions {
  /** Nodes in the generated cluster. Default 1,000. */
  readonly nodes?: number;
  /** Timed evaluations per side. Default 5. */
  readonly runs?: number;
  /** Where result lines go. Default console.log. */
  readonly print?: (line: string) => void;
}

export interface NixEvalBenchResult {
  readonly nodes: number;
  readonly runs: number;
  readonly clusterMedianSeconds: number;
  readonly emptyMedianSeconds: number;
  readonly clusterCpuSeconds: number;
  readonly emptyCpuSeconds: number;
  readonly ratio: number;
  readonly goalMet: boolean;
}

/**
 * A cluster of `nodes` machines the way a data centre would write it: 5 % control-plane nodes and
 * the rest workers, all fixed by MAC with a static address, spread over 10 racks (pools and
 * failure domains); a rule for unlisted spares; a host deployment per class; two services.
 * Every node exercises the per-node checks (names, references, labels, MAC, address, uniqueness).
 */
export function benchClusterFile(nodes: number): string {
  const racks = 10;
  const control = Math.max(3, Math.floor(nodes / 20));
  const workers = nodes - control;
  const lines = [
    '{',
    '  cluster = { name = "bench"; domain = "bench.example.org"; deployerAddress = "10.64.0.2:7001"; };',
    '  networks.dc = { cidr = "10.64.0.0/16"; gateway = "10.64.0.1"; dnsServers = [ "10.64.0.1" ]; addressMode = "static"; addressPool = { start = "10.64.200.1"; end = "10.64.250.254"; }; };',
    '  installProfiles.node = { flakeRef = "github:example/infra"; diskPolicy = "ssd"; network = "dc"; };',
    '  diskPolicies.ssd = {',
    '    rootDeviceHints = { size = ">= 200"; rotational = false; };',
    '    layout.partitions = [',
    '      { name = "ESP"; size = "1GiB"; type = "esp"; filesystem = "vfat"; mountpoint = "/boot"; }',
    '      { name = "root"; filesystem = "ext4"; mountpoint = "/"; }',
    '    ];',
    '  };',
    '  nodeClasses = { control = { installProfile = "node"; }; worker = { installProfile = "node"; runNodeAgent = true; }; };',
    '  pools = {',
    ...Array.from({ length: racks }, (_, r) => `    rack-${r} = { labels."topology.example.org/rack" = "rack-${r}"; };`),
    '  };',
    '  enrollmentRules.spares = { selector.macPatterns = [ "52:54:01:*" ]; class = "worker"; pool = "rack-0"; nodeIdTemplate = "spare-{index}"; };',
    '  nodes = {',
  ];
  for (let i = 0; i < nodes; i++) {
    const mac = ['52', '54', '00', (i >> 16) & 255, (i >> 8) & 255, i & 255].map((o) => (typeof o === 'string' ? o : o.toString(16).padStart(2, '0'))).join(':');
    const rack = `rack-${i % racks}`;
    const address = `10.64.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;
    const cls = i < control ? 'control' : 'worker';
    lines.push(`    n${String(i).padStart(5, '0')} = { class = "${cls}"; pool = "${rack}"; failureDomain = "${rack}"; mac = "${mac}"; address = "${address}"; };`);
  }
  lines.push(
    '  };',
    '  hostDeployments = {',
    '    control-os = { selector.classes = [ "control" ]; target.flakeRef = "github:example/infra"; };',
    '    workers-os = { selector.classes = [ "worker" ]; target.flakeRef = "github:example/infra"; maxUnavailable = "10%"; drain = true; };',
    '  };',
    '  servicePolicies = {',
    `    api = { replicas = ${Math.min(100, workers)}; selector.classes = [ "worker" ]; template.command = [ "/run/current-system/sw/bin/api" ]; };`,
    `    exporter = { replicas = ${workers}; spread = [ ]; template.command = [ "/run/current-system/sw/bin/node_exporter" ]; };`,
    '  };',
    '}',
    '',
  );
  return lines.join('\n');
}

interface Evaluation {
  /** Wall-clock seconds of the whole nix-instantiate process. */
  readonly seconds: number;
  /** The evaluator's own CPU seconds (NIX_SHOW_STATS cpuTime); NaN when Nix did not report it. */
  readonly cpuSeconds: number;
  readonly stdout: string;
}

function nixInstantiate(args: readonly string[]): Promise<Evaluation> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    // NIX_SHOW_STATS prints the evaluator's statistics as JSON on stderr, CPU time included: on a
    // shared machine it separates the evaluation's own cost from time spent waiting for a CPU.
    const env = { ...process.env, NIX_SHOW_STATS: '1' };
    execFile('nix-instantiate', ['--eval', '--strict', '--json', ...args], { env, maxBuffer: 512 * 1024 * 1024 }, (error, stdout, stderr) => {
      if ((error as NodeJS.ErrnoException | null)?.code === 'ENOENT') reject(new Error('nix-instantiate not found: install Nix (apt-get install nix-bin) to run this benchmark'));
      else if (error) reject(new Error(`nix-instantiate ${args.join(' ')} failed:\n${stderr}`));
      else resolve({ seconds: (performance.now() - started) / 1000, cpuSeconds: statsCpuSeconds(stderr), stdout });
    });
  });
}

function statsCpuSeconds(stderr: string): number {
  try {
    const stats = JSON.parse(stderr.slice(stderr.indexOf('{'))) as { cpuTime?: unknown };
    return typeof stats.cpuTime === 'number' ? stats.cpuTime : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

function nixVersion(): Promise<string> {
  return new Promise((resolve) => {
    execFile('nix-instantiate', ['--version'], (error, stdout) => resolve(error ? 'nix-instantiate (version unknown)' : stdout.trim()));
  });
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export async function runNixEvalBench(options: NixEvalBenchOptions = {}): Promise<NixEvalBenchResult> {
  const nodes = options.nodes ?? 1000;
  const runs = options.runs ?? 5;
  const print = options.print ?? ((line: string) => console.log(line));
  const dir = await mkdtemp(join(tmpdir(), 'ultracloud-nix-eval-'));
  try {
    await writeFile(join(dir, 'cluster.nix'), benchClusterFile(nodes));
    await writeFile(join(dir, 'default.nix'), `(import ${JSON.stringify(SCHEMA)}).evalCluster (import ./cluster.nix)\n`);
    const cluster = ['-A', 'clusterState', dir];
    const empty = ['--expr', '{}'];

    // One untimed run each, so the first timed one does not pay for cold file caches; it also
    // checks that the cluster is valid and complete.
    const warm = JSON.parse((await nixInstantiate(cluster)).stdout) as { nodes?: Record<string, unknown> };
    const produced = Object.keys(warm.nodes ?? {}).length;
    if (produced !== nodes) throw new Error(`the generated cluster state has ${produced} nodes, expected ${nodes}`);
    await nixInstantiate(empty);

    const clusterRuns: Evaluation[] = [];
    const emptyRuns: Evaluation[] = [];
    for (let i = 0; i < runs; i++) {
      clusterRuns.push(await nixInstantiate(cluster));
      emptyRuns.push(await nixInstantiate(empty));
    }
    const clusterSeconds = clusterRuns.map((r) => r.seconds);
    const emptySeconds = emptyRuns.map((r) => r.seconds);
    const clusterMedianSeconds = median(clusterSeconds);
    const emptyMedianSeconds = median(emptySeconds);
    const clusterCpuSeconds = median(clusterRuns.map((r) => r.cpuSeconds));
    const emptyCpuSeconds = median(emptyRuns.map((r) => r.cpuSeconds));
    const ratio = clusterMedianSeconds / emptyMedianSeconds;
    const goalMet = clusterMedianSeconds < NIX_EVAL_GOAL_SECONDS;
    const range = (s: readonly number[]) => `min ${Math.min(...s).toFixed(3)} s, max ${Math.max(...s).toFixed(3)} s`;
    print(`nix-eval: ${nodes}-node cluster file, ${runs} runs per side, ${await nixVersion()}`);
    print(`  cluster  -A clusterState  median ${clusterMedianSeconds.toFixed(3)} s wall (${range(clusterSeconds)}), evaluator CPU ${clusterCpuSeconds.toFixed(3)} s`);
    print(`  empty    {}               median ${emptyMedianSeconds.toFixed(3)} s wall (${range(emptySeconds)}), evaluator CPU ${emptyCpuSeconds.toFixed(3)} s`);
    print(`goal: cluster evaluation < ${NIX_EVAL_GOAL_SECONDS} s ${goalMet ? 'met' : 'NOT met'}`);
    print(`ratio: ${ratio.toFixed(2)}`);
    return { nodes, runs, clusterMedianSeconds, emptyMedianSeconds, clusterCpuSeconds, emptyCpuSeconds, ratio, goalMet };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await runNixEvalBench({ nodes: Number(process.env.BENCH_NODES ?? 1000), runs: Number(process.env.BENCH_RUNS ?? 5) });
}
