// The generic ISO: iso/ultracloud-iso.nix needs nixpkgs (not here), so it is parsed by the real
// nix-instantiate (skipped without Nix outside CI, failing under CI, as in test/helpers/nix.ts)
// and checked to be a NixOS module. Its boot-time launcher is plain bash and runs for real: the
// kernel command line and the stick's installer.env decide deployer and join token.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { nixEval, nixTest, REPO_ROOT } from '../helpers/nix.js';

const ISO = join(REPO_ROOT, 'iso/ultracloud-iso.nix');
const LAUNCHER = join(REPO_ROOT, 'iso/installer-launch.sh');

nixTest('iso/ultracloud-iso.nix parses and is a NixOS module taking modulesPath', async (t) => {
  const parsed = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile('nix-instantiate', ['--parse', ISO], (err, _stdout, stderr) => resolve({ code: err ? 1 : 0, stderr }));
  });
  t.is(parsed.code, 0, parsed.stderr);
  const dir = await mkdtemp(join(tmpdir(), 'uc-iso-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'args.nix'), `builtins.functionArgs (import ${ISO})`);
  t.deepEqual(await nixEval(join(dir, 'args.nix')), { config: false, lib: false, pkgs: false, modulesPath: false });
});

interface Launch {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly runtimeDir: string;
}

async function launch(t: ExecutionContext, cmdline: string, stickEnv?: string): Promise<Launch> {
  const dir = await mkdtemp(join(tmpdir(), 'uc-launch-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'cmdline'), `${cmdline}\n`);
  if (stickEnv !== undefined) await writeFile(join(dir, 'installer.env'), stickEnv);
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', ULTRACLOUD_CMDLINE_FILE: join(dir, 'cmdline'), ULTRACLOUD_STICK_ENV: join(dir, 'installer.env'), ULTRACLOUD_RUNTIME_DIR: join(dir, 'run') };
  return new Promise((resolve) => {
    execFile('bash', [LAUNCHER, 'echo', 'ultracloud', 'installer'], { env }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout: stdout.trim(), stderr, runtimeDir: join(dir, 'run') });
    });
  });
}

test('launcher: deployer and token file from the kernel command line', async (t) => {
  const r = await launch(t, 'root=LABEL=ULTRACLOUD-INSTALLER ultracloud.deployer=10.0.0.5:7000 ultracloud.join_token_file=/iso/ultracloud/join-token quiet');
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'ultracloud installer --deployer 10.0.0.5:7000 --join-token-file /iso/ultracloud/join-token');
});

test('launcher: an inline join token goes to a 0600 file, not into the arguments', async (t) => {
  const r = await launch(t, 'ultracloud.deployer=deployer.lab:7000 ultracloud.join_token=s3cr3t-t0ken');
  t.is(r.code, 0, r.stderr);
  const file = join(r.runtimeDir, 'join-token');
  t.is(r.stdout, `ultracloud installer --deployer deployer.lab:7000 --join-token-file ${file}`);
  t.false(r.stdout.includes('s3cr3t'));
  t.is(await readFile(file, 'utf8'), 's3cr3t-t0ken');
  t.is((await stat(file)).mode & 0o777, 0o600);
});

test('launcher: installer.env on the stick, overridden by the kernel command line', async (t) => {
  const stick = 'ULTRACLOUD_DEPLOYER=10.1.0.1:7000\r\nULTRACLOUD_JOIN_TOKEN_FILE="/iso/ultracloud/join-token"\r\n';
  const fromStick = await launch(t, 'quiet', stick);
  t.is(fromStick.stdout, 'ultracloud installer --deployer 10.1.0.1:7000 --join-token-file /iso/ultracloud/join-token', fromStick.stderr);
  const overridden = await launch(t, 'ultracloud.deployer=10.2.0.1:7000', stick);
  t.is(overridden.stdout, 'ultracloud installer --deployer 10.2.0.1:7000 --join-token-file /iso/ultracloud/join-token', overridden.stderr);
});

test('launcher: without a deployer or a token it refuses with the setting to add', async (t) => {
  const noDeployer = await launch(t, 'ultracloud.join_token=x');
  t.is(noDeployer.code, 64);
  t.regex(noDeployer.stderr, /ultracloud\.deployer=host:port/);
  const noToken = await launch(t, 'ultracloud.deployer=10.0.0.5:7000');
  t.is(noToken.code, 64);
  t.regex(noToken.stderr, /ultracloud\.join_token_file=/);
});
