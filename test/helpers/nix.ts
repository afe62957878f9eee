// Tests of the Nix static model run the real `nix-instantiate` (Nix 2.8 or later, no nixpkgs
// needed). Like the PostgreSQL targets in databases.ts, a missing Nix skips these tests with a
// one-line reason outside CI and fails them under CI=true, where Nix must be installed.
import { execFile, spawnSync } from 'node:child_process';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export type NixAvailability =
  | { readonly available: true; readonly version: string }
  | { readonly available: false; readonly required: boolean; readonly reason: string };

let availability: NixAvailability | undefined;

/** Whether nix-instantiate runs here; checked once per process. */
export function nixAvailability(): NixAvailability {
  if (availability) return availability;
  const probe = spawnSync('nix-instantiate', ['--version'], { encoding: 'utf8', timeout: 30_000 });
  const required = process.env.CI === 'true';
  if (probe.error || probe.status !== 0) {
    const missing = (probe.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
    const why = missing ? 'nix-instantiate is not on PATH' : `nix-instantiate --version failed: ${(probe.stderr || String(probe.error)).trim()}`;
    availability = { available: false, required, reason: required ? `${why}; CI=true requires Nix (apt-get install nix-bin)` : `${why} (apt-get install nix-bin)` };
  } else {
    availability = { available: true, version: probe.stdout.trim() };
  }
  return availability;
}

/** nix-instantiate exited non-zero; `stderr` holds Nix's message (a schema throw included). */
export class NixEvalError extends Error {
  constructor(
    readonly stderr: string,
    readonly exitCode: number | null,
  ) {
    super(`nix-instantiate failed (exit ${exitCode}):\n${stderr}`);
    this.name = 'NixEvalError';
  }
}

export interface NixEvalOptions {
  /** Killed and rejected after this long. Default 60 s. */
  readonly timeoutMs?: number;
}

/**
 * `nix-instantiate --eval --strict --json [-A attr] file`, parsed. `file` is relative to the
 * repository root unless absolute (a directory evaluates its default.nix). Rejects with
 * NixEvalError when the evaluation fails.
 */
export function nixEval(file: string, attr?: string, options: NixEvalOptions = {}): Promise<unknown> {
  const path = isAbsolute(file) ? file : resolve(REPO_ROOT, file);
  const args = ['--eval', '--strict', '--json', ...(attr === undefined ? [] : ['-A', attr]), path];
  return new Promise((resolvePromise, reject) => {
    execFile('nix-instantiate', args, { cwd: REPO_ROOT, maxBuffer: 512 * 1024 * 1024, timeout: options.timeoutMs ?? 60_000 }, (error, stdout, stderr) => {
      if (error) {
        reject(new NixEvalError(stderr, typeof error.code === 'number' ? error.code : null));
        return;
      }
      try {
        resolvePromise(JSON.parse(stdout));
      } catch (parseError) {
        reject(new Error(`nix-instantiate printed no JSON (${(parseError as Error).message}):\n${stdout.slice(0, 500)}`));
      }
    });
  });
}

/**
 * When Nix cannot run here, registers the test that stands in for `title` (failing under CI,
 * naming what is missing; skipped with the reason otherwise) and returns true.
 */
export function nixStandIn(title: string): boolean {
  const nix = nixAvailability();
  if (nix.available) return false;
  if (nix.required) {
    test(title, (t) => {
      t.fail(nix.reason);
    });
  } else {
    test.skip(`${title} — skipped: ${nix.reason}`, () => undefined);
  }
  return true;
}

/**
 * Registers an ava test that needs nix-instantiate. Without Nix it becomes a skipped test whose
 * title gives the reason, or under CI a failing one.
 */
export function nixTest(title: string, implementation: (t: ExecutionContext) => Promise<void> | void): void {
  if (!nixStandIn(title)) test(title, implementation);
}
