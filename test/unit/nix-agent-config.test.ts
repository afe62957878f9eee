// `ultracloud nix-agent` settings: validated together at start, the node id taken from the
// node certificate's CN, plaintext only to a loopback controller.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { ConfigError } from '../../lib/config/settings.js';
import { createClusterCa, issueNodeCredentials } from '../../lib/pki/index.js';
import { loadNixAgentConfig } from '../../agents/nix-agent/config.js';

let dir: string;
let files: { cert: string; key: string; ca: string };

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ultracloud-nix-agent-config-'));
  const ca = await createClusterCa();
  const node = await issueNodeCredentials(ca, { nodeId: 'worker-3', hostname: 'worker-3' });
  files = { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key'), ca: join(dir, 'ca.pem') };
  writeFileSync(files.cert, node.tlsCertificatePem);
  writeFileSync(files.key, node.tlsPrivateKeyPem, { mode: 0o600 });
  writeFileSync(files.ca, ca.certificatePem);
});

test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function tlsEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ULTRACLOUD_HOST_CONTROLLER: '10.44.0.2:7002', ULTRACLOUD_TLS_CERT: files.cert, ULTRACLOUD_TLS_KEY: files.key, ULTRACLOUD_CA: files.ca, ...extra };
}

test('the node id comes from the certificate CN, and the host defaults are those of a NixOS host', (t) => {
  const config = loadNixAgentConfig({}, tlsEnv());
  t.like(config, {
    hostController: { host: '10.44.0.2', port: 7002 },
    nodeId: 'worker-3',
    insecureLoopback: false,
    systemProfile: '/nix/var/nix/profiles/system',
    stateDir: '/var/lib/ultracloud/nix-agent',
    bootIdFile: '/proc/sys/kernel/random/boot_id',
    currentSystemLink: '/run/current-system',
    bootedSystemLink: '/run/booted-system',
  });
  t.deepEqual(config.rebootCommand, ['systemctl', 'reboot']);
  t.deepEqual(config.kexecCommand, ['kexec']);
  t.deepEqual(config.kexecExecCommand, ['systemctl', 'kexec']);
  t.is(config.copyCommand, undefined);
});

test('commands are argv split on white space; flags win over variables', (t) => {
  const config = loadNixAgentConfig({ 'reboot-command': '/run/wrappers/bin/reboot --force', 'state-dir': join(dir, 'flag') }, tlsEnv({ ULTRACLOUD_REBOOT_COMMAND: 'ignored', ULTRACLOUD_COPY_COMMAND: 'nix-copy-closure --from cache' }));
  t.deepEqual(config.rebootCommand, ['/run/wrappers/bin/reboot', '--force']);
  t.deepEqual(config.copyCommand, ['nix-copy-closure', '--from', 'cache']);
  t.is(config.stateDir, join(dir, 'flag'));
});

test('a node id other than the certificate CN is refused: the controller would refuse it', (t) => {
  const err = t.throws(() => loadNixAgentConfig({}, tlsEnv({ ULTRACLOUD_NODE_ID: 'worker-4' })), { instanceOf: ConfigError });
  t.regex(err.message, /ULTRACLOUD_NODE_ID \(--node-id\): worker-4 differs from the certificate's CN worker-3/);
});

test('missing certificate files are each named; plaintext needs a loopback controller and a node id', (t) => {
  const missing = t.throws(() => loadNixAgentConfig({}, { ULTRACLOUD_HOST_CONTROLLER: '10.44.0.2:7002', ULTRACLOUD_TLS_CERT: join(dir, 'nope.crt'), ULTRACLOUD_TLS_KEY: join(dir, 'nope.key'), ULTRACLOUD_CA: join(dir, 'nope.pem') }), { instanceOf: ConfigError });
  t.is(missing.problems.length, 3);
  t.regex(missing.problems.join('\n'), /ULTRACLOUD_TLS_CERT[\s\S]*ULTRACLOUD_TLS_KEY[\s\S]*ULTRACLOUD_CA/);

  const remote = t.throws(() => loadNixAgentConfig({ 'insecure-loopback': 'true' }, { ULTRACLOUD_HOST_CONTROLLER: '10.44.0.2:7002', ULTRACLOUD_NODE_ID: 'worker-3' }), { instanceOf: ConfigError });
  t.regex(remote.message, /plaintext is allowed only to a loopback controller, not 10\.44\.0\.2:7002/);

  const anonymous = t.throws(() => loadNixAgentConfig({ 'insecure-loopback': 'true' }, { ULTRACLOUD_HOST_CONTROLLER: '127.0.0.1:7002' }), { instanceOf: ConfigError });
  t.regex(anonymous.message, /ULTRACLOUD_NODE_ID \(--node-id\): required without a certificate/);

  const local = loadNixAgentConfig({ 'insecure-loopback': 'true', 'node-id': 'dev-1' }, { ULTRACLOUD_HOST_CONTROLLER: '127.0.0.1:7002' });
  t.is(local.nodeId, 'dev-1');
});

test('bad values are reported together, named by variable and flag', (t) => {
  const err = t.throws(() => loadNixAgentConfig({ 'node-id': 'Not A Node' }, tlsEnv({ ULTRACLOUD_HOST_CONTROLLER: 'nowhere', ULTRACLOUD_REBOOT_COMMAND: '  ' })), { instanceOf: ConfigError });
  t.regex(err.message, /ULTRACLOUD_HOST_CONTROLLER \(--host-controller\): expected host:port/);
  t.regex(err.message, /ULTRACLOUD_NODE_ID \(--node-id\): expected a node id/);
});
