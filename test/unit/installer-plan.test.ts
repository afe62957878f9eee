// Pure parts of the installer: disko rendering, nixos-install's flake argument, kexec argv,
// rescue, and the runner's timeout, tail and secret guard.
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { InstallerAction } from '../../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import { DiskLayout, PartitionTableType, PartitionType, WipePolicy } from '../../gen/ts/ultracloud/installplan/v1/installplan.js';
import { createLogger } from '../../lib/log.js';
import { InvalidPlanError, renderDiskoConfig } from '../../agents/installer/disko.js';
import { fsFileSink } from '../../agents/installer/files.js';
import { bootInstallerByKexec, installerCommandLine, kexecLoadArgv } from '../../agents/installer/kexec.js';
import { nixosInstallFlake, wipeCommands } from '../../agents/installer/plan.js';
import { runRescue } from '../../agents/installer/rescue.js';
import { OutputTail, RecordingRunner, spawnRunner } from '../../agents/installer/runner.js';

const GIB = 2n ** 30n;
const DEV = '/dev/disk/by-id/nvme-eui.002538b221b3c4d5';
const silent = createLogger({ level: 'silent' });

const lab6Layout = DiskLayout.fromPartial({
  partitionTable: PartitionTableType.PARTITION_TABLE_TYPE_GPT,
  partitions: [
    { name: 'ESP', sizeBytes: GIB, type: PartitionType.PARTITION_TYPE_ESP, filesystem: 'vfat', mountpoint: '/boot', mountOptions: ['umask=0077'], label: 'ESP' },
    { name: 'root', type: PartitionType.PARTITION_TYPE_ROOT, filesystem: 'ext4', mountpoint: '/', mountOptions: ['noatime'], label: 'nixos' },
  ],
});

test('the lab6 layout renders as the disko disk `root` the generic systems mount by label', (t) => {
  t.is(
    renderDiskoConfig(DEV, lab6Layout),
    `# Written by the UltraCloud installer from the install plan; disko --mode destroy,format,mount.
{
  disko.devices.disk.root = {
    type = "disk";
    device = "${DEV}";
    content = {
      type = "gpt";
      partitions = {
        "ESP" = {
          priority = 1;
          size = "1024M";
          type = "EF00";
          content = {
            type = "filesystem";
            format = "vfat";
            mountpoint = "/boot";
            mountOptions = [ "umask=0077" ];
            extraArgs = [ "-n" "ESP" ];
          };
        };
        "root" = {
          priority = 2;
          size = "100%";
          type = "8300";
          content = {
            type = "filesystem";
            format = "ext4";
            mountpoint = "/";
            mountOptions = [ "noatime" ];
            extraArgs = [ "-L" "nixos" ];
          };
        };
      };
    };
  };
}
`,
  );
});

const renders: { name: string; layout: Partial<DiskLayout>; contains: readonly string[] }[] = [
  {
    name: 'BIOS boot partition has no content, swap has its own type',
    layout: { partitions: [
      { name: 'bios', sizeBytes: 1024n * 1024n, type: PartitionType.PARTITION_TYPE_BIOS_BOOT, filesystem: '', mountpoint: '', mountOptions: [], formatOptions: [], label: '' },
      { name: 'swap', sizeBytes: 8n * GIB, type: PartitionType.PARTITION_TYPE_SWAP, filesystem: 'swap', mountpoint: '', mountOptions: [], formatOptions: [], label: '' },
      { name: 'root', sizeBytes: 0n, type: PartitionType.PARTITION_TYPE_ROOT, filesystem: 'xfs', mountpoint: '/', mountOptions: [], formatOptions: ['-f'], label: '' },
    ] },
    contains: ['"bios" = {\n          priority = 1;\n          size = "1M";\n          type = "EF02";\n        };', 'type = "8200";\n          content = {\n            type = "swap";', 'extraArgs = [ "-f" ];'],
  },
  {
    name: 'an MSDOS table uses disko\'s table type with offsets and a bootable /boot',
    layout: { partitionTable: PartitionTableType.PARTITION_TABLE_TYPE_MSDOS, partitions: [
      { name: 'boot', sizeBytes: 512n * 1024n * 1024n, type: PartitionType.PARTITION_TYPE_LINUX, filesystem: 'ext4', mountpoint: '/boot', mountOptions: [], formatOptions: [], label: '' },
      { name: 'root', sizeBytes: 0n, type: PartitionType.PARTITION_TYPE_ROOT, filesystem: 'ext4', mountpoint: '/', mountOptions: [], formatOptions: [], label: '' },
    ] },
    contains: ['type = "table";', 'format = "msdos";', 'start = "1MiB";\n          end = "513MiB";\n          bootable = true;', 'start = "513MiB";\n          end = "100%";\n          bootable = false;'],
  },
  {
    name: 'Nix string escapes keep quotes and interpolations inert',
    layout: { partitions: [{ name: 'root', sizeBytes: 0n, type: PartitionType.PARTITION_TYPE_ROOT, filesystem: 'ext4', mountpoint: '/', mountOptions: [], formatOptions: [], label: 'a"${x}' }] },
    contains: ['extraArgs = [ "-L" "a\\"\\${x}" ];'],
  },
];
for (const r of renders) {
  test(`disko: ${r.name}`, (t) => {
    const text = renderDiskoConfig(DEV, DiskLayout.fromPartial(r.layout));
    for (const fragment of r.contains) t.true(text.includes(fragment), `${fragment}\n--- in ---\n${text}`);
  });
}

const badLayouts: { name: string; field: string; layout: Partial<DiskLayout> }[] = [
  { name: 'no partitions', field: 'plan.disk.layout.partitions', layout: { partitions: [] } },
  { name: '"rest of disk" not last', field: 'partitions[0].size_bytes', layout: { partitions: [{ ...lab6Layout.partitions[1]!, sizeBytes: 0n }, lab6Layout.partitions[0]!] } },
  { name: 'duplicate names', field: 'partitions[1].name', layout: { partitions: [lab6Layout.partitions[0]!, { ...lab6Layout.partitions[1]!, name: 'ESP' }] } },
  { name: 'unknown filesystem', field: 'partitions[1].filesystem', layout: { partitions: [lab6Layout.partitions[0]!, { ...lab6Layout.partitions[1]!, filesystem: 'zfs' }] } },
  { name: 'mounted swap', field: 'partitions[0].mountpoint', layout: { partitions: [{ ...lab6Layout.partitions[0]!, filesystem: 'swap' }, lab6Layout.partitions[1]!] } },
];
for (const bad of badLayouts) {
  test(`disko refuses a layout with ${bad.name}, naming the field`, (t) => {
    const err = t.throws(() => renderDiskoConfig(DEV, DiskLayout.fromPartial(bad.layout)), { instanceOf: InvalidPlanError });
    t.true(err?.message.includes(bad.field), err?.message);
  });
}

test('disko refuses a device that is not a by-id path', (t) => {
  t.throws(() => renderDiskoConfig('/dev/sda', lab6Layout), { instanceOf: InvalidPlanError, message: /by_id_path/ });
});

const flakes: { ref: string; attr: string; bundle?: string; want: string | RegExp }[] = [
  { ref: 'github:ultracloud/ultracloud', attr: 'nixosConfigurations.worker', want: 'github:ultracloud/ultracloud#worker' },
  { ref: 'github:example/infra/0123abcd', attr: 'nixosConfigurations."worker-3"', want: 'github:example/infra/0123abcd#worker-3' },
  { ref: 'path:.', attr: 'nixosConfigurations.cp-1', bundle: '/run/i/bundle', want: 'path:/run/i/bundle#cp-1' },
  { ref: './infra', attr: 'nixosConfigurations.cp-1', bundle: '/run/i/bundle', want: 'path:/run/i/bundle/infra#cp-1' },
  { ref: 'path:.', attr: 'nixosConfigurations.cp-1', want: /relative but the plan has no bundle_url/ },
  { ref: 'github:a/b', attr: 'packages.x86_64-linux.iso', want: /not under nixosConfigurations/ },
];
for (const f of flakes) {
  test(`nixos-install --flake for ${f.ref} ${f.attr}${f.bundle ? ' with a bundle' : ''}`, (t) => {
    if (typeof f.want === 'string') t.is(nixosInstallFlake(f.ref, f.attr, f.bundle), f.want);
    else t.throws(() => nixosInstallFlake(f.ref, f.attr, f.bundle), { instanceOf: InvalidPlanError, message: f.want });
  });
}

test('wipe policies add blkdiscard only for DISCARD (may fail) and ZERO', (t) => {
  t.deepEqual(wipeCommands(WipePolicy.WIPE_POLICY_METADATA, DEV), []);
  t.deepEqual(wipeCommands(WipePolicy.WIPE_POLICY_DISCARD, DEV).map((w) => [w.spec.argv.join(' '), w.mayFail]), [[`blkdiscard --force ${DEV}`, true]]);
  t.deepEqual(wipeCommands(WipePolicy.WIPE_POLICY_ZERO, DEV).map((w) => [w.spec.argv.join(' '), w.mayFail]), [[`blkdiscard --zeroout --force ${DEV}`, false]]);
});

test('kexec loads the installer kernel with its initrd and command line, then jumps through systemd', async (t) => {
  const runner = new RecordingRunner();
  const artefacts = { kernel: '/run/ultracloud/installer/bzImage', initrd: '/run/ultracloud/installer/initrd', commandLine: installerCommandLine({ deployer: '10.44.0.2:7000', base: ['init=/nix/store/abc-nixos-system/init', 'console=ttyS0,115200'] }) };
  t.deepEqual(kexecLoadArgv(artefacts), ['kexec', '--load', '/run/ultracloud/installer/bzImage', '--initrd=/run/ultracloud/installer/initrd', '--command-line=init=/nix/store/abc-nixos-system/init console=ttyS0,115200 ultracloud.deployer=10.44.0.2:7000']);
  await bootInstallerByKexec(runner, artefacts);
  t.deepEqual(runner.commands.map((c) => c.argv[0] === 'kexec' ? c.argv.slice(0, 2).join(' ') : c.argv.join(' ')), ['kexec --load', 'systemctl kexec']);
  const direct = new RecordingRunner();
  await bootInstallerByKexec(direct, artefacts, { viaSystemd: false });
  t.deepEqual(direct.commandLines.at(-1), 'kexec -e');
  t.throws(() => installerCommandLine({ deployer: 'deployer' }), { message: /host:port/ });
});

test('rescue writes the operator keys 0600, starts sshd and reports RESCUE_READY until told to reboot', async (t) => {
  const live = mkdtempSync(join(tmpdir(), 'installer-rescue-'));
  const runner = new RecordingRunner();
  const reports: string[] = [];
  const answers = [InstallerAction.INSTALLER_ACTION_CONTINUE, InstallerAction.INSTALLER_ACTION_REBOOT];
  const action = await runRescue(
    { plan: { rescue: { sshAuthorizedKeys: ['ssh-ed25519 AAAAkey1 operator@lab6', 'ssh-ed25519 AAAAkey2 second@lab6'] } } as never, assignment: undefined, secrets: undefined },
    { runner, files: fsFileSink(), logger: silent, liveRoot: live, sshdCommand: ['systemctl', 'start', 'sshd.service'], defaultRetryAfterMs: 10, once: false,
      report: async (message) => {
        reports.push(message);
        return { action: answers.shift() ?? InstallerAction.INSTALLER_ACTION_REBOOT, retryAfterMs: 10 };
      } },
  );
  t.is(action, InstallerAction.INSTALLER_ACTION_REBOOT);
  t.deepEqual(runner.commandLines, ['systemctl start sshd.service']);
  t.is(reports.length, 2);
  t.regex(reports[0] ?? '', /2 operator key/);
  const keys = join(live, 'root/.ssh/authorized_keys');
  t.is(statSync(keys).mode & 0o777, 0o600);
  t.is(statSync(join(live, 'root/.ssh')).mode & 0o777, 0o700);
  t.is(readFileSync(keys, 'utf8'), 'ssh-ed25519 AAAAkey1 operator@lab6\nssh-ed25519 AAAAkey2 second@lab6\n');
});

test('the runner kills a timed-out command with its whole process group', async (t) => {
  const runner = spawnRunner({ logger: silent, killGraceMs: 200 });
  const started = Date.now();
  const result = await runner.run({ argv: ['sh', '-c', 'sleep 30 & sleep 30; echo never'], timeoutMs: 300 });
  t.true(result.timedOut);
  t.is(result.exitCode, null);
  t.true(Date.now() - started < 5_000);
  t.regex(runner.tail.text(), /\[sh timed out after \d+ ms\]/);
});

test('the runner captures output, keeps a bounded tail and refuses secrets in argv', async (t) => {
  const tail = new OutputTail(5);
  const runner = spawnRunner({ logger: silent, tail });
  const result = await runner.run({ argv: ['sh', '-c', 'for i in 1 2 3 4 5 6 7 8; do echo line$i; done; echo oops >&2; exit 3'] });
  t.is(result.exitCode, 3);
  t.regex(result.stdout, /line1\n[\s\S]*line8\n/);
  t.is(tail.text().split('\n').length, 5);
  t.regex(tail.text(), /oops\n\[sh exited with status 3 after \d+ ms\]$/);
  tail.addSecrets(['install-token-0123456789']);
  await t.throwsAsync(runner.run({ argv: ['curl', '-H', 'authorization: Bearer install-token-0123456789'] }), { message: /arguments contain a secret/ });
  tail.append('leaked install-token-0123456789 here\n');
  t.false(tail.text().includes('install-token-0123456789'));
  const missing = await runner.run({ argv: ['/nonexistent/binary'] });
  t.is(missing.exitCode, 127);
});
