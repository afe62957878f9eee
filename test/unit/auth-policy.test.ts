import test from 'ava';
import { type AccessRule, bearerFrom, describePrincipal, isAllowed, type Principal, sameNode } from '../../lib/grpc/auth.js';

const viewer: Principal = { kind: 'operator', role: 'viewer', subject: 'v' };
const operator: Principal = { kind: 'operator', role: 'operator', subject: 'o' };
const admin: Principal = { kind: 'operator', role: 'admin', subject: 'a' };
const join: Principal = { kind: 'installer', credential: 'join-token' };
const session: Principal = { kind: 'installer', credential: 'session-secret', machineId: 'm-1' };
const agent: Principal = { kind: 'agent', nodeId: 'node-1' };
const anonymous: Principal = { kind: 'anonymous' };

const cases: [string, AccessRule | undefined, Principal, boolean][] = [
  ['public rule admits anonymous', { public: true }, anonymous, true],
  ['missing rule denies even admin', undefined, admin, false],
  ['operator rule denies viewer', { operator: 'operator' }, viewer, false],
  ['operator rule admits operator', { operator: 'operator' }, operator, true],
  ['operator rule admits admin', { operator: 'operator' }, admin, true],
  ['viewer rule admits viewer', { operator: 'viewer' }, viewer, true],
  ['operator rule denies anonymous', { operator: 'viewer' }, anonymous, false],
  ['installer rule admits listed credential', { installer: ['join-token'] }, join, true],
  ['installer rule denies other credential', { installer: ['join-token'] }, session, false],
  ['operator rule denies installer', { operator: 'viewer' }, join, false],
  ['agent rule admits agent', { agent: true }, agent, true],
  ['operator rule denies agent', { operator: 'viewer' }, agent, false],
  ['same-node agent rule admits agent (its node is checked per request)', { agent: sameNode((r: { nodeId: string }) => r.nodeId) }, agent, true],
  ['agent: false denies agent', { agent: false }, agent, false],
  ['agent rule denies operator', { agent: true }, admin, false],
  ['agent rule denies installer', { agent: true }, session, false],
  ['agent rule denies anonymous', { agent: true }, anonymous, false],
  ['empty rule denies admin', {}, admin, false],
];
for (const [title, rule, principal, allowed] of cases) {
  test(`access: ${title}`, (t) => t.is(isAllowed(rule, principal), allowed));
}

test('bearerFrom accepts only the Bearer scheme', (t) => {
  t.is(bearerFrom('Bearer abc.def'), 'abc.def');
  t.is(bearerFrom('bearer xyz'), 'xyz');
  t.is(bearerFrom('Basic abc'), undefined);
  t.is(bearerFrom('Bearer'), undefined);
  t.is(bearerFrom(undefined), undefined);
});

test('sameNode reads the node a request names', (t) => {
  const rule = sameNode((r: { payload?: { nodeId: string } }) => r.payload?.nodeId);
  t.is(rule.nodeIdOf?.({ payload: { nodeId: 'worker-1' } }), 'worker-1');
  t.is(rule.nodeIdOf?.({}), undefined);
});

test('principals are described for logs and messages without any credential', (t) => {
  t.is(describePrincipal(viewer), 'operator:v(viewer)');
  t.is(describePrincipal(session), 'installer:m-1(session-secret)');
  t.is(describePrincipal(join), 'installer(join-token)');
  t.is(describePrincipal(agent), 'agent:node-1');
  t.is(describePrincipal(anonymous), 'anonymous');
});
