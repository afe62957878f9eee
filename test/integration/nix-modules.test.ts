// The NixOS modules and flake.nix need nixpkgs, which is not here: every file must parse with the
// real nix-instantiate (which also rejects undefined variables), and each module's `config`
// function is evaluated against a small stand-in for nixpkgs' `lib` (module merging reduced to
// recursive attrset merge and list concatenation). That checks what the units would run and
// which ULTRACLOUD_* variables they set, not NixOS itself.
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { daemonConfigSpec } from '../../lib/config/daemon.js';
import { HOST_CONTROLLER_CONFIG_SPEC } from '../../services/host-controller/config.js';
import { nixTest } from '../helpers/nix.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const MODULES_DIR = join(REPO, 'nix/modules');
const NIX_FILES = [...readdirSync(MODULES_DIR).filter((f) => f.endsWith('.nix')).map((f) => join('nix/modules', f)), 'flake.nix'];

function nix(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('nix-instantiate', args, { cwd: REPO, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

// Just enough of nixpkgs' lib for the modules' own code; option defaults are applied by hand.
const STUB_LIB = `
  merge = a: b:
    if builtins.isAttrs a && builtins.isAttrs b then a // builtins.mapAttrs (n: v: if a ? \${n} then merge a.\${n} v else v) b
    else if builtins.isList a && builtins.isList b then a ++ b
    else b;
  lib = {
    mkOption = o: o;
    mkEnableOption = description: { inherit description; default = false; };
    mkPackageOption = _pkgs: name: _: { default = "/nix/store/stub-\${name}"; };
    types = { str = "str"; bool = "bool"; path = "path"; attrs = "attrs"; enum = _: "enum"; nullOr = _: "nullOr"; attrsOf = _: "attrsOf"; };
    literalExpression = text: text;
    mkIf = condition: content: if condition then content else { };
    mkMerge = builtins.foldl' merge { };
    filterAttrs = pred: set: builtins.listToAttrs (builtins.filter (x: pred x.name x.value) (map (name: { inherit name; value = set.\${name}; }) (builtins.attrNames set)));
    "mapAttrs'" = f: set: builtins.listToAttrs (map (name: f name set.\${name}) (builtins.attrNames set));
    nameValuePair = name: value: { inherit name value; };
    mapAttrsToList = f: set: map (name: f name set.\${name}) (builtins.attrNames set);
    optional = c: x: if c then [ x ] else [ ];
    optionalAttrs = c: set: if c then set else { };
    toInt = builtins.fromJSON;
    last = list: builtins.elemAt list (builtins.length list - 1);
    splitString = sep: s: builtins.filter builtins.isString (builtins.split sep s);
    concatStringsSep = builtins.concatStringsSep;
  };
  pkgs = {
    writeShellScript = name: _text: "/nix/store/stub-\${name}";
    kexec-tools = "/nix/store/stub-kexec-tools";
    jq = "/nix/store/stub-jq";
    coreutils = "/nix/store/stub-coreutils";
  };`;

/** `config` of nix/modules/<module>.nix for the option defaults overridden by `values`. */
const SERVICE_MODULE_EXPR = `{ repo, module, values }:
let
  ${STUB_LIB}
  imported = import (/. + repo + "/nix/modules/\${module}.nix");
  declared = builtins.head (builtins.attrValues (imported { config = { }; inherit lib pkgs; }).options.services.ultracloud);
  cfg = builtins.mapAttrs (_: o: o.default or null) declared // builtins.fromJSON values;
  config = {
    services.ultracloud.\${module} = cfg;
    services.postgresql.enable = false;
    nix.package = "/nix/store/stub-nix";
    systemd.package = "/nix/store/stub-systemd";
  };
in (imported { inherit config lib pkgs; }).config`;

interface Unit {
  environment: Record<string, string>;
  serviceConfig: Record<string, unknown> & { ExecStart: string; LoadCredential?: string[] };
  restartIfChanged?: boolean;
}
interface ModuleConfig {
  systemd: { services: Record<string, Unit> };
  networking: { firewall: { allowedTCPPorts: number[] } };
}

async function moduleConfig(module: string, values: Record<string, unknown>): Promise<ModuleConfig> {
  const run = await nix(['--eval', '--strict', '--json', '--argstr', 'repo', REPO, '--argstr', 'module', module, '--argstr', 'values', JSON.stringify(values), '--expr', SERVICE_MODULE_EXPR]);
  if (run.code !== 0) throw new Error(`evaluating nix/modules/${module}.nix failed:\n${run.stderr}`);
  return JSON.parse(run.stdout) as ModuleConfig;
}

/** Every ULTRACLOUD_* variable the daemon's config specs (and the composition root) read. */
function variablesTheCodeReads(): Set<string> {
  const sources = ['lib/config/daemon.ts', 'services/deployer/config.ts', 'bin/ultracloud.ts'].map((f) => readFileSync(join(REPO, f), 'utf8')).join('\n');
  return new Set(sources.match(/ULTRACLOUD_[A-Z_]+/g));
}

for (const file of NIX_FILES) {
  nixTest(`${file} parses with nix-instantiate --parse`, async (t) => {
    const run = await nix(['--parse', file]);
    t.is(run.code, 0, run.stderr);
  });
}

nixTest('the deployer unit runs `ultracloud deployer` with only variables the daemon reads, secrets as credentials', async (t) => {
  const config = await moduleConfig('deployer', {
    enable: true,
    openFirewall: true,
    listen: '0.0.0.0:7001',
    tlsCertFile: '/run/secrets/tls.crt',
    tlsKeyFile: '/run/secrets/tls.key',
    joinTokenFile: '/run/secrets/join.token',
    installTimeout: '30m',
  });
  const unit = config.systemd.services['ultracloud-deployer'];
  if (!unit) return t.fail(`no ultracloud-deployer unit: ${JSON.stringify(config)}`);
  t.is(unit.serviceConfig.ExecStart, '/nix/store/stub-ultracloud/bin/ultracloud deployer');
  t.is(unit.serviceConfig.Restart, 'on-failure');
  t.is(unit.serviceConfig.DynamicUser, true);
  t.is(unit.serviceConfig.StateDirectory, 'ultracloud/deployer');
  t.deepEqual(unit.serviceConfig.LoadCredential, ['join.token:/run/secrets/join.token', 'tls.crt:/run/secrets/tls.crt', 'tls.key:/run/secrets/tls.key']);
  t.like(unit.environment, {
    ULTRACLOUD_LISTEN: '0.0.0.0:7001',
    ULTRACLOUD_STATE_DIR: '/var/lib/ultracloud/deployer',
    ULTRACLOUD_TLS_CERT: '%d/tls.crt',
    ULTRACLOUD_TLS_KEY: '%d/tls.key',
    ULTRACLOUD_JOIN_TOKEN_FILE: '%d/join.token',
    ULTRACLOUD_INSTALL_TIMEOUT: '30m',
  });
  const known = variablesTheCodeReads();
  for (const name of Object.keys(unit.environment)) t.true(known.has(name), `${name} is set by the unit but read by no daemon code`);
  t.deepEqual(config.networking.firewall.allowedTCPPorts, [7001]);
});

nixTest('a database URL file reaches the deployer through a credential, not the Nix store', async (t) => {
  const config = await moduleConfig('deployer', { enable: true, databaseUrlFile: '/run/secrets/db-url' });
  const unit = config.systemd.services['ultracloud-deployer'];
  t.is(unit?.serviceConfig.ExecStart, '/nix/store/stub-ultracloud-deployer-start');
  t.deepEqual(unit?.serviceConfig.LoadCredential, ['database-url:/run/secrets/db-url']);
  t.false('ULTRACLOUD_DATABASE_URL' in (unit?.environment ?? {}));
});

nixTest('the nix-agent runs as root and is not restarted by the switch it performs', async (t) => {
  const config = await moduleConfig('nix-agent', { enable: true, hostController: '10.44.0.2:7000' });
  const unit = config.systemd.services['ultracloud-nix-agent'];
  t.is(unit?.serviceConfig.ExecStart, '/nix/store/stub-ultracloud/bin/ultracloud nix-agent');
  t.is(unit?.serviceConfig.User, 'root');
  t.is(unit?.restartIfChanged, false);
  t.is(unit?.environment.ULTRACLOUD_HOST_CONTROLLER, '10.44.0.2:7000');
  t.is(unit?.environment.ULTRACLOUD_TLS_CERT, '%d/tls.crt');
});

nixTest('host-controller, fleet-scheduler and node-agent units run their component', async (t) => {
  for (const [module, values] of [
    ['host-controller', { enable: true }],
    ['fleet-scheduler', { enable: true }],
    ['node-agent', { enable: true, fleetScheduler: '10.44.0.2:7000' }],
  ] as const) {
    const config = await moduleConfig(module, values);
    const unit = config.systemd.services[`ultracloud-${module}`];
    t.is(unit?.serviceConfig.ExecStart, `/nix/store/stub-ultracloud/bin/ultracloud ${module}`, module);
    t.is(unit?.serviceConfig.Restart, 'on-failure', module);
  }
  const disabled = await moduleConfig('host-controller', {});
  t.deepEqual(disabled, {} as ModuleConfig, 'a module left disabled adds nothing');
});

nixTest('the host-controller unit passes the settings its daemon reads: deployer CA and token as credentials, the installer image', async (t) => {
  const config = await moduleConfig('host-controller', {
    enable: true,
    deployerAddress: '10.44.0.2:7001',
    deployerCaFile: '/run/secrets/cluster-ca.pem',
    tokenFile: '/run/secrets/hc.token',
    installerImage: '/etc/ultracloud/installer-kexec.json',
  });
  const unit = config.systemd.services['ultracloud-host-controller'];
  t.like(unit?.environment, {
    ULTRACLOUD_DEPLOYER: '10.44.0.2:7001',
    ULTRACLOUD_DEPLOYER_CA: '%d/deployer-ca.pem',
    ULTRACLOUD_DEPLOYER_TOKEN_FILE: '%d/token',
    ULTRACLOUD_INSTALLER_IMAGE: '/etc/ultracloud/installer-kexec.json',
  });
  // Every variable the unit sets is one the host-controller reads.
  const read = new Set(Object.values({ ...daemonConfigSpec(7002), ...HOST_CONTROLLER_CONFIG_SPEC }).map((s) => (s as { env: string }).env));
  for (const name of Object.keys(unit?.environment ?? {})) if (name.startsWith('ULTRACLOUD_')) t.true(read.has(name), `${name} is read by the daemon`);
  t.deepEqual([...(unit?.serviceConfig.LoadCredential ?? [])].sort(), ['deployer-ca.pem:/run/secrets/cluster-ca.pem', 'token:/run/secrets/hc.token']);
});

nixTest('the servers holding a stream per host set the allocator environment of stream-server-environment.json, the others do not', async (t) => {
  const expected = JSON.parse(readFileSync(join(MODULES_DIR, 'stream-server-environment.json'), 'utf8')) as Record<string, string>;
  t.true(Object.keys(expected).length > 0);
  // Variables for the C library, which no daemon code reads: glibc's malloc tunables only.
  for (const name of Object.keys(expected)) t.regex(name, /^MALLOC_[A-Z_]+_$/, `${name} is one of glibc's MALLOC_*_ variables`);
  for (const [module, values, holdsStreams] of [
    ['host-controller', { enable: true }, true],
    ['fleet-scheduler', { enable: true }, true],
    ['deployer', { enable: true }, false],
    ['node-agent', { enable: true, fleetScheduler: '10.44.0.2:7000' }, false],
  ] as const) {
    const unit = (await moduleConfig(module, values)).systemd.services[`ultracloud-${module}`];
    if (!unit) return t.fail(`no ultracloud-${module} unit`);
    for (const [name, value] of Object.entries(expected)) t.is(unit.environment[name], holdsStreams ? value : undefined, `${module}: ${name}`);
  }
  // An operator's extraEnvironment still wins.
  const overridden = await moduleConfig('host-controller', { enable: true, extraEnvironment: Object.fromEntries(Object.keys(expected).map((name) => [name, '131072'])) });
  for (const name of Object.keys(expected)) t.is(overridden.systemd.services['ultracloud-host-controller']?.environment[name], '131072');
});

/** The exporter's `config` for the lab with `mode` ({ nodeId } and/or { nodeClass }) set. */
const EXPORTER_EXPR = `{ repo, mode }:
let
  ${STUB_LIB}
  exporter = import (/. + repo + "/nix/modules/ultracloud-cluster.nix") {
    inherit lib pkgs;
    config.ultracloud = { cluster = import (/. + repo + "/nix/examples/lab6/cluster.nix"); nodeId = null; nodeClass = null; } // builtins.fromJSON mode;
  };
  set = exporter.config;
in {
  inherit (set) assertions;
  networking = set.networking or null;
  disko = set.disko or null;
  services = set.services or null;
  links = set.systemd.network.links or { };
  units = set.systemd.services or { };
}`;

interface ExporterConfig {
  assertions: { assertion: boolean; message: string }[];
  networking: {
    hostName: string;
    domain: string;
    useNetworkd?: boolean;
    useDHCP: boolean;
    interfaces?: Record<string, { ipv4: { addresses: { address: string }[] } }>;
    nameservers: string[];
    search: string[];
  } | null;
  disko: { devices: { disk: Record<string, { device: string; content: { type: string; partitions: Record<string, unknown> } }> } } | null;
  services: { ultracloud: { 'nix-agent': { enable: boolean; hostController: string }; 'node-agent': { enable: boolean; fleetScheduler: string } } } | null;
  links: Record<string, unknown>;
  units: Record<string, { before: string[]; wants: string[]; wantedBy: string[]; path: string[]; unitConfig: Record<string, unknown>; serviceConfig: Record<string, unknown> }>;
}

function exporter(mode: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return nix(['--eval', '--strict', '--json', '--argstr', 'repo', REPO, '--argstr', 'mode', JSON.stringify(mode), '--expr', EXPORTER_EXPR]);
}

nixTest("the cluster exporter sets a lab node's network, disks and agents from the schema", async (t) => {
  const run = await exporter({ nodeId: 'cp-1' });
  t.is(run.code, 0, run.stderr);
  const node = JSON.parse(run.stdout) as ExporterConfig;
  if (!node.networking || !node.disko || !node.services) return t.fail(run.stdout);
  t.is(node.networking.hostName, 'cp-1');
  t.truthy(node.networking.domain);
  t.true(Object.values(node.networking.interfaces ?? {}).some((i) => i.ipv4.addresses.some((a) => /^\d+\.\d+\.\d+\.\d+$/.test(a.address))));
  t.true(node.networking.nameservers.length > 0);
  t.truthy(node.disko.devices.disk.root, 'disko root disk');
  t.true(node.services.ultracloud['nix-agent'].enable);
  t.regex(node.services.ultracloud['nix-agent'].hostController, /:\d+$/);
  t.true(Object.keys(node.links).length > 0, 'the NIC is named by MAC');

  t.deepEqual(node.units, {}, 'a fixed node has no identity unit');
  t.true(node.assertions.every((a) => a.assertion));

  const unknown = await exporter({ nodeId: 'no-such-node' });
  t.not(unknown.code, 0);
  t.regex(unknown.stderr, /ultracloud\.nodeId: "no-such-node" is not a fixed node/);
});

nixTest("the cluster exporter in class mode sets the class's domain, disks and agents, and the identity unit", async (t) => {
  const run = await exporter({ nodeClass: 'worker' });
  t.is(run.code, 0, run.stderr);
  const worker = JSON.parse(run.stdout) as ExporterConfig;
  if (!worker.networking || !worker.disko || !worker.services) return t.fail(run.stdout);
  t.like(worker.networking, { hostName: '', domain: 'lab6.internal', useNetworkd: true, useDHCP: false, nameservers: ['10.44.0.1'], search: ['lab6.internal'] });
  t.is(worker.networking.interfaces, undefined, 'interfaces come from the identity file');
  t.deepEqual(worker.links, {});
  const root = worker.disko.devices.disk.root;
  t.is(root?.device, '@ULTRACLOUD_ROOT_DISK@');
  t.deepEqual(Object.keys(root?.content.partitions ?? {}), ['ESP', 'root']);
  t.like(worker.services.ultracloud, {
    'nix-agent': { enable: true, hostController: '10.44.0.2:7000' },
    'node-agent': { enable: true, fleetScheduler: '10.44.0.2:7000' },
  });
  const unit = worker.units['ultracloud-node-identity'];
  if (!unit) return t.fail(`no ultracloud-node-identity unit: ${JSON.stringify(worker.units)}`);
  t.like(unit, { unitConfig: { DefaultDependencies: false }, serviceConfig: { Type: 'oneshot', RemainAfterExit: true, ExecStart: '/nix/store/stub-ultracloud-node-identity' } });
  t.true(unit.before.includes('network-pre.target') && unit.before.includes('systemd-networkd.service'));
  t.true(unit.wants.includes('network-pre.target'));
  t.true(unit.path.includes('/nix/store/stub-jq'));
  t.true(worker.assertions.every((a) => a.assertion));

  const unknown = await exporter({ nodeClass: 'gpu' });
  t.not(unknown.code, 0);
  t.regex(unknown.stderr, /ultracloud\.nodeClass: "gpu" is not a node class/);
});

nixTest('the cluster exporter refuses nodeId and nodeClass together', async (t) => {
  const run = await exporter({ nodeId: 'cp-1', nodeClass: 'worker' });
  t.is(run.code, 0, run.stderr);
  const both = JSON.parse(run.stdout) as ExporterConfig;
  const failed = both.assertions.filter((a) => !a.assertion).map((a) => a.message);
  t.is(failed.length, 1);
  t.regex(failed[0] ?? '', /^ultracloud\.nodeId \("cp-1"\) and ultracloud\.nodeClass \("worker"\) are mutually exclusive/);
  t.deepEqual([both.networking, both.disko, both.services], [null, null, null], 'neither mode applies');
});

// flake.nix's outputs against stand-ins for nixpkgs (nixosSystem returns its arguments) and disko.
const FLAKE_EXPR = `{ repo }:
let
  flake = import (/. + repo + "/flake.nix");
  nixpkgs = {
    lib = {
      genAttrs = names: f: builtins.listToAttrs (map (name: { inherit name; value = f name; }) names);
      nixosSystem = args: args;
    };
    legacyPackages = { };
  };
  outputs = flake.outputs { self = outputs; inherit nixpkgs; disko.nixosModules.disko = "disko"; };
in builtins.mapAttrs (_: system: (builtins.elemAt system.modules 2 { modulesPath = "/modules"; }).ultracloud // { cluster = null; })
  outputs.nixosConfigurations`;

nixTest('flake.nix builds each fixed node and the generic worker class system', async (t) => {
  const run = await nix(['--eval', '--strict', '--json', '--argstr', 'repo', REPO, '--expr', FLAKE_EXPR]);
  t.is(run.code, 0, run.stderr);
  t.deepEqual(JSON.parse(run.stdout), {
    'cp-1': { cluster: null, nodeId: 'cp-1' },
    'cp-2': { cluster: null, nodeId: 'cp-2' },
    'cp-3': { cluster: null, nodeId: 'cp-3' },
    worker: { cluster: null, nodeClass: 'worker' },
  });
});

// The boot-time half of class mode: nix/modules/node-identity.sh against a temporary root.
function runIdentityScript(dir: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('bash', [join(MODULES_DIR, 'node-identity.sh')], {
      env: { ...process.env, ULTRACLOUD_NODE_IDENTITY: join(dir, 'node.json'), ULTRACLOUD_NETWORK_DIR: join(dir, 'network'), ULTRACLOUD_HOSTNAME_FILE: join(dir, 'hostname') },
    }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

const jqMissing = spawnSync('jq', ['--version']).error !== undefined;
(jqMissing && process.env.CI !== 'true' ? test.skip : test)('the node identity script sets the hostname and writes one networkd file per MAC', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'uc-identity-'));
  writeFileSync(join(dir, 'node.json'), JSON.stringify({
    nodeId: 'worker-1',
    hostname: 'worker-1',
    domain: 'lab6.internal',
    interfaces: [
      { macAddress: 'd8:9e:f3:50:00:01', name: 'eno1', mode: 'ADDRESS_MODE_STATIC', addresses: ['10.44.0.21/24'], mtu: 9000 },
      { macAddress: 'd8:9e:f3:50:00:02', mode: 'ADDRESS_MODE_DHCP' },
    ],
    gateway: '10.44.0.1',
    dnsServers: ['10.44.0.1'],
    searchDomains: ['lab6.internal'],
  }));
  const run = await runIdentityScript(dir);
  t.is(run.code, 0, run.stderr);
  t.is(readFileSync(join(dir, 'hostname'), 'utf8'), 'worker-1');
  t.deepEqual(readdirSync(join(dir, 'network')).sort(), ['10-ultracloud-d89ef3500001.network', '10-ultracloud-d89ef3500002.network']);
  const primary = readFileSync(join(dir, 'network/10-ultracloud-d89ef3500001.network'), 'utf8');
  for (const line of ['[Match]', 'MACAddress=d8:9e:f3:50:00:01', 'MTUBytes=9000', 'Address=10.44.0.21/24', 'Gateway=10.44.0.1', 'DNS=10.44.0.1', 'Domains=lab6.internal']) {
    t.true(primary.split('\n').includes(line), `${line} in\n${primary}`);
  }
  const dhcp = readFileSync(join(dir, 'network/10-ultracloud-d89ef3500002.network'), 'utf8');
  t.true(dhcp.includes('DHCP=yes') && dhcp.includes('UseHostname=no') && !dhcp.includes('Gateway='), dhcp);

  // No valid identity: DHCP everywhere, the unit fails visibly, and earlier files are gone.
  writeFileSync(join(dir, 'node.json'), JSON.stringify({ nodeId: 'worker-1', interfaces: [] }));
  const invalid = await runIdentityScript(dir);
  t.is(invalid.code, 1);
  t.regex(invalid.stderr, /not a valid node identity/);
  t.deepEqual(readdirSync(join(dir, 'network')), ['99-ultracloud-fallback.network']);
  rmSync(dir, { recursive: true, force: true });
});

