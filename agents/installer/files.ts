// Where the installer writes files into the target (secrets, node identity, disko config). Every
// file gets an explicit mode that does not depend on the umask, and secret files are never
// readable by others, not even for an instant: they are created 0600 and only then chmod'ed to
// their final mode. The recording sink stands in for tests and --dry-run.
import { chmod, mkdir, open, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface FileSink {
  /** Creates or replaces `path` with `data` and sets `mode`; parent directories get `dirMode`. */
  writeFile(path: string, data: string | Uint8Array, mode: number, dirMode?: number): Promise<void>;
  /** Creates `path` (and parents) and sets its mode. */
  mkdir(path: string, mode: number): Promise<void>;
}

export interface WrittenFile {
  readonly path: string;
  readonly mode: number;
  readonly sizeBytes: number;
  /** Directories are recorded too, with sizeBytes 0. */
  readonly directory: boolean;
}

function byteLength(data: string | Uint8Array): number {
  return typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
}

export function formatMode(mode: number): string {
  return `0${mode.toString(8).padStart(3, '0')}`;
}

/** Writes to the real filesystem. */
export function fsFileSink(): FileSink {
  return {
    async writeFile(path, data, mode, dirMode = 0o755) {
      await mkdir(dirname(path), { recursive: true, mode: dirMode });
      // Replace rather than overwrite: an existing file (or a symlink planted in the target)
      // would keep its own mode or redirect the write.
      await rm(path, { force: true });
      const handle = await open(path, 'wx', 0o600);
      try {
        await handle.writeFile(data);
        await handle.chmod(mode);
      } finally {
        await handle.close();
      }
    },
    async mkdir(path, mode) {
      await mkdir(path, { recursive: true, mode });
      await chmod(path, mode);
    },
  };
}

/** Records writes (path, mode, size; never the content). */
export class RecordingFileSink implements FileSink {
  readonly written: WrittenFile[] = [];

  async writeFile(path: string, data: string | Uint8Array, mode: number): Promise<void> {
    this.written.push({ path, mode, sizeBytes: byteLength(data), directory: false });
  }

  async mkdir(path: string, mode: number): Promise<void> {
    this.written.push({ path, mode, sizeBytes: 0, directory: true });
  }
}
