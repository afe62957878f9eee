// `deployer-ctl apply -f <cluster>`: sends each part of a cluster document to the service that
// owns it (cluster state → deployer, host deployments → host-controller, service policies →
// fleet-scheduler), prints what changes, and says which parts it could not apply.
import { ClientError, Status } from 'nice-grpc';
import {
  type ApplyClusterStateResponse,
  ApplyClusterStateResponse as ApplyClusterStateResponseJson,
  ChangeType,
  ClusterObjectKind,
  ClusterServiceDefinition,
} from '../../../gen/ts/ultracloud/deployer/v1/cluster_service.js';
import {
  ApplyHostDeploymentsResponse,
  DiffAction as HostDiffAction,
  HostDeploymentServiceDefinition,
} from '../../../gen/ts/ultracloud/host/v1/host_deployment_service.js';
import {
  ApplyServiceSpecsResponse,
  DiffAction as ServiceDiffAction,
  SchedulerServiceDefinition,
} from '../../../gen/ts/ultracloud/runtime/v1/scheduler_service.js';
import { type ClusterDocument, DocumentError, NixMissingError, readClusterDocument } from '../cluster-document.js';
import type { Connection } from '../connection.js';
import { EXIT, printJson } from '../output.js';

export interface ApplyOptions {
  readonly file: string;
  readonly dryRun?: boolean;
  readonly strict?: boolean;
  readonly deployer?: string;
  readonly hostController?: string;
  readonly fleetScheduler?: string;
}

/** `nodeClass` for CLUSTER_OBJECT_KIND_NODE_CLASS: the key the object has in the document. */
export function kindLabel(kind: ClusterObjectKind): string {
  const name = (ClusterObjectKind[kind] ?? 'UNKNOWN').replace(/^CLUSTER_OBJECT_KIND_/, '').toLowerCase();
  return name.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
}

function line(symbol: string, kind: string, name: string, fields: readonly string[]): string {
  return `${symbol} ${kind} ${name}${fields.length > 0 ? ` (${fields.join(', ')})` : ''}`;
}

const CHANGE_SYMBOL: Partial<Record<ChangeType, string>> = { [ChangeType.CHANGE_TYPE_ADDED]: '+', [ChangeType.CHANGE_TYPE_CHANGED]: '~', [ChangeType.CHANGE_TYPE_REMOVED]: '-' };

/** One line per change: `+ nodeClass worker`, `~ diskPolicy system-ssd (rootDeviceHints.size)`, `- pool old`. */
export function clusterDiffLines(res: ApplyClusterStateResponse): string[] {
  return res.changes.map((c) => line(CHANGE_SYMBOL[c.change] ?? '?', kindLabel(c.kind), c.name, c.changedFields));
}

interface PartDiff {
  readonly name: string;
  readonly symbol: '+' | '~' | '-' | '=';
  readonly changedFields: readonly string[];
  readonly warnings: readonly string[];
  readonly note?: string;
}

const HOST_SYMBOL = { [HostDiffAction.DIFF_ACTION_CREATE]: '+', [HostDiffAction.DIFF_ACTION_UPDATE]: '~', [HostDiffAction.DIFF_ACTION_DELETE]: '-' } as const;
const SERVICE_SYMBOL = { [ServiceDiffAction.DIFF_ACTION_CREATE]: '+', [ServiceDiffAction.DIFF_ACTION_UPDATE]: '~', [ServiceDiffAction.DIFF_ACTION_DELETE]: '-' } as const;

/** The outcome of one part: applied (with its diff) or not applied, and why. */
type PartOutcome =
  | { readonly applied: true; readonly diffs: readonly PartDiff[]; readonly response: unknown }
  | { readonly applied: false; readonly reason: string };

const PARTS = {
  hostDeployments: { label: 'host deployments', kind: 'hostDeployment', owner: 'host-controller' },
  servicePolicies: { label: 'service policies', kind: 'servicePolicy', owner: 'fleet-scheduler' },
} as const;

/** Runs one apply RPC of a service that may not be running: UNIMPLEMENTED means not served there. */
async function applyPart(owner: string, address: string, call: () => Promise<{ diffs: readonly PartDiff[]; response: unknown }>): Promise<PartOutcome> {
  try {
    return { applied: true, ...(await call()) };
  } catch (err) {
    if (err instanceof ClientError && err.code === Status.UNIMPLEMENTED) return { applied: false, reason: `${owner} is not running at ${address}` };
    if (err instanceof ClientError && err.code === Status.UNAVAILABLE) return { applied: false, reason: `${owner} is not reachable at ${address}: ${err.details}` };
    throw err;
  }
}

function count(diffs: readonly PartDiff[], dryRun: boolean): string {
  const n = (s: string) => diffs.filter((d) => d.symbol === s).length;
  const verb = dryRun ? 'would be ' : '';
  return `${n('+')} ${verb}created, ${n('~')} ${verb}updated, ${n('-')} ${verb}deleted, ${n('=')} unchanged`;
}

async function loadOrReport(file: string): Promise<ClusterDocument | number> {
  try {
    return await readClusterDocument(file);
  } catch (err) {
    if (err instanceof NixMissingError) {
      console.error(`deployer-ctl: ${err.message}`);
      return EXIT.usage;
    }
    if (err instanceof DocumentError) {
      console.error(`deployer-ctl: ${err.message}`);
      return EXIT.rejected;
    }
    throw err;
  }
}

export async function applyCommand(connection: Connection, options: ApplyOptions): Promise<number> {
  const doc = await loadOrReport(options.file);
  if (typeof doc === 'number') return doc;
  if (!doc.clusterState && !doc.hostDeployments && !doc.servicePolicies) {
    console.error(`deployer-ctl: ${options.file}: nothing to apply (no clusterState, hostDeployments or servicePolicies)`);
    return EXIT.rejected;
  }
  const dryRun = options.dryRun ?? false;
  const reason = `deployer-ctl apply ${options.file}`;
  const text = (s: string) => {
    if (!connection.json) console.log(s);
  };
  const summary: string[] = [];
  const report: Record<string, unknown> = { dryRun };
  let notApplied = 0;

  if (doc.clusterState) {
    const res = await connection
      .client(ClusterServiceDefinition, options.deployer ?? connection.server)
      .applyClusterState({ state: doc.clusterState, dryRun, expectedGeneration: 0n });
    report.clusterState = ApplyClusterStateResponseJson.toJSON(res);
    const lines = clusterDiffLines(res);
    text(lines.length > 0 ? lines.join('\n') : 'cluster state: no changes');
    const n = `${res.changes.length} change${res.changes.length === 1 ? '' : 's'}`;
    if (dryRun) summary.push(res.changes.length > 0 ? `cluster state ${n}, would be generation ${res.generation + 1n}` : `cluster state unchanged at generation ${res.generation}`);
    else summary.push(res.applied ? `cluster state generation ${res.generation} applied (${n})` : `cluster state unchanged at generation ${res.generation}`);
  }

  if (doc.hostDeployments) {
    const address = options.hostController ?? connection.server;
    const outcome = await applyPart(PARTS.hostDeployments.owner, address, async () => {
      const res = await connection.client(HostDeploymentServiceDefinition, address).applyHostDeployments({ hostDeployments: doc.hostDeployments ?? [], dryRun, prune: true, reason });
      const diffs = res.diffs.map((d): PartDiff => ({ name: d.name, symbol: HOST_SYMBOL[d.action as keyof typeof HOST_SYMBOL] ?? '=', changedFields: d.changedFields, warnings: d.warnings, ...(d.startsRollout ? { note: 'starts a rollout' } : {}) }));
      return { diffs, response: ApplyHostDeploymentsResponse.toJSON(res) };
    });
    report.hostDeployments = outcome.applied ? outcome.response : { applied: false, reason: outcome.reason };
    notApplied += reportPart('hostDeployments', outcome, dryRun, text, summary);
  }

  if (doc.servicePolicies) {
    const address = options.fleetScheduler ?? connection.server;
    const outcome = await applyPart(PARTS.servicePolicies.owner, address, async () => {
      const res = await connection.client(SchedulerServiceDefinition, address).applyServiceSpecs({ serviceSpecs: doc.servicePolicies ?? [], dryRun, prune: true, reason });
      const diffs = res.diffs.map((d): PartDiff => ({ name: d.name, symbol: SERVICE_SYMBOL[d.action as keyof typeof SERVICE_SYMBOL] ?? '=', changedFields: d.changedFields, warnings: d.warnings }));
      return { diffs, response: ApplyServiceSpecsResponse.toJSON(res) };
    });
    report.servicePolicies = outcome.applied ? outcome.response : { applied: false, reason: outcome.reason };
    notApplied += reportPart('servicePolicies', outcome, dryRun, text, summary);
  }

  if (connection.json) printJson(report);
  else console.log(`${dryRun ? 'dry run, nothing written' : 'applied'}: ${summary.join('; ')}`);
  return options.strict && notApplied > 0 ? EXIT.unhealthy : EXIT.ok;
}

/** Prints one part's diff or why it was not applied; returns 1 when it was not applied. */
function reportPart(part: keyof typeof PARTS, outcome: PartOutcome, dryRun: boolean, text: (s: string) => void, summary: string[]): number {
  const { label, kind } = PARTS[part];
  if (!outcome.applied) {
    text(`${label}: not applied (${outcome.reason})`);
    summary.push(`${label} not applied`);
    return 1;
  }
  const changed = outcome.diffs.filter((d) => d.symbol !== '=');
  if (changed.length === 0) text(`${label}: no changes`);
  for (const d of changed) text(line(d.symbol, kind, d.name, d.changedFields) + (d.note ? ` — ${d.note}` : ''));
  for (const d of outcome.diffs) for (const w of d.warnings) text(`  warning: ${kind} ${d.name}: ${w}`);
  summary.push(`${label} ${count(outcome.diffs, dryRun)}`);
  return 0;
}
