// The Nix side of an activation: getting the closure into the local store (nix-store --realise,
// a configured copy command, or a local flake build) and moving the system profile between
// generations with nix-env. The profile's current generation is read from its symlinks
// (`system -> system-7-link -> /nix/store/...`), exactly what nix-env itself follows.
import { readlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { type CommandRunner, runChecked } from './commands.js';

/** A profile generation: its number and the store path it points to. */
export interface Generation {
  readonly generation: number;
  readonly systemPath: string;
}

const STORE_PATH = /^\/nix\/store\/[0-9a-z]{32}-[^/]+$/;

export function isStorePath(path: string): boolean {
  return STORE_PATH.test(path);
}

/** The commands of one activation may not run longer than this unless the contract says so. */
const NIX_ENV_TIMEOUT_MS = 120_000;

export class SystemProfile {
  constructor(
    /** e.g. /nix/var/nix/profiles/system */
    readonly path: string,
    private readonly runner: CommandRunner,
  ) {}

  /** The generation the profile points to, or undefined for a profile without generations. */
  current(): Generation | undefined {
    let link: string;
    try {
      link = readlinkSync(this.path);
    } catch {
      return undefined;
    }
    const m = /^(.*)-(\d+)-link$/.exec(basename(link));
    if (!m) throw new Error(`${this.path}: points to ${link}, not to a generation link`);
    const generation = Number(m[2]);
    const systemPath = this.generationPath(generation);
    if (!systemPath) throw new Error(`${this.path}: generation ${generation} has no link`);
    return { generation, systemPath };
  }

  /** Store path of generation `n`, undefined when it does not exist. */
  generationPath(n: number): string | undefined {
    try {
      return readlinkSync(join(dirname(this.path), `${basename(this.path)}-${n}-link`));
    } catch {
      return undefined;
    }
  }

  /** `nix-env -p <profile> --set <path>`; returns the generation that now points to `path`. */
  async set(systemPath: string): Promise<number> {
    await runChecked(this.runner, { argv: ['nix-env', '-p', this.path, '--set', systemPath], timeoutMs: NIX_ENV_TIMEOUT_MS });
    const now = this.current();
    if (now?.systemPath !== systemPath) throw new Error(`${this.path}: points to ${now?.systemPath ?? 'nothing'} after setting ${systemPath}`);
    return now.generation;
  }

  /** `nix-env -p <profile> --switch-generation <n>`. */
  async switchGeneration(n: number): Promise<void> {
    await runChecked(this.runner, { argv: ['nix-env', '-p', this.path, '--switch-generation', String(n)], timeoutMs: NIX_ENV_TIMEOUT_MS });
  }

  /** `nix-env -p <profile> --delete-generations <n>` (never the current one: nix-env refuses). */
  async deleteGeneration(n: number): Promise<void> {
    await runChecked(this.runner, { argv: ['nix-env', '-p', this.path, '--delete-generations', String(n)], timeoutMs: NIX_ENV_TIMEOUT_MS });
  }
}

export interface RealiseOptions {
  readonly timeoutMs: number;
  /** `--option extra-substituters`; their keys must be trusted by nix.conf. */
  readonly substituters: readonly string[];
  /** Indirect GC root kept on the target until the profile (or the next activation) holds it. */
  readonly gcRoot: string;
  /** Run first, with the store path appended (e.g. `nix-copy-closure --from cache-host`). */
  readonly copyCommand?: readonly string[];
  readonly signal?: AbortSignal;
}

function substituterOptions(substituters: readonly string[]): string[] {
  return substituters.length > 0 ? ['--option', 'extra-substituters', substituters.join(' ')] : [];
}

/** Makes `systemPath` valid in the local store: copy command (if any), then nix-store --realise. */
export async function realiseSystem(runner: CommandRunner, systemPath: string, options: RealiseOptions): Promise<void> {
  if (options.copyCommand && options.copyCommand.length > 0) {
    await runChecked(runner, { argv: [...options.copyCommand, systemPath], timeoutMs: options.timeoutMs, signal: options.signal });
  }
  await runChecked(runner, {
    argv: ['nix-store', '--realise', systemPath, '--add-root', options.gcRoot, ...substituterOptions(options.substituters)],
    timeoutMs: options.timeoutMs,
    signal: options.signal,
  });
}

/** Builds `<flakeRef>#<flakeAttr>` locally and returns its output path. */
export async function buildFlakeSystem(runner: CommandRunner, flakeRef: string, flakeAttr: string, options: RealiseOptions): Promise<string> {
  const installable = `${flakeRef}#${flakeAttr}`;
  const result = await runChecked(runner, {
    argv: ['nix', '--extra-experimental-features', 'nix-command flakes', 'build', '--no-link', '--json', ...substituterOptions(options.substituters), installable],
    timeoutMs: options.timeoutMs,
    signal: options.signal,
  });
  let built: unknown;
  try {
    built = JSON.parse(result.stdout);
  } catch {
    throw new Error(`nix build ${installable}: printed no JSON`);
  }
  const out = Array.isArray(built) ? (built[0] as { outputs?: { out?: unknown } } | undefined)?.outputs?.out : undefined;
  if (typeof out !== 'string' || !isStorePath(out)) throw new Error(`nix build ${installable}: no output path in ${result.stdout.slice(0, 200)}`);
  await realiseSystem(runner, out, { ...options, copyCommand: undefined });
  return out;
}
