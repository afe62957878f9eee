// A DesiredSystem becomes an activation plan with every default of the contract filled in, or is
// refused before the host changes, with the field named.
import test from 'ava';
import { ActivationStrategy, type DesiredSystem } from '../../gen/ts/ultracloud/system/v1/system.js';
import { InvalidDesiredSystemError, resolveActivationPlan, type SwitchAction } from '../../agents/nix-agent/policy.js';

const STORE_PATH = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-node-1-24.11';

function desired(overrides: Partial<DesiredSystem> = {}): DesiredSystem {
  return {
    nodeId: 'node-1',
    deployment: 'workers-os',
    revision: 3n,
    systemPath: STORE_PATH,
    flakeRef: '',
    flakeAttr: '',
    activationStrategy: ActivationStrategy.ACTIVATION_STRATEGY_SWITCH,
    healthCheck: undefined,
    rollbackPolicy: undefined,
    substituters: [],
    ...overrides,
  };
}

test('an absent rollback policy and health check resolve to the contract defaults', (t) => {
  const plan = resolveActivationPlan(desired(), 'node-1');
  t.like(plan, { deployment: 'workers-os', revision: 3n, strategy: 'switch', activationTimeoutMs: 240_000, confirmTimeoutMs: 30_000, autoRollback: true, healthCheck: undefined });
});

test('health check defaults: 2 s interval, 3 retries, 10 s per attempt; retries 0 means one attempt', (t) => {
  const command = resolveActivationPlan(desired({ healthCheck: { probe: { $case: 'command', value: { argv: ['curl', '-f', 'http://localhost'], env: {} } } } }));
  t.deepEqual(command.healthCheck, { intervalMs: 2_000, retries: 3, probe: { kind: 'command', argv: ['curl', '-f', 'http://localhost'], env: {}, timeoutMs: 10_000 } });
  const http = resolveActivationPlan(
    desired({ healthCheck: { probe: { $case: 'http', value: { url: 'http://127.0.0.1:8080/healthz', expectedStatus: 204, timeout: { seconds: 1n, nanos: 500_000_000 } } }, interval: { seconds: 5n, nanos: 0 }, retries: 0 } }),
  );
  t.deepEqual(http.healthCheck, { intervalMs: 5_000, retries: 0, probe: { kind: 'http', url: 'http://127.0.0.1:8080/healthz', expectedStatus: 204, timeoutMs: 1_500 } });
});

test('the strategy maps to the switch-to-configuration action; unspecified is switch', (t) => {
  const cases: [ActivationStrategy, SwitchAction][] = [
    [ActivationStrategy.ACTIVATION_STRATEGY_UNSPECIFIED, 'switch'],
    [ActivationStrategy.ACTIVATION_STRATEGY_SWITCH, 'switch'],
    [ActivationStrategy.ACTIVATION_STRATEGY_BOOT, 'boot'],
    [ActivationStrategy.ACTIVATION_STRATEGY_TEST, 'test'],
  ];
  for (const [strategy, action] of cases) t.is(resolveActivationPlan(desired({ activationStrategy: strategy })).strategy, action);
});

test('an explicit policy is kept, auto_rollback false included', (t) => {
  const plan = resolveActivationPlan(desired({ rollbackPolicy: { activationTimeout: { seconds: 600n, nanos: 0 }, confirmTimeout: { seconds: 90n, nanos: 0 }, autoRollback: false } }));
  t.like(plan, { activationTimeoutMs: 600_000, confirmTimeoutMs: 90_000, autoRollback: false });
});

test('a flake target without a store path is built locally', (t) => {
  const plan = resolveActivationPlan(desired({ systemPath: '', flakeRef: 'git+https://git.example/infra?rev=abc', flakeAttr: 'nixosConfigurations.node-1.config.system.build.toplevel' }));
  t.like(plan, { systemPath: '', flakeRef: 'git+https://git.example/infra?rev=abc' });
});

test('desired systems the agent cannot act on are refused with the field named', (t) => {
  const cases: [Partial<DesiredSystem>, RegExp][] = [
    [{ nodeId: 'node-2' }, /^node_id: this agent is node node-1/],
    [{ deployment: '' }, /^deployment: required/],
    [{ systemPath: '' }, /^system_path: required unless flake_ref is set/],
    [{ systemPath: '/tmp/not-in-the-store' }, /^system_path: not a store path/],
    [{ systemPath: '', flakeRef: 'path:/x' }, /^flake_attr: required/],
    [{ healthCheck: { probe: undefined } }, /^health_check\.probe: one of command or http/],
    [{ healthCheck: { probe: { $case: 'command', value: { argv: [], env: {} } } } }, /^health_check\.command\.argv: required/],
    [{ healthCheck: { probe: { $case: 'http', value: { url: 'localhost:8080', expectedStatus: 0 } } } }, /^health_check\.http\.url: must be http/],
    [{ healthCheck: { probe: { $case: 'http', value: { url: 'not a url', expectedStatus: 0 } } } }, /^health_check\.http\.url: not an absolute URL/],
  ];
  for (const [overrides, message] of cases) {
    const err = t.throws(() => resolveActivationPlan(desired(overrides), 'node-1'), { instanceOf: InvalidDesiredSystemError });
    t.regex(err.message, message);
  }
});
