// Clients for UltraCloud services: one channel per server address with keepalive, a bearer
// token on every call, a default deadline, and retries with backoff for RPCs marked idempotent
// or side-effect free in the contract (or a caller asking for `retry: true`).
import { readFileSync } from 'node:fs';
import {
  ChannelCredentials,
  type Channel,
  type Client,
  type ClientMiddleware,
  createChannel,
  createClientFactory,
  Metadata,
} from 'nice-grpc';
import type { CompatServiceDefinition } from 'nice-grpc/lib/service-definitions/index.js';
import { deadlineMiddleware } from 'nice-grpc-client-middleware-deadline';
import { retryMiddleware } from 'nice-grpc-client-middleware-retry';
import { CLIENT_KEEPALIVE_OPTIONS } from './keepalive.js';

export interface ClientTls {
  /** PEM CA bundle that signed the server's certificate. */
  readonly caFile: string;
  /** Client certificate and key for mTLS (agents); omit for operator clients. */
  readonly certFile?: string;
  readonly keyFile?: string;
}

export interface ChannelSettings {
  readonly tls?: ClientTls;
}

/** `host:port`; TLS when `tls` is given, plaintext otherwise (loopback only, enforced by servers). */
export function openChannel(address: string, settings: ChannelSettings = {}): Channel {
  const { tls } = settings;
  const credentials = tls
    ? ChannelCredentials.createSsl(
        readFileSync(tls.caFile),
        tls.keyFile ? readFileSync(tls.keyFile) : null,
        tls.certFile ? readFileSync(tls.certFile) : null,
      )
    : ChannelCredentials.createInsecure();
  return createChannel(address, credentials, CLIENT_KEEPALIVE_OPTIONS);
}

function bearerMiddleware(token: string): ClientMiddleware {
  return async function* addBearer(call, options) {
    const metadata = Metadata(options.metadata);
    if (!metadata.has('authorization')) metadata.set('authorization', `Bearer ${token}`);
    return yield* call.next(call.request, { ...options, metadata });
  };
}

export interface ClientSettings {
  /** Bearer credential sent as `authorization` metadata on every call. */
  readonly token?: string;
  /** Deadline for unary calls that set none, in ms. Streams get none by default. */
  readonly defaultDeadlineMs?: number;
}

export type ServiceClient<S extends CompatServiceDefinition> = Client<S, { deadline?: Date | number; retry?: boolean; retryMaxAttempts?: number }>;

export function createServiceClient<S extends CompatServiceDefinition>(
  definition: S,
  channel: Channel,
  settings: ClientSettings = {},
): ServiceClient<S> {
  let factory = createClientFactory().use(retryMiddleware).use(deadlineMiddleware);
  if (settings.token) factory = factory.use(bearerMiddleware(settings.token));
  const defaultDeadlineMs = settings.defaultDeadlineMs;
  const defaults: Record<string, { deadline?: number; retryMaxAttempts: number }> = {};
  for (const [name, method] of Object.entries(definition.methods ?? definition) as [string, { responseStream?: boolean }][]) {
    defaults[name] = {
      ...(defaultDeadlineMs !== undefined && !method.responseStream ? { deadline: defaultDeadlineMs } : {}),
      retryMaxAttempts: 4,
    };
  }
  return factory.create(definition, channel, defaults as never) as ServiceClient<S>;
}
