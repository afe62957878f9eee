import test from 'ava';
import { captureLog } from '../helpers/log-capture.js';

test('secret fields are redacted at any of the first three levels', (t) => {
  const { lines, logger: log } = captureLog('info');
  log.info({
    event: 'test',
    token: 'tok-top',
    request: { sessionSecret: 'sess-1', machine_id: 'm-1' },
    response: { secrets: { tlsKeyPem: 'KEY' }, plan: { install_token: 'inst-1' } },
    authorization: 'Bearer xyz',
  });
  const out = lines.join('');
  for (const secret of ['tok-top', 'sess-1', 'KEY', 'inst-1', 'Bearer xyz']) t.false(out.includes(secret), secret);
  t.true(out.includes('m-1'));
  const parsed = JSON.parse(lines[0] as string) as Record<string, unknown>;
  t.is(parsed.token, '[redacted]');
  t.is(parsed.level, 'info');
});

test('child bindings, arrays and errors are redacted; the logged objects are left as they were', (t) => {
  const { lines, logger: log } = captureLog('info');
  const request = { installToken: 'inst-2', machine_id: 'm-2' };
  const child = log.child({ rpc: '/x', authorization: 'Bearer child' });
  child.info({ event: 'test', request, items: [{ token: 'tok-in-array' }, 'plain'] });
  const err = Object.assign(new Error('boom'), { detail: { password: 'pw-1' } });
  child.error({ event: 'failed', err });
  const out = lines.join('');
  for (const secret of ['inst-2', 'Bearer child', 'tok-in-array', 'pw-1']) t.false(out.includes(secret), secret);
  t.true(out.includes('m-2'));
  t.true(out.includes('plain'));
  t.true(out.includes('boom'));
  t.is(request.installToken, 'inst-2', 'the caller object is not changed');
  const first = JSON.parse(lines[0] as string) as { request: Record<string, unknown>; items: unknown[] };
  t.deepEqual(first.request, { installToken: '[redacted]', machine_id: 'm-2' });
  t.deepEqual(first.items, [{ token: '[redacted]' }, 'plain']);
});

test('a line without secrets is written unchanged', (t) => {
  const { lines, logger: log } = captureLog('info');
  log.info({ event: 'machine.transition', machine_id: 'm-3', progress: { percent: 60, phase: 'install' }, tokens_issued: 2 });
  const parsed = JSON.parse(lines[0] as string) as Record<string, unknown>;
  t.deepEqual(parsed.progress, { percent: 60, phase: 'install' });
  t.is(parsed.tokens_issued, 2);
});
