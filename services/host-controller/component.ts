// The host-controller as a control-plane component: HostDeploymentService for operators,
// HostAgentService.Connect for nix-agents, the deployer's machines through WatchMachines, and the
// leader's rollout loop. Every replica serves reads and agent streams; one leader (advisory lock
// on PostgreSQL, always this process on PGlite) plans and decides.
import { readFileSync } from 'node:fs';
import type { Kysely } from 'kysely';
import { join } from 'node:path';
import { HostAgentServiceDefinition } from '../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import { HostDeploymentServiceDefinition } from '../../gen/ts/ultracloud/host/v1/host_deployment_service.js';
import { ActorKind } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import type { HostDeployment } from '../../gen/ts/ultracloud/system/v1/system.js';
import { ADMIN_TOKEN_FILE } from '../../lib/admin-token.js';
import type { Component, ComponentContext, StartedComponent } from '../../lib/component.js';
import { ConfigError, loadConfig } from '../../lib/config/settings.js';
import { serviceDatabase } from '../../lib/db/index.js';
import { readEndpointRecord } from '../../lib/endpoint.js';
import { InvalidArgumentError } from '../../lib/errors.js';
import { bindService } from '../../lib/grpc/server.js';
import { loadContract } from '../../lib/proto-json.js';
import type { Logger } from '../../lib/log.js';
import { AgentStreams } from './agent-streams.js';
import { type HostControllerConfig, HOST_CONTROLLER_CONFIG_SPEC } from './config.js';
import { DenialLog } from './denials.js';
import { HostRollouts } from './host-rollouts.js';
import { leadershipFor } from './leader-election.js';
import { type DeployerEndpoint, MachineInventory } from './machine-inventory.js';
import { type HostControllerMetrics, registerHostControllerMetrics } from './metrics.js';
import { HOSTS_SCHEMA, hostsMigrations } from './migrations/index.js';
import { DeployerTokenVerifier } from './operator-tokens.js';
import { type NodeDrainer, SchedulerDrainer } from './node-drainer.js';
import { RolloutController } from './rollout-controller.js';
import { hostAgentService } from './rpc/host-agents.js';
import { hostDeploymentService } from './rpc/host-deployments.js';
import { HOST_CONTROLLER_POLICY } from './rpc/policy.js';
import type { HostsDatabase } from './store/tables.js';
import { WAKEUP_CHANNELS, wakeupPayload } from './wakeups.js';

/** The CA bundle the deployer writes into the state dir (`ultracloud up`). */
const CA_FILE = 'ca.pem';

/** HostDeployments to apply at first start, e.g. the example lab's for `ultracloud up`. */
export interface InitialHostDeployments {
  readonly deployments: readonly HostDeployment[];
  /** Where they came from, for logs and the audit reason. */
  readonly source: string;
  /** Audit actor, e.g. `ultracloud up`. */
  readonly actor: string;
}

export interface HostControllerComponentOptions {
  /**
   * The deployer serves from this same process (`ultracloud up`): reach it at this process's own
   * address with the state dir's CA and admin token, instead of configured ones.
   */
  readonly sameProcessDeployer?: boolean;
  readonly initialHostDeployments?: InitialHostDeployments;
}

/** How to reach the deployer; checked when the component is created, before anything starts. */
function deployerEndpoint(config: HostControllerConfig, sameProcess: boolean): (stateDir: string) => DeployerEndpoint {
  if (sameProcess) {
    return (stateDir) => {
      const record = readEndpointRecord(stateDir);
      if (!record) throw new Error(`no endpoint.json in ${stateDir}: the server has not started`);
      return { address: record.address, caFile: record.tls ? join(stateDir, CA_FILE) : undefined, token: readFileSync(join(stateDir, ADMIN_TOKEN_FILE), 'utf8').trim() };
    };
  }
  const { deployerAddress, deployerToken } = config;
  if (!deployerAddress || !deployerToken) {
    const missing = [
      ...(deployerAddress ? [] : ['ULTRACLOUD_DEPLOYER (--deployer): required (the deployer to watch machines from, host:port)']),
      ...(deployerToken ? [] : ['ULTRACLOUD_DEPLOYER_TOKEN_FILE (--deployer-token-file): required (an operator token for the deployer)']),
    ];
    throw new ConfigError(missing);
  }
  return () => ({ address: deployerAddress, caFile: config.deployerCaFile, token: deployerToken.token });
}

function schedulerDrainer(config: HostControllerConfig): NodeDrainer | undefined {
  const token = config.schedulerToken ?? config.deployerToken;
  if (!config.schedulerAddress || !token) return undefined;
  return new SchedulerDrainer({ address: config.schedulerAddress, caFile: config.schedulerCaFile, token: token.token });
}

/**
 * Applies `initial` on the very first start: while no deployment exists and none was ever
 * applied or deleted. Afterwards the operator's applies win over the file.
 */
async function seedHostDeployments(db: Kysely<HostsDatabase>, rollouts: HostRollouts, initial: InitialHostDeployments, log: Logger): Promise<void> {
  const applied = await db.selectFrom('audit_events').select('id').where('action', 'like', 'apply.%').limit(1).executeTakeFirst();
  const any = await db.selectFrom('host_deployments').select('name').limit(1).executeTakeFirst();
  if (applied || any) {
    log.info({ event: 'host_deployments.kept', file: initial.source });
    return;
  }
  try {
    const res = await rollouts.apply(
      { hostDeployments: [...initial.deployments], dryRun: false, prune: false, reason: `host deployments file ${initial.source}` },
      { name: initial.actor, kind: ActorKind[ActorKind.ACTOR_KIND_SYSTEM], rpc: 'start', peer: '' },
    );
    log.info({ event: 'host_deployments.seeded', deployments: res.diffs.length, file: initial.source });
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw new Error(`host deployments file ${initial.source} is not valid:\n${err.message}`);
    throw err;
  }
}

/** Settings are read and checked here, so a bad one stops the process before the database opens. */
export function hostControllerComponent(flags: Readonly<Record<string, string | undefined>> = {}, options: HostControllerComponentOptions = {}): Component {
  const config = loadConfig(HOST_CONTROLLER_CONFIG_SPEC, { flags });
  const deployerAt = deployerEndpoint(config, options.sameProcessDeployer ?? false);
  if (config.schedulerAddress && !(config.schedulerToken ?? config.deployerToken)) {
    throw new ConfigError(['ULTRACLOUD_FLEET_SCHEDULER_TOKEN_FILE (--fleet-scheduler-token-file): required with ULTRACLOUD_FLEET_SCHEDULER (or set ULTRACLOUD_DEPLOYER_TOKEN_FILE)']);
  }
  return {
    name: 'host-controller',
    schema: HOSTS_SCHEMA,
    migrations: hostsMigrations,
    async start(context: ComponentContext): Promise<StartedComponent> {
      // Node entries, desired systems and reports are stored as proto3 JSON of the contract.
      loadContract();
      const endpoint = () => deployerAt(context.stateDir);
      const drainer = schedulerDrainer(config);
      const db = serviceDatabase<HostsDatabase>(context.db, HOSTS_SCHEMA);
      const log = context.logger.child({ replica: config.instanceId });
      const staleAfterMs = 3 * config.heartbeatIntervalMs;
      const notifications = context.notifications;
      // The callbacks below run only once the component runs, after every object exists.
      const inventory = new MachineInventory({
        log,
        endpoint,
        onChange: () => {
          rolloutController.wake();
          agentStreams.inventoryChanged();
        },
      });
      const metrics: HostControllerMetrics | undefined = context.metrics ? registerHostControllerMetrics(context.metrics, db, log, (): number => agentStreams.size, staleAfterMs) : undefined;
      const agentStreams: AgentStreams = new AgentStreams({
        db,
        log,
        replica: config.instanceId,
        inventory,
        notifications,
        heartbeatIntervalMs: config.heartbeatIntervalMs,
        installerImage: config.installerImage,
        wakeLeader: () => rolloutController.wake(),
        ...(metrics ? { observer: metrics.streams } : {}),
      });
      const rolloutController: RolloutController = new RolloutController({
        db,
        log,
        replica: config.instanceId,
        inventory,
        drainer,
        notifications,
        staleAfterMs,
        reconcileIntervalMs: config.reconcileIntervalMs,
        rebootGrantMs: config.rebootGrantMs,
        activationBatch: config.activationBatch,
        deliverLocally: (nodeIds, decided) => agentStreams.deliver(nodeIds, decided),
        localDeliveriesSent: () => agentStreams.deliveriesSent(),
        ...(metrics ? { observer: metrics.controller } : {}),
      });
      const leadership = leadershipFor(db, context.databaseUrl, {
        replica: config.instanceId,
        log,
        retryMs: config.leaderRetryMs,
        events: { elected: (epoch) => rolloutController.elected(epoch), deposed: () => rolloutController.deposed() },
      });
      const rollouts = new HostRollouts(db, {
        replica: config.instanceId,
        nodes: () => (inventory.ready ? inventory.nodes() : undefined),
        staleAfterMs,
        changed: () => {
          rolloutController.wake();
          void notifications?.notify(WAKEUP_CHANNELS.leader, wakeupPayload(config.instanceId));
        },
      });
      if (options.initialHostDeployments) await seedHostDeployments(db, rollouts, options.initialHostDeployments, log);
      await agentStreams.start();
      const denials = new DenialLog(db, log);
      log.info({
        event: 'host_controller.configured',
        replica: config.instanceId,
        deployer: options.sameProcessDeployer ? 'this process' : config.deployerAddress,
        fleet_scheduler: config.schedulerAddress ?? 'none (deployments with drain wait)',
        heartbeat_interval_ms: config.heartbeatIntervalMs,
      });
      // Under `up` the deployer in this process checks operator tokens; on its own, the
      // controller asks the deployer about them.
      const tokens = options.sameProcessDeployer ? undefined : new DeployerTokenVerifier({ endpoint, ttlMs: config.tokenCacheTtlMs, refusedTtlMs: Math.min(2_000, config.tokenCacheTtlMs) });
      return {
        services: [bindService(HostDeploymentServiceDefinition, hostDeploymentService(rollouts)), hostAgentService(HostAgentServiceDefinition, agentStreams)],
        policy: HOST_CONTROLLER_POLICY,
        ...(tokens ? { authenticators: [tokens] } : {}),
        onDenied: (denial) => denials.record(denial),
        run: () => {
          inventory.start();
          rolloutController.start();
          leadership.start();
        },
        async stop() {
          await leadership.stop();
          rolloutController.deposed();
          await rolloutController.stop();
          await agentStreams.stop();
          await inventory.stop();
          tokens?.close();
          drainer?.close();
          await denials.stop();
        },
      };
    },
  };
}
