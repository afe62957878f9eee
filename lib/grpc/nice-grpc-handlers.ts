// nice-grpc's per-method adapters (implementation + middleware → grpc-js handler), for a server
// that holds nice-grpc services and directly served methods (direct-stream.ts) side by side.
// nice-grpc's `createServer` builds its grpc-js server privately in `listen`, so a method of
// ours cannot join it; server.ts builds the grpc-js server itself with these adapters, exactly
// as nice-grpc's `listen` does. They are not in nice-grpc's typings (marked internal), so they
// are loaded here with the types they have in the version package-lock.json pins (2.1.x).
import { createRequire } from 'node:module';
import type { ServiceDefinition as GrpcJsServiceDefinition, UntypedHandleCall } from '@grpc/grpc-js';
import type { CompatServiceDefinition } from 'nice-grpc/lib/service-definitions/index.js';
import type { ServerMiddleware } from 'nice-grpc-common';

const require = createRequire(import.meta.url);

/** A nice-grpc method definition (normalised). */
export interface NiceMethodDefinition {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  readonly responseSerialize: (message: unknown) => Uint8Array;
}

type Implementation = (request: unknown, context: unknown) => unknown;
type HandlerFactory = (definition: NiceMethodDefinition, implementation: Implementation, middleware: ServerMiddleware | undefined) => UntypedHandleCall;

const factories = {
  unary: (require('nice-grpc/lib/server/handleUnaryCall.js') as { createUnaryMethodHandler: HandlerFactory }).createUnaryMethodHandler,
  serverStream: (require('nice-grpc/lib/server/handleServerStreamingCall.js') as { createServerStreamingMethodHandler: HandlerFactory }).createServerStreamingMethodHandler,
  clientStream: (require('nice-grpc/lib/server/handleClientStreamingCall.js') as { createClientStreamingMethodHandler: HandlerFactory }).createClientStreamingMethodHandler,
  bidi: (require('nice-grpc/lib/server/handleBidiStreamingCall.js') as { createBidiStreamingMethodHandler: HandlerFactory }).createBidiStreamingMethodHandler,
};

const definitions = require('nice-grpc/lib/service-definitions/index.js') as {
  normalizeServiceDefinition(definition: CompatServiceDefinition): Record<string, NiceMethodDefinition>;
  toGrpcJsServiceDefinition(definition: Record<string, NiceMethodDefinition>): GrpcJsServiceDefinition;
};

/** The service's methods by name, normalised, and the same as grpc-js wants them for addService. */
export function grpcJsService(definition: CompatServiceDefinition): { methods: Record<string, NiceMethodDefinition>; grpcJs: GrpcJsServiceDefinition } {
  const methods = definitions.normalizeServiceDefinition(definition);
  return { methods, grpcJs: definitions.toGrpcJsServiceDefinition(methods) };
}

/** The grpc-js handler running `implementation` behind `middleware`, as nice-grpc's server does. */
export function niceGrpcHandler(method: NiceMethodDefinition, implementation: Implementation, middleware: ServerMiddleware | undefined): UntypedHandleCall {
  const factory = method.requestStream ? (method.responseStream ? factories.bidi : factories.clientStream) : method.responseStream ? factories.serverStream : factories.unary;
  return factory(method, implementation, middleware);
}
