// A deferred batch of activations is written in one statement, fenced like a transaction: all of
// it when the leader still leads and the deployments are as planned, none of it otherwise. On
// PGlite and on the real server.
import { HostDeployment, NodeRolloutPhase as P } from '../../gen/ts/ultracloud/system/v1/system.js';
import { migrateToLatest, serviceDatabase } from '../../lib/db/index.js';
import { desiredSystem, desiredSystems, nodeTarget } from '../../services/host-controller/domain/desired-system.js';
import type { NodeRollout } from '../../services/host-controller/domain/node-rollout.js';
import { HOSTS_SCHEMA, hostsMigrations } from '../../services/host-controller/migrations/index.js';
import { deleteDeployment, insertDeployment } from '../../services/host-controller/store/deployments.js';
import { desiredSystemJson } from '../../services/host-controller/store/documents.js';
import { desiredSystemsOf, grantReboot, listEvents, nodeRollouts, type RolloutEvent, saveActivationBatch, saveDesiredSystems } from '../../services/host-controller/store/rollouts.js';
import type { HostsDatabase } from '../../services/host-controller/store/tables.js';
import { storageTest } from '../helpers/databases.js';

const NOW = new Date('2026-11-29T12:00:00Z');
const SYSTEM = '/nix/store/9v1lr4cx7l3y0fs0kc0bz6k1a3mm2kdh-nixos-system-worker-24.11';

async function hosts(db: Parameters<Parameters<typeof storageTest>[1]>[1]) {
  await migrateToLatest(db, { schema: HOSTS_SCHEMA, migrations: hostsMigrations });
  const h = serviceDatabase<HostsDatabase>(db, HOSTS_SCHEMA);
  // This replica leads with epoch 1.
  await h.updateTable('controller_leader').set({ epoch: 1n, replica: 'hc-a' }).where('id', '=', 1).execute();
  for (const name of ['workers', 'storage']) await insertDeployment(h, HostDeployment.fromPartial({ name, selector: { allNodes: true }, target: { systemPath: SYSTEM } }), 5n, NOW);
  return h;
}

function batch(nodes: Record<string, string[]>, planned: Record<string, bigint>, epoch = 1n) {
  const rows = new Map<string, NodeRollout[]>();
  const desired = [];
  const events: RolloutEvent[] = [];
  for (const [deployment, ids] of Object.entries(nodes)) {
    const make = desiredSystems(HostDeployment.fromPartial({ name: deployment, target: { systemPath: SYSTEM } }), NOW);
    rows.set(
      deployment,
      ids.map((nodeId) => ({
        nodeId,
        revision: 1n,
        phase: P.NODE_ROLLOUT_PHASE_ACTIVATING,
        hostname: nodeId,
        failureDomain: 'rack-1',
        systemPath: SYSTEM,
        generation: 0n,
        failureReason: 0,
        message: '',
        attempts: 1,
        budgetCounted: false,
        cordoned: false,
        rebootRequested: false,
        rebootGrantedAt: undefined,
        startedAt: NOW,
        finishedAt: undefined,
        phaseChangedAt: NOW,
      })),
    );
    for (const nodeId of ids) {
      desired.push(make(1n, nodeId, { systemPath: SYSTEM, flakeRef: '', flakeAttr: '' }));
      events.push({ at: NOW, deployment, revision: 1n, nodeId, kind: 'decision.activate', fromPhase: 'PENDING', toPhase: 'ACTIVATING', message: SYSTEM, replica: 'hc-a' });
    }
  }
  return { epoch, now: NOW, planned: new Map(Object.entries(planned)), rows, desired, events };
}

async function written(h: Awaited<ReturnType<typeof hosts>>) {
  const entries = [...(await nodeRollouts(h)).values()].reduce((n, m) => n + m.size, 0);
  const desired = (await desiredSystemsOf(h, ['w-1', 'w-2', 's-1'])).size;
  const events = (await listEvents(h)).filter((e) => e.kind === 'decision.activate').length;
  return { entries, desired, events };
}

storageTest('an activation batch of two deployments is written whole while the leader leads and both are as planned', async (t, db) => {
  const h = await hosts(db);
  t.is(await saveActivationBatch(h, batch({ workers: ['w-1', 'w-2'], storage: ['s-1'] }, { workers: 5n, storage: 5n })), 'written');
  t.deepEqual(await written(h), { entries: 3, desired: 3, events: 3 });
  const entries = await nodeRollouts(h);
  t.is(entries.get('workers')?.get('w-2')?.phase, P.NODE_ROLLOUT_PHASE_ACTIVATING);
  t.is((await desiredSystemsOf(h, ['s-1'])).get('s-1')?.desired.deployment, 'storage');
  // The fence renewed the leader row.
  t.deepEqual((await h.selectFrom('controller_leader').select('renewed_at').executeTakeFirstOrThrow()).renewed_at, NOW);
  // Events keep the batch's order.
  t.deepEqual((await listEvents(h)).map((e) => e.nodeId), ['w-1', 'w-2', 's-1']);
});

storageTest('an activation batch writes nothing when a deployment changed or went since it was planned', async (t, db) => {
  const h = await hosts(db);
  // storage changed (resource_version 6 now).
  await h.updateTable('host_deployments').set({ resource_version: 6n }).where('name', '=', 'storage').execute();
  t.is(await saveActivationBatch(h, batch({ workers: ['w-1', 'w-2'], storage: ['s-1'] }, { workers: 5n, storage: 5n })), 'changed');
  t.deepEqual(await written(h), { entries: 0, desired: 0, events: 0 });
  // storage deleted.
  await deleteDeployment(h, 'storage');
  t.is(await saveActivationBatch(h, batch({ workers: ['w-1'], storage: ['s-1'] }, { workers: 5n, storage: 6n })), 'changed');
  t.deepEqual(await written(h), { entries: 0, desired: 0, events: 0 });
  // As planned again: written.
  t.is(await saveActivationBatch(h, batch({ workers: ['w-1'] }, { workers: 5n })), 'written');
  t.deepEqual(await written(h), { entries: 1, desired: 1, events: 1 });
});

storageTest('an activation batch of a deposed leader writes nothing', async (t, db) => {
  const h = await hosts(db);
  await h.updateTable('controller_leader').set({ epoch: 2n, replica: 'hc-b' }).where('id', '=', 1).execute();
  t.is(await saveActivationBatch(h, batch({ workers: ['w-1', 'w-2'] }, { workers: 5n }, 1n)), 'deposed');
  t.deepEqual(await written(h), { entries: 0, desired: 0, events: 0 });
  t.is((await h.selectFrom('controller_leader').select('replica').executeTakeFirstOrThrow()).replica, 'hc-b');
});

storageTest('desired systems stored in bulk have exactly the JSON each would have on its own, and a new one ends an outstanding reboot grant', async (t, db) => {
  const h = await hosts(db);
  const later = new Date(NOW.getTime() + 1000);
  const spec = (extra: Partial<HostDeployment>) => HostDeployment.fromPartial({ name: 'workers', selector: { allNodes: true }, target: { systemPath: SYSTEM }, ...extra });
  const withHealth = spec({ healthCheck: { probe: { $case: 'http', value: { url: 'http://127.0.0.1:8080/healthz', expectedStatus: 200 } } }, substituters: ['https://cache.example'] });
  const flake = spec({ name: 'storage', target: { systemPath: '', nodeSystemPaths: {}, flakeRef: 'git+https://git.example/infra?rev=abc', flakeAttr: 'nixosConfigurations.{hostname}.config.system.build.toplevel' } });
  const perNode = spec({ target: { systemPath: SYSTEM, nodeSystemPaths: { 'w-5': `${SYSTEM}-special` }, flakeRef: '', flakeAttr: '' } });
  const make = (d: HostDeployment, revision: bigint, nodeId: string, at: Date) => desiredSystem(d, revision, nodeId, nodeTarget(d, { nodeId, hostname: `h-${nodeId}` }) as NonNullable<ReturnType<typeof nodeTarget>>, at);
  const all = [
    ...['w-1', 'w-2', 'w-3'].map((n) => make(withHealth, 3n, n, NOW)),
    ...['s-1', 's-2'].map((n) => make(flake, 1n, n, NOW)),
    ...['w-4', 'w-5'].map((n) => make(perNode, 7n, n, later)),
  ];
  await saveDesiredSystems(h, all, NOW);
  const stored = await desiredSystemsOf(h, all.map((d) => d.nodeId));
  const json = (d: (typeof all)[number] | undefined) => (d ? desiredSystemJson.toJson(d) : undefined);
  for (const d of all) t.deepEqual(json(stored.get(d.nodeId)?.desired), json(d), d.nodeId);
  const documents = await h.selectFrom('desired_systems').select(['node_id', 'desired']).execute();
  for (const r of documents) t.deepEqual(r.desired, desiredSystemJson.toJson(all.find((d) => d.nodeId === r.node_id) as (typeof all)[number]), r.node_id);
  t.is(stored.get('s-2')?.desired.flakeAttr, 'nixosConfigurations.h-s-2.config.system.build.toplevel');
  t.is(stored.get('w-5')?.desired.systemPath, `${SYSTEM}-special`);

  // A node granted a reboot, then handed a newer revision: the grant ends with the old one.
  await grantReboot(h, 'w-1', later, 'boot-1', NOW);
  t.deepEqual((await desiredSystemsOf(h, ['w-1'])).get('w-1')?.rebootGrantDeadline, later);
  const newer = make(withHealth, 4n, 'w-1', later);
  await saveDesiredSystems(h, [newer], later);
  const replaced = (await desiredSystemsOf(h, ['w-1'])).get('w-1');
  t.deepEqual(json(replaced?.desired), json(newer));
  t.is(replaced?.rebootGrantDeadline, undefined);
  t.is(replaced?.rebootGrantBootId, '');
});
