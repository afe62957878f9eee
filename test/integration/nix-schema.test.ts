// The Nix static model (nix/lib/cluster-schema.nix) against the real nix-instantiate: the lab
// evaluates, its committed documents are current, every document is exactly proto3 JSON of its
// message (decoded strictly from the buf image, so a field name the proto lacks fails), the
// deployer accepts the cluster state, and each broken cluster fails with its named error.
import { readdirSync, readFileSync } from 'node:fs';
import { createFileRegistry, type DescMessage, fromBinary, fromJson, type JsonValue } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import type { ExecutionContext } from 'ava';
import { ChangeType, ClusterObjectKind } from '../../gen/ts/ultracloud/deployer/v1/cluster_service.js';
import { ClusterState } from '../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import { diffClusterState, validateClusterState } from '../../services/deployer/domain/cluster-state.js';
import { NixEvalError, nixEval, nixTest, REPO_ROOT } from '../helpers/nix.js';

const LAB = 'nix/examples/lab6';
const GENERATED = `${REPO_ROOT}${LAB}/generated`;
const BROKEN = 'test/fixtures/nix-broken';

type Json = JsonValue;
type JsonObject = { [key: string]: Json };

interface LabEvaluation {
  readonly config: JsonObject;
  readonly clusterState: JsonObject;
  readonly hostDeployments: JsonObject[];
  readonly servicePolicies: JsonObject[];
  readonly nodeConfigs: Record<string, JsonObject>;
  readonly classConfigs: Record<string, JsonObject>;
  readonly installPlans: Record<string, JsonObject>;
  readonly testTopology: JsonObject;
}

// One evaluation of the whole lab, shared by the tests that read it.
let labEvaluation: Promise<LabEvaluation> | undefined;
function lab(): Promise<LabEvaluation> {
  labEvaluation ??= nixEval(LAB) as Promise<LabEvaluation>;
  return labEvaluation;
}

const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(`${REPO_ROOT}gen/ultracloud.binpb`)));

function message(typeName: string): DescMessage {
  const desc = registry.getMessage(typeName);
  if (!desc) throw new Error(`${typeName} is not in gen/ultracloud.binpb`);
  return desc;
}

/** Strict proto3 JSON decoding: unknown fields, bad enum names and wrong types all throw. */
function decodeStrictly(t: ExecutionContext, typeName: string, json: Json, what: string): void {
  t.notThrows(() => fromJson(message(typeName), json, { ignoreUnknownFields: false }), `${what} is not ${typeName} proto3 JSON`);
}

function readGenerated(name: string): string {
  return readFileSync(`${GENERATED}/${name}`, 'utf8');
}

const pretty = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`;

nixTest('the lab evaluates to every generated document', async (t) => {
  const evaluated = await lab();
  t.deepEqual(Object.keys(evaluated).sort(), ['classConfigs', 'clusterState', 'config', 'hostDeployments', 'installPlans', 'nodeConfigs', 'servicePolicies', 'testTopology']);
  t.deepEqual(Object.keys(evaluated.clusterState.nodes as JsonObject), ['cp-1', 'cp-2', 'cp-3']);
  t.deepEqual(evaluated.hostDeployments.map((d) => d.name), ['control-plane-os', 'workers-os']);
  t.deepEqual(evaluated.servicePolicies.map((s) => s.name), ['echo-api', 'node-exporter']);
});

nixTest('the committed generated documents equal the evaluation (run nix/examples/lab6/generate.sh)', async (t) => {
  const evaluated = await lab();
  t.is(readGenerated('cluster-state.json'), pretty(evaluated.clusterState));
  t.is(readGenerated('host-deployments.json'), pretty({ hostDeployments: evaluated.hostDeployments }));
  t.is(readGenerated('service-policies.json'), pretty({ serviceSpecs: evaluated.servicePolicies }));
  t.is(readGenerated('test-topology.json'), pretty(evaluated.testTopology));
});

nixTest('every generated document decodes strictly as its proto message', async (t) => {
  const evaluated = await lab();
  decodeStrictly(t, 'ultracloud.deployer.v1.ClusterState', evaluated.clusterState, 'clusterState');
  evaluated.hostDeployments.forEach((d, i) => decodeStrictly(t, 'ultracloud.system.v1.HostDeployment', d, `hostDeployments[${i}]`));
  evaluated.servicePolicies.forEach((s, i) => decodeStrictly(t, 'ultracloud.service.v1.ServiceSpec', s, `servicePolicies[${i}]`));
  decodeStrictly(t, 'ultracloud.host.v1.ApplyHostDeploymentsRequest', JSON.parse(readGenerated('host-deployments.json')) as Json, 'host-deployments.json');
  decodeStrictly(t, 'ultracloud.runtime.v1.ApplyServiceSpecsRequest', JSON.parse(readGenerated('service-policies.json')) as Json, 'service-policies.json');
  for (const [name, plan] of Object.entries(evaluated.installPlans)) {
    const disk = plan.disk as JsonObject;
    decodeStrictly(t, 'ultracloud.installplan.v1.RootDeviceHints', disk.rootDeviceHints ?? {}, `installPlans.${name}.disk.rootDeviceHints`);
    decodeStrictly(t, 'ultracloud.installplan.v1.DiskLayout', disk.layout ?? {}, `installPlans.${name}.disk.layout`);
  }
});

nixTest('strict decoding rejects a field name the proto does not have', async (t) => {
  // Guards the test above: were decoding lenient, a misspelt generator field would pass it.
  const evaluated = await lab();
  const misspelt = { ...evaluated.clusterState, cluster: { ...(evaluated.clusterState.cluster as JsonObject), deployerAdress: 'x:1' } };
  const error = t.throws(() => fromJson(message('ultracloud.deployer.v1.ClusterState'), misspelt));
  t.regex(error?.message ?? '', /deployerAdress/);
});

nixTest('the deployer accepts the lab cluster state with zero violations', async (t) => {
  const evaluated = await lab();
  t.deepEqual(validateClusterState(ClusterState.fromJSON(evaluated.clusterState)), []);
});

nixTest('the lab expresses the hand-written lab6 fixture, with workers in one failure domain', async (t) => {
  const evaluated = await lab();
  const fixture = ClusterState.fromJSON(JSON.parse(readFileSync(`${REPO_ROOT}test/fixtures/cluster-state/lab6.json`, 'utf8')));
  // The only change: the worker rule names a failure domain, which the services' default spread
  // over failure domains needs to place replicas on workers at all.
  t.deepEqual(diffClusterState(fixture, ClusterState.fromJSON(evaluated.clusterState)), [
    {
      kind: ClusterObjectKind.CLUSTER_OBJECT_KIND_ENROLLMENT_RULE,
      name: 'optiplex-workers',
      change: ChangeType.CHANGE_TYPE_CHANGED,
      changedFields: ['failureDomainLabel', 'labels.ultracloud.io/power'],
    },
  ]);
});

nixTest('node configs give each fixed node its name, static network, disko layout and agents', async (t) => {
  const { nodeConfigs } = await lab();
  t.deepEqual(Object.keys(nodeConfigs), ['cp-1', 'cp-2', 'cp-3']);
  const cp1 = nodeConfigs['cp-1'] as JsonObject;
  t.like(cp1, { hostName: 'cp-1', domain: 'lab6.internal', flakeAttr: 'nixosConfigurations.cp-1', rootDevicePlaceholder: true });
  t.like(cp1.networking as JsonObject, {
    hostName: 'cp-1',
    useDHCP: false,
    defaultGateway: { address: '10.44.0.1', interface: 'lan0' },
    nameservers: ['10.44.0.1'],
    interfaces: { lan0: { useDHCP: false, ipv4: { addresses: [{ address: '10.44.0.11', prefixLength: 24 }] } } },
  });
  t.deepEqual((cp1.systemd as JsonObject).network, {
    links: { '10-lan0': { matchConfig: { PermanentMACAddress: 'd8:9e:f3:3a:61:0b' }, linkConfig: { Name: 'lan0' } } },
  });
  t.like(cp1.disko as JsonObject, {
    devices: {
      disk: {
        root: {
          type: 'disk',
          device: '@ULTRACLOUD_ROOT_DISK@',
          content: {
            type: 'gpt',
            partitions: {
              ESP: { priority: 1, size: '1024M', type: 'EF00', content: { type: 'filesystem', format: 'vfat', mountpoint: '/boot' } },
              root: { priority: 2, size: '100%', type: '8300', content: { type: 'filesystem', format: 'ext4', mountpoint: '/' } },
            },
          },
        },
      },
    },
  });
  t.deepEqual((cp1.ultracloud as JsonObject).agents, {
    nixAgent: true,
    nodeAgent: false,
    deployerAddress: '10.44.0.2:7000',
    hostControllerAddress: '10.44.0.2:7000',
    fleetSchedulerAddress: '',
  });
});

nixTest('class configs give each node class its domain, disk policy layout, agents and network, without identity', async (t) => {
  const { classConfigs, nodeConfigs, config } = await lab();
  t.deepEqual(Object.keys(classConfigs), ['control-plane', 'worker']);
  const worker = classConfigs['worker'] as JsonObject;
  t.like(worker, { nodeClass: 'worker', domain: 'lab6.internal', installProfile: 'worker', diskPolicy: 'system-ssd', enrollmentRules: ['optiplex-workers'], rootDevicePlaceholder: true });
  t.deepEqual(worker.network, { name: 'lab', mtu: 0, dnsServers: ['10.44.0.1'], ntpServers: ['0.nixos.pool.ntp.org', '1.nixos.pool.ntp.org'], searchDomains: ['lab6.internal'] });
  t.deepEqual(worker.networking, { domain: 'lab6.internal', nameservers: ['10.44.0.1'], search: ['lab6.internal'], timeServers: ['0.nixos.pool.ntp.org', '1.nixos.pool.ntp.org'] });
  t.deepEqual((worker.ultracloud as JsonObject).agents, {
    nixAgent: true,
    nodeAgent: true,
    deployerAddress: '10.44.0.2:7000',
    hostControllerAddress: '10.44.0.2:7000',
    fleetSchedulerAddress: '10.44.0.2:7000',
  });
  t.like((classConfigs['control-plane'] as JsonObject).ultracloud as JsonObject, { agents: { nixAgent: true, nodeAgent: false, fleetSchedulerAddress: '' } });
  t.deepEqual((classConfigs['control-plane'] as JsonObject).enrollmentRules, []);
  // The layout is the worker profile's disk policy, partition for partition, on the placeholder.
  const root = ((worker.disko as JsonObject).devices as JsonObject).disk as JsonObject;
  t.is((root.root as JsonObject).device, '@ULTRACLOUD_ROOT_DISK@');
  const policy = (config.diskPolicies as JsonObject)['system-ssd'] as JsonObject;
  const partitions = ((root.root as JsonObject).content as JsonObject).partitions as Record<string, JsonObject>;
  const wanted = (policy.layout as JsonObject).partitions as JsonObject[];
  t.deepEqual(Object.keys(partitions).sort(), wanted.map((p) => p.name as string).sort());
  wanted.forEach((p, i) => t.like(partitions[p.name as string] as JsonObject, { priority: i + 1, content: { format: p.filesystem, mountpoint: p.mountpoint, mountOptions: p.mountOptions } }));
  // The same disk a fixed node of the same policy gets.
  t.deepEqual(worker.disko, (nodeConfigs['cp-1'] as JsonObject).disko);
});

nixTest('install plans carry each profile\'s flake attribute template, disk and network', async (t) => {
  const { installPlans } = await lab();
  t.like(installPlans['worker'] as JsonObject, {
    flakeAttr: 'nixosConfigurations.worker',
    flakeAttrPerNode: false,
    disk: { policy: 'system-ssd', wipePolicy: 'WIPE_POLICY_METADATA', rootDeviceHints: { wwn: '<in> 002538', size: '>= 200', rotational: false } },
    network: { name: 'lab', prefixLength: 24, gateway: '10.44.0.1', addressMode: 'ADDRESS_MODE_STATIC', searchDomains: ['lab6.internal'] },
    agent: { fleetSchedulerAddress: '10.44.0.2:7000' },
    rules: ['optiplex-workers'],
  });
  t.like(installPlans['control-plane'] as JsonObject, { flakeAttrPerNode: true, nodes: ['cp-1', 'cp-2', 'cp-3'], agent: { fleetSchedulerAddress: '' } });
});

nixTest('the test topology has six machines with distinct MACs and addresses on the lab bridge', async (t) => {
  const { testTopology } = await lab();
  const nodes = testTopology.nodes as JsonObject[];
  t.deepEqual(nodes.map((n) => n.nodeId), ['cp-1', 'cp-2', 'cp-3', 'worker-1', 'worker-2', 'worker-3']);
  const interfaces = nodes.map((n) => (n.interfaces as JsonObject[])[0] as JsonObject);
  t.deepEqual(interfaces.map((i) => i.address), ['10.44.0.11', '10.44.0.12', '10.44.0.13', '10.44.0.21', '10.44.0.22', '10.44.0.23']);
  t.is(new Set(interfaces.map((i) => i.macAddress)).size, 6);
  t.like(testTopology.networks as JsonObject, { lab: { bridge: 'uc-lab', cidr: '10.44.0.0/24', gateway: '10.44.0.1' } });
  // Rule-enrolled machines carry DMI facts the rule's selector accepts.
  t.like(nodes[3] as JsonObject, { predicted: true, source: 'enrollmentRules.optiplex-workers', machine: { vendor: 'Dell Inc.', product: 'OptiPlex 7000' } });
});

// Each broken cluster and the problems it must report, in order, each the start of one line.
const broken: Record<string, string[]> = {
  'unknown-class.nix': ['enrollmentRules.optiplex-workers.class: unknown node class "wrker"'],
  'unknown-pool.nix': ['nodes.cp-3.pool: unknown pool "controll"'],
  'duplicate-hostnames.nix': [
    'nodes.cp-1.hostname: "cp-1" is also the hostname of nodes.cp-2',
    'nodes.cp-2.hostname: "cp-1" is also the hostname of nodes.cp-1',
  ],
  'overlapping-static-ips.nix': ['nodes.cp-1.address: 10.44.0.11 is also assigned to nodes.cp-2', 'nodes.cp-2.address: 10.44.0.11 is also assigned to nodes.cp-1'],
  'static-ip-in-pool.nix': ['nodes.cp-1.address: 10.44.0.50 lies inside networks.lab.addressPool (10.44.0.21-10.44.0.99)'],
  'gateway-outside-network.nix': ["networks.lab.gateway: 10.45.0.1 is outside the network's cidr 10.44.0.0/24"],
  'disk-policy-without-hints.nix': ['diskPolicies.system-ssd.rootDeviceHints: at least one root device hint is required'],
  'bad-hint-operator.nix': ['diskPolicies.system-ssd.rootDeviceHints.size: operator "=" is ambiguous'],
  'host-deployment-selects-nothing.nix': ['hostDeployments.gpu-os.selector: selects no node'],
  'host-deployments-overlap.nix': [
    'hostDeployments.everything.selector: also selects nodes.cp-1 (selected by hostDeployments.control-plane-os)',
    'hostDeployments.workers-os.selector: also selects enrollmentRules.optiplex-workers (selected by hostDeployments.everything)',
  ],
  'too-many-replicas.nix': ['servicePolicies.node-exporter.replicas: 5 replicas but at most 3 matching nodes can run them'],
  'service-on-nodes-without-agent.nix': ['servicePolicies.echo-api.selector: selects only nodes whose class does not run the node-agent'],
  'bad-mac.nix': ['nodes.cp-1.mac: "d8:9e:f3:3a:61" is not a MAC address'],
  'template-without-placeholder.nix': ['enrollmentRules.optiplex-workers.nodeIdTemplate: "worker" yields the same name for every machine'],
  'unreachable-rule.nix': ['enrollmentRules.optiplex-workers.priority: never matches: catch-all rule enrollmentRules.anything'],
  'unknown-field.nix': ['nodes.cp-1.clas: unknown field', 'nodes.cp-1.class: required'],
  'wrong-type.nix': ['servicePolicies.echo-api.replicas: expected an integer between 0 and 4294967295, got "2"'],
  'several-problems.nix': [
    'enrollmentRules.optiplex-workers.class: unknown node class "gpus"',
    'nodes.cp-3.mac: "d8-9e-f3-41-02-9e" is not a MAC address',
    'nodes.cp-1.address: 10.44.0.11 is also assigned to nodes.cp-2',
    'nodes.cp-2.address: 10.44.0.11 is also assigned to nodes.cp-1',
    'servicePolicies.echo-api.replicas: 4 replicas but at most 3 matching nodes can run them',
  ],
};

/** The problem lines of a schema throw, without Nix's "error:" prefix and indentation. */
function problemLines(stderr: string): { header: string; problems: string[] } {
  const lines = stderr.split('\n').map((l) => l.trim().replace(/^error: /, ''));
  const start = lines.findIndex((l) => l.startsWith('invalid cluster ('));
  if (start < 0) return { header: '', problems: [] };
  const rest = lines.slice(start + 1);
  const end = rest.findIndex((l) => l === '' || l.startsWith('(use ') || l.startsWith('at '));
  return { header: lines[start] ?? '', problems: end < 0 ? rest : rest.slice(0, end) };
}

for (const [file, expected] of Object.entries(broken)) {
  nixTest(`${BROKEN}/${file} fails with ${expected.length === 1 ? 'its' : `all ${expected.length}`} named error${expected.length === 1 ? '' : 's'}`, async (t) => {
    const error = await t.throwsAsync(nixEval(`${BROKEN}/${file}`, 'clusterState'), { instanceOf: NixEvalError });
    const { header, problems } = problemLines(error?.stderr ?? '');
    t.is(header, `invalid cluster (${expected.length} problem${expected.length === 1 ? '' : 's'}):`, error?.stderr);
    t.is(problems.length, expected.length, problems.join('\n'));
    expected.forEach((want, i) => t.true((problems[i] ?? '').startsWith(want), `problem ${i + 1}: expected "${want}…", got "${problems[i]}"`));
  });
}

nixTest('every broken cluster fixture is in the table', (t) => {
  t.deepEqual(readdirSync(`${REPO_ROOT}${BROKEN}`).filter((f) => f.endsWith('.nix')).sort(), Object.keys(broken).sort());
});

nixTest('docs/nix-schema.md documents every field of the authoring schema', async (t) => {
  const paths = (await nixEval('nix/lib/cluster-schema.nix', 'fieldPaths')) as string[];
  const docs = readFileSync(`${REPO_ROOT}docs/nix-schema.md`, 'utf8');
  const missing = paths.filter((p) => !docs.includes(`\`${p}\``));
  t.deepEqual(missing, [], 'fields without a `path` entry in docs/nix-schema.md');
  t.true(paths.length > 150);
});
