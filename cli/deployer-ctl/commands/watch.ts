// `deployer-ctl machines watch`: one line per machine change as it happens (time, machine, from
// → to state, resource_version), or one JSON object per line. When the stream breaks (server
// restart, a replica going away, the client falling behind) it reconnects with backoff and
// resumes after the last resource_version it received, so no change is lost or printed twice.
// A server that cannot be reached at the start is an error, as for every other command.
import { ClientError, Status } from 'nice-grpc';
import { type Machine, MachineEventType, MachineServiceDefinition, type WatchMachinesResponse } from '../../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { InstallPhase, type MachineState } from '../../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { type BackoffPolicy, backoffDelayMs, sleep } from '../../../lib/backoff.js';
import type { Connection } from '../connection.js';
import { EXIT, UsageError } from '../output.js';
import { colouredState, listFilter, type ListOptions, machineName, stateLabel } from './machines.js';

export interface WatchOptions extends Pick<ListOptions, 'state' | 'label' | 'class' | 'pool' | 'query'> {
  /** Resume after this resource_version instead of starting with the current machines. */
  readonly since?: string;
}

/** Statuses after which the same watch, resumed, can go on. */
const RESUMABLE = new Set<Status>([Status.UNAVAILABLE, Status.RESOURCE_EXHAUSTED, Status.DEADLINE_EXCEEDED, Status.ABORTED, Status.INTERNAL, Status.UNKNOWN]);

const RECONNECT: BackoffPolicy = { initialMs: 250, maxMs: 5_000, factor: 2 };

function parseSince(raw: string | undefined): bigint {
  if (raw === undefined) return 0n;
  if (!/^\d+$/.test(raw.trim())) throw new UsageError(`--since ${raw}: expected a resource_version (a whole number)`);
  return BigInt(raw.trim());
}

const EVENT_NAMES: Partial<Record<MachineEventType, string>> = {
  [MachineEventType.MACHINE_EVENT_TYPE_ADDED]: 'added',
  [MachineEventType.MACHINE_EVENT_TYPE_MODIFIED]: 'modified',
  [MachineEventType.MACHINE_EVENT_TYPE_DELETED]: 'deleted',
};

/** `42% install: nixos-install` while an install reports progress, else ''. */
function progressNote(m: Machine): string {
  const p = m.installProgress;
  if (!p || p.phase === InstallPhase.INSTALL_PHASE_UNSPECIFIED) return '';
  const phase = (InstallPhase[p.phase] ?? '').replace(/^INSTALL_PHASE_/, '').toLowerCase().replace(/_/g, '-');
  return `${p.percent}% ${phase}${p.message ? `: ${p.message}` : ''}`;
}

/** Prints watch events; remembers each machine's last printed state (for "from") and version. */
class ChangePrinter {
  private readonly printed = new Map<string, { state: MachineState; resourceVersion: bigint }>();

  constructor(private readonly json: boolean) {}

  print(e: WatchMachinesResponse, now = new Date()): void {
    const m = e.machine;
    const type = EVENT_NAMES[e.type];
    if (!m || !type) return;
    const before = this.printed.get(m.machineId);
    // A snapshot sent again after an interrupted one repeats versions already printed.
    if (e.type !== MachineEventType.MACHINE_EVENT_TYPE_DELETED && before && m.resourceVersion <= before.resourceVersion) return;
    const deleted = e.type === MachineEventType.MACHINE_EVENT_TYPE_DELETED;
    if (deleted) this.printed.delete(m.machineId);
    else this.printed.set(m.machineId, { state: m.state, resourceVersion: m.resourceVersion });
    const from = before ? stateLabel(before.state) : undefined;
    const to = deleted ? 'deleted' : stateLabel(m.state);
    const time = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
    // Snapshot events carry 0: the machine's own version says which one this is.
    const resourceVersion = e.resourceVersion > 0n ? e.resourceVersion : m.resourceVersion;
    if (this.json) {
      const p = m.installProgress;
      process.stdout.write(
        `${JSON.stringify({
          time,
          type,
          resourceVersion: String(resourceVersion),
          machineId: m.machineId,
          hostname: m.assignment?.hostname ?? '',
          nodeId: m.assignment?.nodeId ?? '',
          from: from ?? null,
          to,
          ...(p && p.phase !== InstallPhase.INSTALL_PHASE_UNSPECIFIED ? { progress: { phase: InstallPhase[p.phase], percent: p.percent, message: p.message } } : {}),
          ...(m.statusMessage ? { statusMessage: m.statusMessage } : {}),
          ...(m.lastError ? { lastError: m.lastError } : {}),
        })}\n`,
      );
      return;
    }
    const note = deleted ? '' : progressNote(m);
    const toText = deleted ? to : colouredState(m.state);
    process.stdout.write(`${time}  ${type.padEnd(8)}  ${machineName(m)}  ${from ?? '-'} → ${toText}  rv ${resourceVersion}${note ? `  ${note}` : ''}\n`);
  }
}

/** Aborted by Ctrl-C or SIGTERM: the watch ends and the command exits 0. */
function interruption(): { signal: AbortSignal; release(): void } {
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return {
    signal: controller.signal,
    release: () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    },
  };
}

export async function watchMachinesCommand(connection: Connection, options: WatchOptions): Promise<number> {
  const filter = listFilter(options);
  let since = parseSince(options.since);
  const client = connection.client(MachineServiceDefinition);
  const printer = new ChangePrinter(connection.json);
  const { signal, release } = interruption();
  let failures = 0;
  // A server that never answered is reported (exit code 5), not waited for.
  let answered = false;
  try {
    for (;;) {
      let delay: number;
      try {
        for await (const e of client.watchMachines({ ...filter, sinceResourceVersion: since }, { signal })) {
          failures = 0;
          answered = true;
          printer.print(e);
          // Snapshot events carry 0: until the BOOKMARK that ends the snapshot, a resume starts over.
          if (e.resourceVersion > 0n) since = e.resourceVersion;
        }
        // The server ended the stream without an error: go on from where it stopped.
        delay = backoffDelayMs(failures++, RECONNECT);
      } catch (err) {
        if (signal.aborted) return EXIT.ok;
        if (!(err instanceof ClientError) || !RESUMABLE.has(err.code) || !answered) throw err;
        delay = backoffDelayMs(failures++, RECONNECT);
        process.stderr.write(`deployer-ctl: watch interrupted (${Status[err.code]}: ${err.details}); resuming after resource_version ${since} in ${(delay / 1000).toFixed(1)}s\n`);
      }
      await sleep(delay, signal).catch(() => undefined);
      if (signal.aborted) return EXIT.ok;
    }
  } finally {
    release();
  }
}
