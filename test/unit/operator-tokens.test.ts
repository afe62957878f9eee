import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { Role } from '../../gen/ts/ultracloud/deployer/v1/access_service.js';
import { ConfigError, loadConfig } from '../../lib/config/settings.js';
import { InvalidArgumentError } from '../../lib/errors.js';
import { DEPLOYER_CONFIG_SPEC } from '../../services/deployer/config.js';
import {
  lastUsedIsStale,
  parseOperatorTokensFile,
  roleFromProto,
  roleToProto,
  tokenNameProblem,
  tokenStatus,
  validateNewToken,
} from '../../services/deployer/domain/operator-tokens.js';

const HASH_A = 'a'.repeat(64);
const HASH_B = 'B'.repeat(64);

test('the tokens file: one token a line, comments and blank lines ignored, hashes lowercased', (t) => {
  const tokens = parseOperatorTokensFile(`# role  sha256  name\n\nadmin ${HASH_A} alice\n  viewer\t${HASH_B}   grafana.dashboards  \n`);
  t.deepEqual(tokens, [
    { role: 'admin', hash: HASH_A, name: 'alice' },
    { role: 'viewer', hash: 'b'.repeat(64), name: 'grafana.dashboards' },
  ]);
});

const badFiles: [string, string, RegExp][] = [
  ['an unknown role', `admn ${HASH_A} alice`, /line 1: unknown role "admn" \(expected viewer, operator, admin\)/],
  ['a hash that is not SHA-256 hex', 'admin 1234 alice', /line 1: the second field must be the SHA-256/],
  ['a secret pasted instead of its hash', `admin ucop_${'x'.repeat(43)} alice`, /line 1: the second field must be the SHA-256/],
  ['a bad name', `admin ${HASH_A} Alice`, /line 1: "Alice" is not a token name/],
  ['a missing field', `admin ${HASH_A}`, /line 1: expected "<role> <sha256 hex> <name>", got 2 fields/],
  ['an extra field', `admin ${HASH_A} alice extra`, /line 1: .*got 4 fields/],
  ['a name used twice', `admin ${HASH_A} alice\nviewer ${HASH_B} alice`, /line 2: name "alice" is already used on line 1/],
  ['a token listed twice', `admin ${HASH_A} alice\nviewer ${HASH_A} bob`, /line 2: the same token is already listed on line 1/],
];
for (const [what, text, message] of badFiles) {
  test(`the tokens file refuses ${what}, naming the line`, (t) => {
    const err = t.throws(() => parseOperatorTokensFile(text), { instanceOf: InvalidArgumentError });
    t.regex(err.message, message);
  });
}

test('the tokens file reports every bad line at once', (t) => {
  const err = t.throws(() => parseOperatorTokensFile(`admn ${HASH_A} a\nadmin 12 b\nviewer ${HASH_B} c`), { instanceOf: InvalidArgumentError });
  t.deepEqual(
    err.violations.map((v) => v.field),
    ['line 1', 'line 2'],
  );
});

const names: [string, boolean][] = [
  ['alice-laptop', true],
  ['ci.deploy_bot', true],
  ['0day', true],
  ['a'.repeat(63), true],
  ['a'.repeat(64), false],
  ['', false],
  ['-alice', false],
  ['Alice', false],
  ['alice laptop', false],
  ['alice/laptop', false],
];
for (const [name, ok] of names) {
  test(`token name ${JSON.stringify(name)} is ${ok ? 'valid' : 'refused'}`, (t) => {
    t.is(tokenNameProblem(name) === undefined, ok);
  });
}

test('CreateToken: name, role and ttl are checked together, each named by its field', (t) => {
  const err = t.throws(() => validateNewToken({ name: 'Bad Name', role: Role.ROLE_UNSPECIFIED, ttl: { seconds: -5n, nanos: 0 }, description: '' }), {
    instanceOf: InvalidArgumentError,
  });
  t.deepEqual(
    err.violations.map((v) => v.field),
    ['name', 'role', 'ttl'],
  );
});

test('CreateToken: no ttl or a zero ttl never expires; a ttl becomes milliseconds', (t) => {
  t.is(validateNewToken({ name: 'a', role: Role.ROLE_ADMIN, description: '' }).ttlMs, undefined);
  t.is(validateNewToken({ name: 'a', role: Role.ROLE_ADMIN, ttl: { seconds: 0n, nanos: 0 }, description: '' }).ttlMs, undefined);
  t.is(validateNewToken({ name: 'a', role: Role.ROLE_VIEWER, ttl: { seconds: 2_592_000n, nanos: 500_000_000 }, description: '' }).ttlMs, 2_592_000_500);
});

test('roles map to and from the contract; unknown values are refused', (t) => {
  for (const role of ['viewer', 'operator', 'admin'] as const) t.is(roleFromProto(roleToProto(role)), role);
  t.is(roleFromProto(Role.ROLE_UNSPECIFIED), undefined);
  t.is(roleFromProto(Role.UNRECOGNIZED), undefined);
});

test('a token is revoked, expired at its expiry instant, or valid', (t) => {
  const now = new Date('2025-01-01T00:00:00Z');
  t.is(tokenStatus({ expiresAt: null, revokedAt: null }, now), 'valid');
  t.is(tokenStatus({ expiresAt: new Date(now.getTime() + 1), revokedAt: null }, now), 'valid');
  t.is(tokenStatus({ expiresAt: now, revokedAt: null }, now), 'expired');
  t.is(tokenStatus({ expiresAt: new Date(now.getTime() + 1000), revokedAt: now }, now), 'revoked');
});

test('last use is recorded at most once a minute', (t) => {
  const now = new Date('2025-01-01T00:01:00Z');
  t.true(lastUsedIsStale(null, now));
  t.true(lastUsedIsStale(new Date('2025-01-01T00:00:00Z'), now));
  t.false(lastUsedIsStale(new Date('2025-01-01T00:00:01Z'), now));
});

test('--operator-tokens-file is read and checked at start; a bad file or a writable one is a configuration error', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ultracloud-tokens-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'tokens');
  writeFileSync(file, `admin ${HASH_A} ops\n`, { mode: 0o600 });
  const ok = loadConfig(DEPLOYER_CONFIG_SPEC, { env: {}, flags: { 'operator-tokens-file': file } });
  t.deepEqual(ok.operatorTokens, { path: file, tokens: [{ role: 'admin', hash: HASH_A, name: 'ops' }] });

  writeFileSync(file, `admn ${HASH_A} ops\n`);
  const bad = t.throws(() => loadConfig(DEPLOYER_CONFIG_SPEC, { env: { ULTRACLOUD_OPERATOR_TOKENS_FILE: file } }), { instanceOf: ConfigError });
  t.regex(bad.message, /ULTRACLOUD_OPERATOR_TOKENS_FILE \(--operator-tokens-file\): line 1: unknown role "admn"/);

  writeFileSync(file, `admin ${HASH_A} ops\n`);
  chmodSync(file, 0o664);
  const writable = t.throws(() => loadConfig(DEPLOYER_CONFIG_SPEC, { env: { ULTRACLOUD_OPERATOR_TOKENS_FILE: file } }), { instanceOf: ConfigError });
  t.regex(writable.message, /writable by group or others/);

  const missing = t.throws(() => loadConfig(DEPLOYER_CONFIG_SPEC, { env: { ULTRACLOUD_OPERATOR_TOKENS_FILE: join(dir, 'nope') } }), { instanceOf: ConfigError });
  t.regex(missing.message, /file does not exist or is not readable/);
});
