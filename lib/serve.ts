// Runs control-plane components in one server process: open the database, migrate each
// component's schema, start the components, serve them all on one gRPC port (TLS unless asked
// for plaintext on loopback) with metrics on a separate HTTP port, stop in reverse.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureAdminToken, adminTokenAuthenticator } from './admin-token.js';
import type { Component, StartedComponent } from './component.js';
import { checkTransport, type DaemonConfig, type ServerTransport } from './config/daemon.js';
import { migrateToLatest, openDatabase } from './db/index.js';
import { openDatabaseNotifications } from './db/notifications.js';
import { localDialAddress, writeEndpointRecord } from './endpoint.js';
import type { AccessPolicy, Authenticator } from './grpc/auth.js';
import { type RunningServer, startGrpcServer } from './grpc/server.js';
import { ServerTlsCredentials } from './grpc/server-tls.js';
import type { Logger } from './log.js';
import { createMetricsRegistry, type MetricsRegistry, type MetricsServer, startMetricsServer } from './metrics.js';
import { type ClusterCa, controlPlaneNames, ensureServerCertificate, type EnsuredServerCertificate } from './pki/index.js';

/** The cluster CA certificate every component that holds the CA writes into the state dir. */
export const CA_FILE = 'ca.pem';
/** How often a long-running process checks whether its own server certificate needs renewing. */
const RENEWAL_CHECK_MS = 12 * 60 * 60_000;

export interface ServeOptions {
  readonly components: readonly Component[];
  readonly config: DaemonConfig;
  readonly logger: Logger;
  /** What `checkTransport` settled on; default: the configured certificate files, else plaintext. */
  readonly transport?: ServerTransport;
  /** Serve metrics on a free port when the configured one is taken (it is a default, not a demand). */
  readonly metricsOnFreePort?: boolean;
}

export interface ServingProcess {
  readonly server: RunningServer;
  readonly adminTokenPath: string;
  /** `host:port` a client on this machine dials (also in the state dir's endpoint.json). */
  readonly dialAddress: string;
  readonly transport: ServerTransport['kind'];
  /** The bundle clients verify the server with, when the certificate is the process's own. */
  readonly caFile: string | undefined;
  /** The `/metrics` HTTP server, when metrics are served. */
  readonly metrics: MetricsServer | undefined;
  stop(): Promise<void>;
}

interface ServerTls {
  readonly credentials: ServerTlsCredentials;
  /** For a certificate of the process's own: replaces it when it nears expiry. */
  readonly renew?: () => Promise<void>;
}

function logCertificate(log: Logger, event: string, cert: EnsuredServerCertificate): void {
  log.info({ event, file: cert.certFile, serial: cert.serialNumber, not_after: cert.notAfter.toISOString(), ...(cert.replaced ? { replaced: cert.replaced } : {}) });
}

/** TLS credentials for `transport`, or undefined for plaintext. */
async function serverTls(transport: ServerTransport, config: DaemonConfig, ca: ClusterCa | undefined, log: Logger): Promise<ServerTls | undefined> {
  switch (transport.kind) {
    case 'plaintext':
      return undefined;
    case 'tls-files':
      return {
        credentials: new ServerTlsCredentials(
          { certificatePem: readFileSync(transport.certFile), privateKeyPem: readFileSync(transport.keyFile) },
          transport.clientCaFile ? readFileSync(transport.clientCaFile) : undefined,
        ),
      };
    case 'cluster-ca': {
      if (!ca) throw new Error('serving TLS from the cluster CA needs the component that holds it (the deployer) in this process');
      const names = controlPlaneNames(config.listen.host);
      const ensure = () => ensureServerCertificate(ca, { stateDir: config.stateDir, names });
      const first = await ensure();
      logCertificate(log, first.outcome === 'issued' ? 'server_certificate.issued' : 'server_certificate.reused', first);
      const credentials = new ServerTlsCredentials(first, transport.clientCaFile ? readFileSync(transport.clientCaFile) : ca.certificatePem);
      return {
        credentials,
        renew: async () => {
          const next = await ensure();
          if (next.outcome === 'reused') return;
          credentials.replaceIdentity(next);
          logCertificate(log, 'server_certificate.renewed', next);
        },
      };
    }
  }
}

export async function serveComponents(options: ServeOptions): Promise<ServingProcess> {
  const { config, logger } = options;
  const transport = options.transport ?? checkTransport(config);
  const log = logger.child({ component: 'serve' });
  // The state dir holds the admin token, keys and the embedded database: owner only.
  mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
  const database = await openDatabase({ url: config.databaseUrl, stateDir: config.stateDir });
  log.info({ event: 'database.opened', kind: config.databaseUrl ? 'postgres' : 'pglite' });
  const notifications = openDatabaseNotifications({ url: config.databaseUrl, logger });
  const registry: MetricsRegistry | undefined = config.metricsListen ? createMetricsRegistry() : undefined;
  const stopping = new AbortController();
  const started: StartedComponent[] = [];
  let server: RunningServer | undefined;
  let metrics: MetricsServer | undefined;
  let renewal: NodeJS.Timeout | undefined;
  const stopAll = async () => {
    stopping.abort();
    clearInterval(renewal);
    await server?.stop();
    await metrics?.stop();
    for (const c of started.reverse()) await c.stop();
    await notifications.close();
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
          ...(config.databaseUrl ? { databaseUrl: config.databaseUrl } : {}),
          notifications,
          ...(registry ? { metrics: registry } : {}),
        }),
      );
      log.info({ event: 'component.started', name: component.name, schema: component.schema });
    }
    const admin = ensureAdminToken(config.stateDir);
    if (admin.created) log.info({ event: 'admin_token.created', path: admin.path });
    const policy: AccessPolicy = Object.assign({}, ...started.map((c) => c.policy));
    const authenticators: Authenticator[] = [adminTokenAuthenticator(admin.token), ...started.flatMap((c) => c.authenticators ?? [])];
    const tls = await serverTls(transport, config, started.find((c) => c.clusterCa)?.clusterCa, log);
    server = await startGrpcServer({
      logger,
      listen: config.listen,
      services: started.flatMap((c) => c.services),
      policy,
      authenticators,
      onDenied: (denial) => {
        for (const c of started) c.onDenied?.(denial);
      },
      ...(tls ? { credentials: tls.credentials } : {}),
      ...(registry ? { metrics: registry } : {}),
    });
    if (tls?.renew) {
      const renew = tls.renew;
      renewal = setInterval(() => {
        renew().catch((err: unknown) => log.error({ event: 'server_certificate.renewal_failed', err }));
      }, RENEWAL_CHECK_MS);
      renewal.unref();
    }
    if (registry && config.metricsListen) {
      metrics = await startMetricsServer({ registry, listen: config.metricsListen, orFreePort: options.metricsOnFreePort ?? false, logger });
    }
    const dialAddress = localDialAddress(config.listen, server.port);
    writeEndpointRecord(config.stateDir, { address: dialAddress, tls: transport.kind !== 'plaintext' });
    for (const c of started) c.run?.();
    return {
      server,
      adminTokenPath: admin.path,
      dialAddress,
      transport: transport.kind,
      caFile: transport.kind === 'cluster-ca' ? join(config.stateDir, CA_FILE) : undefined,
      metrics,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll().catch(() => undefined);
    throw err;
  }
}
