// The server every UltraCloud daemon runs: its services plus grpc.health.v1 and server
// reflection (from the buf image, so `buf curl` and grpcurl see types and comments), the shared
// middleware (request logging and status mapping, auth, stream termination), and a graceful stop.
import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import type { ServerCredentials } from '@grpc/grpc-js';
import { createServer, type ServiceImplementation } from 'nice-grpc';
import type { CompatServiceDefinition } from 'nice-grpc/lib/service-definitions/index.js';
import { HealthDefinition, HealthServiceImpl, HealthState } from 'nice-grpc-server-health';
import { ServerReflection, ServerReflectionService } from 'nice-grpc-server-reflection';
import { formatHostPort, type HostPort } from '../config/settings.js';
import type { Logger } from '../log.js';
import { type MetricsRegistry, rpcMetricsMiddleware } from '../metrics.js';
import { type AccessPolicy, type AuthContext, authMiddleware, type Authenticator, describePrincipal } from './auth.js';
import { clientCertificateInterceptor } from './client-certificate.js';
import { type LogContext, requestLoggingMiddleware, streamTerminationMiddleware } from './middleware.js';
import { REFLECTION_IMAGE_PATH, serviceFullName } from './image.js';
import { SERVER_KEEPALIVE_OPTIONS } from './keepalive.js';

/** What a handler's context carries besides nice-grpc's own call context. */
export type HandlerContext = AuthContext & LogContext;

/** A service definition and its implementation; `bindService` checks that the two agree. */
export interface ServiceBinding {
  readonly definition: CompatServiceDefinition;
  readonly implementation: unknown;
}

export function bindService<S extends CompatServiceDefinition>(
  definition: S,
  implementation: ServiceImplementation<S, HandlerContext>,
): ServiceBinding {
  return { definition, implementation };
}

/** Health and reflection are open to anyone: probes and `buf curl --list-services` need no token. */
export const PUBLIC_INFRASTRUCTURE_RPCS: AccessPolicy = {
  '/grpc.health.v1.Health/Check': { public: true },
  '/grpc.health.v1.Health/Watch': { public: true },
  '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo': { public: true },
  '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo': { public: true },
};

export interface GrpcServerOptions {
  readonly logger: Logger;
  readonly listen: HostPort;
  readonly services: readonly ServiceBinding[];
  /** Rules for the services' RPCs; health and reflection are added as public. */
  readonly policy: AccessPolicy;
  readonly authenticators?: readonly Authenticator[];
  readonly credentials?: ServerCredentials;
  /** Descriptor set served by reflection; defaults to the generated buf image. */
  readonly reflectionImage?: Uint8Array;
  /** How long in-flight unary calls get to finish on stop before connections are cut. */
  readonly shutdownGraceMs?: number;
  readonly onDenied?: Parameters<typeof authMiddleware>[0]['onDenied'];
  /** The process's metrics registry: RPC counts, latencies and open streams are recorded on it. */
  readonly metrics?: MetricsRegistry;
}

export interface RunningServer {
  readonly port: number;
  /** `host:port` actually bound (the real port when 0 was asked for). */
  readonly address: string;
  readonly health: HealthState;
  /** Aborted when stop begins; long-running work tied to the server should watch it. */
  readonly stopping: AbortSignal;
  stop(): Promise<void>;
}

export async function startGrpcServer(options: GrpcServerOptions): Promise<RunningServer> {
  const log = options.logger.child({ component: 'grpc-server' });
  const stopController = new AbortController();
  // Every open stream listens for shutdown on this one signal: thousands of agents are expected.
  setMaxListeners(0, stopController.signal);
  const health = HealthState();
  const policy: AccessPolicy = { ...PUBLIC_INFRASTRUCTURE_RPCS, ...options.policy };

  // The interceptor hands the verified client certificate to the auth middleware (agents' mTLS).
  const server = createServer({ ...SERVER_KEEPALIVE_OPTIONS, interceptors: [clientCertificateInterceptor] })
    .use(rpcMetricsMiddleware(options.metrics))
    .use(requestLoggingMiddleware(options.logger))
    .use(streamTerminationMiddleware(stopController.signal))
    .use(
      authMiddleware({
        policy,
        authenticators: options.authenticators ?? [],
        onDenied: async (denial) => {
          log.warn({
            event: 'access.denied',
            rpc: denial.method,
            peer: denial.peer,
            principal: denial.principal ? describePrincipal(denial.principal) : undefined,
            code: denial.code,
            reason: denial.reason,
          });
          await options.onDenied?.(denial);
        },
      }),
    );

  const names: string[] = [];
  for (const binding of options.services) {
    server.add(binding.definition, binding.implementation as ServiceImplementation<CompatServiceDefinition, HandlerContext>);
    names.push(serviceFullName(binding.definition));
  }
  server.add(HealthDefinition, HealthServiceImpl(health));
  const image = options.reflectionImage ?? readFileSync(REFLECTION_IMAGE_PATH);
  server.add(ServerReflectionService, ServerReflection(Buffer.from(image), [...names, 'grpc.health.v1.Health']));

  const port = await server.listen(formatHostPort(options.listen), options.credentials);
  const address = formatHostPort({ host: options.listen.host, port });
  for (const name of names) health.setStatus('healthy', name);
  log.info({ event: 'server.listening', address, services: names });

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      log.info({ event: 'server.stopping', address });
      health.setStatus('unhealthy');
      for (const name of names) health.setStatus('unhealthy', name);
      stopController.abort();
      const grace = options.shutdownGraceMs ?? 10_000;
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), grace);
      });
      const outcome = await Promise.race([server.shutdown().then(() => 'done' as const), timedOut]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        log.warn({ event: 'server.force_stop', grace_ms: grace });
        server.forceShutdown();
      }
      log.info({ event: 'server.stopped', address });
    })();
    return stopping;
  };

  return { port, address, health, stopping: stopController.signal, stop };
}
