import test from 'ava';
import {
  checkTransport,
  ConfigError,
  daemonConfigSpec,
  loadConfig,
  parseDurationMs,
  parseHostPort,
} from '../../lib/config/index.js';

test('daemon config defaults to loopback, the given port and PGlite in ./.ultracloud', (t) => {
  const config = loadConfig(daemonConfigSpec(7001), { env: {} });
  t.deepEqual(config.listen, { host: '127.0.0.1', port: 7001 });
  t.true(config.stateDir.endsWith('.ultracloud'));
  t.is(config.databaseUrl, undefined);
  t.is(config.logLevel, 'info');
});

test('a flag wins over its environment variable', (t) => {
  const config = loadConfig(daemonConfigSpec(7001), {
    env: { ULTRACLOUD_LISTEN: '127.0.0.1:9000' },
    flags: { listen: '127.0.0.2:9100' },
  });
  t.deepEqual(config.listen, { host: '127.0.0.2', port: 9100 });
});

test('every bad setting is reported at once, named by variable and flag', (t) => {
  const err = t.throws(
    () =>
      loadConfig(daemonConfigSpec(7001), {
        env: {
          ULTRACLOUD_LISTEN: 'nonsense',
          ULTRACLOUD_DATABASE_URL: 'mysql://x',
          ULTRACLOUD_LOG_LEVEL: 'loud',
          ULTRACLOUD_TLS_CERT: '/nonexistent/cert.pem',
        },
      }),
    { instanceOf: ConfigError },
  );
  t.is(err.problems.length, 4);
  t.regex(err.message, /ULTRACLOUD_LISTEN \(--listen\): expected host:port, got "nonsense"/);
  t.regex(err.message, /ULTRACLOUD_DATABASE_URL \(--database-url\): expected a postgres/);
  t.regex(err.message, /ULTRACLOUD_LOG_LEVEL \(--log-level\): expected one of/);
  t.regex(err.message, /ULTRACLOUD_TLS_CERT \(--tls-cert\): file does not exist/);
});

test('a required setting without a default is reported as required', (t) => {
  const err = t.throws(
    () => loadConfig({ joinToken: { env: 'ULTRACLOUD_JOIN_TOKEN', description: 'ISO join token', parse: (s: string) => s } }, { env: {} }),
    { instanceOf: ConfigError },
  );
  t.is(err.message, 'invalid configuration:\n  ULTRACLOUD_JOIN_TOKEN: required (ISO join token)');
});

test('plaintext is refused off loopback', (t) => {
  const config = loadConfig(daemonConfigSpec(7001), { env: { ULTRACLOUD_LISTEN: '0.0.0.0:7001' } });
  const err = t.throws(() => checkTransport(config), { instanceOf: ConfigError });
  t.regex(err.message, /plaintext gRPC is only allowed on loopback, got 0\.0\.0\.0/);
  t.notThrows(() => checkTransport(loadConfig(daemonConfigSpec(7001), { env: { ULTRACLOUD_LISTEN: '[::1]:7001' } })));
  t.notThrows(() => checkTransport(loadConfig(daemonConfigSpec(7001), { env: { ULTRACLOUD_LISTEN: 'localhost:7001' } })));
});

const hostPorts: [string, { host: string; port: number } | RegExp][] = [
  ['127.0.0.1:7000', { host: '127.0.0.1', port: 7000 }],
  ['[::1]:0', { host: '::1', port: 0 }],
  ['deployer.lab:7001', { host: 'deployer.lab', port: 7001 }],
  ['127.0.0.1', /expected host:port/],
  ['127.0.0.1:70000', /port must be/],
  [':7000', /expected host:port/],
];
for (const [raw, expected] of hostPorts) {
  test(`parseHostPort(${JSON.stringify(raw)})`, (t) => {
    if (expected instanceof RegExp) t.throws(() => parseHostPort(raw), { message: expected });
    else t.deepEqual(parseHostPort(raw), expected);
  });
}

const durations: [string, number | null][] = [
  ['250ms', 250],
  ['30s', 30_000],
  ['5m', 300_000],
  ['1m30s', 90_000],
  ['1h', 3_600_000],
  ['', null],
  ['30', null],
  ['5 minutes', null],
];
for (const [raw, expected] of durations) {
  test(`parseDurationMs(${JSON.stringify(raw)})`, (t) => {
    if (expected === null) t.throws(() => parseDurationMs(raw), { message: /expected a duration/ });
    else t.is(parseDurationMs(raw), expected);
  });
}

test('up serves TLS from the cluster CA by default, on any address; --insecure-loopback is plaintext on loopback only', (t) => {
  const load = (env: NodeJS.ProcessEnv) => loadConfig(daemonConfigSpec(7000), { env });
  t.deepEqual(checkTransport(load({}), { selfIssued: true }), { kind: 'cluster-ca', clientCaFile: undefined });
  t.deepEqual(checkTransport(load({ ULTRACLOUD_LISTEN: '0.0.0.0:7000' }), { selfIssued: true }), { kind: 'cluster-ca', clientCaFile: undefined });
  t.deepEqual(checkTransport(load({ ULTRACLOUD_INSECURE_LOOPBACK: 'true' }), { selfIssued: true }), { kind: 'plaintext' });
  const err = t.throws(() => checkTransport(load({ ULTRACLOUD_INSECURE_LOOPBACK: '1', ULTRACLOUD_LISTEN: '10.0.0.5:7000' }), { selfIssued: true }), { instanceOf: ConfigError });
  t.regex(err.message, /plaintext gRPC is only allowed on loopback, got 10\.0\.0\.5; drop ULTRACLOUD_INSECURE_LOOPBACK \(--insecure-loopback\)/);
  // A separate daemon without certificate files stays plaintext, as before.
  t.deepEqual(checkTransport(load({})), { kind: 'plaintext' });
});

test('certificate files win over the self-issued certificate, and do not mix with --insecure-loopback', (t) => {
  const file = new URL(import.meta.url).pathname;
  const config = loadConfig(daemonConfigSpec(7000), { env: { ULTRACLOUD_TLS_CERT: file, ULTRACLOUD_TLS_KEY: file, ULTRACLOUD_TLS_CA: file } });
  t.deepEqual(checkTransport(config, { selfIssued: true }), { kind: 'tls-files', certFile: file, keyFile: file, clientCaFile: file });
  const mixed = loadConfig(daemonConfigSpec(7000), { env: { ULTRACLOUD_TLS_CERT: file, ULTRACLOUD_TLS_KEY: file }, flags: { 'insecure-loopback': 'true' } });
  const err = t.throws(() => checkTransport(mixed, { selfIssued: true }), { instanceOf: ConfigError });
  t.regex(err.message, /ULTRACLOUD_INSECURE_LOOPBACK \(--insecure-loopback\): plaintext and ULTRACLOUD_TLS_CERT\/ULTRACLOUD_TLS_KEY exclude each other/);
});

test('metrics are off for daemons unless set, on by default where the command says so, and "off" turns them off', (t) => {
  t.is(loadConfig(daemonConfigSpec(7001), { env: {} }).metricsListen, undefined);
  const up = daemonConfigSpec(7000, { metricsListen: { host: '127.0.0.1', port: 9464 } });
  t.deepEqual(loadConfig(up, { env: {} }).metricsListen, { host: '127.0.0.1', port: 9464 });
  t.deepEqual(loadConfig(up, { env: { ULTRACLOUD_METRICS_LISTEN: '0.0.0.0:9100' } }).metricsListen, { host: '0.0.0.0', port: 9100 });
  t.is(loadConfig(up, { flags: { 'metrics-listen': 'off' }, env: {} }).metricsListen, undefined);
  t.throws(() => loadConfig(up, { env: { ULTRACLOUD_METRICS_LISTEN: '9464' } }), { message: /ULTRACLOUD_METRICS_LISTEN \(--metrics-listen\): expected host:port, got "9464"/ });
});
