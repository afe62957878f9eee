// `npm run bench [-- <name> [options]]`: runs one benchmark, or all of them. Benchmarks are
// never part of `npm test`; see docs/performance.md for what each measures and the figures.
import { runAgentStreams } from './agent-streams.js';
import { runBootstrapStorm } from './bootstrap-storm.js';
import { formatCredentialsBench, runCredentialsBench } from './credentials.js';
import { runNixEvalBench } from './nix-eval.js';

interface Benchmark {
  readonly summary: string;
  /** Option names (without dashes) this benchmark accepts, each taking a positive integer. */
  readonly options: readonly string[];
  /** Options taking a whole number within other bounds: [least, most]. */
  readonly ranges?: Readonly<Record<string, readonly [number, number]>>;
  /** Flags (without dashes) it accepts, taking no value; present means 1. */
  readonly flags?: readonly string[];
  run(options: Readonly<Record<string, number>>): Promise<void>;
}

const BENCHMARKS: Record<string, Benchmark> = {
  'bootstrap-storm': {
    summary: 'N installers run Discover, FetchPlan, 3x ReportInstallProgress (--reports 0-3) against the deployer on PostgreSQL, vs a bare grpc-js + one-upsert baseline; includes the credentials benchmark',
    options: ['machines', 'concurrency', 'warmup', 'reports'],
    ranges: { reports: [0, 3] },
    flags: ['in-process-clients'],
    async run(options) {
      await runBootstrapStorm({
        ...(options.machines !== undefined ? { machines: options.machines } : {}),
        ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
        ...(options.warmup !== undefined ? { warmup: options.warmup } : {}),
        ...(options.reports !== undefined ? { reports: options.reports } : {}),
        inProcessClients: options['in-process-clients'] === 1,
      });
    },
  },
  credentials: {
    summary: 'node credential bundles/s (ed25519 SSH key + ECDSA P-256 cert) vs node-forge RSA-2048 keygen+sign',
    options: ['seconds'],
    async run(options) {
      console.log(formatCredentialsBench(await runCredentialsBench(options.seconds !== undefined ? { seconds: options.seconds } : {})));
    },
  },
  'agent-streams': {
    summary: 'N nix-agents (installed nodes, one mTLS stream each) on one host-controller; an apply fans a DesiredSystem out to all, vs a bare grpc-js bidi server pushing to the same streams',
    options: ['agents', 'concurrency'],
    flags: ['same-process', 'glibc-defaults'],
    async run(options) {
      await runAgentStreams({
        ...(options.agents !== undefined ? { agents: options.agents } : {}),
        ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
        sameProcess: options['same-process'] === 1,
        glibcDefaults: options['glibc-defaults'] === 1,
      });
    },
  },
  'nix-eval': {
    summary: 'nix-instantiate of a generated N-node cluster file (-A clusterState, all validation) vs evaluating {} (needs Nix)',
    options: ['nodes', 'runs'],
    async run(options) {
      await runNixEvalBench(options);
    },
  },
};

// bootstrap-storm already runs the credentials benchmark in the same process, so "all" leaves it out.
const ALL = ['bootstrap-storm', 'agent-streams', 'nix-eval'];

function usage(): string {
  const names = Object.entries(BENCHMARKS).map(
    ([name, b]) => `  ${name.padEnd(16)} ${[...b.options.map((o) => `[--${o} N]`), ...(b.flags ?? []).map((f) => `[--${f}]`)].join(' ').padEnd(30)} ${b.summary}`,
  );
  return [
    'usage: npm run bench [-- <benchmark> [options]]',
    '',
    'With no benchmark, runs all of them. Benchmarks:',
    ...names,
    '',
    'PostgreSQL: ULTRACLOUD_BENCH_DATABASE_URL, else ULTRACLOUD_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/test',
    '(a scratch database is created on that server for the run and dropped after).',
  ].join('\n');
}

class UsageError extends Error {}

function parseOptions(benchmark: Benchmark, name: string, args: readonly string[]): Record<string, number> {
  const options: Record<string, number> = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const [flag, inline] = arg.split('=', 2) as [string, string | undefined];
    const option = flag.startsWith('--') ? flag.slice(2) : undefined;
    if (option !== undefined && inline === undefined && benchmark.flags?.includes(option)) {
      options[option] = 1;
      continue;
    }
    if (option === undefined || !benchmark.options.includes(option)) {
      const accepted = [...benchmark.options.map((o) => `--${o} N`), ...(benchmark.flags ?? []).map((f) => `--${f}`)];
      throw new UsageError(`${name}: unknown argument "${arg}" (accepts ${accepted.join(', ') || 'no options'})`);
    }
    const raw = inline ?? args[++i];
    const value = Number(raw);
    const range = benchmark.ranges?.[option];
    const [least, most] = range ?? [1, Number.MAX_SAFE_INTEGER];
    if (raw === undefined || !/^\d+$/.test(raw) || value < least || value > most) {
      const wanted = range ? `a whole number from ${least} to ${most}` : 'a positive whole number';
      throw new UsageError(`${name}: --${option} needs ${wanted}, got ${raw === undefined ? 'nothing' : `"${raw}"`}`);
    }
    options[option] = value;
  }
  return options;
}

async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return 0;
  }
  try {
    if (name === undefined || name === 'all') {
      if (rest.length > 0) throw new UsageError('options apply to a named benchmark, e.g. npm run bench -- bootstrap-storm --machines 200');
      for (const each of ALL) await (BENCHMARKS[each] as Benchmark).run({});
      return 0;
    }
    const benchmark = BENCHMARKS[name];
    if (!benchmark) throw new UsageError(`unknown benchmark "${name}"`);
    await benchmark.run(parseOptions(benchmark, name, rest));
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`${err.message}\n\n${usage()}`);
      return 2;
    }
    throw err;
  }
}

process.exitCode = await main(process.argv.slice(2));
