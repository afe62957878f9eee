// A control plane with installed nodes, for host rollout tests: the deployer and the
// host-controller served by the real serveComponents on a loopback port with TLS from the cluster
// CA (as `ultracloud up` serves them), on PGlite or a fresh PostgreSQL database, with the lab6
// cluster state applied and machines installed through simulated installers. Each node's
// bootstrap TLS certificate (from FetchPlan) is written to files, so scripted agents dial the
// host-controller over real mTLS with the credentials the deployer issued.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Channel } from 'nice-grpc';
import type { Kysely } from 'kysely';
import { ClusterServiceDefinition } from '../../gen/ts/ultracloud/deployer/v1/cluster_service.js';
import { ClusterState } from '../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import { MachineServiceDefinition } from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { HostDeploymentServiceDefinition } from '../../gen/ts/ultracloud/host/v1/host_deployment_service.js';
import { HostDeployment } from '../../gen/ts/ultracloud/system/v1/system.js';
import { daemonConfigSpec } from '../../lib/config/daemon.js';
import { loadConfig } from '../../lib/config/settings.js';
import type { Component } from '../../lib/component.js';
import { serviceDatabase } from '../../lib/db/index.js';
import { createServiceClient, openChannel, type ServiceClient } from '../../lib/grpc/client.js';
import { createLogger } from '../../lib/log.js';
import { serveComponents, type ServingProcess } from '../../lib/serve.js';
import { CA_BUNDLE_FILE, deployerComponent, JOIN_TOKEN_FILE } from '../../services/deployer/component.js';
import { hostControllerComponent } from '../../services/host-controller/component.js';
import { HOSTS_SCHEMA } from '../../services/host-controller/migrations/index.js';
import type { HostsDatabase } from '../../services/host-controller/store/tables.js';
import { createTestDatabase, type DatabaseTargetName, type ScratchDatabase } from './databases.js';
import { pgliteTemplateDir } from './deployer-server.js';
import { ScriptedAgent, type ScriptedAgentOptions } from './scripted-agent.js';
import { machineInventory, optiplexFacts, SimulatedInstaller } from './simulated-installer.js';

const LAB6: unknown = JSON.parse(readFileSync(new URL('../fixtures/cluster-state/lab6.json', import.meta.url), 'utf8'));
/** The lab's fixed control-plane nodes match on these MACs, one failure domain each. */
const CONTROL_PLANE_MACS = ['d8:9e:f3:3a:61:0b', 'd8:9e:f3:3a:6c:27', 'd8:9e:f3:41:02:9e'];

/** Fast timings for tests: stale after 1.5 s, re-plan every 200 ms. */
export const FAST_FLAGS: Readonly<Record<string, string>> = { 'heartbeat-interval': '500ms', 'reconcile-interval': '200ms', 'leader-retry': '250ms' };

export interface FleetNode {
  readonly nodeId: string;
  readonly machineId: string;
  readonly failureDomain: string;
  /** The node's bootstrap certificate and key (CN = node id), as files. */
  readonly certFile: string;
  readonly keyFile: string;
}

export interface HostFleet {
  readonly target: DatabaseTargetName;
  readonly address: string;
  readonly stateDir: string;
  readonly adminToken: string;
  /** The cluster CA: verifies the server, and signed every node certificate. */
  readonly caFile: string;
  readonly channel: Channel;
  readonly rollouts: ServiceClient<typeof HostDeploymentServiceDefinition>;
  readonly machines: ServiceClient<typeof MachineServiceDefinition>;
  /** Installed nodes: cp-1..cp-3 (power-a..c), then worker-1.. (power-d). */
  readonly nodes: readonly FleetNode[];
  readonly databaseUrl: string | undefined;
  /** A client of `definition` sending `token`; none: anonymous. */
  client<S extends Parameters<typeof createServiceClient>[0]>(definition: S, token?: string): ServiceClient<S>;
  /** A scripted agent for `node`, started; stopped with the fleet. */
  agent(node: FleetNode, options?: Partial<ScriptedAgentOptions>): ScriptedAgent;
  /** The host-controller's own database handle (schema `hosts`), for assertions on its event log. */
  readonly hostsDb: Kysely<HostsDatabase>;
  stop(): Promise<void>;
}

export interface HostFleetOptions {
  /** How many nodes to install: up to 3 control-plane nodes first, then workers. Default 6. */
  readonly nodes?: number;
  /** Host-controller (and deployer) flags; default FAST_FLAGS. */
  readonly flags?: Readonly<Record<string, string>>;
  readonly logDestination?: NodeJS.WritableStream;
}

/** Installs `count` machines: discover (the lab's rules commission and deploy), fetch the plan, write the certificate, install. */
export async function installNodes(channel: Channel, joinToken: string, dir: string, count: number): Promise<FleetNode[]> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const nodes: FleetNode[] = [];
  for (let i = 0; i < count; i++) {
    const mac = CONTROL_PLANE_MACS[i];
    const installer = new SimulatedInstaller({ channel, joinToken }, machineInventory(optiplexFacts(mac ? { macs: [mac] } : {})));
    await installer.discover();
    const plan = await installer.fetchPlan();
    const nodeId = plan.assignment?.nodeId ?? '';
    const certFile = join(dir, `${nodeId}.crt`);
    const keyFile = join(dir, `${nodeId}.key`);
    writeFileSync(certFile, plan.secrets?.tlsCertificatePem ?? '');
    writeFileSync(keyFile, plan.secrets?.tlsPrivateKeyPem ?? '', { mode: 0o600 });
    await installer.install();
    nodes.push({ nodeId, machineId: installer.machineId, failureDomain: plan.assignment?.failureDomain ?? '', certFile, keyFile });
  }
  return nodes;
}

export async function startHostFleet(target: DatabaseTargetName, options: HostFleetOptions = {}): Promise<HostFleet> {
  const stateDir = await mkdtemp(join(tmpdir(), `ultracloud-hosts-${target}-`));
  let scratch: ScratchDatabase | undefined;
  let serving: ServingProcess | undefined;
  const agents: ScriptedAgent[] = [];
  try {
    if (target === 'postgres') scratch = await createTestDatabase();
    else await cp(await pgliteTemplateDir(), join(stateDir, 'pgdata'), { recursive: true });
    const config = loadConfig(daemonConfigSpec(0), {
      env: {
        ULTRACLOUD_STATE_DIR: stateDir,
        ULTRACLOUD_LISTEN: '127.0.0.1:0',
        ULTRACLOUD_LOG_LEVEL: process.env.ULTRACLOUD_TEST_LOG_LEVEL ?? 'silent',
        ...(scratch ? { ULTRACLOUD_DATABASE_URL: scratch.url } : {}),
      },
    });
    const flags = { ...(options.flags ?? FAST_FLAGS) };
    // The component's database handle, kept for reading the event log in assertions.
    let hostsDb: Kysely<HostsDatabase> | undefined;
    const hostController = hostControllerComponent(flags, { sameProcessDeployer: true });
    const capturing: Component = {
      ...hostController,
      start(context) {
        hostsDb = serviceDatabase<HostsDatabase>(context.db, HOSTS_SCHEMA);
        return hostController.start(context);
      },
    };
    serving = await serveComponents({
      components: [deployerComponent(flags), capturing],
      config,
      logger: options.logDestination ? createLogger({ level: 'debug', destination: options.logDestination }) : createLogger({ level: config.logLevel }),
      transport: { kind: 'cluster-ca', clientCaFile: undefined },
    });
    const caFile = join(stateDir, CA_BUNDLE_FILE);
    const channel = openChannel(serving.server.address, { tls: { caFile } });
    const adminToken = readFileSync(serving.adminTokenPath, 'utf8').trim();
    const client = <S extends Parameters<typeof createServiceClient>[0]>(definition: S, token?: string) =>
      createServiceClient(definition, channel, { defaultDeadlineMs: 30_000, ...(token ? { token } : {}) }) as ServiceClient<S>;
    const cluster = client(ClusterServiceDefinition, adminToken);
    await cluster.applyClusterState({ state: ClusterState.fromJSON(LAB6), dryRun: false, expectedGeneration: 0n });
    const nodes = await installNodes(channel, readFileSync(join(stateDir, JOIN_TOKEN_FILE), 'utf8').trim(), join(stateDir, 'nodes'), options.nodes ?? 6);
    // Ready once the host-controller's inventory has the installed nodes: until then an apply
    // warns that nothing is installed and hellos are refused.
    const rollouts = client(HostDeploymentServiceDefinition, adminToken);
    if (nodes.length > 0) {
      const probe = HostDeployment.fromPartial({ name: 'readiness-probe', selector: { allNodes: true }, target: { flakeRef: 'github:example/probe' } });
      for (let attempt = 0; ; attempt++) {
        const res = await rollouts.applyHostDeployments({ hostDeployments: [probe], dryRun: true, prune: false, reason: 'probe' });
        if (!res.diffs[0]?.warnings.includes('selector matches no installed node')) break;
        if (attempt > 300) throw new Error('the host-controller never saw the installed nodes');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    const address = serving.server.address;
    const running = serving;
    const database = scratch;
    let stopped: Promise<void> | undefined;
    return {
      target,
      address,
      stateDir,
      adminToken,
      caFile,
      channel,
      rollouts,
      machines: client(MachineServiceDefinition, adminToken),
      nodes,
      databaseUrl: database?.url,
      client,
      agent(node, extra = {}) {
        const agent = new ScriptedAgent({ nodeId: node.nodeId, addresses: [address], tls: { caFile, certFile: node.certFile, keyFile: node.keyFile }, ...extra });
        agents.push(agent);
        return agent.start();
      },
      hostsDb: hostsDb as unknown as Kysely<HostsDatabase>,
      stop() {
        stopped ??= (async () => {
          for (const a of agents) await a.stop();
          channel.close();
          try {
            await running.stop();
          } finally {
            await database?.drop();
            await rm(stateDir, { recursive: true, force: true });
          }
        })();
        return stopped;
      },
    };
  } catch (error) {
    for (const a of agents) await a.stop();
    await serving?.stop().catch(() => undefined);
    await scratch?.drop().catch(() => undefined);
    await rm(stateDir, { recursive: true, force: true });
    throw error;
  }
}
