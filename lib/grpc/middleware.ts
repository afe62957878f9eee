// Server middleware shared by every UltraCloud server: request logging with status mapping, and
// stream termination on shutdown.
import { ServerError, Status } from 'nice-grpc';
import type { CallContext, ServerMiddlewareCall } from 'nice-grpc-common';
import type { Logger } from '../log.js';
import { toServerError } from './status.js';

export interface LogContext {
  /** Child logger carrying `rpc`; handlers add `machine_id` / `node_id` as they learn them. */
  readonly log: Logger;
}

/**
 * Logs one event per finished call (method, status, duration) and maps thrown domain errors to
 * gRPC statuses. Unexpected errors are logged with their stack and reach the client as INTERNAL.
 */
export function requestLoggingMiddleware(logger: Logger) {
  return async function* logRequests<Request, Response>(
    call: ServerMiddlewareCall<Request, Response, LogContext>,
    context: CallContext,
  ): AsyncGenerator<Response, Response | void, undefined> {
    const log = logger.child({ rpc: call.method.path });
    const started = process.hrtime.bigint();
    try {
      const result = yield* call.next(call.request, { ...context, log });
      logCallEnd(log, undefined, started, context.peer);
      return result;
    } catch (err) {
      const mapped = logCallEnd(log, err, started, context.peer);
      throw mapped ?? err;
    }
  };
}

/**
 * Logs how a call ended (`started`: process.hrtime.bigint() at its start) and returns the error
 * the client gets for `err`: domain errors mapped to their status, anything unexpected logged
 * with its stack and turned into INTERNAL; undefined for a cancellation (nothing to send).
 */
export function logCallEnd(log: Logger, err: unknown, started: bigint, peer: string): ServerError | undefined {
  const duration_ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (err === undefined) {
    log.debug({ event: 'rpc.finished', code: 'OK', duration_ms, peer });
    return undefined;
  }
  const mapped = toServerError(err);
  if (!mapped) {
    log.debug({ event: 'rpc.cancelled', duration_ms, peer });
    return undefined;
  }
  const code = Status[mapped.error.code];
  if (mapped.unexpected) log.error({ event: 'rpc.failed', code, duration_ms, peer, err });
  else log.info({ event: 'rpc.rejected', code, message: mapped.error.details, duration_ms, peer });
  return mapped.error;
}

/**
 * Ends long-lived streams when the server shuts down: the handler's `context.signal` is aborted
 * (so its loops stop) and the client receives UNAVAILABLE, which tells agents to reconnect, rather
 * than a torn connection. Unary calls are left to finish on their own.
 */
export function streamTerminationMiddleware(terminating: AbortSignal) {
  return async function* terminateStreams<Request, Response>(
    call: ServerMiddlewareCall<Request, Response>,
    context: CallContext,
  ): AsyncGenerator<Response, Response | void, undefined> {
    if (!call.requestStream && !call.responseStream) {
      return yield* call.next(call.request, context);
    }
    const controller = new AbortController();
    const abort = () => controller.abort();
    if (terminating.aborted || context.signal.aborted) abort();
    terminating.addEventListener('abort', abort);
    context.signal.addEventListener('abort', abort);
    const inner = call.next(call.request, { ...context, signal: controller.signal });
    try {
      for (;;) {
        // The next message, or 'stopped' if the call is aborted first. The abort listener lives for
        // one step only: racing each step against one promise that lives as long as the stream
        // would keep a reaction per message on it until the stream ends (agents' streams live for
        // days and carry a heartbeat every few seconds).
        const step = await new Promise<IteratorResult<Response, Response | void> | 'stopped'>((resolve, reject) => {
          if (controller.signal.aborted) {
            resolve('stopped');
            return;
          }
          const onAbort = () => resolve('stopped');
          controller.signal.addEventListener('abort', onAbort, { once: true });
          inner.next().then(
            (r) => {
              controller.signal.removeEventListener('abort', onAbort);
              resolve(r);
            },
            (err: unknown) => {
              controller.signal.removeEventListener('abort', onAbort);
              // If shutdown won the race, this rejection has nobody to go to; it is dropped.
              reject(err);
            },
          );
        });
        if (step === 'stopped') {
          // Let the handler unwind in the background; its signal is already aborted.
          inner.return(undefined as never).catch(() => undefined);
          if (terminating.aborted) throw new ServerError(Status.UNAVAILABLE, 'server is shutting down');
          throw new ServerError(Status.CANCELLED, 'call cancelled');
        }
        if (step.done) return step.value;
        yield step.value;
      }
    } finally {
      terminating.removeEventListener('abort', abort);
      context.signal.removeEventListener('abort', abort);
    }
  };
}
