// Deployers that share their state: several replicas serving one PostgreSQL database, or one
// deployer stopped and started again on the same port, database and state dir. Each is the real
// serveComponents in this process, reached over a loopback socket with the real clients.
import { readFileSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Channel } from 'nice-grpc';
import { ClusterServiceDefinition } from '../../gen/ts/ultracloud/deployer/v1/cluster_service.js';
import { MachineServiceDefinition } from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { daemonConfigSpec } from '../../lib/config/daemon.js';
import { loadConfig } from '../../lib/config/settings.js';
import { createServiceClient, openChannel, type ServiceClient } from '../../lib/grpc/client.js';
import { createLogger } from '../../lib/log.js';
import { serveComponents } from '../../lib/serve.js';
import { type DeployerComponentOptions, deployerComponent, JOIN_TOKEN_FILE } from '../../services/deployer/component.js';
import { createTestDatabase, type DatabaseTargetName } from './databases.js';
import { pgliteTemplateDir } from './deployer-server.js';

/** A database and state dir outliving the deployers that serve them. */
export interface DeployerStore {
  readonly target: DatabaseTargetName;
  readonly stateDir: string;
  /** Unset on PGlite (its files are in the state dir). */
  readonly databaseUrl: string | undefined;
  /** Deletes the state dir and drops the database; stop the deployers first. */
  remove(): Promise<void>;
}

export async function createDeployerStore(target: DatabaseTargetName): Promise<DeployerStore> {
  const stateDir = await mkdtemp(join(tmpdir(), `ultracloud-replicas-${target}-`));
  const scratch = target === 'postgres' ? await createTestDatabase() : undefined;
  // PGlite starts from a copy of an initialised data directory (initdb takes seconds of CPU).
  if (!scratch) await cp(await pgliteTemplateDir(), join(stateDir, 'pgdata'), { recursive: true });
  return {
    target,
    stateDir,
    databaseUrl: scratch?.url,
    async remove() {
      await scratch?.drop();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}

export interface DeployerReplica {
  readonly address: string;
  readonly port: number;
  readonly adminToken: string;
  readonly joinToken: string;
  readonly channel: Channel;
  readonly machines: ServiceClient<typeof MachineServiceDefinition>;
  readonly cluster: ServiceClient<typeof ClusterServiceDefinition>;
  /** Stops serving (open streams end with UNAVAILABLE); the store is kept. Safe to call twice. */
  stop(): Promise<void>;
}

export interface ReplicaOptions {
  /** Listen on this port (a restart on the address clients know); default: a free one. */
  readonly port?: number;
  readonly component?: DeployerComponentOptions;
}

export async function startReplica(store: DeployerStore, options: ReplicaOptions = {}): Promise<DeployerReplica> {
  const config = loadConfig(daemonConfigSpec(0), {
    env: {
      ULTRACLOUD_STATE_DIR: store.stateDir,
      ULTRACLOUD_LISTEN: `127.0.0.1:${options.port ?? 0}`,
      ULTRACLOUD_LOG_LEVEL: 'silent',
      ...(store.databaseUrl ? { ULTRACLOUD_DATABASE_URL: store.databaseUrl } : {}),
    },
  });
  const serving = await serveComponents({ components: [deployerComponent({}, options.component ?? {})], config, logger: createLogger({ level: config.logLevel }) });
  const channel = openChannel(serving.server.address);
  const adminToken = readFileSync(serving.adminTokenPath, 'utf8').trim();
  let stopped: Promise<void> | undefined;
  return {
    address: serving.server.address,
    port: serving.server.port,
    adminToken,
    joinToken: readFileSync(join(store.stateDir, JOIN_TOKEN_FILE), 'utf8').trim(),
    channel,
    machines: createServiceClient(MachineServiceDefinition, channel, { token: adminToken, defaultDeadlineMs: 30_000 }),
    cluster: createServiceClient(ClusterServiceDefinition, channel, { token: adminToken, defaultDeadlineMs: 30_000 }),
    stop() {
      stopped ??= (async () => {
        try {
          await serving.stop();
        } finally {
          channel.close();
        }
      })();
      return stopped;
    },
  };
}
