// The one mapping from domain errors to gRPC status codes, used by every server.
import { ServerError, Status } from 'nice-grpc';
import { isAbortError } from 'abort-controller-x';
import { DomainError, type DomainErrorKind } from '../errors.js';

const STATUS_BY_KIND: Record<DomainErrorKind, Status> = {
  'invalid-argument': Status.INVALID_ARGUMENT,
  'failed-precondition': Status.FAILED_PRECONDITION,
  conflict: Status.ABORTED,
  'not-found': Status.NOT_FOUND,
  'already-exists': Status.ALREADY_EXISTS,
  unauthenticated: Status.UNAUTHENTICATED,
  'permission-denied': Status.PERMISSION_DENIED,
  'resource-exhausted': Status.RESOURCE_EXHAUSTED,
  'out-of-range': Status.OUT_OF_RANGE,
  unavailable: Status.UNAVAILABLE,
};

/**
 * Converts what a handler threw into what the client sees. Domain errors keep their message;
 * anything unexpected becomes INTERNAL with a generic message (details go to the log only).
 * Returns `undefined` for errors that must propagate unchanged (cancellation).
 */
export function toServerError(err: unknown): { error: ServerError; unexpected: boolean } | undefined {
  if (isAbortError(err)) return undefined;
  if (err instanceof ServerError) return { error: err, unexpected: false };
  if (err instanceof DomainError) return { error: new ServerError(STATUS_BY_KIND[err.kind], err.message), unexpected: false };
  return { error: new ServerError(Status.INTERNAL, 'internal error'), unexpected: true };
}
