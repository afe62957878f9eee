// Integration: Prometheus metrics of a deployer served by the real serveComponents, scraped over
// real HTTP after a simulated install, on PGlite and on PostgreSQL: RPC counts by status code,
// latency histograms, open streams, machines by state (counted from the database at scrape time)
// and install durations.
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import test from 'ava';
import { ClientError, createClient, Status } from 'nice-grpc';
import { HealthDefinition } from '../../gen/ts/grpc/health/v1/health.js';
import { ClusterState } from '../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import { MachineServiceDefinition } from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { MachineState } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { forEachDeployerTarget } from '../helpers/deployer-server.js';
import { machineInventory, optiplexFacts, SimulatedInstaller } from '../helpers/simulated-installer.js';

const LAB6: unknown = JSON.parse(readFileSync(new URL('../fixtures/cluster-state/lab6.json', import.meta.url), 'utf8'));

interface Scrape {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

/** One GET over a fresh connection, as Prometheus scrapes. */
function scrape(url: string): Promise<Scrape> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Parses `name{a="b",…} value` lines of the Prometheus text format. */
function samples(body: string): { name: string; labels: Record<string, string>; value: number }[] {
  return body
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!m) throw new Error(`not a sample line: ${line}`);
      const labels: Record<string, string> = {};
      for (const pair of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1] as string] = pair[2] as string;
      return { name: m[1] as string, labels, value: Number(m[3]) };
    });
}

/** The value of the one sample of `name` whose labels include `labels`; undefined when none. */
function valueOf(body: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples(body).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${found.length} samples`);
  return found[0]?.value;
}

const rpc = (service: string, method: string, code: string, type = 'unary') => ({ grpc_service: service, grpc_method: method, grpc_type: type, grpc_code: code });
const BOOTSTRAP = 'ultracloud.bootstrap.v1.BootstrapService';
const MACHINES = 'ultracloud.deployer.v1.MachineService';
const HEALTH = 'grpc.health.v1.Health';

forEachDeployerTarget('metrics after a simulated install', (target) => {
  test(`/metrics shows RPC counts by code, machines by state, install durations and open streams [${target.name}]`, async (t) => {
    const server = await target.start({ metrics: true });
    t.teardown(() => server.stop());
    const url = server.metricsUrl;
    if (!url) throw new Error('the deployer serves no metrics');
    t.regex(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    await server.cluster.applyClusterState({ state: ClusterState.fromJSON(LAB6), dryRun: false, expectedGeneration: 0n });

    // A call without a credential, refused by the auth middleware.
    const anonymous = server.client(MachineServiceDefinition);
    const refused = await t.throwsAsync(anonymous.listMachines({ pageSize: 10 }), { instanceOf: ClientError });
    t.is(refused?.code, Status.UNAUTHENTICATED);

    // lab6 enrols and auto-installs an OptiPlex: Discover, FetchPlan, six progress reports, success.
    const machine = new SimulatedInstaller({ channel: server.channel, joinToken: server.joinToken }, machineInventory(optiplexFacts()));
    const discovered = await machine.discover();
    t.is(discovered.state, MachineState.MACHINE_STATE_INSTALL_PENDING, discovered.message);
    await machine.fetchPlan();
    const reports = await machine.install();
    t.is(reports.at(-1)?.state, MachineState.MACHINE_STATE_INSTALLED);

    // A server stream held open while Prometheus scrapes.
    const watching = new AbortController();
    const stream = createClient(HealthDefinition, server.channel).watch({ service: '' }, { signal: watching.signal })[Symbol.asyncIterator]();
    await stream.next();

    const during = await scrape(url);
    t.is(during.status, 200);
    t.regex(during.contentType, /^text\/plain; version=0\.0\.4/);
    const body = during.body;

    t.is(valueOf(body, 'ultracloud_grpc_server_handled_total', rpc(BOOTSTRAP, 'Discover', 'OK')), 1);
    t.is(valueOf(body, 'ultracloud_grpc_server_handled_total', rpc(BOOTSTRAP, 'FetchPlan', 'OK')), 1);
    t.is(valueOf(body, 'ultracloud_grpc_server_handled_total', rpc(BOOTSTRAP, 'ReportInstallProgress', 'OK')), reports.length);
    t.is(valueOf(body, 'ultracloud_grpc_server_handled_total', rpc(MACHINES, 'ListMachines', 'UNAUTHENTICATED')), 1);
    t.is(valueOf(body, 'ultracloud_grpc_server_handled_total', rpc(MACHINES, 'ListMachines', 'OK')), undefined);
    t.is(valueOf(body, 'ultracloud_grpc_server_handling_seconds_count', rpc(BOOTSTRAP, 'ReportInstallProgress', 'OK')), reports.length);
    t.is(valueOf(body, 'ultracloud_grpc_server_handling_seconds_bucket', { ...rpc(BOOTSTRAP, 'Discover', 'OK'), le: '+Inf' }), 1);
    t.is(valueOf(body, 'ultracloud_grpc_server_open_streams', { grpc_service: HEALTH, grpc_method: 'Watch' }), 1);

    t.is(valueOf(body, 'ultracloud_machines', { state: 'installed' }), 1);
    t.is(valueOf(body, 'ultracloud_machines', { state: 'install-pending' }), 0);
    t.is(valueOf(body, 'ultracloud_machines', { state: 'active' }), 0);
    t.is(valueOf(body, 'ultracloud_install_duration_seconds_count', { ending: 'succeeded' }), 1);
    t.is(valueOf(body, 'ultracloud_install_duration_seconds_count', { ending: 'failed' }), undefined);
    const seconds = valueOf(body, 'ultracloud_install_duration_seconds_sum', { ending: 'succeeded' }) ?? -1;
    t.true(seconds >= 0 && seconds < 120, `install took ${seconds} s by the histogram`);

    // The process's own metrics come from prom-client's defaults.
    t.true((valueOf(body, 'process_cpu_user_seconds_total') ?? 0) > 0);
    t.not(valueOf(body, 'nodejs_heap_size_used_bytes'), undefined);

    // The client hangs up: the stream is counted as cancelled and no longer open.
    watching.abort();
    await stream.next().catch(() => undefined);
    let after = (await scrape(url)).body;
    for (let i = 0; i < 50 && valueOf(after, 'ultracloud_grpc_server_open_streams', { grpc_service: HEALTH, grpc_method: 'Watch' }) !== 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      after = (await scrape(url)).body;
    }
    t.is(valueOf(after, 'ultracloud_grpc_server_open_streams', { grpc_service: HEALTH, grpc_method: 'Watch' }), 0);
    t.is(valueOf(after, 'ultracloud_grpc_server_handled_total', rpc(HEALTH, 'Watch', 'CANCELLED', 'server_stream')), 1);

    // Anything but /metrics is not found.
    t.is((await scrape(url.replace(/\/metrics$/, '/'))).status, 404);

    // Stopping the server stops the metrics port with it.
    await server.stop();
    await t.throwsAsync(scrape(url), { code: 'ECONNREFUSED' });
  });
});
