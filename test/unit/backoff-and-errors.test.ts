import test from 'ava';
import { Status } from 'nice-grpc';
import { backoffDelayMs, sleep } from '../../lib/backoff.js';
import {
  ConflictError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  UnauthenticatedError,
} from '../../lib/errors.js';
import { toServerError } from '../../lib/grpc/status.js';

test('backoff grows exponentially up to its cap, with full jitter', (t) => {
  const policy = { initialMs: 100, maxMs: 1000, factor: 2 };
  t.deepEqual([0, 1, 2, 3, 4, 10].map((a) => backoffDelayMs(a, policy, () => 1)), [100, 200, 400, 800, 1000, 1000]);
  t.is(backoffDelayMs(3, policy, () => 0), 0);
});

test('sleep rejects as soon as its signal aborts', async (t) => {
  const controller = new AbortController();
  const started = Date.now();
  setTimeout(() => controller.abort(new Error('stop')), 20);
  await t.throwsAsync(sleep(10_000, controller.signal), { message: 'stop' });
  t.true(Date.now() - started < 5_000);
});

const mapping: [Error, Status][] = [
  [new InvalidArgumentError({ field: 'inventory.disks', description: 'at least one disk is required' }), Status.INVALID_ARGUMENT],
  [new FailedPreconditionError('machine is installing'), Status.FAILED_PRECONDITION],
  [new ConflictError('resource_version 3 is stale (now 4)'), Status.ABORTED],
  [new NotFoundError('machine m-1 not found'), Status.NOT_FOUND],
  [new UnauthenticatedError('no credential'), Status.UNAUTHENTICATED],
  [new PermissionDeniedError('viewer may not'), Status.PERMISSION_DENIED],
];
for (const [err, status] of mapping) {
  test(`${err.name} maps to ${Status[status]} with its message`, (t) => {
    const mapped = toServerError(err);
    t.is(mapped?.error.code, status);
    t.is(mapped?.error.details, err.message);
    t.false(mapped?.unexpected);
  });
}

test('an unexpected error becomes INTERNAL without leaking its message', (t) => {
  const mapped = toServerError(new Error('connection string postgres://secret@db'));
  t.is(mapped?.error.code, Status.INTERNAL);
  t.is(mapped?.error.details, 'internal error');
  t.true(mapped?.unexpected);
});

test('InvalidArgumentError names every field', (t) => {
  const err = new InvalidArgumentError([
    { field: 'inventory.nics[0].mac', description: 'not a MAC address' },
    { field: 'inventory.disks', description: 'at least one disk is required' },
  ]);
  t.is(err.message, 'inventory.nics[0].mac: not a MAC address\ninventory.disks: at least one disk is required');
});
