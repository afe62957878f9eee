import test from 'ava';
import { Writable } from 'node:stream';
import { createLogger } from '../../lib/log.js';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { lines, destination };
}

test('secret fields are redacted at any of the first three levels', (t) => {
  const { lines, destination } = capture();
  const log = createLogger({ destination, level: 'info' });
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
