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
