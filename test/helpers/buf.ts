// Runs the real `buf` binary (from @bufbuild/buf) the way a developer or CI would: from the repo
// root, with node_modules/.bin on PATH so `buf generate` finds protoc-gen-ts_proto.
import { spawn } from 'node:child_process';
import { delimiter } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const NODE_BIN_DIR = fileURLToPath(new URL('../../node_modules/.bin/', import.meta.url));
export const BUF_BIN = fileURLToPath(new URL('../../node_modules/.bin/buf', import.meta.url));

export interface BufResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout as bytes, for binary output such as `buf build -o -`. */
  readonly stdoutBytes: Buffer;
}

export interface BufOptions {
  readonly cwd?: string;
  /** Killed (with its children) and rejected after this long. */
  readonly timeoutMs?: number;
}

/** `buf <args>`; resolves with the exit code and output, rejects only if buf cannot run or hangs. */
export function runBuf(args: readonly string[], options: BufOptions = {}): Promise<BufResult> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    // Its own process group: node_modules/.bin/buf is a Node shim that spawns the native binary,
    // and a timeout must stop both.
    const child = spawn(BUF_BIN, args, {
      cwd: options.cwd ?? REPO_ROOT,
      env: { ...process.env, PATH: `${NODE_BIN_DIR}${delimiter}${process.env.PATH ?? ''}`, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    const timer = setTimeout(() => {
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      reject(new Error(`buf ${args.join(' ')} did not finish within ${timeoutMs} ms:\n${Buffer.concat(err).toString()}`));
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, signal, stdout: stdoutBytes.toString(), stderr: Buffer.concat(err).toString(), stdoutBytes });
    });
  });
}

/** `buf curl` over plaintext HTTP/2 gRPC, as the README tells operators to poke a server. */
export function bufCurl(address: string, args: readonly string[], options: BufOptions & { path?: string } = {}): Promise<BufResult> {
  const url = `http://${address}${options.path ? `/${options.path}` : ''}`;
  return runBuf(['curl', '--protocol', 'grpc', '--http2-prior-knowledge', '--connect-timeout', '5', ...args, url], options);
}

/** One line per service or method, as `--list-services` / `--list-methods` print them. */
export function outputLines(result: BufResult): string[] {
  return result.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
}

/** A failure message that shows what buf said. */
export function describeResult(args: string, result: BufResult): string {
  return `buf ${args} exited ${result.code ?? result.signal}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
}
