// lib/batched-writer.ts: rows recorded on a hot path are written later, in order, in batches; a
// flood beyond the bound becomes a count; a failed batch is logged and later batches still go.
import test from 'ava';
import { BatchedWriter } from '../../lib/batched-writer.js';
import { captureLog } from '../helpers/log-capture.js';

test('rows recorded together are written as one batch, in order, without the caller waiting', async (t) => {
  const batches: { rows: number[]; dropped: number }[] = [];
  const writer = new BatchedWriter<number>({ log: captureLog().logger, failureEvent: 'test.failed', flushDelayMs: 10, write: async (rows, dropped) => void batches.push({ rows: [...rows], dropped }) });
  for (let i = 1; i <= 5; i++) writer.record(i);
  t.deepEqual(batches, [], 'nothing written while recording');
  await new Promise((r) => setTimeout(r, 50));
  writer.record(6);
  await writer.stop();
  t.deepEqual(batches, [{ rows: [1, 2, 3, 4, 5], dropped: 0 }, { rows: [6], dropped: 0 }]);
});

test('beyond the bound rows are counted, not kept, and the count goes with the next batch', async (t) => {
  const batches: { rows: number[]; dropped: number }[] = [];
  const writer = new BatchedWriter<number>({ log: captureLog().logger, failureEvent: 'test.failed', maxQueued: 3, write: async (rows, dropped) => void batches.push({ rows: [...rows], dropped }) });
  for (let i = 1; i <= 10; i++) writer.record(i);
  await writer.flush();
  t.deepEqual(batches, [{ rows: [1, 2, 3], dropped: 7 }]);
  await writer.flush();
  t.is(batches.length, 1, 'an empty flush writes nothing');
  await writer.stop();
});

test('a batch that cannot be written is logged; the next one is still written', async (t) => {
  const captured = captureLog();
  const written: number[][] = [];
  let fail = true;
  const writer = new BatchedWriter<number>({
    log: captured.logger,
    failureEvent: 'test.write_failed',
    write: async (rows) => {
      if (fail) throw new Error('database down');
      written.push([...rows]);
    },
  });
  writer.record(1);
  await writer.flush();
  fail = false;
  writer.record(2);
  await writer.stop();
  t.deepEqual(written, [[2]]);
  const failure = captured.events().find((l) => l.event === 'test.write_failed');
  t.like(failure, { level: 'error', rows: 1, dropped: 0 });
});
