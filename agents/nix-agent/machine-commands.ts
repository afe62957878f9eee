// Reinstall and rescue without a BMC: the controller relays the operator's deployer transition as
// a MachineCommand; the agent downloads the installer's kernel and initrd, checks their SHA-256,
// loads them with the configured kexec command and jumps into them (as nixos-anywhere does).
// Each command id is carried out at most once: it is recorded (atomically, 0600) before anything
// runs, and a repeated delivery only repeats the last report.
import { createHash } from 'node:crypto';
import { createWriteStream, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import { type MachineCommand, MachineCommandKind, MachineCommandPhase, type MachineCommandReport } from '../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import type { Logger } from '../../lib/log.js';
import { type CommandRunner, failureMessage } from './commands.js';
import { writeFileAtomic } from './journal.js';

export const MACHINE_COMMANDS_FILE = 'machine-commands.json';
const KEPT_COMMANDS = 50;
const DOWNLOAD_TIMEOUT_MS = 10 * 60_000;
const DOWNLOAD_LIMIT_BYTES = 2 * 1024 ** 3;
const KEXEC_TIMEOUT_MS = 120_000;

export interface KexecSettings {
  /** kexec-tools' binary (and options); the agent appends --load, --initrd and --command-line. */
  readonly loadCommand: readonly string[];
  /** Jumps into the loaded kernel, e.g. ["systemctl", "kexec"]. */
  readonly execCommand: readonly string[];
  /** Where the kernel and initrd are downloaded. */
  readonly workDir: string;
  /** PEM CA bundle for https artefact URLs (the cluster CA); the system store otherwise. */
  readonly caFile?: string;
}

export interface MachineCommandSettings {
  readonly kexec: KexecSettings;
  readonly stateDir: string;
  readonly runner: CommandRunner;
  readonly logger: Logger;
  /** Queues a report; resolves when the controller acknowledged it. */
  readonly send: (report: MachineCommandReport) => Promise<void>;
}

interface RecordedCommand {
  readonly commandId: string;
  readonly phase: MachineCommandPhase;
  readonly message: string;
  readonly at: string;
}

function download(url: string, path: string, expectedSha256: string, ca: Buffer | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      reject(new Error(`not a URL: ${JSON.stringify(url)}`));
      return;
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      reject(new Error(`${url}: only http and https URLs are fetched`));
      return;
    }
    const onResponse = (res: IncomingMessage) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`GET ${url}: status ${res.statusCode}`));
        return;
      }
      const hash = createHash('sha256');
      const out = createWriteStream(path, { mode: 0o600 });
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > DOWNLOAD_LIMIT_BYTES) res.destroy(new Error(`GET ${url}: larger than ${DOWNLOAD_LIMIT_BYTES} bytes`));
        hash.update(chunk);
      });
      res.pipe(out);
      res.on('error', reject);
      out.on('error', reject);
      out.on('finish', () => {
        const actual = hash.digest('hex');
        if (actual !== expectedSha256.toLowerCase()) reject(new Error(`${url}: SHA-256 ${actual} does not match the expected ${expectedSha256}`));
        else resolve();
      });
    };
    const request = parsed.protocol === 'https:' ? httpsGet(parsed, { ...(ca ? { ca } : {}), timeout: DOWNLOAD_TIMEOUT_MS }, onResponse) : httpGet(parsed, { timeout: DOWNLOAD_TIMEOUT_MS }, onResponse);
    request.on('timeout', () => request.destroy(new Error(`GET ${url}: timed out`)));
    request.on('error', reject);
  });
}

export class MachineCommandExecutor {
  private readonly log: Logger;
  private readonly recordPath: string;
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly settings: MachineCommandSettings) {
    this.log = settings.logger.child({ component: 'nix-agent.machine-commands' });
    this.recordPath = join(settings.stateDir, MACHINE_COMMANDS_FILE);
  }

  /** Queues `command`; commands run one at a time in arrival order. */
  handle(command: MachineCommand): Promise<void> {
    this.chain = this.chain.then(() => this.execute(command)).catch((err: unknown) => this.log.error({ event: 'machine_command.error', command_id: command.commandId, err }));
    return this.chain;
  }

  private recorded(): RecordedCommand[] {
    try {
      const doc = JSON.parse(readFileSync(this.recordPath, 'utf8')) as { commands?: RecordedCommand[] };
      return Array.isArray(doc.commands) ? doc.commands : [];
    } catch {
      return [];
    }
  }

  /** Records the phase, reports it, and returns the report's acknowledgement (never rejects). */
  private record(commandId: string, phase: MachineCommandPhase, message: string): Promise<void> {
    const others = this.recorded().filter((c) => c.commandId !== commandId);
    const commands = [...others, { commandId, phase, message, at: new Date().toISOString() }].slice(-KEPT_COMMANDS);
    writeFileAtomic(this.recordPath, `${JSON.stringify({ version: 1, commands }, null, 2)}\n`);
    this.log.info({ event: 'machine_command.phase', command_id: commandId, phase: MachineCommandPhase[phase], message });
    return this.settings.send({ commandId, phase, message }).catch(() => undefined);
  }

  private async execute(command: MachineCommand): Promise<void> {
    const known = this.recorded().find((c) => c.commandId === command.commandId);
    if (known) {
      // At most once: a command seen before is only reported again.
      this.log.info({ event: 'machine_command.repeated', command_id: command.commandId, phase: MachineCommandPhase[known.phase] });
      void this.settings.send({ commandId: known.commandId, phase: known.phase, message: known.message }).catch(() => undefined);
      return;
    }
    const kind = MachineCommandKind[command.kind] ?? String(command.kind);
    if (command.commandId === '') {
      this.log.warn({ event: 'machine_command.refused', reason: 'command_id: required' });
      return;
    }
    void this.record(command.commandId, MachineCommandPhase.MACHINE_COMMAND_PHASE_ACCEPTED, `${kind}: fetching the installer (${command.reason || 'no reason given'})`);
    const image = command.installer;
    const fail = (message: string) => {
      void this.record(command.commandId, MachineCommandPhase.MACHINE_COMMAND_PHASE_FAILED, `${message}; boot the USB installer instead`);
    };
    if (command.kind !== MachineCommandKind.MACHINE_COMMAND_KIND_REINSTALL && command.kind !== MachineCommandKind.MACHINE_COMMAND_KIND_RESCUE) {
      fail(`kind: unknown machine command ${kind}`);
      return;
    }
    if (!image || !image.kernelUrl || !image.initrdUrl || !/^[0-9a-f]{64}$/i.test(image.kernelSha256) || !/^[0-9a-f]{64}$/i.test(image.initrdSha256)) {
      fail('installer: kernel and initrd URLs with SHA-256 digests are required');
      return;
    }
    const dir = join(this.settings.kexec.workDir, command.commandId.replace(/[^A-Za-z0-9_.-]/g, '_'));
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const kernel = join(dir, 'bzImage');
    const initrd = join(dir, 'initrd');
    const ca = this.settings.kexec.caFile ? readFileSync(this.settings.kexec.caFile) : undefined;
    try {
      await download(image.kernelUrl, kernel, image.kernelSha256, ca);
      await download(image.initrdUrl, initrd, image.initrdSha256, ca);
    } catch (err) {
      fail(`fetching the installer failed: ${(err as Error).message}`);
      return;
    }
    const load = await this.settings.runner.run({
      argv: [...this.settings.kexec.loadCommand, '--load', kernel, `--initrd=${initrd}`, `--command-line=${image.cmdline}`],
      timeoutMs: KEXEC_TIMEOUT_MS,
    });
    if (load.exitCode !== 0) {
      fail(`loading the installer kernel failed: ${failureMessage(load)}`);
      return;
    }
    const executing = this.record(command.commandId, MachineCommandPhase.MACHINE_COMMAND_PHASE_EXECUTING, `${kind}: booting the installer by kexec`);
    // The stream ends with the jump: give the controller a moment to store the report first.
    await Promise.race([executing, new Promise((resolve) => setTimeout(resolve, 5_000))]);
    const jump = await this.settings.runner.run({ argv: this.settings.kexec.execCommand, timeoutMs: KEXEC_TIMEOUT_MS });
    if (jump.exitCode !== 0) {
      fail(`kexec failed: ${failureMessage(jump)}`);
      return;
    }
    this.log.info({ event: 'machine_command.kexec_started', command_id: command.commandId });
  }
}
