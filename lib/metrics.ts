// Prometheus metrics of one UltraCloud process: one registry per process (never prom-client's
// global one, so in-process servers in tests do not share counters), the Node.js process metrics,
// RPC counts, latencies and open streams from a server middleware, and whatever components
// register on the registry (the deployer's machines by state and install durations). Served in
// the Prometheus text format on `/metrics` of a separate plain HTTP port. Names: docs/metrics.md.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ServerError, Status } from 'nice-grpc';
import type { CallContext, ServerMiddlewareCall } from 'nice-grpc-common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { formatHostPort, type HostPort } from './config/settings.js';
import type { Logger } from './log.js';

export type MetricsRegistry = Registry;

/** A registry for this process, with the standard process and Node.js runtime metrics. */
export function createMetricsRegistry(): MetricsRegistry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** Seconds; from a health check (well under a millisecond) to a slow ListMachines page. */
const RPC_LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** `unary`, `client_stream`, `server_stream` or `bidi_stream`, as go-grpc-prometheus labels them. */
function rpcType(requestStream: boolean, responseStream: boolean): string {
  if (requestStream) return responseStream ? 'bidi_stream' : 'client_stream';
  return responseStream ? 'server_stream' : 'unary';
}

/** `/pkg.Service/Method` → [`pkg.Service`, `Method`]. */
function splitMethodPath(path: string): [string, string] {
  const slash = path.lastIndexOf('/');
  return [path.slice(1, slash), path.slice(slash + 1)];
}

/** The status a call ended with, as its name (`OK`, `PERMISSION_DENIED`, …). */
function statusName(err: unknown, signal: AbortSignal): string {
  if (err instanceof ServerError) return Status[err.code] ?? 'UNKNOWN';
  return signal.aborted ? 'CANCELLED' : 'UNKNOWN';
}

/** Starts timing one call; the returned function records how it ended (a status name). */
export type CallMeter = (path: string, requestStream: boolean, responseStream: boolean) => (code: string) => void;

/**
 * Counts finished calls and times them by service, method, type and status code, and gauges
 * open streams by method. Used by the server middleware and by methods served without it.
 * Without a registry it records nothing.
 */
export function rpcMeter(registry: MetricsRegistry | undefined): CallMeter {
  if (!registry) return () => () => undefined;
  const labelNames = ['grpc_service', 'grpc_method', 'grpc_type', 'grpc_code'] as const;
  const handled = new Counter({
    name: 'ultracloud_grpc_server_handled_total',
    help: 'RPCs completed on the server, by service, method, type and status code.',
    labelNames,
    registers: [registry],
  });
  const handling = new Histogram({
    name: 'ultracloud_grpc_server_handling_seconds',
    help: 'Time from the start of an RPC to its end on the server (for streams: how long the stream was open), by status code.',
    labelNames,
    buckets: RPC_LATENCY_BUCKETS,
    registers: [registry],
  });
  const openStreams = new Gauge({
    name: 'ultracloud_grpc_server_open_streams',
    help: 'Streaming RPCs open now, by service and method.',
    labelNames: ['grpc_service', 'grpc_method'] as const,
    registers: [registry],
  });
  return (path, requestStream, responseStream) => {
    const [service, method] = splitMethodPath(path);
    const type = rpcType(requestStream, responseStream);
    const streaming = type !== 'unary';
    const started = process.hrtime.bigint();
    if (streaming) openStreams.inc({ grpc_service: service, grpc_method: method });
    return (code) => {
      if (streaming) openStreams.dec({ grpc_service: service, grpc_method: method });
      const labels = { grpc_service: service, grpc_method: method, grpc_type: type, grpc_code: code };
      handled.inc(labels);
      handling.observe(labels, Number(process.hrtime.bigint() - started) / 1e9);
    };
  };
}

/**
 * Server middleware recording every call on `meter`. Placed outermost, it sees the status the
 * client gets (domain errors already mapped, denials included).
 */
export function rpcMetricsMiddleware(meter: CallMeter) {
  return async function* measure<Request, Response>(call: ServerMiddlewareCall<Request, Response>, context: CallContext) {
    const finish = meter(call.method.path, call.method.requestStream, call.method.responseStream);
    let code = 'OK';
    try {
      return yield* call.next(call.request, context);
    } catch (err) {
      code = statusName(err, context.signal);
      throw err;
    } finally {
      // A stream the client cancelled ends here through return(), not an error.
      if (code === 'OK' && context.signal.aborted) code = 'CANCELLED';
      finish(code);
    }
  };
}

export interface MetricsServerOptions {
  readonly registry: MetricsRegistry;
  readonly listen: HostPort;
  /** When the port is taken, listen on a free one instead of failing (for a default address). */
  readonly orFreePort?: boolean;
  readonly logger: Logger;
}

export interface MetricsServer {
  /** `host:port` actually bound. */
  readonly address: string;
  /** `http://host:port/metrics`. */
  readonly url: string;
  stop(): Promise<void>;
}

async function answer(registry: MetricsRegistry, req: IncomingMessage, res: ServerResponse, log: Logger): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://metrics').pathname;
  if (path !== '/metrics') {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: metrics are at /metrics\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
    return;
  }
  try {
    const body = await registry.metrics();
    res.writeHead(200, { 'content-type': registry.contentType });
    res.end(req.method === 'HEAD' ? undefined : body);
  } catch (err) {
    log.error({ event: 'metrics.scrape_failed', err });
    res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('metrics collection failed\n');
  }
}

/** Serves `/metrics` over plain HTTP on its own port, apart from the gRPC port. */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const log = options.logger.child({ component: 'metrics' });
  const server = createServer((req, res) => void answer(options.registry, req, res, log));
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      server.once('error', onError);
      server.listen(port, options.listen.host, () => {
        server.off('error', onError);
        resolve();
      });
    });
  try {
    await listen(options.listen.port);
  } catch (err) {
    if (!options.orFreePort || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    log.warn({ event: 'metrics.port_taken', wanted: formatHostPort(options.listen) });
    await listen(0);
  }
  const address = formatHostPort({ host: options.listen.host, port: (server.address() as AddressInfo).port });
  log.info({ event: 'metrics.listening', address });
  let stopping: Promise<void> | undefined;
  return {
    address,
    url: `http://${address}/metrics`,
    stop: () =>
      (stopping ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Idle keep-alive connections of a scraper would otherwise hold close() open.
        server.closeAllConnections();
      }).then(() => log.info({ event: 'metrics.stopped', address }))),
  };
}
