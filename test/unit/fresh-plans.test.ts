import test from 'ava';
import { AssignmentSource, NodeAssignment } from '../../gen/ts/ultracloud/assignment/v1/assignment.js';
import { InstallPlan } from '../../gen/ts/ultracloud/installplan/v1/installplan.js';
import { type FreshPlan, FreshPlans } from '../../services/deployer/fresh-plans.js';

function entry(machineId: string, sessionSecretHash = `hash-${machineId}`): FreshPlan {
  return {
    machineId,
    sessionSecretHash,
    resourceVersion: 7n,
    assignment: NodeAssignment.fromPartial({ nodeId: `node-${machineId}`, source: AssignmentSource.ASSIGNMENT_SOURCE_ENROLLMENT_RULE }),
    plan: InstallPlan.fromPartial({ machineId }),
    clusterGeneration: 1n,
  };
}

test('an entry is handed out once, and only to the holder of its session secret', (t) => {
  const plans = new FreshPlans();
  plans.put(entry('m-1'));
  t.is(plans.take('m-1', 'another secret'), undefined);
  t.is(plans.size, 1, 'a wrong secret leaves the entry for its holder');
  t.is(plans.take('m-1', 'hash-m-1')?.assignment.nodeId, 'node-m-1');
  t.is(plans.take('m-1', 'hash-m-1'), undefined);
  t.is(plans.size, 0);
});

test('a newer entry for a machine replaces the older one', (t) => {
  const plans = new FreshPlans();
  plans.put(entry('m-1', 'first'));
  plans.put(entry('m-1', 'second'));
  t.is(plans.take('m-1', 'first'), undefined);
  t.truthy(plans.take('m-1', 'second'));
});

test('the oldest entries go first past the capacity, and old entries are not used', (t) => {
  let now = 0;
  const plans = new FreshPlans({ capacity: 2, maxAgeMs: 1_000, now: () => now });
  plans.put(entry('m-1'));
  plans.put(entry('m-2'));
  plans.put(entry('m-3'));
  t.is(plans.size, 2);
  t.is(plans.take('m-1', 'hash-m-1'), undefined);
  now = 1_001;
  t.is(plans.take('m-2', 'hash-m-2'), undefined, 'too old');
  t.is(plans.size, 1, 'and dropped');
});
