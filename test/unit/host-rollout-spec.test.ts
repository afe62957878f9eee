// HostDeployment validation, diff and revision rules, and DesiredSystem defaults, as table tests.
import { readFileSync } from 'node:fs';
import test from 'ava';
import { ActivationStrategy, HostDeployment, type HostDeploymentTarget } from '../../gen/ts/ultracloud/system/v1/system.js';
import { InvalidArgumentError } from '../../lib/errors.js';
import { encodeProtoJson, protoJsonOf } from '../../lib/proto-json.js';
import { changedFields, normalizeSpec, startsRevision, validateHostDeployments } from '../../services/host-controller/domain/deployment-spec.js';
import { desiredSystem, nodeTarget, nodeTargets } from '../../services/host-controller/domain/desired-system.js';
import { nodeListBody, parseNodeListBody, parseWakeup, wakeupPayload } from '../../services/host-controller/wakeups.js';

const PATH = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-node-24.11';
const LAB = JSON.parse(readFileSync(new URL('../../nix/examples/lab6/generated/host-deployments.json', import.meta.url), 'utf8')) as { hostDeployments: unknown[] };

function d(extra: Partial<HostDeployment>): HostDeployment {
  return HostDeployment.fromPartial({ name: 'workers-os', selector: { pools: ['workers'] }, target: { systemPath: PATH }, ...extra });
}

function violations(batch: HostDeployment[]): string[] {
  try {
    validateHostDeployments(batch);
    return [];
  } catch (err) {
    if (!(err instanceof InvalidArgumentError)) throw err;
    return err.violations.map((v) => `${v.field}: ${v.description}`);
  }
}

test('the lab\'s generated hostDeployments are valid', (t) => {
  const batch = LAB.hostDeployments.map((doc, i) => HostDeployment.decode(encodeProtoJson('ultracloud.system.v1.HostDeployment', doc, `hostDeployments[${i}]`)));
  t.is(batch.length, 2);
  t.deepEqual(violations(batch), []);
});

test('every invalid field is named, with its index in the batch', (t) => {
  const cases: [Partial<HostDeployment>, RegExp][] = [
    [{ name: '' }, /^host_deployments\[0\]\.name: required/],
    [{ name: 'Workers_OS' }, /^host_deployments\[0\]\.name: "Workers_OS" is not a deployment name/],
    [{ selector: undefined }, /^host_deployments\[0\]\.selector: required/],
    [{ selector: { nodeIds: [], nodeClasses: [], pools: [], matchLabels: {}, allNodes: false } }, /^host_deployments\[0\]\.selector: matches nothing as written.*all_nodes/],
    [{ selector: { nodeIds: ['Node_1'], nodeClasses: [], pools: [], matchLabels: {}, allNodes: false } }, /^host_deployments\[0\]\.selector\.node_ids\[0\]: "Node_1" is not a node id/],
    [{ target: { systemPath: '', nodeSystemPaths: {}, flakeRef: '', flakeAttr: '' } }, /^host_deployments\[0\]\.target: set system_path, node_system_paths or flake_ref/],
    [{ target: { systemPath: '/tmp/system', nodeSystemPaths: {}, flakeRef: '', flakeAttr: '' } }, /^host_deployments\[0\]\.target\.system_path: "\/tmp\/system" is not a Nix store path/],
    [{ target: { systemPath: '', nodeSystemPaths: { n1: 'x' }, flakeRef: '', flakeAttr: '' } }, /^host_deployments\[0\]\.target\.node_system_paths\.n1: "x" is not a Nix store path/],
    [{ activationStrategy: 7 as ActivationStrategy }, /^host_deployments\[0\]\.activation_strategy: unknown strategy 7/],
    [{ healthCheck: { probe: undefined, interval: undefined, retries: undefined } }, /^host_deployments\[0\]\.health_check: set exactly one of command or http/],
    [{ healthCheck: { probe: { $case: 'http', value: { url: 'ftp://x', expectedStatus: 0, timeout: undefined } } } }, /^host_deployments\[0\]\.health_check\.http\.url: "ftp:\/\/x" is not an absolute http/],
    [{ healthCheck: { probe: { $case: 'command', value: { argv: [], env: {}, timeout: undefined } } } }, /^host_deployments\[0\]\.health_check\.command\.argv: required/],
    [{ rollbackPolicy: { activationTimeout: { seconds: 0n, nanos: 0 } } }, /^host_deployments\[0\]\.rollback_policy\.activation_timeout: must be longer than 0s/],
    [{ maxUnavailable: { value: { $case: 'count', value: 0 } } }, /^host_deployments\[0\]\.max_unavailable\.count: must be at least 1/],
    [{ maxUnavailable: { value: { $case: 'percent', value: 101 } } }, /^host_deployments\[0\]\.max_unavailable\.percent: must be between 1 and 100/],
    [{ maxUnavailable: { value: undefined } }, /^host_deployments\[0\]\.max_unavailable: set count or percent/],
    [{ drainTimeout: { seconds: 30n, nanos: 0 } }, /^host_deployments\[0\]\.drain_timeout: only meaningful with drain: true/],
    [{ rolloutOrder: { byFailureDomain: 1, failureDomains: ['a', 'a'] } }, /^host_deployments\[0\]\.rollout_order\.failure_domains\[1\]: "a" is listed twice/],
    [{ substituters: ['not a url'] }, /^host_deployments\[0\]\.substituters\[0\]: "not a url" is not a binary cache URL/],
  ];
  for (const [extra, expected] of cases) {
    const found = violations([d(extra)]);
    t.true(found.some((v) => expected.test(v)), `${JSON.stringify(extra, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}: ${found.join(' | ')}`);
  }
  t.deepEqual(violations([d({}), d({})]), ['host_deployments[1].name: "workers-os" repeats host_deployments[0]']);
});

test('changed fields are JSON paths; only what nodes run starts a new revision', (t) => {
  const base = d({ maxUnavailable: { value: { $case: 'count', value: 1 } }, target: { systemPath: '', nodeSystemPaths: { n1: PATH }, flakeRef: '', flakeAttr: '' } });
  const cases: [Partial<HostDeployment>, string[], boolean][] = [
    [{}, [], false],
    [{ revision: 4n, resourceVersion: 9n, createdAt: new Date() }, [], false],
    [{ maxUnavailable: { value: { $case: 'count', value: 2 } } }, ['maxUnavailable.count'], false],
    [{ paused: true, drain: true }, ['drain', 'paused'], false],
    [{ selector: { nodeIds: [], nodeClasses: [], pools: ['gpu'], matchLabels: {}, allNodes: false } }, ['selector.pools'], false],
    [{ target: { systemPath: '', nodeSystemPaths: { n1: PATH, n2: PATH }, flakeRef: '', flakeAttr: '' } }, ['target.nodeSystemPaths.n2'], true],
    [{ activationStrategy: ActivationStrategy.ACTIVATION_STRATEGY_BOOT }, ['activationStrategy'], true],
    [{ rollbackPolicy: { confirmTimeout: { seconds: 60n, nanos: 0 } } }, ['rollbackPolicy'], true],
    [{ drain: true, drainTimeout: { seconds: 90n, nanos: 0 } }, ['drain', 'drainTimeout'], false],
  ];
  for (const [extra, fields, revision] of cases) {
    const json = (x: HostDeployment) => protoJsonOf('ultracloud.system.v1.HostDeployment', HostDeployment.encode(normalizeSpec(x)).finish()) as Record<string, unknown>;
    const changed = changedFields(json(base), json(HostDeployment.fromPartial({ ...base, ...extra })));
    t.deepEqual(changed, fields);
    t.is(startsRevision(changed), revision, fields.join(','));
  }
});

test('a node\'s target and desired system: per-node path first, then the shared path, then its flake attribute', (t) => {
  const node = { nodeId: 'worker-2', hostname: 'w2' };
  t.deepEqual(nodeTarget(d({ target: { systemPath: PATH, nodeSystemPaths: { 'worker-2': `${PATH}-x` }, flakeRef: '', flakeAttr: '' } }), node)?.systemPath, `${PATH}-x`);
  t.deepEqual(nodeTarget(d({ target: { systemPath: '', nodeSystemPaths: {}, flakeRef: 'github:o/r', flakeAttr: '' } }), node), {
    systemPath: '',
    flakeRef: 'github:o/r',
    flakeAttr: 'nixosConfigurations.w2.config.system.build.toplevel',
  });
  t.is(nodeTarget(d({ target: { systemPath: '', nodeSystemPaths: {}, flakeRef: 'github:o/r', flakeAttr: 'hosts.{node_id}' } }), node)?.flakeAttr, 'hosts.worker-2');
  t.is(nodeTarget(d({ target: { systemPath: '', nodeSystemPaths: { other: PATH }, flakeRef: '', flakeAttr: '' } }), node), undefined);

  const now = new Date('2025-01-01T00:00:00Z');
  const desired = desiredSystem(d({ healthCheck: { probe: { $case: 'http', value: { url: 'http://127.0.0.1/healthz', expectedStatus: 0, timeout: undefined } }, interval: undefined, retries: 0 } }), 3n, 'worker-2', { systemPath: PATH, flakeRef: '', flakeAttr: '' }, now);
  t.like(desired, { nodeId: 'worker-2', deployment: 'workers-os', revision: 3n, activationStrategy: ActivationStrategy.ACTIVATION_STRATEGY_SWITCH });
  t.deepEqual(desired.rollbackPolicy, { activationTimeout: { seconds: 240n, nanos: 0 }, confirmTimeout: { seconds: 30n, nanos: 0 }, autoRollback: true, rebootTimeout: { seconds: 600n, nanos: 0 } });
  t.is(desired.healthCheck?.retries, 0, 'an explicit 0 retries stays 0');
  t.deepEqual(desired.healthCheck?.interval, { seconds: 2n, nanos: 0 });
});

test('nodeTargets, for a fleet, answers as nodeTarget does for every node: shared path, per-node entries (an empty one too), flakes, no target', (t) => {
  const nodes = [
    { nodeId: 'worker-1', hostname: 'w1' },
    { nodeId: 'worker-2', hostname: 'w2' },
    { nodeId: 'worker-3', hostname: 'w3' },
    { nodeId: 'constructor', hostname: 'odd' },
  ];
  const targets: HostDeploymentTarget[] = [
    { systemPath: PATH, nodeSystemPaths: {}, flakeRef: '', flakeAttr: '' },
    { systemPath: PATH, nodeSystemPaths: { 'worker-2': `${PATH}-x`, 'worker-3': '' }, flakeRef: '', flakeAttr: '' },
    { systemPath: '', nodeSystemPaths: { 'worker-2': `${PATH}-x` }, flakeRef: '', flakeAttr: '' },
    { systemPath: '', nodeSystemPaths: {}, flakeRef: '', flakeAttr: '' },
    { systemPath: '', nodeSystemPaths: { 'worker-1': PATH }, flakeRef: 'github:o/r', flakeAttr: 'hosts.{hostname}' },
  ];
  for (const target of targets) {
    const spec = d({ target });
    const targetOf = nodeTargets(spec);
    for (const node of nodes) t.deepEqual(targetOf(node), nodeTarget(spec, node), `${JSON.stringify(target)}: ${node.nodeId}`);
  }
  const none = d({});
  none.target = undefined;
  t.is(nodeTargets(none)(nodes[0] as (typeof nodes)[number]), undefined);
  const shared = nodeTargets(d({}));
  t.is(shared(nodes[0] as (typeof nodes)[number]), shared(nodes[1] as (typeof nodes)[number]), 'nodes without an entry of their own share one target object');
});

test('wake-up payloads carry the sending replica, so a replica skips what it already did itself', (t) => {
  t.deepEqual(parseWakeup(wakeupPayload('hc-a:1', 'worker-1,worker-2')), { replica: 'hc-a:1', body: 'worker-1,worker-2' });
  t.deepEqual(parseWakeup(wakeupPayload('hc-a:1')), { replica: 'hc-a:1', body: '' });
  t.deepEqual(parseNodeListBody(parseWakeup(wakeupPayload('hc-b', nodeListBody(['worker-1', 'worker-2']))).body), ['worker-1', 'worker-2']);
  // A list longer than one NOTIFY payload can carry means everyone.
  const many = Array.from({ length: 2000 }, (_, i) => `worker-${i}`);
  const payload = wakeupPayload('hc-b', nodeListBody(many));
  t.true(payload.length < 8000);
  t.is(parseNodeListBody(parseWakeup(payload).body), '*');
  t.is(parseNodeListBody(''), '*');
});
