// Starts the real `ultracloud` binary as a child process on a free loopback port and waits until
// it logs `ready`. Tests talk to it over real sockets and stop it with real signals. `up` serves
// TLS from the cluster CA by default; here it runs with --insecure-loopback (plaintext) unless a
// test asks for `tls`.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ULTRACLOUD_BIN = fileURLToPath(new URL('../../bin/ultracloud.js', import.meta.url));
export const DEPLOYER_CTL_BIN = fileURLToPath(new URL('../../bin/deployer-ctl.js', import.meta.url));

/** A first PGlite open plus TypeScript loading can take tens of seconds on a busy 2-core machine. */
export const START_TIMEOUT_MS = 90_000;

export interface UltracloudProcess {
  readonly address: string;
  /** The CA bundle that verifies the server, when it serves TLS with its own certificate. */
  readonly caFile: string | undefined;
  /** `http://host:port/metrics`, when metrics are served. */
  readonly metricsUrl: string | undefined;
  readonly stateDir: string;
  readonly child: ChildProcess;
  /** Every log line printed so far (JSON lines from pino). */
  readonly output: string[];
  /** Sends the signal and resolves with the exit code once the process has exited. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface StartOptions {
  readonly args?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  readonly stateDir?: string;
  readonly timeoutMs?: number;
  /** `up` only: serve TLS with its own certificate (the default of the binary) instead of plaintext. */
  readonly tls?: boolean;
}

export async function startUltracloud(command: string, options: StartOptions = {}): Promise<UltracloudProcess> {
  const stateDir = options.stateDir ?? mkdtempSync(join(tmpdir(), 'ultracloud-test-'));
  const plaintext = command === 'up' && !options.tls ? ['--insecure-loopback'] : [];
  const child = spawn(process.execPath, [ULTRACLOUD_BIN, command, '--listen', '127.0.0.1:0', '--state-dir', stateDir, ...plaintext, ...(options.args ?? [])], {
    env: { ...process.env, ULTRACLOUD_LOG_LEVEL: 'debug', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const ready = await new Promise<{ address: string; ca_file?: string; metrics?: string }>((resolve, reject) => {
    const timer = setTimeout(() => {
      // A server that never got ready must not outlive the test (ava would wait for it).
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      reject(new Error(`ultracloud ${command} not ready after ${options.timeoutMs ?? START_TIMEOUT_MS} ms:\n${output.join('')}`));
    }, options.timeoutMs ?? START_TIMEOUT_MS);
    let buffer = '';
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString();
      let nl = buffer.indexOf('\n');
      while (nl >= 0) {
        const line = buffer.slice(0, nl + 1);
        buffer = buffer.slice(nl + 1);
        output.push(line);
        try {
          const entry = JSON.parse(line) as { event?: string; address?: string; ca_file?: string; metrics?: string };
          if (entry.event === 'ready' && entry.address) {
            clearTimeout(timer);
            resolve({ ...entry, address: entry.address });
          }
        } catch {
          // not JSON: kept in output for the failure message
        }
        nl = buffer.indexOf('\n');
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`ultracloud ${command} exited with ${code} before ready:\n${output.join('')}`));
    });
  });
  return {
    address: ready.address,
    caFile: ready.ca_file,
    metricsUrl: ready.metrics,
    stateDir,
    child,
    output,
    stop: (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** The environment without any ULTRACLOUD_* setting of the developer running the tests. */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ULTRACLOUD_')) env[k] = v;
  return { ...env, ...extra };
}

export interface NodeRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `node <args>` to completion (e.g. deployer-ctl, or a binary expected to refuse its settings). */
export function runNode(args: readonly string[], options: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<NodeRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`node ${args.join(' ')} still running after ${options.timeoutMs ?? 60_000} ms:\n${stdout}\n${stderr}`));
    }, options.timeoutMs ?? 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The JSON log events among a process's output chunks. */
export function logEvents(output: readonly string[]): { event?: string; [k: string]: unknown }[] {
  return output.flatMap((chunk) =>
    chunk
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as { event?: string }];
        } catch {
          return [];
        }
      }),
  );
}
