// Starts the deployer in-process for integration tests: the real serveComponents on a loopback
// port 0 with a temporary state dir, on embedded PGlite (in the state dir) or on a fresh database
// of the server in ULTRACLOUD_TEST_DATABASE_URL. Tests talk to it over a real socket with the
// real clients and credentials: the admin token and join token it wrote to its state dir.
import { readFileSync, rmSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Channel } from 'nice-grpc';
import type { CompatServiceDefinition } from 'nice-grpc/lib/service-definitions/index.js';
import { ClusterServiceDefinition } from '../../gen/ts/ultracloud/deployer/v1/cluster_service.js';
import { MachineServiceDefinition } from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { daemonConfigSpec } from '../../lib/config/daemon.js';
import { loadConfig } from '../../lib/config/settings.js';
import { openDatabase } from '../../lib/db/index.js';
import { createServiceClient, openChannel, type ServiceClient } from '../../lib/grpc/client.js';
import { createLogger } from '../../lib/log.js';
import { serveComponents } from '../../lib/serve.js';
import { CA_BUNDLE_FILE, deployerComponent, JOIN_TOKEN_FILE } from '../../services/deployer/component.js';
import { createTestDatabase, type DatabaseTargetName, databaseTargets, type ScratchDatabase, unavailableTargetTest } from './databases.js';

/** Unary calls that take longer than this fail the test instead of hanging it. */
const CALL_DEADLINE_MS = 30_000;

export interface DeployerServer {
  readonly target: DatabaseTargetName;
  /** `127.0.0.1:<port>` */
  readonly address: string;
  readonly stateDir: string;
  /** The admin bearer token the server created in `<state dir>/admin.token`. */
  readonly adminToken: string;
  /** The installer join token the deployer created in `<state dir>/join.token`. */
  readonly joinToken: string;
  /** The cluster CA certificate the deployer wrote to `<state dir>/ca.pem`. */
  readonly caPem: string;
  /** One channel to the server (TLS when started with `tls`), shared by every client below. */
  readonly channel: Channel;
  /** ClusterService as admin. */
  readonly cluster: ServiceClient<typeof ClusterServiceDefinition>;
  /** MachineService as admin. */
  readonly machines: ServiceClient<typeof MachineServiceDefinition>;
  /** A client of `definition` sending `token` as `authorization: Bearer …`; none: anonymous. */
  client<S extends CompatServiceDefinition>(definition: S, token?: string): ServiceClient<S>;
  /** `http://127.0.0.1:<port>/metrics` when started with `metrics`. */
  readonly metricsUrl: string | undefined;
  /** Stops the server and deletes its state dir and (on postgres) its database. Safe to call twice. */
  stop(): Promise<void>;
}

export interface StartDeployerOptions {
  /**
   * Deployer flags by name without dashes (`install-timeout`: `1s`), passed to the component
   * rather than set in process.env, so servers with different settings run side by side.
   */
  readonly flags?: Readonly<Record<string, string>>;
  /** Serve Prometheus metrics on a free loopback port. */
  readonly metrics?: boolean;
  /**
   * Serve TLS as `ultracloud up` does: a server certificate from the cluster CA, client
   * certificates asked for and verified against it. The clients below verify the server with ca.pem.
   */
  readonly tls?: boolean;
  /** Where the server's log lines go (pino JSON, level debug); default: nowhere. */
  readonly logDestination?: NodeJS.WritableStream;
}

// initdb is most of the cost of starting on-disk PGlite (seconds of CPU on the one JS thread,
// which stalls every other test meanwhile). Each PGlite server of a run therefore starts from a
// copy of one freshly initialised, cleanly closed data directory; migrations and everything the
// deployer creates on first start still happen in the server.
let pgliteTemplate: Promise<string> | undefined;

export function pgliteTemplateDir(): Promise<string> {
  pgliteTemplate ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ultracloud-pglite-template-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const database = await openDatabase({ stateDir: dir });
    await database.close();
    return join(dir, 'pgdata');
  })();
  return pgliteTemplate;
}

export async function startDeployerServer(target: DatabaseTargetName, options: StartDeployerOptions = {}): Promise<DeployerServer> {
  const stateDir = await mkdtemp(join(tmpdir(), `ultracloud-deployer-${target}-`));
  let scratch: ScratchDatabase | undefined;
  try {
    if (target === 'postgres') scratch = await createTestDatabase();
    else await cp(await pgliteTemplateDir(), join(stateDir, 'pgdata'), { recursive: true });
    const config = loadConfig(daemonConfigSpec(0), {
      env: {
        ULTRACLOUD_STATE_DIR: stateDir,
        ULTRACLOUD_LISTEN: '127.0.0.1:0',
        ULTRACLOUD_LOG_LEVEL: process.env.ULTRACLOUD_TEST_LOG_LEVEL ?? 'silent',
        ...(scratch ? { ULTRACLOUD_DATABASE_URL: scratch.url } : {}),
        ...(options.metrics ? { ULTRACLOUD_METRICS_LISTEN: '127.0.0.1:0' } : {}),
      },
    });
    const serving = await serveComponents({
      components: [deployerComponent({ ...options.flags })],
      config,
      logger: options.logDestination ? createLogger({ level: 'debug', destination: options.logDestination }) : createLogger({ level: config.logLevel }),
      ...(options.tls ? { transport: { kind: 'cluster-ca' as const, clientCaFile: undefined } } : {}),
    });
    const channel = openChannel(serving.server.address, options.tls ? { tls: { caFile: join(stateDir, CA_BUNDLE_FILE) } } : {});
    const adminToken = readFileSync(serving.adminTokenPath, 'utf8').trim();
    const client = <S extends CompatServiceDefinition>(definition: S, token?: string): ServiceClient<S> =>
      createServiceClient(definition, channel, { defaultDeadlineMs: CALL_DEADLINE_MS, ...(token ? { token } : {}) });
    let stopped: Promise<void> | undefined;
    const database = scratch;
    return {
      target,
      address: serving.server.address,
      stateDir,
      adminToken,
      joinToken: readFileSync(join(stateDir, JOIN_TOKEN_FILE), 'utf8').trim(),
      caPem: readFileSync(join(stateDir, CA_BUNDLE_FILE), 'utf8'),
      metricsUrl: serving.metrics?.url,
      channel,
      cluster: client(ClusterServiceDefinition, adminToken),
      machines: client(MachineServiceDefinition, adminToken),
      client,
      stop() {
        stopped ??= (async () => {
          channel.close();
          try {
            await serving.stop();
          } finally {
            await database?.drop();
            await rm(stateDir, { recursive: true, force: true });
          }
        })();
        return stopped;
      },
    };
  } catch (error) {
    await scratch?.drop().catch(() => undefined);
    await rm(stateDir, { recursive: true, force: true });
    throw error;
  }
}

/** A database target a deployer can be started on. */
export interface DeployerTarget {
  readonly name: DatabaseTargetName;
  start(options?: StartDeployerOptions): Promise<DeployerServer>;
}

/**
 * Calls `define` once per database target that can run (pglite, then postgres), to register
 * that target's tests; their titles should end in ` [<target>]`. A target that cannot run gets
 * one test titled `<title> [<target>]` instead, skipped with the reason, or failing under CI,
 * exactly as storageTest does.
 */
export function forEachDeployerTarget(title: string, define: (target: DeployerTarget) => void): void {
  for (const target of databaseTargets()) {
    if (!target.available) {
      unavailableTargetTest(`${title} [${target.name}]`, target);
      continue;
    }
    define({ name: target.name, start: (options) => startDeployerServer(target.name, options) });
  }
}

/**
 * One server shared by several tests: started (and prepared) on first use, stopped by `stop()`,
 * which callers register as an `after.always` hook. A failed start fails every test that uses it.
 */
export function sharedDeployer(start: () => Promise<DeployerServer>): { get(): Promise<DeployerServer>; stop(): Promise<void> } {
  let started: Promise<DeployerServer> | undefined;
  return {
    get: () => (started ??= start()),
    async stop() {
      const server = await started?.catch(() => undefined);
      await server?.stop();
    },
  };
}
