// `deployer-ctl rollouts apply|list|show|pause|resume|abort` and `deployer-ctl agents list`: host
// rollouts on the host-controller (HostDeploymentService). `apply` takes the hostDeployments
// document generated from Nix, decoded strictly against the contract (durations kept), shows the
// diff and starts the rollouts; `show` prints where each node is.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import {
  ApplyHostDeploymentsResponse as ApplyCodec,
  DiffAction,
  type HostAgent,
  HostAgent as HostAgentCodec,
  HostDeploymentServiceDefinition,
  type HostRollout,
  HostRollout as HostRolloutCodec,
} from '../../../gen/ts/ultracloud/host/v1/host_deployment_service.js';
import {
  ActivationFailureReason,
  HostDeployment,
  HostDeploymentPauseCause,
  HostDeploymentPhase,
  NodeRolloutPhase,
} from '../../../gen/ts/ultracloud/system/v1/system.js';
import { encodeProtoJson, ProtoJsonError, protoJsonOf } from '../../../lib/proto-json.js';
import type { Connection } from '../connection.js';
import { colour, EXIT, printJson, renderTable, UsageError } from '../output.js';
import { humanAge } from './machines.js';

export interface ControllerOptions {
  /** The host-controller's `host:port`; default ULTRACLOUD_CONTROLLER, else the control-plane address. */
  readonly controller?: string;
}

export interface ApplyRolloutsOptions extends ControllerOptions {
  readonly dryRun?: boolean;
  readonly prune?: boolean;
}

/** A document that cannot be applied: bad JSON, an unknown field, a wrong shape. */
export class RolloutDocumentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RolloutDocumentError';
  }
}

const DOCUMENT_KEYS = new Set(['hostDeployments', 'host_deployments']);

/**
 * The HostDeployments of a document: the generator's `{"hostDeployments": [...]}` (also the
 * ApplyHostDeploymentsRequest body) or a bare list. Every deployment is decoded strictly, so a
 * field the contract does not have is an error naming it, and durations such as "30s" survive.
 */
export function decodeHostDeploymentsDocument(text: string, source: string): HostDeployment[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new RolloutDocumentError(`${source}: not valid JSON: ${(err as Error).message}`);
  }
  let list: unknown = parsed;
  let path = '';
  if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
    const keys = Object.keys(parsed);
    const unknown = keys.filter((k) => !DOCUMENT_KEYS.has(k));
    if (unknown.length > 0 || keys.length !== 1) {
      throw new RolloutDocumentError(
        `${source}: ${unknown.length > 0 ? unknown.map((k) => `${k}: unknown field`).join(', ') + ' ' : ''}(expected {"hostDeployments": [...]} or a list of HostDeployments)`,
      );
    }
    path = keys[0] as string;
    list = (parsed as Record<string, unknown>)[path];
  }
  if (!Array.isArray(list)) throw new RolloutDocumentError(`${source}: ${path || 'document'}: expected a list of HostDeployments`);
  const problems: string[] = [];
  const deployments: HostDeployment[] = [];
  list.forEach((item, i) => {
    try {
      deployments.push(HostDeployment.decode(encodeProtoJson('ultracloud.system.v1.HostDeployment', item, `${path || 'hostDeployments'}[${i}]`)));
    } catch (err) {
      if (err instanceof ProtoJsonError) problems.push(err.message);
      else throw err;
    }
  });
  if (problems.length > 0) throw new RolloutDocumentError(`${source}:\n${problems.join('\n').split('\n').map((l) => `  ${l}`).join('\n')}`);
  return deployments;
}

function readDocument(file: string | undefined): { text: string; source: string } {
  if (file === undefined || file === '-') return { text: readFileSync(0, 'utf8'), source: 'stdin' };
  return { text: readFileSync(file, 'utf8'), source: file };
}

/** `progressing` for HOST_DEPLOYMENT_PHASE_PROGRESSING. */
export function phaseLabel(phase: HostDeploymentPhase): string {
  return (HostDeploymentPhase[phase] ?? 'UNKNOWN').replace(/^HOST_DEPLOYMENT_PHASE_/, '').toLowerCase();
}

/** `awaiting-reboot` for NODE_ROLLOUT_PHASE_AWAITING_REBOOT. */
export function nodePhaseLabel(phase: NodeRolloutPhase): string {
  return (NodeRolloutPhase[phase] ?? 'UNKNOWN').replace(/^NODE_ROLLOUT_PHASE_/, '').toLowerCase().replace(/_/g, '-');
}

function pauseCauseLabel(cause: HostDeploymentPauseCause): string {
  return (HostDeploymentPauseCause[cause] ?? 'UNKNOWN').replace(/^HOST_DEPLOYMENT_PAUSE_CAUSE_/, '').toLowerCase().replace(/_/g, '-');
}

function failureLabel(reason: ActivationFailureReason): string {
  if (reason === ActivationFailureReason.ACTIVATION_FAILURE_REASON_UNSPECIFIED) return '';
  return (ActivationFailureReason[reason] ?? 'UNKNOWN').replace(/^ACTIVATION_FAILURE_REASON_/, '').toLowerCase().replace(/_/g, '-');
}

const PHASE_COLOUR: Partial<Record<string, 'green' | 'red' | 'yellow'>> = {
  completed: 'green',
  succeeded: 'green',
  progressing: 'yellow',
  draining: 'yellow',
  activating: 'yellow',
  confirming: 'yellow',
  'awaiting-reboot': 'yellow',
  rebooting: 'yellow',
  paused: 'yellow',
  failed: 'red',
  'rolled-back': 'red',
  aborted: 'red',
};

function coloured(label: string): string {
  const name = PHASE_COLOUR[label];
  return name ? colour(label, name) : label;
}

/** `/nix/store/abc…-nixos-system-node01-24.05` shortened to its name after the hash. */
function shortSystem(path: string): string {
  if (!path) return '-';
  const m = /^\/nix\/store\/[a-z0-9]{32}-(.+)$/.exec(path);
  return m ? (m[1] as string) : path;
}

/** Canonical proto3 JSON (durations as "30s", enums by name), as `rollouts apply` reads it back. */
function rolloutJson(r: HostRollout | undefined): unknown {
  return r ? protoJsonOf('ultracloud.host.v1.HostRollout', HostRolloutCodec.encode(r).finish()) : null;
}

function client(connection: Connection, options: ControllerOptions) {
  const address = options.controller || process.env.ULTRACLOUD_CONTROLLER || connection.server;
  return connection.client(HostDeploymentServiceDefinition, address);
}

const DIFF_SYMBOL: Partial<Record<DiffAction, string>> = {
  [DiffAction.DIFF_ACTION_CREATE]: '+',
  [DiffAction.DIFF_ACTION_UPDATE]: '~',
  [DiffAction.DIFF_ACTION_DELETE]: '-',
  [DiffAction.DIFF_ACTION_UNCHANGED]: '=',
};

export async function applyRolloutsCommand(connection: Connection, file: string | undefined, options: ApplyRolloutsOptions): Promise<number> {
  let deployments: HostDeployment[];
  const { text, source } = readDocument(file);
  try {
    deployments = decodeHostDeploymentsDocument(text, source);
  } catch (err) {
    if (err instanceof RolloutDocumentError) {
      console.error(`deployer-ctl: ${err.message}`);
      return EXIT.rejected;
    }
    throw err;
  }
  const dryRun = options.dryRun ?? false;
  const res = await client(connection, options).applyHostDeployments({
    hostDeployments: deployments,
    dryRun,
    prune: options.prune ?? true,
    reason: `deployer-ctl rollouts apply ${source}`,
  });
  if (connection.json) {
    printJson(protoJsonOf('ultracloud.host.v1.ApplyHostDeploymentsResponse', ApplyCodec.encode(res).finish()));
    return EXIT.ok;
  }
  const lines: string[] = [];
  for (const d of res.diffs) {
    const symbol = DIFF_SYMBOL[d.action] ?? '?';
    if (symbol === '=') continue;
    const fields = d.changedFields.length > 0 ? ` (${d.changedFields.join(', ')})` : '';
    const rev = d.action === DiffAction.DIFF_ACTION_DELETE ? '' : ` revision ${d.revision}`;
    lines.push(`${symbol} hostDeployment ${d.name}${fields}${rev}${d.startsRollout ? ` — ${dryRun ? 'would start' : 'starts'} a rollout` : ''}`);
  }
  if (lines.length === 0) lines.push('host deployments: no changes');
  for (const d of res.diffs) for (const w of d.warnings) lines.push(`  warning: hostDeployment ${d.name}: ${w}`);
  const n = (a: DiffAction) => res.diffs.filter((d) => d.action === a).length;
  const verb = dryRun ? 'would be ' : '';
  const rollouts = res.diffs.filter((d) => d.startsRollout).length;
  lines.push(
    `${dryRun ? 'dry run, nothing written' : 'applied'}: ${n(DiffAction.DIFF_ACTION_CREATE)} ${verb}created, ${n(DiffAction.DIFF_ACTION_UPDATE)} ${verb}updated, ` +
      `${n(DiffAction.DIFF_ACTION_DELETE)} ${verb}deleted, ${n(DiffAction.DIFF_ACTION_UNCHANGED)} unchanged; ${rollouts} rollout${rollouts === 1 ? '' : 's'} ${dryRun ? 'would start' : 'started'}`,
  );
  console.log(lines.join('\n'));
  return EXIT.ok;
}

async function allRollouts(connection: Connection, options: ControllerOptions): Promise<HostRollout[]> {
  const c = client(connection, options);
  const out: HostRollout[] = [];
  let pageToken = '';
  do {
    const page = await c.listHostDeployments({ pageSize: 1000, pageToken, phases: [] });
    out.push(...page.rollouts);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return out;
}

export async function listRolloutsCommand(connection: Connection, options: ControllerOptions): Promise<number> {
  const rollouts = await allRollouts(connection, options);
  if (connection.json) {
    printJson({ rollouts: rollouts.map(rolloutJson) });
    return EXIT.ok;
  }
  if (rollouts.length === 0) {
    console.log('no host deployments');
    return EXIT.ok;
  }
  const now = new Date();
  const rows = rollouts.map((r) => {
    const s = r.status;
    const phase = s ? phaseLabel(s.phase) : '-';
    const cause = s && s.pauseCause !== HostDeploymentPauseCause.HOST_DEPLOYMENT_PAUSE_CAUSE_UNSPECIFIED ? ` (${pauseCauseLabel(s.pauseCause)})` : '';
    return [
      r.hostDeployment?.name ?? s?.name ?? '-',
      String(r.hostDeployment?.revision ?? s?.revision ?? 0n),
      coloured(phase) + cause,
      s ? `${s.succeededNodes}/${s.selectedNodes}` : '-',
      String(s?.inProgressNodes ?? 0),
      String(s?.pendingNodes ?? 0),
      String((s?.rolledBackNodes ?? 0) + (s?.failedNodes ?? 0)),
      String(s?.maxUnavailableNodes ?? 0),
      `${humanAge(s?.updatedAt ?? r.hostDeployment?.updatedAt, now)} ago`,
      s?.message ?? '',
    ];
  });
  console.log(renderTable(['name', 'revision', 'phase', 'done', 'in progress', 'pending', 'failed', 'max unavailable', 'updated', 'message'], rows));
  return EXIT.ok;
}

export async function showRolloutCommand(connection: Connection, name: string, options: ControllerOptions): Promise<number> {
  const res = await client(connection, options).getHostDeployment({ name });
  const r = res.rollout;
  if (connection.json) {
    printJson(rolloutJson(r));
    return EXIT.ok;
  }
  const d = r?.hostDeployment;
  const s = r?.status;
  const now = new Date();
  const out: string[] = [];
  out.push(`name:             ${d?.name ?? name}`);
  out.push(`revision:         ${d?.revision ?? 0n} (resource version ${d?.resourceVersion ?? 0n})`);
  if (s) {
    const cause = s.pauseCause !== HostDeploymentPauseCause.HOST_DEPLOYMENT_PAUSE_CAUSE_UNSPECIFIED ? ` (${pauseCauseLabel(s.pauseCause)})` : '';
    out.push(`phase:            ${coloured(phaseLabel(s.phase))}${cause}`);
    if (s.message) out.push(`message:          ${s.message}`);
    out.push(
      `nodes:            ${s.selectedNodes} selected, ${s.succeededNodes} succeeded, ${s.inProgressNodes} in progress, ${s.pendingNodes} pending, ` +
        `${s.rolledBackNodes} rolled back, ${s.failedNodes} failed, ${s.skippedNodes} skipped`,
    );
    out.push(`max unavailable:  ${s.maxUnavailableNodes} node${s.maxUnavailableNodes === 1 ? '' : 's'}; failure budget ${d?.failureBudget ?? 0}`);
    if (s.startedAt) out.push(`started:          ${s.startedAt.toISOString()}`);
    if (s.finishedAt) out.push(`finished:         ${s.finishedAt.toISOString()}`);
  }
  if (d?.target?.systemPath) out.push(`system:           ${d.target.systemPath}`);
  else if (d?.target?.flakeRef) out.push(`flake:            ${d.target.flakeRef}#${d.target.flakeAttr}`);
  const nodes = s?.nodes ?? [];
  if (nodes.length === 0) out.push('', 'no nodes selected');
  else {
    const rows = nodes.map((n) => [
      n.nodeId,
      n.hostname || '-',
      n.failureDomain || '-',
      coloured(nodePhaseLabel(n.phase)),
      n.generation > 0n ? String(n.generation) : '-',
      shortSystem(n.systemPath),
      `${humanAge(n.updatedAt, now)} ago`,
      [failureLabel(n.failureReason), n.message].filter(Boolean).join(': '),
    ]);
    out.push('', renderTable(['node', 'hostname', 'domain', 'phase', 'generation', 'system', 'updated', 'message'], rows));
  }
  console.log(out.join('\n'));
  return EXIT.ok;
}

type Change = 'pause' | 'resume' | 'abort';

const DONE: Record<Change, string> = { pause: 'paused', resume: 'resumed', abort: 'aborted' };

export async function changeRolloutCommand(
  connection: Connection,
  change: Change,
  name: string,
  options: ControllerOptions & { reason: string; expectVersion?: string },
): Promise<number> {
  const c = client(connection, options);
  if (options.expectVersion !== undefined && !/^\d+$/.test(options.expectVersion)) throw new UsageError(`--expect-version ${options.expectVersion}: expected a resource version number`);
  const expectedResourceVersion = options.expectVersion ? BigInt(options.expectVersion) : 0n;
  const req = { name, reason: options.reason, expectedResourceVersion };
  const res = change === 'pause' ? await c.pauseHostDeployment(req) : change === 'resume' ? await c.resumeHostDeployment(req) : await c.abortHostDeployment(req);
  if (connection.json) {
    printJson(rolloutJson(res.rollout));
    return EXIT.ok;
  }
  const s = res.rollout?.status;
  const phase = s ? phaseLabel(s.phase) : '-';
  console.log(`${DONE[change]} ${name} (revision ${res.rollout?.hostDeployment?.revision ?? 0n}): phase ${coloured(phase)}${s?.message ? ` — ${s.message}` : ''}`);
  return EXIT.ok;
}

export async function listAgentsCommand(connection: Connection, options: ControllerOptions & { stale?: boolean }): Promise<number> {
  const c = client(connection, options);
  const agents: HostAgent[] = [];
  let pageToken = '';
  let staleAfter = '';
  do {
    const page = await c.listHostAgents({ pageSize: 1000, pageToken, nodeIds: [], staleOnly: options.stale ?? false });
    agents.push(...page.agents);
    pageToken = page.nextPageToken;
    if (page.staleAfter) staleAfter = `${Number(page.staleAfter.seconds) + page.staleAfter.nanos / 1e9}s`;
  } while (pageToken);
  if (connection.json) {
    printJson({ agents: agents.map((a) => protoJsonOf('ultracloud.host.v1.HostAgent', HostAgentCodec.encode(a).finish())), staleAfter });
    return EXIT.ok;
  }
  if (agents.length === 0) {
    console.log('no agents');
    return EXIT.ok;
  }
  const now = new Date();
  const rows = agents.map((a) => [
    a.nodeId,
    a.hostname || '-',
    a.connected ? (a.stale ? colour('stale', 'yellow') : colour('connected', 'green')) : colour('disconnected', 'red'),
    shortSystem(a.currentSystemPath),
    a.profileGeneration > 0n ? String(a.profileGeneration) : '-',
    a.deployment ? `${a.deployment}@${a.revision}` : '-',
    a.lastSeenAt ? `${humanAge(a.lastSeenAt, now)} ago` : 'never',
    a.controllerReplica || '-',
  ]);
  console.log(renderTable(['node', 'hostname', 'stream', 'system', 'generation', 'deployment', 'last seen', 'replica'], rows));
  return EXIT.ok;
}

type WithConnection = (run: (connection: Connection) => Promise<number>) => Promise<void>;

const CONTROLLER_HELP = 'host-controller address (ULTRACLOUD_CONTROLLER, default: the control-plane address, where `ultracloud up` serves it)';

export function registerRolloutsCommands(program: Command, withConnection: WithConnection): void {
  const rollouts = program.command('rollouts').description('host OS rollouts on the host-controller: apply, list, show, pause, resume, abort');
  rollouts
    .command('apply')
    .argument('[file]', 'the generated hostDeployments JSON ({"hostDeployments": [...]}); "-" or nothing: stdin', '-')
    .description('apply host deployments: prints the diff and which ones start a rollout')
    .option('--dry-run', 'show what would change, write nothing')
    .option('--no-prune', 'keep host deployments missing from the file (default: the file is the complete set)')
    .option('--controller <host:port>', CONTROLLER_HELP)
    .action((file: string, opts: ApplyRolloutsOptions) => withConnection((c) => applyRolloutsCommand(c, file, opts)));
  rollouts
    .command('list')
    .description('host deployments with their rollout phase and node counts')
    .option('--controller <host:port>', CONTROLLER_HELP)
    .action((opts: ControllerOptions) => withConnection((c) => listRolloutsCommand(c, opts)));
  rollouts
    .command('show')
    .argument('<name>', 'host deployment name')
    .description('one rollout with every node: phase, generation, system, failure')
    .option('--controller <host:port>', CONTROLLER_HELP)
    .action((name: string, opts: ControllerOptions) => withConnection((c) => showRolloutCommand(c, name, opts)));
  for (const [change, description] of [
    ['pause', 'no new node starts; nodes in progress finish'],
    ['resume', 'continue a rollout paused by an operator or its failure budget (the failure count restarts)'],
    ['abort', 'stop this revision: no further node starts; nodes already moved stay'],
  ] as const) {
    rollouts
      .command(change)
      .argument('<name>', 'host deployment name')
      .description(description)
      .requiredOption('--reason <text>', 'why; recorded in the audit log')
      .option('--expect-version <n>', 'refuse (exit 4) unless the deployment is at this resource version')
      .option('--controller <host:port>', CONTROLLER_HELP)
      .action((name: string, opts: ControllerOptions & { reason: string; expectVersion?: string }) => withConnection((c) => changeRolloutCommand(c, change, name, opts)));
  }
  const agents = program.command('agents').description('nix-agents known to the host-controller');
  agents
    .command('list')
    .description('every agent: stream, running system, generation, last deployment, last seen')
    .option('--stale', 'only stale or disconnected agents')
    .option('--controller <host:port>', CONTROLLER_HELP)
    .action((opts: ControllerOptions & { stale?: boolean }) => withConnection((c) => listAgentsCommand(c, opts)));
}
