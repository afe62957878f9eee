// Integration, PostgreSQL: two host-controller replicas as real `ultracloud host-controller`
// processes on one database, a real deployer, and scripted nix-agents spread over both replicas
// over mTLS. The leader is killed with SIGKILL mid-rollout: the other replica takes the advisory
// lock within seconds and finishes the rollout without handing any node its activation twice,
// and the agents whose streams died with the leader reconnect to the survivor and resume.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { type ClientError, Status } from 'nice-grpc';
import { AccessServiceDefinition, Role } from '../../gen/ts/ultracloud/deployer/v1/access_service.js';
import { ClusterState } from '../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import { HostDeploymentServiceDefinition, type HostRollout } from '../../gen/ts/ultracloud/host/v1/host_deployment_service.js';
import { HostDeployment, HostDeploymentPhase as Phase, NodeRolloutPhase as P } from '../../gen/ts/ultracloud/system/v1/system.js';
import { openDatabase, serviceDatabase } from '../../lib/db/index.js';
import { createServiceClient, openChannel, type ServiceClient } from '../../lib/grpc/client.js';
import { createClusterCa, issueControlPlaneCertificate } from '../../lib/pki/index.js';
import { HOSTS_SCHEMA } from '../../services/host-controller/migrations/index.js';
import { listEvents, PHASE_EVENT_KINDS } from '../../services/host-controller/store/rollouts.js';
import type { HostsDatabase } from '../../services/host-controller/store/tables.js';
import { createTestDatabase, databaseTargets, unavailableTargetTest } from '../helpers/databases.js';
import { createDeployerStore, type DeployerReplica, startReplica } from '../helpers/deployer-replicas.js';
import { eventually } from '../helpers/eventually.js';
import { installNodes } from '../helpers/host-fleet.js';
import { ScriptedAgent } from '../helpers/scripted-agent.js';
import { cleanEnv, logEvents, startUltracloud, type UltracloudProcess } from '../helpers/ultracloud-process.js';

const LAB6: unknown = JSON.parse(readFileSync(new URL('../fixtures/cluster-state/lab6.json', import.meta.url), 'utf8'));
const TARGET = `/nix/store/${'b'.repeat(32)}-nixos-system-fleet-25.05`;
const TITLE = 'the leader killed mid-rollout: the other replica takes over within seconds and no node is activated twice';

const postgres = databaseTargets().find((t) => t.name === 'postgres');
if (!postgres?.available) {
  if (postgres) unavailableTargetTest(`${TITLE} [postgres]`, postgres);
} else {
  test(`${TITLE} [postgres]`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'ultracloud-hc-replicas-'));
    const store = await createDeployerStore('postgres');
    const hostsDatabase = await createTestDatabase();
    const processes: UltracloudProcess[] = [];
    const agents: ScriptedAgent[] = [];
    const channels: ReturnType<typeof openChannel>[] = [];
    const reader = await openDatabase({ url: hostsDatabase.url, poolSize: 2 });
    t.teardown(async () => {
      for (const a of agents) await a.stop();
      for (const c of channels) c.close();
      for (const p of processes) await p.stop('SIGKILL');
      await reader.close();
      await hostsDatabase.drop();
      await store.remove();
      rmSync(dir, { recursive: true, force: true });
    });

    // The deployer with six installed nodes.
    const deployer: DeployerReplica = await startReplica(store);
    // Teardowns run last-registered first: the deployer stops before its store goes.
    t.teardown(() => deployer.stop());
    await deployer.cluster.applyClusterState({ state: ClusterState.fromJSON(LAB6), dryRun: false, expectedGeneration: 0n });
    const nodes = await installNodes(deployer.channel, deployer.joinToken, join(dir, 'nodes'), 6);

    // The host-controllers' own server certificate; agent certificates verify against the deployer's CA.
    const serverCa = await createClusterCa({ commonName: 'host-controller test CA' });
    const serverCert = await issueControlPlaneCertificate(serverCa);
    const files = { ca: join(dir, 'server-ca.pem'), cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key'), token: join(dir, 'deployer.token') };
    writeFileSync(files.ca, serverCa.certificatePem);
    writeFileSync(files.cert, serverCert.certificatePem);
    writeFileSync(files.key, serverCert.privateKeyPem, { mode: 0o600 });
    writeFileSync(files.token, `${deployer.adminToken}\n`, { mode: 0o600 });
    const deployerAddress = deployer.address;
    const replica = async (id: string, extra: string[] = []) => {
      const p = await startUltracloud('host-controller', {
        args: [
          ...extra,
          '--deployer', deployerAddress,
          '--deployer-token-file', files.token,
          '--tls-cert', files.cert,
          '--tls-key', files.key,
          '--tls-ca', join(store.stateDir, 'ca.pem'),
          '--instance-id', id,
          '--heartbeat-interval', '500ms',
          '--reconcile-interval', '200ms',
          '--leader-retry', '250ms',
          '--token-cache-ttl', '1s',
        ],
        env: cleanEnv({ ULTRACLOUD_DATABASE_URL: hostsDatabase.url, ULTRACLOUD_LOG_LEVEL: 'debug' }),
      });
      processes.push(p);
      return p;
    };
    const leaderOf = (p: UltracloudProcess) => logEvents(p.output).some((e) => e.event === 'leader.elected');
    const a = await replica('hc-a');
    await eventually(async () => (leaderOf(a) ? true : undefined), 30_000, 'hc-a leads');
    const b = await replica('hc-b', ['--metrics-listen', '127.0.0.1:0']);
    // A replica refuses hellos (UNAVAILABLE) until it has the deployer's machines.
    await eventually(async () => (logEvents(b.output).some((e) => e.event === 'inventory.synced') ? true : undefined), 30_000, 'hc-b has the inventory');
    const clientOf = (p: UltracloudProcess): ServiceClient<typeof HostDeploymentServiceDefinition> => {
      const channel = openChannel(p.address, { tls: { caFile: files.ca } });
      channels.push(channel);
      return createServiceClient(HostDeploymentServiceDefinition, channel, { token: readFileSync(join(p.stateDir, 'admin.token'), 'utf8').trim(), defaultDeadlineMs: 30_000 });
    };
    const viaB = clientOf(b);

    // Half the agents start on the leader, half on the follower; each fails over to the other.
    nodes.forEach((n, i) => {
      const addresses = i % 2 === 0 ? [a.address, b.address] : [b.address, a.address];
      const agent = new ScriptedAgent({ nodeId: n.nodeId, addresses, tls: { caFile: files.ca, certFile: n.certFile, keyFile: n.keyFile }, stepDelayMs: 400 });
      agents.push(agent.start());
    });
    await Promise.all(agents.map((x) => x.waitFor((y) => y.connected, 60_000, 'connected')));
    const listed = await eventually(async () => {
      const res = await viaB.listHostAgents({ pageSize: 0, pageToken: '', nodeIds: [], staleOnly: false });
      return res.agents.filter((x) => x.connected).length === 6 ? res : undefined;
    }, 30_000, 'six agents connected');
    t.deepEqual(new Set(listed.agents.map((x) => x.controllerReplica)), new Set(['hc-a', 'hc-b']), 'streams held by both replicas');

    // Applied through the follower: the leader finds it in the database.
    await viaB.applyHostDeployments({
      hostDeployments: [HostDeployment.fromPartial({ name: 'fleet-os', selector: { allNodes: true }, target: { systemPath: TARGET }, maxUnavailable: { value: { $case: 'count', value: 1 } } })],
      dryRun: false,
      prune: false,
      reason: 'replicas test',
    });
    const get = async () => (await viaB.getHostDeployment({ name: 'fleet-os' })).rollout as HostRollout;
    await eventually(async () => {
      const r = await get();
      return (r.status?.succeededNodes ?? 0) >= 2 && (r.status?.inProgressNodes ?? 0) === 1 ? r : undefined;
    }, 90_000, 'two nodes done, the third in progress');

    const killedAt = Date.now();
    t.is(await a.stop('SIGKILL'), null, 'the leader was killed');
    await eventually(async () => (leaderOf(b) ? true : undefined), 20_000, 'hc-b leads');
    const takeover = logEvents(b.output).find((e) => e.event === 'leader.elected');
    const failoverMs = new Date(String(takeover?.time)).getTime() - killedAt;
    t.log(`hc-b became the leader ${failoverMs} ms after the kill`);
    t.true(failoverMs < 10_000, `failover took ${failoverMs} ms`);

    const done = await eventually(async () => {
      const r = await get();
      return r.status?.phase === Phase.HOST_DEPLOYMENT_PHASE_COMPLETED ? r : undefined;
    }, 120_000, 'rollout completed');
    t.is(done.status?.succeededNodes, 6);
    t.true((done.status?.nodes ?? []).every((n) => n.phase === P.NODE_ROLLOUT_PHASE_SUCCEEDED));

    const hosts = serviceDatabase<HostsDatabase>(reader.db, HOSTS_SCHEMA);
    const events = await listEvents(hosts, { deployment: 'fleet-os' });
    const decided = new Map<string, number>();
    for (const e of events) if (e.kind === 'decision.activate') decided.set(e.nodeId, (decided.get(e.nodeId) ?? 0) + 1);
    t.deepEqual([...decided.values()], [1, 1, 1, 1, 1, 1], 'one activation decision per node');
    t.deepEqual(new Set(events.filter((e) => e.kind === 'decision.activate').map((e) => e.replica)), new Set(['hc-a', 'hc-b']), 'both leaders decided');
    const phase = new Map<string, string>();
    let most = 0;
    for (const e of events) {
      if (!PHASE_EVENT_KINDS.has(e.kind)) continue;
      phase.set(e.nodeId, e.toPhase);
      most = Math.max(most, [...phase.values()].filter((p) => ['DRAINING', 'ACTIVATING', 'CONFIRMING', 'REBOOTING'].includes(p)).length);
    }
    t.is(most, 1, 'never more than one node in progress, across the failover');
    for (const agent of agents) {
      t.deepEqual(agent.activations, ['fleet-os/1'], `${agent.nodeId} activated once`);
      t.true(agent.deliveries.every((d) => decided.has(d.nodeId)), 'nothing was sent that was not decided first');
    }
    const moved = agents.filter((x) => x.streams >= 2);
    t.true(moved.length >= 3, 'the agents of the killed replica reconnected to the survivor');

    // Operator tokens the deployer issued work on the controller as their role allows, until revoked.
    const access = createServiceClient(AccessServiceDefinition, deployer.channel, { token: deployer.adminToken });
    const issued = await access.createToken({ name: 'rollout-viewer', role: Role.ROLE_VIEWER, ttl: undefined, description: '' });
    const viewerChannel = openChannel(b.address, { tls: { caFile: files.ca } });
    channels.push(viewerChannel);
    const asViewer = createServiceClient(HostDeploymentServiceDefinition, viewerChannel, { token: issued.secret, defaultDeadlineMs: 30_000 });
    t.is((await asViewer.listHostDeployments({ pageSize: 0, pageToken: '', phases: [] })).rollouts.length, 1);
    const refused = await t.throwsAsync(asViewer.pauseHostDeployment({ name: 'fleet-os', reason: 'viewer' }));
    t.is((refused as ClientError).code, Status.PERMISSION_DENIED);
    t.regex((refused as ClientError).details, /operator:rollout-viewer\(viewer\) may not call/);
    await access.revokeToken({ token: { $case: 'name', value: 'rollout-viewer' }, reason: 'test' });
    const revoked = await eventually(async () => {
      try {
        await asViewer.listHostDeployments({ pageSize: 0, pageToken: '', phases: [] });
        return undefined;
      } catch (err) {
        return err as ClientError;
      }
    }, 15_000, 'the revoked token refused');
    t.is(revoked.code, Status.UNAUTHENTICATED);

    // The survivor's metrics: it leads, holds every stream, and counts the nodes from the database.
    const metrics = await (await fetch(b.metricsUrl as string)).text();
    t.regex(metrics, /^ultracloud_host_controller_leader 1$/m);
    t.regex(metrics, /^ultracloud_host_agent_streams 6$/m);
    t.regex(metrics, /^ultracloud_host_rollout_nodes\{deployment="fleet-os",phase="succeeded"\} 6$/m);
    t.regex(metrics, /^ultracloud_host_agents\{liveness="connected"\} 6$/m);
    t.regex(metrics, /^ultracloud_host_reconcile_seconds_count\{outcome="ok"\} \d+$/m);
    t.regex(metrics, /^ultracloud_host_agent_messages_total\{kind="activationReport"\} \d+$/m);

    // A graceful stop: streams end with UNAVAILABLE (agents reconnect elsewhere), the process exits 0.
    t.is(await b.stop('SIGTERM'), 0);
    await Promise.all(agents.map((x) => x.waitFor((y) => y.streamEnds.some((e) => e.address === b.address && e.code === Status.UNAVAILABLE), 30_000, 'UNAVAILABLE from hc-b')));
    t.true(logEvents(b.output).some((e) => e.event === 'server.stopped'));
  });
}
