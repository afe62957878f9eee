// A large decision is committed as activation intents and written out afterwards: the intents
// stand for exactly the node entries, desired systems and events the tick would have written, are
// written out only by the leader, and go with their deployment. On PGlite and on the real server.
import test from 'ava';
import { ActivationFailureReason, type DesiredSystem, HostDeployment, NodeRolloutPhase as P } from '../../gen/ts/ultracloud/system/v1/system.js';
import { migrateToLatest, serviceDatabase } from '../../lib/db/index.js';
import { desiredSystem, desiredSystems, nodeTarget } from '../../services/host-controller/domain/desired-system.js';
import type { NodeRollout } from '../../services/host-controller/domain/node-rollout.js';
import { ACTIVATION_MESSAGE } from '../../services/host-controller/domain/rollout-planner.js';
import { HOSTS_SCHEMA, hostsMigrations } from '../../services/host-controller/migrations/index.js';
import { deleteDeployment, insertDeployment } from '../../services/host-controller/store/deployments.js';
import { desiredSystemJson } from '../../services/host-controller/store/documents.js';
import { activationIntents, type DecidedActivation, saveIntents, writeIntents } from '../../services/host-controller/store/intents.js';
import { desiredSystemsOf, grantReboot, listEvents, nodeRollouts, saveDesiredSystems } from '../../services/host-controller/store/rollouts.js';
import type { HostsDatabase } from '../../services/host-controller/store/tables.js';
import { storageTest } from '../helpers/databases.js';

const NOW = new Date('2026-11-29T12:00:00Z');
const SYSTEM = '/nix/store/9v1lr4cx7l3y0fs0kc0bz6k1a3mm2kdh-nixos-system-worker-24.11';
const WORKERS = HostDeployment.fromPartial({
  name: 'workers',
  selector: { allNodes: true },
  target: { systemPath: SYSTEM, nodeSystemPaths: { 'w-3': `${SYSTEM}-special` } },
  healthCheck: { probe: { $case: 'http', value: { url: 'http://127.0.0.1:8080/healthz', expectedStatus: 200 } } },
});
const STORAGE = HostDeployment.fromPartial({
  name: 'storage',
  selector: { allNodes: true },
  target: { systemPath: '', nodeSystemPaths: {}, flakeRef: 'git+https://git.example/infra?rev=abc', flakeAttr: 'nixosConfigurations.{hostname}.config.system.build.toplevel' },
});

async function hosts(db: Parameters<Parameters<typeof storageTest>[1]>[1]) {
  await migrateToLatest(db, { schema: HOSTS_SCHEMA, migrations: hostsMigrations });
  const h = serviceDatabase<HostsDatabase>(db, HOSTS_SCHEMA);
  // This replica leads with epoch 1.
  await h.updateTable('controller_leader').set({ epoch: 1n, replica: 'hc-a' }).where('id', '=', 1).execute();
  for (const spec of [WORKERS, STORAGE]) await insertDeployment(h, spec, 5n, NOW);
  return h;
}

/** Activations as the planner makes them: fresh starts at NOW, each deployment's desired systems from one builder. */
function decided(spec: HostDeployment, ids: string[], extra: (id: string) => Partial<NodeRollout> = () => ({})): DecidedActivation[] {
  const make = desiredSystems(spec, NOW);
  return ids.map((nodeId, i) => {
    const target = nodeTarget(spec, { nodeId, hostname: `h-${nodeId}` }) as NonNullable<ReturnType<typeof nodeTarget>>;
    const row: NodeRollout = {
      nodeId,
      revision: 2n,
      phase: P.NODE_ROLLOUT_PHASE_ACTIVATING,
      hostname: `h-${nodeId}`,
      failureDomain: `rack-${i % 2}`,
      systemPath: target.systemPath,
      generation: BigInt(40 + i),
      failureReason: ActivationFailureReason.ACTIVATION_FAILURE_REASON_UNSPECIFIED,
      message: ACTIVATION_MESSAGE,
      attempts: 1 + (i % 3),
      budgetCounted: false,
      cordoned: i === 1,
      rebootRequested: false,
      rebootGrantedAt: undefined,
      startedAt: NOW,
      finishedAt: undefined,
      phaseChangedAt: NOW,
      ...extra(nodeId),
    };
    return { deployment: spec.name, row, desired: make(2n, nodeId, target), fromPhase: i === 0 ? '' : 'PENDING' };
  });
}

async function written(h: Awaited<ReturnType<typeof hosts>>) {
  const entries = [...(await nodeRollouts(h)).values()].reduce((n, m) => n + m.size, 0);
  const desired = (await h.selectFrom('desired_systems').select('node_id').execute()).length;
  const events = (await listEvents(h)).filter((e) => e.kind === 'decision.activate').length;
  const intents = (await h.selectFrom('activation_intents').select('id').execute()).length;
  return { entries, desired, events, intents };
}

test('only fresh starts become intents: a drained node keeps its start, a node granted a reboot keeps the grant', (t) => {
  const earlier = new Date(NOW.getTime() - 60_000);
  const all = decided(WORKERS, ['w-1', 'w-2', 'w-3', 'w-4'], (id) => (id === 'w-2' ? { startedAt: earlier } : id === 'w-4' ? { rebootGrantedAt: earlier } : {}));
  const { intents, rest } = activationIntents(all, NOW, 'hc-a');
  t.is(intents.length, 1);
  t.deepEqual(intents[0]?.nodes.map((n) => n[0]), ['w-1', 'w-3']);
  t.deepEqual(rest.map((a) => a.row.nodeId), ['w-2', 'w-4']);
  // A desired system that does not share the deployment's template is written with the tick.
  const other = decided(WORKERS, ['w-5'])[0] as DecidedActivation;
  t.deepEqual(activationIntents([...all.slice(0, 1), other], NOW, 'hc-a').rest.map((a) => a.row.nodeId), ['w-5']);
});

storageTest('intents written out are exactly the node entries, desired systems and events of each activation', async (t, db) => {
  const h = await hosts(db);
  const all = [...decided(WORKERS, ['w-1', 'w-2', 'w-3']), ...decided(STORAGE, ['s-1', 's-2'])];
  const { intents, rest } = activationIntents(all, NOW, 'hc-a');
  t.deepEqual(rest, []);
  t.is(intents.length, 2, 'one per deployment revision');
  await saveIntents(h, intents);
  t.deepEqual(await written(h), { entries: 0, desired: 0, events: 0, intents: 2 });

  t.deepEqual(await writeIntents(h, 1n, NOW), ['w-1', 'w-2', 'w-3', 's-1', 's-2']);
  t.deepEqual(await written(h), { entries: 5, desired: 5, events: 5, intents: 0 });
  const entries = await nodeRollouts(h);
  for (const a of all) t.deepEqual(entries.get(a.deployment)?.get(a.row.nodeId), a.row, a.row.nodeId);
  const stored = await desiredSystemsOf(h, all.map((a) => a.row.nodeId));
  const json = (d: DesiredSystem | undefined) => (d ? desiredSystemJson.toJson(d) : undefined);
  for (const a of all) t.deepEqual(json(stored.get(a.row.nodeId)?.desired), json(a.desired), a.row.nodeId);
  t.is(stored.get('w-3')?.desired.systemPath, `${SYSTEM}-special`);
  t.is(stored.get('s-2')?.desired.flakeAttr, 'nixosConfigurations.h-s-2.config.system.build.toplevel');
  const events = await listEvents(h);
  t.deepEqual(
    events.map((e) => [e.nodeId, e.kind, e.fromPhase, e.toPhase, e.message, e.replica, e.at.getTime(), e.revision]),
    [
      ['w-1', 'decision.activate', '', 'ACTIVATING', SYSTEM, 'hc-a', NOW.getTime(), 2n],
      ['w-2', 'decision.activate', 'PENDING', 'ACTIVATING', SYSTEM, 'hc-a', NOW.getTime(), 2n],
      ['w-3', 'decision.activate', 'PENDING', 'ACTIVATING', `${SYSTEM}-special`, 'hc-a', NOW.getTime(), 2n],
      ['s-1', 'decision.activate', '', 'ACTIVATING', 'git+https://git.example/infra?rev=abc#nixosConfigurations.h-s-1.config.system.build.toplevel', 'hc-a', NOW.getTime(), 2n],
      ['s-2', 'decision.activate', 'PENDING', 'ACTIVATING', 'git+https://git.example/infra?rev=abc#nixosConfigurations.h-s-2.config.system.build.toplevel', 'hc-a', NOW.getTime(), 2n],
    ],
  );
  // Nothing is left to write.
  t.deepEqual(await writeIntents(h, 1n, NOW), []);
});

storageTest('a new desired system from an intent ends an outstanding reboot grant, as one written directly does', async (t, db) => {
  const h = await hosts(db);
  const old = desiredSystem(WORKERS, 1n, 'w-1', { systemPath: SYSTEM, flakeRef: '', flakeAttr: '' }, NOW);
  await saveDesiredSystems(h, [old], NOW);
  await grantReboot(h, 'w-1', new Date(NOW.getTime() + 60_000), 'boot-1', NOW);
  await saveIntents(h, activationIntents(decided(WORKERS, ['w-1']), NOW, 'hc-a').intents);
  await writeIntents(h, 1n, NOW);
  const stored = (await desiredSystemsOf(h, ['w-1'])).get('w-1');
  t.is(stored?.desired.revision, 2n);
  t.is(stored?.rebootGrantDeadline, undefined);
  t.is(stored?.rebootGrantBootId, '');
});

storageTest('only the leader writes intents out: a deposed one writes nothing and leaves them to its successor', async (t, db) => {
  const h = await hosts(db);
  await saveIntents(h, activationIntents(decided(WORKERS, ['w-1', 'w-2']), NOW, 'hc-a').intents);
  await h.updateTable('controller_leader').set({ epoch: 2n, replica: 'hc-b' }).where('id', '=', 1).execute();
  t.is(await writeIntents(h, 1n, NOW), 'deposed');
  t.deepEqual(await written(h), { entries: 0, desired: 0, events: 0, intents: 1 });
  t.is((await h.selectFrom('controller_leader').select('replica').executeTakeFirstOrThrow()).replica, 'hc-b');
  // The successor writes them out, once.
  t.deepEqual(await writeIntents(h, 2n, NOW), ['w-1', 'w-2']);
  t.deepEqual(await written(h), { entries: 2, desired: 2, events: 2, intents: 0 });
});

storageTest('a deleted deployment takes its intents with it', async (t, db) => {
  const h = await hosts(db);
  await saveIntents(h, activationIntents([...decided(WORKERS, ['w-1']), ...decided(STORAGE, ['s-1'])], NOW, 'hc-a').intents);
  await deleteDeployment(h, 'storage');
  t.deepEqual(await writeIntents(h, 1n, NOW), ['w-1']);
  t.deepEqual(await written(h), { entries: 1, desired: 1, events: 1, intents: 0 });
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
