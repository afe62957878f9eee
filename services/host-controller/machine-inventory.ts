// The host-controller's view of the deployer's machines: a WatchMachines stream kept open for
// the life of the process (snapshot, then changes; resumed from the last resource_version after
// a break, with backoff; a new snapshot when the deployer no longer has changes that old),
// reduced to the node facts a rollout needs. Every replica keeps one: hellos are checked against
// it, and the leader plans with it. The leader also calls Activate through the same link.
import { ClientError, Status } from 'nice-grpc';
import { type Machine, MachineEventType, MachineServiceDefinition } from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { MachineState } from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { type BackoffPolicy, backoffDelayMs, sleep } from '../../lib/backoff.js';
import { createServiceClient, openChannel, type ServiceClient } from '../../lib/grpc/client.js';
import type { Logger } from '../../lib/log.js';
import type { NodeFacts } from './domain/selection.js';

/** How to reach the deployer: its address, the CA that verifies it (plaintext without), a token. */
export interface DeployerEndpoint {
  readonly address: string;
  readonly caFile: string | undefined;
  /** Operator token: viewer for WatchMachines, operator for Activate. Never logged. */
  readonly token: string;
}

const RECONNECT: BackoffPolicy = { initialMs: 250, maxMs: 10_000, factor: 2 };

export function machineStateName(s: MachineState): string {
  return (MachineState[s] ?? 'MACHINE_STATE_UNSPECIFIED').replace(/^MACHINE_STATE_/, '').toLowerCase().replace(/_/g, '-');
}

/** A machine's node facts, or undefined while it has no assignment. */
export function nodeFactsOf(m: Machine): NodeFacts | undefined {
  const a = m.assignment;
  if (!a || a.nodeId === '') return undefined;
  return {
    nodeId: a.nodeId,
    hostname: a.hostname,
    machineId: m.machineId,
    machineState: machineStateName(m.state),
    resourceVersion: m.resourceVersion,
    nodeClass: a.nodeClass,
    pool: a.pool,
    labels: { ...a.labels },
    failureDomain: a.failureDomain,
    stateChangedAt: m.stateChangedAt,
    statusMessage: m.statusMessage,
  };
}

export interface MachineInventoryOptions {
  readonly log: Logger;
  /** Resolved when the watch starts (for `ultracloud up`, once its own server listens). */
  readonly endpoint: () => DeployerEndpoint;
  /** Called (coalesced) after the inventory changed. */
  readonly onChange: () => void;
  readonly backoff?: BackoffPolicy;
}

export interface InventoryView {
  readonly nodes: readonly NodeFacts[];
  readonly byId: ReadonlyMap<string, NodeFacts>;
}

export class MachineInventory {
  private readonly byMachine = new Map<string, NodeFacts>();
  /**
   * byMachine as a list and by node id, built on first use after a change and then shared (the
   * leader plans with both on every tick; hellos look nodes up by id). Replaced, never modified.
   */
  private view: InventoryView | undefined;
  private synced = false;
  private client: ServiceClient<typeof MachineServiceDefinition> | undefined;
  private channel: ReturnType<typeof openChannel> | undefined;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private readonly log: Logger;

  constructor(private readonly options: MachineInventoryOptions) {
    this.log = options.log.child({ component: 'machine-inventory' });
  }

  /** True once the first snapshot arrived; before that nothing can be checked against it. */
  get ready(): boolean {
    return this.synced;
  }

  /** Every node with an assignment, as of now: the same objects until the deployer reports a change. */
  snapshot(): InventoryView {
    if (!this.view) {
      const nodes = [...this.byMachine.values()];
      this.view = { nodes, byId: new Map(nodes.map((n) => [n.nodeId, n])) };
    }
    return this.view;
  }

  nodes(): readonly NodeFacts[] {
    return this.snapshot().nodes;
  }

  byNode(nodeId: string): NodeFacts | undefined {
    return this.snapshot().byId.get(nodeId);
  }

  start(): void {
    this.loop ??= this.watch();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop?.catch(() => undefined);
    this.channel?.close();
  }

  /** MachineService.Activate: INSTALLED -> ACTIVE, guarded by the machine's resource_version. */
  async activate(node: NodeFacts, reason: string): Promise<Machine | undefined> {
    const client = this.connect();
    const res = await client.activate({ machineId: node.machineId, reason, expectedResourceVersion: node.resourceVersion }, { deadline: 15_000 });
    return res.machine;
  }

  private connect(): ServiceClient<typeof MachineServiceDefinition> {
    if (!this.client) {
      const endpoint = this.options.endpoint();
      this.channel = openChannel(endpoint.address, endpoint.caFile ? { tls: { caFile: endpoint.caFile } } : {});
      this.client = createServiceClient(MachineServiceDefinition, this.channel, { token: endpoint.token });
      this.log.info({ event: 'deployer.link', address: endpoint.address, tls: Boolean(endpoint.caFile) });
    }
    return this.client;
  }

  private apply(into: Map<string, NodeFacts>, type: MachineEventType, m: Machine): void {
    this.view = undefined;
    const facts = type === MachineEventType.MACHINE_EVENT_TYPE_DELETED ? undefined : nodeFactsOf(m);
    if (facts) into.set(m.machineId, facts);
    else into.delete(m.machineId);
  }

  private async watch(): Promise<void> {
    const signal = this.abort.signal;
    let since = 0n;
    let failures = 0;
    while (!signal.aborted) {
      // A watch from 0 starts with a snapshot: built aside, swapped in at its BOOKMARK.
      let snapshot: Map<string, NodeFacts> | undefined = since === 0n ? new Map() : undefined;
      try {
        const client = this.connect();
        const request = { sinceResourceVersion: since, states: [], nodeClass: '', pool: '', labelSelector: '', query: '' };
        for await (const e of client.watchMachines(request, { signal })) {
          failures = 0;
          if (e.type === MachineEventType.MACHINE_EVENT_TYPE_BOOKMARK) {
            if (snapshot) {
              this.byMachine.clear();
              for (const [k, v] of snapshot) this.byMachine.set(k, v);
              this.view = undefined;
              snapshot = undefined;
              if (!this.synced) this.log.info({ event: 'inventory.synced', nodes: this.byMachine.size });
              this.synced = true;
              this.options.onChange();
            }
          } else if (e.machine) {
            this.apply(snapshot ?? this.byMachine, e.type, e.machine);
            if (!snapshot) this.options.onChange();
          }
          if (e.resourceVersion > 0n) since = e.resourceVersion;
        }
      } catch (err) {
        if (signal.aborted) return;
        const code = err instanceof ClientError ? err.code : undefined;
        // Changes that old are gone, or the deployer's database is another one: start over.
        if (code === Status.OUT_OF_RANGE) since = 0n;
        this.log.warn({ event: 'inventory.watch_broken', code: code === undefined ? undefined : Status[code], reason: err instanceof Error ? err.message : String(err), since: String(since) });
      }
      try {
        await sleep(backoffDelayMs(failures++, this.options.backoff ?? RECONNECT), signal);
      } catch {
        return;
      }
    }
  }
}
