// `ultracloud`: the one binary of the control plane and its agents. This file is the
// composition root: it alone knows every component.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { ClusterState } from '../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import { checkTransport, ConfigError, daemonConfigSpec, type DaemonDefaults, DEFAULT_PORTS, type HostPort, loadConfig } from '../lib/config/index.js';
import type { Component } from '../lib/component.js';
import { createLogger } from '../lib/log.js';
import { stopOnSignals } from '../lib/process.js';
import { decodeProtoJson } from '../lib/proto-json.js';
import { serveComponents } from '../lib/serve.js';
import { deployerComponent, type InitialClusterState } from '../services/deployer/component.js';
import { hostControllerComponent, type InitialHostDeployments } from '../services/host-controller/component.js';
import { HostDeployment } from '../gen/ts/ultracloud/system/v1/system.js';
import { encodeProtoJson } from '../lib/proto-json.js';
import { registerInstallerCommand } from '../agents/installer/main.js';
import { registerNixAgentCommand } from '../agents/nix-agent/main.js';

/** The example lab's cluster state, generated from nix/examples/lab6 and committed next to it. */
const LAB_CLUSTER_STATE = fileURLToPath(new URL('../nix/examples/lab6/generated/cluster-state.json', import.meta.url));

/** The example lab's host deployments, applied by `up` at first start together with its cluster state. */
const LAB_HOST_DEPLOYMENTS = fileURLToPath(new URL('../nix/examples/lab6/generated/host-deployments.json', import.meta.url));

function readHostDeploymentsFile(path: string, actor: string): InitialHostDeployments {
  try {
    const doc = JSON.parse(readFileSync(path, 'utf8')) as { hostDeployments?: unknown };
    if (!Array.isArray(doc.hostDeployments)) throw new Error('expected {"hostDeployments": [...]}');
    const deployments = doc.hostDeployments.map((d, i) => HostDeployment.decode(encodeProtoJson('ultracloud.system.v1.HostDeployment', d, `hostDeployments[${i}]`)));
    return { deployments, source: path, actor };
  } catch (err) {
    throw new ConfigError([`${path}: ${(err as Error).message}`]);
  }
}

/** Every control-plane component `up` runs together; the host-controller reaches the deployer in-process. */
function components(flags: Record<string, string | undefined>, initial: InitialClusterState | undefined): readonly Component[] {
  const lab = initial?.source === LAB_CLUSTER_STATE && existsSync(LAB_HOST_DEPLOYMENTS);
  return [
    deployerComponent(flags, initial ? { initialClusterState: initial } : {}),
    hostControllerComponent(flags, { sameProcessDeployer: true, ...(lab ? { initialHostDeployments: readHostDeploymentsFile(LAB_HOST_DEPLOYMENTS, initial.actor) } : {}) }),
  ];
}

const CLUSTER_SETTING = 'ULTRACLOUD_CLUSTER_FILE (--cluster)';

/** A ClusterState document (or an object with `clusterState`), decoded strictly before anything starts. */
function readClusterStateFile(path: string): ClusterState {
  try {
    const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
    const isBundle = parsed !== null && typeof parsed === 'object' && 'clusterState' in parsed;
    const doc = isBundle ? (parsed as { clusterState: unknown }).clusterState : parsed;
    return ClusterState.fromJSON(decodeProtoJson('ultracloud.deployer.v1.ClusterState', doc, isBundle ? 'clusterState' : ''));
  } catch (err) {
    throw new ConfigError([`${CLUSTER_SETTING}: ${path}: ${(err as Error).message}`]);
  }
}

/**
 * The cluster state to apply at start: `--cluster <file>` or ULTRACLOUD_CLUSTER_FILE, else (for
 * `up` only) the example lab, which ships with UltraCloud; `--no-cluster` applies nothing.
 */
function initialClusterState(command: string, cluster: unknown, fallback: string | undefined): InitialClusterState | undefined {
  if (cluster === false) return undefined;
  const explicit = typeof cluster === 'string' ? cluster : process.env.ULTRACLOUD_CLUSTER_FILE || undefined;
  const path = explicit ? resolve(explicit) : fallback;
  if (!path) return undefined;
  if (!existsSync(path)) {
    throw new ConfigError([
      explicit
        ? `${CLUSTER_SETTING}: file does not exist, got ${JSON.stringify(explicit)}`
        : `${CLUSTER_SETTING}: the example lab ${path} is missing from this checkout; pass --no-cluster to start without a cluster state`,
    ]);
  }
  return { state: readClusterStateFile(path), source: path, actor: `ultracloud ${command}` };
}

const DAEMON_FLAGS: [string, string][] = [
  ['--listen <host:port>', 'gRPC listen address (ULTRACLOUD_LISTEN)'],
  ['--state-dir <dir>', 'state directory (ULTRACLOUD_STATE_DIR, default ./.ultracloud)'],
  ['--database-url <url>', 'PostgreSQL URL; unset uses embedded PGlite (ULTRACLOUD_DATABASE_URL)'],
  ['--log-level <level>', 'trace|debug|info|warn|error (ULTRACLOUD_LOG_LEVEL)'],
  ['--tls-cert <file>', 'server certificate (ULTRACLOUD_TLS_CERT)'],
  ['--tls-key <file>', 'server key (ULTRACLOUD_TLS_KEY)'],
  ['--tls-ca <file>', 'CA bundle for client certificates (ULTRACLOUD_TLS_CA)'],
  ['--insecure-loopback', 'serve plaintext gRPC, only on a loopback address (ULTRACLOUD_INSECURE_LOOPBACK)'],
  ['--metrics-listen <host:port>', 'serve Prometheus /metrics over HTTP here, or "off" (ULTRACLOUD_METRICS_LISTEN)'],
  ['--join-token-file <file>', 'installer join token (ULTRACLOUD_JOIN_TOKEN_FILE, default <state-dir>/join.token)'],
  ['--operator-tokens-file <file>', 'operator tokens, "<role> <sha256> <name>" a line (ULTRACLOUD_OPERATOR_TOKENS_FILE)'],
  ['--secrets-key-file <file>', 'key sealing private keys (ULTRACLOUD_SECRETS_KEY_FILE, default <state-dir>/secrets.key)'],
  ['--install-timeout <duration>', 'fail installs silent this long (ULTRACLOUD_INSTALL_TIMEOUT, default 60m)'],
];

function withDaemonFlags(command: Command): Command {
  for (const [flag, help] of DAEMON_FLAGS) command.option(flag, help);
  return command;
}

/** commander gives camelCase keys; the config spec names flags as typed on the command line. */
function flagValues(opts: Record<string, unknown>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(opts)) {
    const flag = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    if (typeof value === 'string') out[flag] = value;
    else if (value === true) out[flag] = 'true'; // a switch such as --insecure-loopback
  }
  return out;
}

type ComponentSelection = (flags: Record<string, string | undefined>, initial: InitialClusterState | undefined) => readonly Component[];

/** How a server command differs from the others. */
interface ServerCommand extends DaemonDefaults {
  readonly port: number;
  /** Holds the cluster CA, so it serves TLS with a certificate of its own unless told otherwise. */
  readonly selfIssued?: boolean;
  /** The example cluster applied when no other is named. */
  readonly exampleCluster?: string;
}

async function runServer(command: string, select: ComponentSelection, defaults: ServerCommand, opts: Record<string, unknown>): Promise<void> {
  const flags = flagValues(opts);
  const config = loadConfig(daemonConfigSpec(defaults.port, defaults), { flags });
  const transport = checkTransport(config, { selfIssued: defaults.selfIssued ?? false });
  const logger = createLogger({ level: config.logLevel, name: 'ultracloud' });
  const initial = initialClusterState(command, opts.cluster, defaults.exampleCluster);
  // The default metrics port is a convenience: when another process has it, take a free one.
  const metricsOnFreePort = flags['metrics-listen'] === undefined && !process.env.ULTRACLOUD_METRICS_LISTEN;
  const running = await serveComponents({ components: select(flags, initial), config, logger, transport, metricsOnFreePort });
  logger.info({
    event: 'ready',
    address: running.server.address,
    tls: running.transport !== 'plaintext',
    ...(running.caFile ? { ca_file: running.caFile } : {}),
    ...(running.metrics ? { metrics: running.metrics.url } : {}),
    admin_token_file: running.adminTokenPath,
    state_dir: config.stateDir,
  });
  stopOnSignals(running.stop, logger);
}

/** Where `up` serves /metrics unless told otherwise (9464: the OpenTelemetry Prometheus exporter's port). */
const UP_METRICS_LISTEN: HostPort = { host: '127.0.0.1', port: 9464 };

const program = new Command('ultracloud').description('UltraCloud bare-metal provisioning').showHelpAfterError();

withDaemonFlags(
  program
    .command('up')
    .description(
      `run every control-plane service in one process (default 127.0.0.1:${DEFAULT_PORTS.up}, TLS from the cluster CA, ` +
        `metrics on ${UP_METRICS_LISTEN.host}:${UP_METRICS_LISTEN.port})`,
    ),
)
  .option('--cluster <file>', 'ClusterState JSON applied at start while none is applied (ULTRACLOUD_CLUSTER_FILE, default: the example lab)')
  .option('--no-cluster', 'apply no cluster state at start')
  .action((opts: Record<string, unknown>) =>
    runServer('up', components, { port: DEFAULT_PORTS.up, selfIssued: true, metricsListen: UP_METRICS_LISTEN, exampleCluster: LAB_CLUSTER_STATE }, opts),
  );

withDaemonFlags(
  program.command('deployer').description(`run the deployer alone (default 127.0.0.1:${DEFAULT_PORTS.deployer})`),
)
  .option('--cluster <file>', 'ClusterState JSON applied at start while none is applied (ULTRACLOUD_CLUSTER_FILE)')
  .action((opts: Record<string, unknown>) =>
    runServer('deployer', (flags, initial) => [deployerComponent(flags, initial ? { initialClusterState: initial } : {})], { port: DEFAULT_PORTS.deployer }, opts),
  );

const HOST_CONTROLLER_FLAGS: [string, string][] = [
  ['--deployer <host:port>', 'the deployer to watch machines from (ULTRACLOUD_DEPLOYER)'],
  ['--deployer-ca <file>', 'CA bundle verifying the deployer; unset: plaintext, loopback only (ULTRACLOUD_DEPLOYER_CA)'],
  ['--deployer-token-file <file>', 'operator token for the deployer, mode 0600 (ULTRACLOUD_DEPLOYER_TOKEN_FILE)'],
  ['--fleet-scheduler <host:port>', 'the fleet-scheduler that drains nodes; unset: deployments with drain wait (ULTRACLOUD_FLEET_SCHEDULER)'],
  ['--fleet-scheduler-ca <file>', 'CA bundle verifying the fleet-scheduler (ULTRACLOUD_FLEET_SCHEDULER_CA)'],
  ['--fleet-scheduler-token-file <file>', 'operator token for the fleet-scheduler (ULTRACLOUD_FLEET_SCHEDULER_TOKEN_FILE)'],
  ['--instance-id <id>', "this replica's name (ULTRACLOUD_INSTANCE_ID, default <hostname>-<pid>)"],
  ['--heartbeat-interval <duration>', 'agent heartbeat interval (ULTRACLOUD_HEARTBEAT_INTERVAL, default 10s)'],
  ['--reconcile-interval <duration>', 'leader re-plans at least this often (ULTRACLOUD_RECONCILE_INTERVAL, default 2s)'],
  ['--leader-retry <duration>', 'followers try the leader lock this often (ULTRACLOUD_LEADER_RETRY, default 1s)'],
  ['--reboot-grant-ttl <duration>', 'how long a reboot grant is valid (ULTRACLOUD_REBOOT_GRANT_TTL, default 2m)'],
  ['--activation-batch <n>', 'a decision handing out more activations is committed as intents, sent, then written out (ULTRACLOUD_ACTIVATION_BATCH, default 1000)'],
  ['--installer-image <file>', 'JSON file with the installer kernel and initrd that reinstall and rescue boot by kexec (ULTRACLOUD_INSTALLER_IMAGE)'],
  ['--token-cache-ttl <duration>', 'how long an operator token the deployer vouched for is trusted before asking again (ULTRACLOUD_TOKEN_CACHE_TTL, default 10s)'],
];

const hostController = withDaemonFlags(program.command('host-controller').description(`run the host-controller alone (default 127.0.0.1:${DEFAULT_PORTS['host-controller']})`));
for (const [flag, help] of HOST_CONTROLLER_FLAGS) hostController.option(flag, help);
hostController.action((opts: Record<string, unknown>) => runServer('host-controller', (flags) => [hostControllerComponent(flags)], { port: DEFAULT_PORTS['host-controller'] }, opts));

registerInstallerCommand(program);
registerNixAgentCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(`ultracloud: ${err.message}`);
    process.exit(2);
  }
  console.error('ultracloud:', err);
  process.exit(1);
}
