// The server every UltraCloud daemon runs: its services plus grpc.health.v1 and server
// reflection (from the buf image, so `buf curl` and grpcurl see types and comments), the shared
// middleware (request logging and status mapping, auth, stream termination), and a graceful stop.
// Services are nice-grpc implementations; a bidi method held open by thousands of agents may be
// served directly on grpc-js instead (direct-stream.ts), under the same policy, log and metrics.
import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import { type ServiceDefinition as GrpcJsServiceDefinition, Server, ServerCredentials, type UntypedHandleCall } from '@grpc/grpc-js';
import type { ServiceImplementation } from 'nice-grpc';
import { composeServerMiddleware, type ServerMiddleware } from 'nice-grpc-common';
import type { CompatServiceDefinition } from 'nice-grpc/lib/service-definitions/index.js';
import { HealthDefinition, HealthServiceImpl, HealthState } from 'nice-grpc-server-health';
import { ServerReflection, ServerReflectionService } from 'nice-grpc-server-reflection';
import { formatHostPort, type HostPort } from '../config/settings.js';
import type { Logger } from '../log.js';
import { type MetricsRegistry, rpcMeter, rpcMetricsMiddleware } from '../metrics.js';
import { type AccessPolicy, type AuthContext, authMiddleware, type Authenticator, callAuthorizer, describePrincipal } from './auth.js';
import { clientCertificateInterceptor } from './client-certificate.js';
import { type DirectBidiHandler, directBidiHandler, directResponseSerializer } from './direct-stream.js';
import { grpcJsService, niceGrpcHandler } from './nice-grpc-handlers.js';
import { type LogContext, requestLoggingMiddleware, streamTerminationMiddleware } from './middleware.js';
import { REFLECTION_IMAGE_PATH, serviceFullName } from './image.js';
import { SERVER_KEEPALIVE_OPTIONS } from './keepalive.js';

/** What a handler's context carries besides nice-grpc's own call context. */
export type HandlerContext = AuthContext & LogContext;

/** A service definition and its implementation; `bindService` checks that the two agree. */
export interface ServiceBinding {
  readonly definition: CompatServiceDefinition;
  readonly implementation: unknown;
  /** Bidi methods (by name) served directly on grpc-js rather than through nice-grpc. */
  readonly direct?: Readonly<Record<string, DirectBidiHandler<never, never>>>;
}

export function bindService<S extends CompatServiceDefinition>(
  definition: S,
  implementation: ServiceImplementation<S, HandlerContext>,
): ServiceBinding {
  return { definition, implementation };
}

type MessageOf<T> = T extends { decode(...args: never[]): infer M } ? M : never;
type DirectHandlers<S> = S extends { methods: infer M }
  ? { [K in keyof M]: M[K] extends { requestType: infer Q; responseType: infer R } ? DirectBidiHandler<MessageOf<Q>, MessageOf<R>> : never }
  : never;

/** A service whose every method is a bidi stream served directly on grpc-js (direct-stream.ts). */
export function bindDirectService<S extends CompatServiceDefinition & { methods: Record<string, { requestStream: true; responseStream: true }> }>(
  definition: S,
  handlers: DirectHandlers<S>,
): ServiceBinding {
  return { definition, implementation: {}, direct: handlers as Record<string, DirectBidiHandler<never, never>> };
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

  const denied: NonNullable<GrpcServerOptions['onDenied']> = async (denial) => {
    log.warn({
      event: 'access.denied',
      rpc: denial.method,
      peer: denial.peer,
      principal: denial.principal ? describePrincipal(denial.principal) : undefined,
      code: denial.code,
      reason: denial.reason,
    });
    await options.onDenied?.(denial);
  };
  const meter = rpcMeter(options.metrics);
  const auth = { policy, authenticators: options.authenticators ?? [], onDenied: denied };
  const shared = composeServerMiddleware(composeServerMiddleware(requestLoggingMiddleware(options.logger), streamTerminationMiddleware(stopController.signal)), authMiddleware(auth));
  // Metrics outermost, so they see the status the client gets.
  const middleware = (options.metrics ? composeServerMiddleware(rpcMetricsMiddleware(meter), shared) : shared) as ServerMiddleware;
  const direct = { authorizer: callAuthorizer(auth), meter, logger: options.logger, stopping: stopController.signal };

  // The interceptor hands the verified client certificate to the auth middleware (agents' mTLS);
  // directly served methods, added to `directPaths` below, read it themselves.
  const directPaths = new Set<string>();
  const server = new Server({ ...SERVER_KEEPALIVE_OPTIONS, interceptors: [clientCertificateInterceptor(directPaths)] });
  const add = (definition: CompatServiceDefinition, implementation: unknown, directMethods: ServiceBinding['direct']) => {
    const { methods, grpcJs: generic } = grpcJsService(definition);
    const grpcJs: Record<string, GrpcJsServiceDefinition[string]> = { ...generic };
    const handlers: Record<string, UntypedHandleCall> = {};
    for (const [name, method] of Object.entries(methods)) {
      const own = directMethods?.[name];
      if (own) {
        if (!method.requestStream || !method.responseStream) throw new Error(`${method.path}: only bidi methods can be served directly`);
        handlers[name] = directBidiHandler(method.path, own, direct) as UntypedHandleCall;
        // Messages the handler encoded once for many streams pass the serializer as they are.
        grpcJs[name] = { ...(generic[name] as GrpcJsServiceDefinition[string]), responseSerialize: directResponseSerializer(method.responseSerialize) };
        directPaths.add(method.path);
        continue;
      }
      const impl = (implementation as Record<string, ((request: unknown, context: unknown) => unknown) | undefined>)[name];
      if (!impl) throw new Error(`${method.path}: no implementation`);
      handlers[name] = niceGrpcHandler(method, impl.bind(implementation), middleware);
    }
    server.addService(grpcJs, handlers);
  };

  const names: string[] = [];
  for (const binding of options.services) {
    add(binding.definition, binding.implementation, binding.direct);
    names.push(serviceFullName(binding.definition));
  }
  add(HealthDefinition, HealthServiceImpl(health), undefined);
  const image = options.reflectionImage ?? readFileSync(REFLECTION_IMAGE_PATH);
  add(ServerReflectionService, ServerReflection(Buffer.from(image), [...names, 'grpc.health.v1.Health']), undefined);

  const credentials = options.credentials ?? ServerCredentials.createInsecure();
  const port = await new Promise<number>((resolve, reject) => server.bindAsync(formatHostPort(options.listen), credentials, (err, p) => (err ? reject(err) : resolve(p))));
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
      const shutdown = new Promise<'done'>((resolve) => server.tryShutdown(() => resolve('done')));
      const outcome = await Promise.race([shutdown, timedOut]);
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
