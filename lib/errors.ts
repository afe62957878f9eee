// Domain errors. Domain and store code throw these; only lib/grpc/status.ts turns them into gRPC
// status codes, so domain code never imports grpc and every service maps errors the same way.

/** One problem with a request or document: the path of the offending field and what is wrong. */
export interface FieldViolation {
  readonly field: string;
  readonly description: string;
}

export abstract class DomainError extends Error {
  abstract readonly kind: DomainErrorKind;
}

export type DomainErrorKind =
  | 'invalid-argument'
  | 'failed-precondition'
  | 'conflict'
  | 'not-found'
  | 'already-exists'
  | 'unauthenticated'
  | 'permission-denied'
  | 'resource-exhausted'
  | 'out-of-range'
  | 'unavailable';

/** Bad input. Lists every violation, one per line, so a caller can fix them all at once. */
export class InvalidArgumentError extends DomainError {
  readonly kind = 'invalid-argument';
  readonly violations: readonly FieldViolation[];

  constructor(violations: FieldViolation | readonly FieldViolation[]) {
    const list = Array.isArray(violations) ? violations : [violations as FieldViolation];
    super(list.map((v) => `${v.field}: ${v.description}`).join('\n'));
    this.name = 'InvalidArgumentError';
    this.violations = list;
  }
}

/** The object is not in a state that allows the operation (e.g. a lifecycle transition). */
export class FailedPreconditionError extends DomainError {
  readonly kind = 'failed-precondition';
  constructor(message: string) {
    super(message);
    this.name = 'FailedPreconditionError';
  }
}

/** A concurrent writer won: the caller's resource_version or generation is stale. */
export class ConflictError extends DomainError {
  readonly kind = 'conflict';
  constructor(message: string) {
    super(message);
    this.name = 'ConflictError';
  }
}

export class NotFoundError extends DomainError {
  readonly kind = 'not-found';
  constructor(message: string) {
    super(message);
    this.name = 'NotFoundError';
  }
}

export class AlreadyExistsError extends DomainError {
  readonly kind = 'already-exists';
  constructor(message: string) {
    super(message);
    this.name = 'AlreadyExistsError';
  }
}

export class UnauthenticatedError extends DomainError {
  readonly kind = 'unauthenticated';
  constructor(message: string) {
    super(message);
    this.name = 'UnauthenticatedError';
  }
}

export class PermissionDeniedError extends DomainError {
  readonly kind = 'permission-denied';
  constructor(message: string) {
    super(message);
    this.name = 'PermissionDeniedError';
  }
}

export class ResourceExhaustedError extends DomainError {
  readonly kind = 'resource-exhausted';
  constructor(message: string) {
    super(message);
    this.name = 'ResourceExhaustedError';
  }
}

/** A position the caller gave (e.g. a resource_version to resume from) is outside what is kept. */
export class OutOfRangeError extends DomainError {
  readonly kind = 'out-of-range';
  constructor(message: string) {
    super(message);
    this.name = 'OutOfRangeError';
  }
}

/** A dependency (database, another service) is temporarily unreachable; the caller may retry. */
export class UnavailableError extends DomainError {
  readonly kind = 'unavailable';
  constructor(message: string) {
    super(message);
    this.name = 'UnavailableError';
  }
}

