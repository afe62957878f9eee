// Contract: every RPC a component serves has a rule in its access policy. The methods come from
// the compiled contract (gen/ultracloud.binpb, what reflection serves), the served services from
// the component itself, so a new RPC in a .proto file or a newly served service without rules
// fails here rather than being silently denied (or worse) in production.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFileRegistry, fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import test from 'ava';
import type { Component, StartedComponent } from '../../lib/component.js';
import { migrateToLatest, openDatabase } from '../../lib/db/index.js';
import { REFLECTION_IMAGE_PATH, serviceFullName } from '../../lib/grpc/image.js';
import { PUBLIC_INFRASTRUCTURE_RPCS } from '../../lib/grpc/server.js';
import { createLogger } from '../../lib/log.js';
import { deployerComponent } from '../../services/deployer/component.js';

const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(REFLECTION_IMAGE_PATH)));

/** `/pkg.Service/Method` for every method of `service` in the image. */
function methodPaths(service: string): string[] {
  const desc = registry.getService(service);
  if (!desc) throw new Error(`${service} is served but not in ${REFLECTION_IMAGE_PATH}`);
  return desc.methods.map((m) => `/${desc.typeName}/${m.name}`);
}

/** Starts `component` on a throwaway embedded database, long enough to read what it serves. */
async function started(component: Component): Promise<StartedComponent> {
  const stateDir = mkdtempSync(join(tmpdir(), 'ultracloud-policy-'));
  const database = await openDatabase();
  await migrateToLatest(database.db, { schema: component.schema, migrations: component.migrations });
  const result = await component.start({ db: database.db, logger: createLogger({ level: 'silent' }), stateDir, stopping: new AbortController().signal });
  await result.stop();
  await database.close();
  rmSync(stateDir, { recursive: true, force: true });
  return result;
}

const deployer = deployerComponent({}, {});
const components: Component[] = [deployer];
const starts = new Map<Component, Promise<StartedComponent>>();
const once = (component: Component) => {
  let s = starts.get(component);
  if (!s) starts.set(component, (s = started(component)));
  return s;
};

for (const component of components) {
  test(`every RPC the ${component.name} serves has an access rule, and every rule names a served RPC`, async (t) => {
    const { services, policy } = await once(component);
    const served = services.map((s) => serviceFullName(s.definition));
    t.true(served.length > 0);
    const rpcs = served.flatMap(methodPaths);
    const missing = rpcs.filter((rpc) => !(rpc in policy));
    t.deepEqual(missing, [], `RPCs without a rule in the ${component.name}'s access policy`);
    const stale = Object.keys(policy).filter((rpc) => !rpcs.includes(rpc));
    t.deepEqual(stale, [], 'rules for RPCs the component does not serve');
    for (const rpc of Object.keys(policy)) t.false(rpc in PUBLIC_INFRASTRUCTURE_RPCS, `${rpc} is infrastructure and public`);
  });
}

test('the deployer serves AccessService next to its other services', async (t) => {
  const { services } = await once(deployer);
  t.deepEqual(services.map((s) => serviceFullName(s.definition)).sort(), [
    'ultracloud.bootstrap.v1.BootstrapService',
    'ultracloud.deployer.v1.AccessService',
    'ultracloud.deployer.v1.ClusterService',
    'ultracloud.deployer.v1.MachineService',
  ]);
});

test('public rules are only health and reflection', (t) => {
  t.deepEqual(Object.keys(PUBLIC_INFRASTRUCTURE_RPCS).sort(), [
    '/grpc.health.v1.Health/Check',
    '/grpc.health.v1.Health/Watch',
    '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo',
    '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo',
  ]);
});
