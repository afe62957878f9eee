// Runs the real `ultracloud nix-agent` binary as a child process against a test host
// (nix-systems.ts): its profile, system links and state directory, a fixed boot id, recording
// reboot and kexec scripts, and the node certificate the test hands it.
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { JOURNAL_FILE } from '../../agents/nix-agent/journal.js';
import type { KexecImage } from '../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import type { TestHost } from './nix-systems.js';
import { cleanEnv, ULTRACLOUD_BIN } from './ultracloud-process.js';

export interface NixAgentProcess {
  readonly child: ChildProcess;
  /** Output lines so far (pino JSON and anything on stderr). */
  readonly lines: string[];
  readonly exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface NixAgentCredentials {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export interface NixAgentHostScripts {
  /** Every run of the reboot command appends "reboot <args>". */
  readonly rebootLog: string;
  /** Every kexec load appends "kexec <args>", every jump "exec <args>". */
  readonly kexecLog: string;
  readonly args: readonly string[];
}

function script(path: string, body: string): string {
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

/** Recording reboot and kexec commands in the host's root, and the flags that use them. */
export function hostScripts(host: TestHost): NixAgentHostScripts {
  const rebootLog = join(host.root, 'reboots.log');
  const kexecLog = join(host.root, 'kexec.log');
  const reboot = script(join(host.root, 'reboot.sh'), `echo "reboot $*" >> '${rebootLog}'`);
  const kexec = script(join(host.root, 'kexec.sh'), `echo "kexec $*" >> '${kexecLog}'`);
  const kexecExec = script(join(host.root, 'kexec-exec.sh'), `echo "exec $*" >> '${kexecLog}'`);
  return {
    rebootLog,
    kexecLog,
    args: ['--reboot-command', `${reboot} --now`, '--kexec-command', kexec, '--kexec-exec-command', kexecExec, '--system-state-command', 'echo running'],
  };
}

export function startNixAgentProcess(host: TestHost, controller: string, credentials: NixAgentCredentials, bootId: string, extraArgs: readonly string[] = []): NixAgentProcess {
  const args = [
    ULTRACLOUD_BIN,
    'nix-agent',
    '--host-controller', controller,
    '--tls-cert', credentials.certFile,
    '--tls-key', credentials.keyFile,
    '--ca', credentials.caFile,
    '--system-profile', host.profile,
    '--state-dir', host.stateDir,
    '--current-system', host.currentSystemLink,
    '--booted-system', host.bootedSystemLink,
    '--boot-id', bootId,
    ...extraArgs,
  ];
  const child = spawn(process.execPath, args, { env: cleanEnv({ ULTRACLOUD_LOG_LEVEL: 'debug' }), stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  child.stdout?.on('data', (c: Buffer) => lines.push(...c.toString().split('\n').filter(Boolean)));
  child.stderr?.on('data', (c: Buffer) => lines.push(c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    lines,
    exited,
    stop: (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** The agent's activation journal file as JSON, undefined before the first activation. */
export function readJournal(host: TestHost): { journal: { phase: string }; switchProcessGroup?: number } | undefined {
  try {
    return JSON.parse(readFileSync(join(host.stateDir, JOURNAL_FILE), 'utf8')) as { journal: { phase: string }; switchProcessGroup?: number };
  } catch {
    return undefined;
  }
}

/** An installer kernel and initrd served over HTTP on loopback, as machine commands name them. */
export interface InstallerArtefacts {
  readonly kernel: Buffer;
  readonly initrd: Buffer;
  /** The KexecImage for these artefacts with the given kernel command line. */
  image(cmdline: string): KexecImage;
  close(): Promise<void>;
}

export async function serveInstallerArtefacts(): Promise<InstallerArtefacts> {
  const kernel = Buffer.from('installer kernel');
  const initrd = Buffer.from('installer initrd');
  const server = createServer((req, res) => res.end(req.url === '/bzImage' ? kernel : req.url === '/initrd' ? initrd : ''));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  return {
    kernel,
    initrd,
    image: (cmdline) => ({ kernelUrl: `${base}/bzImage`, kernelSha256: sha(kernel), initrdUrl: `${base}/initrd`, initrdSha256: sha(initrd), cmdline }),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
