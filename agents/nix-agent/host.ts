// What the agent tells the controller about the host: boot id, running, booted and profile
// systems, hostname and `systemctl is-system-running`. Paths are configurable so tests run a
// "host" in a temporary directory.
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Logger } from '../../lib/log.js';
import type { CommandRunner } from './commands.js';
import type { HostView } from './engine.js';

export interface HostSettings {
  /** Fixed boot id (tests); otherwise read from bootIdFile once at start. */
  readonly bootId: string | undefined;
  readonly bootIdFile: string;
  readonly currentSystemLink: string;
  readonly bootedSystemLink: string;
  /** Prints the system state, e.g. ["systemctl", "is-system-running"]. */
  readonly systemStateCommand: readonly string[];
}

function readLink(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

export function readBootId(settings: Pick<HostSettings, 'bootId' | 'bootIdFile'>): string {
  if (settings.bootId) return settings.bootId;
  const id = readFileSync(settings.bootIdFile, 'utf8').trim();
  if (id === '') throw new Error(`${settings.bootIdFile}: empty boot id`);
  return id;
}

export class HostFacts implements HostView {
  private readonly boot: string;
  private state = 'unknown';

  constructor(
    private readonly settings: HostSettings,
    private readonly runner: CommandRunner,
    private readonly logger: Logger,
  ) {
    this.boot = readBootId(settings);
  }

  bootId(): string {
    return this.boot;
  }

  currentSystem(): string | undefined {
    return readLink(this.settings.currentSystemLink);
  }

  bootedSystem(): string | undefined {
    return readLink(this.settings.bootedSystemLink);
  }

  hostname(): string {
    return hostname();
  }

  /** The last system state read; refresh() updates it. */
  systemState(): string {
    return this.state;
  }

  /** Runs the system state command; its first output line is the state whatever its exit code. */
  async refresh(): Promise<string> {
    if (this.settings.systemStateCommand.length === 0) return this.state;
    try {
      const result = await this.runner.run({ argv: this.settings.systemStateCommand, timeoutMs: 10_000 });
      this.state = result.stdout.trim().split('\n')[0] || 'unknown';
    } catch (err) {
      this.logger.debug({ event: 'host.system_state_failed', err });
      this.state = 'unknown';
    }
    return this.state;
  }
}
