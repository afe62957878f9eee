// The activation journal: one JSON file in the agent's state directory, rewritten before every
// step of an activation (temp file, fsync, rename, fsync of the directory; mode 0600), so a
// restarted agent finds the last phase that began and neither repeats a step nor leaves the host
// on an unconfirmed generation. It holds the contract's ActivationJournal (sent in every hello),
// the DesiredSystem being applied (its health check and timeouts are needed to resume), and what
// only this host needs: the process group of a running switch-to-configuration and how a
// rollback re-activates the previous generation.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { ActivationJournal, ActivationPhase } from '../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import { DesiredSystem } from '../../gen/ts/ultracloud/system/v1/system.js';
import type { SwitchAction } from './policy.js';

export const JOURNAL_FILE = 'activation-journal.json';
const FORMAT_VERSION = 1;

export interface JournalRecord {
  readonly journal: ActivationJournal;
  readonly desiredSystem: DesiredSystem;
  /** Process group of the switch-to-configuration running when the record was written. */
  readonly switchProcessGroup?: number;
  /** switch-to-configuration action that re-activates the previous generation. */
  readonly rollbackAction?: SwitchAction;
  /** Boot strategy: the reboot command was started (in the boot named by journal.bootId). */
  readonly rebootStarted?: boolean;
}

const TERMINAL = new Set([ActivationPhase.ACTIVATION_PHASE_CONFIRMED, ActivationPhase.ACTIVATION_PHASE_ROLLED_BACK, ActivationPhase.ACTIVATION_PHASE_FAILED]);

export function isTerminalPhase(phase: ActivationPhase): boolean {
  return TERMINAL.has(phase);
}

/** The journal file was unreadable; it is moved aside so the agent can start. */
export class CorruptJournalError extends Error {
  constructor(
    readonly path: string,
    readonly movedTo: string,
    cause: unknown,
  ) {
    super(`${path}: unreadable activation journal (${(cause as Error).message}); moved to ${movedTo}`);
    this.name = 'CorruptJournalError';
  }
}

/** Writes `content` to `path` atomically and durably, readable by the owner only. */
export function writeFileAtomic(path: string, content: string): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const temp = `${path}.tmp-${process.pid}`;
  const fd = openSync(temp, 'w', 0o600);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, path);
  const dirFd = openSync(dir, 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

export class JournalFile {
  constructor(readonly path: string) {}

  /** The last record, undefined when the agent never activated anything here. */
  read(): JournalRecord | undefined {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    try {
      const doc = JSON.parse(text) as Record<string, unknown>;
      if (doc.version !== FORMAT_VERSION) throw new Error(`unknown format version ${JSON.stringify(doc.version)}`);
      return {
        journal: ActivationJournal.fromJSON(doc.journal),
        desiredSystem: DesiredSystem.fromJSON(doc.desiredSystem),
        ...(typeof doc.switchProcessGroup === 'number' ? { switchProcessGroup: doc.switchProcessGroup } : {}),
        ...(doc.rollbackAction === 'switch' || doc.rollbackAction === 'boot' || doc.rollbackAction === 'test' ? { rollbackAction: doc.rollbackAction } : {}),
        ...(doc.rebootStarted === true ? { rebootStarted: true } : {}),
      };
    } catch (err) {
      const movedTo = `${this.path}.corrupt-${Date.now()}`;
      renameSync(this.path, movedTo);
      throw new CorruptJournalError(this.path, movedTo, err);
    }
  }

  write(record: JournalRecord): void {
    const doc = {
      version: FORMAT_VERSION,
      journal: ActivationJournal.toJSON(record.journal),
      desiredSystem: DesiredSystem.toJSON(record.desiredSystem),
      ...(record.switchProcessGroup !== undefined ? { switchProcessGroup: record.switchProcessGroup } : {}),
      ...(record.rollbackAction ? { rollbackAction: record.rollbackAction } : {}),
      ...(record.rebootStarted ? { rebootStarted: true } : {}),
    };
    writeFileAtomic(this.path, `${JSON.stringify(doc, null, 2)}\n`);
  }
}
