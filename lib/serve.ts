// Runs control-plane components in one server process: open the database, migrate each
// component's schema, start the components, serve them all on one gRPC port, stop in reverse.
import { mkdirSync, readFileSync } from 'node:fs';
import { ServerCredentials } from '@grpc/grpc-js';
import { ensureAdminToken, adminTokenAuthenticator } from './admin-token.js';
import type { Component, StartedComponent } from './component.js';
import type { DaemonConfig } from './config/daemon.js';
import { migrateToLatest, openDatabase } from './db/index.js';
import type { AccessPolicy, Authenticator } from './grpc/auth.js';
import { type RunningServer, startGrpcServer } from './grpc/server.js';
import type { Logger } from './log.js';

export interface ServeOptions {
  readonly components: readonly Component[];
  readonly config: DaemonConfig;
  readonly logger: Logger;
}

/** TLS from the configured files; a CA file also makes the server ask for client certificates. */
function serverCredentials(config: DaemonConfig): ServerCredentials | undefined {
  if (!config.tlsCertFile || !config.tlsKeyFile) return undefined;
  return ServerCredentials.createSsl(
    config.tlsCaFile ? readFileSync(config.tlsCaFile) : null,
    [{ cert_chain: readFileSync(config.tlsCertFile), private_key: readFileSync(config.tlsKeyFile) }],
    false,
  );
}

export interface ServingProcess {
  readonly server: RunningServer;
  readonly adminTokenPath: string;
  stop(): Promise<void>;
}

export async function serveComponents(options: ServeOptions): Promise<ServingProcess> {
  const { config, logger } = options;
  const log = logger.child({ component: 'serve' });
  // The state dir holds the admin token, keys and the embedded database: owner only.
  mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
  const database = await openDatabase({ url: config.databaseUrl, stateDir: config.stateDir });
  log.info({ event: 'database.opened', kind: config.databaseUrl ? 'postgres' : 'pglite' });
  const stopping = new AbortController();
  const started: StartedComponent[] = [];
  let server: RunningServer | undefined;
  const stopAll = async () => {
    stopping.abort();
    await server?.stop();
    for (const c of started.reverse()) await c.stop();
    await database.close();
  };
  try {
    for (const component of options.components) {
      await migrateToLatest(database.db, { schema: component.schema, migrations: component.migrations });
      started.push(
        await component.start({
          db: database.db,
          logger: logger.child({ component: component.name }),
          stateDir: config.stateDir,
          stopping: stopping.signal,
        }),
      );
      log.info({ event: 'component.started', name: component.name, schema: component.schema });
    }
    const admin = ensureAdminToken(config.stateDir);
    if (admin.created) log.info({ event: 'admin_token.created', path: admin.path });
    const policy: AccessPolicy = Object.assign({}, ...started.map((c) => c.policy));
    const authenticators: Authenticator[] = [adminTokenAuthenticator(admin.token), ...started.flatMap((c) => c.authenticators ?? [])];
    server = await startGrpcServer({
      logger,
      listen: config.listen,
      services: started.flatMap((c) => c.services),
      policy,
      authenticators,
      ...(serverCredentials(config) ? { credentials: serverCredentials(config) as ServerCredentials } : {}),
    });
    for (const c of started) c.run?.();
    return { server, adminTokenPath: admin.path, stop: stopAll };
  } catch (err) {
    await stopAll().catch(() => undefined);
    throw err;
  }
}
