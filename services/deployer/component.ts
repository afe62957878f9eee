// The deployer as a control-plane component: discovery, enrollment, credentials, install plans.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BootstrapServiceDefinition } from '../../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import { AccessServiceDefinition } from '../../gen/ts/ultracloud/deployer/v1/access_service.js';
import { ClusterServiceDefinition } from '../../gen/ts/ultracloud/deployer/v1/cluster_service.js';
import type { ClusterState } from '../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import { MachineServiceDefinition } from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { ActorKind } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import type { Component, ComponentContext, StartedComponent } from '../../lib/component.js';
import { loadConfig } from '../../lib/config/settings.js';
import { serviceDatabase } from '../../lib/db/index.js';
import { InvalidArgumentError, NotFoundError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { bindService } from '../../lib/grpc/server.js';
import {
  type ClusterCa,
  createClusterCa,
  ensureSecretsKey,
  exportClusterCa,
  generateToken,
  loadClusterCa,
  openSealedSecretText,
  readSecretsKeyFile,
  sealSecret,
} from '../../lib/pki/index.js';
import { type DeployerConfig, DEPLOYER_CONFIG_SPEC } from './config.js';
import { Deployer } from './deployer.js';
import { MachineFeed, type MachineFeedOptions } from './machine-feed.js';
import { MachineReader } from './machine-reader.js';
import { registerDeployerMetrics } from './metrics.js';
import { DEPLOYER_SCHEMA, deployerMigrations } from './migrations/index.js';
import { DenialAudit } from './denial-audit.js';
import { OperatorTokens } from './operator-tokens.js';
import { accessService } from './rpc/access.js';
import { denialAuditEntry } from './rpc/actor.js';
import { installerAuthenticator, operatorTokenAuthenticator } from './rpc/authenticators.js';
import { BOOTSTRAP_CLAIMED_METHODS, bootstrapService } from './rpc/bootstrap.js';
import { clusterService } from './rpc/cluster.js';
import { machineService } from './rpc/machines.js';
import { DEPLOYER_POLICY } from './rpc/policy.js';
import { getCa, saveCaOnce } from './store/credentials.js';
import type { DeployerDatabase } from './store/tables.js';
import type { Kysely } from 'kysely';

export const JOIN_TOKEN_FILE = 'join.token';
export const CA_BUNDLE_FILE = 'ca.pem';

/** Loads the cluster CA, creating and persisting it (key sealed) on the very first start. */
async function ensureCa(db: Kysely<DeployerDatabase>, key: Uint8Array): Promise<ClusterCa> {
  let stored = await getCa(db);
  if (!stored) {
    const created = exportClusterCa(await createClusterCa());
    stored = await saveCaOnce(db, { certificatePem: created.certificatePem, privateKeySealed: sealSecret(key, created.privateKeyPem, 'cluster-ca') }, new Date());
  }
  return loadClusterCa({ certificatePem: stored.certificatePem, privateKeyPem: openSealedSecretText(key, stored.privateKeySealed, 'cluster-ca') });
}

function ensureJoinToken(config: DeployerConfig, stateDir: string): string {
  if (config.joinTokenFile) return readFileSync(config.joinTokenFile, 'utf8').trim();
  const path = join(stateDir, JOIN_TOKEN_FILE);
  if (!existsSync(path)) writeFileSync(path, `${generateToken('join')}\n`, { mode: 0o600, flag: 'wx' });
  return readFileSync(path, 'utf8').trim();
}

/** A cluster state to apply at start, e.g. the example lab for `ultracloud up`. */
export interface InitialClusterState {
  readonly state: ClusterState;
  /** Where it came from, for logs and the audit reason. */
  readonly source: string;
  /** Audit actor, e.g. `ultracloud up`. */
  readonly actor: string;
}

/**
 * Applies `initial` while the deployer holds no cluster state yet. Once one is applied, the
 * operator's later applies win over the file: a restart keeps what is there (same generation).
 */
async function seedClusterState(deployer: Deployer, initial: InitialClusterState, log: Logger): Promise<void> {
  try {
    const current = await deployer.getClusterState();
    log.info({ event: 'cluster_state.kept', generation: String(current.generation), file: initial.source });
    return;
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
  }
  try {
    const res = await deployer.applyClusterState(
      { state: initial.state, dryRun: false, expectedGeneration: 0n },
      { name: initial.actor, kind: ActorKind.ACTOR_KIND_SYSTEM, rpc: 'start' },
      `cluster file ${initial.source}`,
    );
    log.info({ event: 'cluster_state.seeded', generation: String(res.generation), changes: res.changes.length, file: initial.source });
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw new Error(`cluster file ${initial.source} is not a valid cluster state:\n${err.message}`);
    throw err;
  }
}

export interface DeployerComponentOptions {
  readonly initialClusterState?: InitialClusterState;
  /** Tuning of the WatchMachines feed (tests use small queues and intervals). */
  readonly machineFeed?: Omit<MachineFeedOptions, 'log' | 'notifications'>;
}

export function deployerComponent(flags: Readonly<Record<string, string | undefined>> = {}, options: DeployerComponentOptions = {}): Component {
  return {
    name: 'deployer',
    schema: DEPLOYER_SCHEMA,
    migrations: deployerMigrations,
    async start(context: ComponentContext): Promise<StartedComponent> {
      const config = loadConfig(DEPLOYER_CONFIG_SPEC, { flags });
      const db = serviceDatabase<DeployerDatabase>(context.db, DEPLOYER_SCHEMA);
      const secretsKey = config.secretsKeyFile ? readSecretsKeyFile(config.secretsKeyFile) : ensureSecretsKey(context.stateDir).key;
      const ca = await ensureCa(db, secretsKey);
      // Operators and agents verify the control plane with this bundle.
      writeFileSync(join(context.stateDir, CA_BUNDLE_FILE), ca.certificatePem, { mode: 0o644 });
      const joinToken = ensureJoinToken(config, context.stateDir);
      const observer = context.metrics ? registerDeployerMetrics(context.metrics, db, context.logger) : undefined;
      const deployer = new Deployer(db, ca, { secretsKey, ...config }, context.logger, observer);
      if (options.initialClusterState) await seedClusterState(deployer, options.initialClusterState, context.logger);
      const reader = new MachineReader(db);
      const feed = new MachineFeed(db, { ...options.machineFeed, log: context.logger, ...(context.notifications ? { notifications: context.notifications } : {}) });
      const fileTokens = config.operatorTokens?.tokens ?? [];
      if (config.operatorTokens) context.logger.info({ event: 'operator_tokens.loaded', file: config.operatorTokens.path, tokens: fileTokens.length });
      const tokens = new OperatorTokens(db, context.logger, fileTokens);
      const denials = new DenialAudit(db, context.logger);
      let timer: NodeJS.Timeout | undefined;
      return {
        services: [
          bindService(BootstrapServiceDefinition, bootstrapService(deployer, feed)),
          bindService(ClusterServiceDefinition, clusterService(deployer, feed)),
          bindService(MachineServiceDefinition, machineService(deployer, reader, feed)),
          bindService(AccessServiceDefinition, accessService(tokens)),
        ],
        policy: DEPLOYER_POLICY,
        authenticators: [operatorTokenAuthenticator(tokens, fileTokens), installerAuthenticator(db, joinToken, BOOTSTRAP_CLAIMED_METHODS)],
        onDenied: (denial) => denials.record(denialAuditEntry(denial, new Date())),
        clusterCa: ca,
        run: () => {
          feed.start();
          const every = Math.min(Math.max(config.installTimeoutMs / 4, 1_000), 30_000);
          timer = setInterval(() => {
            deployer
              .expireStalledInstalls()
              .then((expired) => expired > 0 && feed.changed())
              .catch((err: unknown) => context.logger.error({ event: 'install_timeout.sweep_failed', err }));
          }, every);
          timer.unref();
        },
        async stop() {
          if (timer) clearInterval(timer);
          await feed.stop();
          await denials.stop();
          await tokens.drain();
        },
      };
    },
  };
}
