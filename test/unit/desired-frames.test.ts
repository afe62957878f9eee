// Desired systems encoded for streams with their shared part encoded once decode to exactly the
// message the generated encoder produces, and a shared part is never reused for a message that
// differs in it.
import test from 'ava';
import { ConnectResponse } from '../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import { ActivationStrategy, type DesiredSystem, HostDeployment } from '../../gen/ts/ultracloud/system/v1/system.js';
import { desiredSystems } from '../../services/host-controller/domain/desired-system.js';
import { DesiredSystemFrames } from '../../services/host-controller/desired-frames.js';

const NOW = new Date('2026-11-29T12:00:00.123Z');

function deployment(extra: Partial<HostDeployment> = {}): HostDeployment {
  return HostDeployment.fromPartial({
    name: 'workers',
    target: { systemPath: '/nix/store/9v1lr4cx7l3y0fs0kc0bz6k1a3mm2kdh-nixos-system-worker-24.11' },
    substituters: ['https://cache.lab.example', 'http://10.0.0.2:5000'],
    ...extra,
  });
}

const decode = (bytes: Uint8Array) => ConnectResponse.decode(bytes);
/** What the generated encoder's bytes decode to. */
const expected = (d: DesiredSystem) => decode(ConnectResponse.encode({ payload: { $case: 'desiredSystem', value: d } }).finish());

test('every node of a decision decodes to its own desired system, shared part and all', (t) => {
  const frames = new DesiredSystemFrames();
  const make = desiredSystems(
    deployment({
      healthCheck: { probe: { $case: 'http', value: { url: 'http://127.0.0.1:9100/healthz', expectedStatus: 200 } }, retries: 5 },
      activationStrategy: ActivationStrategy.ACTIVATION_STRATEGY_BOOT,
    }),
    NOW,
  );
  for (const [i, nodeId] of ['worker-1', 'worker-2', 'storage-01'].entries()) {
    const d = make(7n, nodeId, { systemPath: `/nix/store/${i}aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-${nodeId}`, flakeRef: '', flakeAttr: '' });
    const bytes = frames.frame(d).bytes;
    t.deepEqual(decode(bytes), expected(d));
    t.is(bytes.length, ConnectResponse.encode({ payload: { $case: 'desiredSystem', value: d } }).finish().length);
  }
});

test('flake targets carry their per-node attribute; empty fields stay absent', (t) => {
  const frames = new DesiredSystemFrames();
  const make = desiredSystems(deployment({ target: { systemPath: '', flakeRef: 'git+https://git.lab.example/infra?rev=abc', flakeAttr: '', nodeSystemPaths: {} } }), NOW);
  const d = make(3n, 'worker-9', { systemPath: '', flakeRef: 'git+https://git.lab.example/infra?rev=abc', flakeAttr: 'nixosConfigurations.worker-9.config.system.build.toplevel' });
  t.deepEqual(decode(frames.frame(d).bytes), expected(d));
  // Lengths past one varint byte, and characters of more than one UTF-8 byte.
  const long = make(3n, 'wörker-10', { systemPath: '', flakeRef: 'git+https://git.lab.example/infra?rev=abc', flakeAttr: `nixosConfigurations.${'wörker-10-'.repeat(40)}.config.system.build.toplevel` });
  t.deepEqual(decode(frames.frame(long).bytes), expected(long));
});

test('a message differing in any shared field gets a shared part of its own', (t) => {
  const frames = new DesiredSystemFrames();
  const make = desiredSystems(deployment(), NOW);
  const first = make(1n, 'worker-1', { systemPath: '/nix/store/a-system', flakeRef: '', flakeAttr: '' });
  t.deepEqual(decode(frames.frame(first).bytes), expected(first));
  const variants: DesiredSystem[] = [
    { ...first, revision: 2n },
    { ...first, deployment: 'storage' },
    { ...first, activationStrategy: ActivationStrategy.ACTIVATION_STRATEGY_TEST },
    { ...first, rollbackPolicy: { ...first.rollbackPolicy, autoRollback: false } },
    { ...first, healthCheck: { probe: { $case: 'command', value: { argv: ['/run/current-system/sw/bin/true'], env: {} } }, retries: 1 } },
    { ...first, substituters: ['https://other.example'] },
    { ...first, createdAt: new Date(NOW.getTime() + 1) },
    { ...first, flakeRef: 'git+https://git.lab.example/infra?rev=def' },
    // A message read back from the database: equal content in new objects.
    structuredClone(first),
  ];
  for (const v of variants) {
    t.deepEqual(decode(frames.frame(v).bytes), expected(v));
    // And the previous decision's shared part is not applied to it afterwards either.
    t.deepEqual(decode(frames.frame(first).bytes), expected(first));
  }
});

test('the shared part covers every field of DesiredSystem but the per-node ones', (t) => {
  // A field added to DesiredSystem must be added to the template's comparison (desired-frames.ts).
  const d = desiredSystems(deployment(), NOW)(1n, 'n', { systemPath: '/nix/store/x', flakeRef: '', flakeAttr: '' });
  const all = Object.keys({ ...d, healthCheck: undefined }).sort();
  t.deepEqual(all, ['activationStrategy', 'createdAt', 'deployment', 'flakeAttr', 'flakeRef', 'healthCheck', 'nodeId', 'revision', 'rollbackPolicy', 'substituters', 'systemPath']);
  t.deepEqual(Object.keys(decode(ConnectResponse.encode({ payload: { $case: 'desiredSystem', value: d } }).finish()).payload?.value ?? {}).sort(), all);
});
