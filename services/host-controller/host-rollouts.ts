// The host-controller's operator API as an application layer: apply, list, get, pause, resume,
// abort and delete HostDeployments, and list the nix-agents. Each write is one transaction with
// its audit event and rollout event, under the deployment's row lock (the leader's tick takes the
// same locks), and wakes the leader after commit. Any replica serves these calls: the database
// is where the leader finds what an operator asked for. RPC handlers and, later, other callers
// (deployer-ctl rollouts goes through the RPCs) use this class only.
import { Buffer } from 'node:buffer';
import type { Kysely } from 'kysely';
import {
  type ApplyHostDeploymentsRequest,
  type ApplyHostDeploymentsResponse,
  DiffAction,
  type HostAgent,
  type HostDeploymentDiff,
  type HostRollout,
  type ListHostAgentsRequest,
  type ListHostAgentsResponse,
  type ListHostDeploymentsRequest,
  type ListHostDeploymentsResponse,
} from '../../gen/ts/ultracloud/host/v1/host_deployment_service.js';
import { type HostDeployment, HostDeploymentPhase } from '../../gen/ts/ultracloud/system/v1/system.js';
import { ConflictError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from '../../lib/errors.js';
import { changedFields, durationOfMs, normalizeSpec, startsRevision, validateHostDeployments } from './domain/deployment-spec.js';
import { effectivePhase, isAborted, rolloutStatus } from './domain/rollout-status.js';
import { ROLLOUT_STATES, type NodeFacts, selects } from './domain/selection.js';
import { type AgentRecord, isLive, listAgents } from './store/agents.js';
import {
  apiDeployment,
  deleteDeployment,
  getDeployment,
  insertDeployment,
  listDeployments,
  nextResourceVersion,
  type StoredDeployment,
  updateDeploymentSpec,
  updateOperatorState,
} from './store/deployments.js';
import { hostDeploymentJson } from './store/documents.js';
import { appendAudit, appendEvents, desiredSystemsOf, forgiveFailures, nodeRollouts } from './store/rollouts.js';
import type { HostsDatabase, HostsDb } from './store/tables.js';

/** Who made a call, as recorded in the audit log. */
export interface Actor {
  readonly name: string;
  /** ActorKind name, e.g. ACTOR_KIND_OPERATOR. */
  readonly kind: string;
  /** Full RPC path, e.g. /ultracloud.host.v1.HostDeploymentService/PauseHostDeployment. */
  readonly rpc: string;
  readonly peer: string;
}

export interface HostRolloutsOptions {
  /** This replica's instance id, recorded on events. */
  readonly replica: string;
  /** The nodes the deployer knows, for apply warnings; undefined until the first snapshot. */
  readonly nodes: () => readonly NodeFacts[] | undefined;
  /** Silence after which an agent counts as stale. */
  readonly staleAfterMs: number;
  /** Tells the leader (on any replica) that something changed. */
  readonly changed: () => void;
}

const MAX_PAGE = 1000;
const MAX_WARNINGS = 20;

function pageSize(requested: number): number {
  if (requested === 0) return 100;
  if (requested < 0 || requested > MAX_PAGE) throw new InvalidArgumentError({ field: 'page_size', description: `must be between 1 and ${MAX_PAGE} (0 means 100), got ${requested}` });
  return requested;
}

interface PageToken {
  readonly after: string;
  readonly filter: string;
}

function encodeToken(t: PageToken): string {
  return Buffer.from(JSON.stringify(t)).toString('base64url');
}

function decodeToken(raw: string, filter: string): string | undefined {
  if (raw === '') return undefined;
  let t: Partial<PageToken>;
  try {
    t = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as Partial<PageToken>;
  } catch {
    throw new InvalidArgumentError({ field: 'page_token', description: 'malformed; pass next_page_token of the previous page' });
  }
  if (typeof t.after !== 'string' || typeof t.filter !== 'string') throw new InvalidArgumentError({ field: 'page_token', description: 'malformed; pass next_page_token of the previous page' });
  if (t.filter !== filter) throw new InvalidArgumentError({ field: 'page_token', description: 'was issued for a different filter' });
  return t.after;
}

function requireNameAndReason(req: { name: string; reason: string }): void {
  const problems = [];
  if (req.name === '') problems.push({ field: 'name', description: 'required' });
  if (req.reason.trim() === '') problems.push({ field: 'reason', description: 'required' });
  if (problems.length > 0) throw new InvalidArgumentError(problems);
}

function checkVersion(d: StoredDeployment, expected: bigint): void {
  if (expected !== 0n && expected !== d.resourceVersion) {
    throw new ConflictError(`deployment ${d.spec.name} is at resource_version ${d.resourceVersion}, not ${expected}; read it again`);
  }
}

function phaseLabel(p: HostDeploymentPhase): string {
  return (HostDeploymentPhase[p] ?? '').replace(/^HOST_DEPLOYMENT_PHASE_/, '').toLowerCase();
}

export class HostRollouts {
  constructor(
    private readonly db: Kysely<HostsDatabase>,
    private readonly options: HostRolloutsOptions,
  ) {}

  private async event(db: HostsDb, d: { name: string; revision: bigint }, kind: string, message: string, now: Date): Promise<void> {
    await appendEvents(db, [{ at: now, deployment: d.name, revision: d.revision, nodeId: '', kind, fromPhase: '', toPhase: '', message, replica: this.options.replica }]);
  }

  /** Warnings for one deployment of an apply: no installed node selected, nodes shared with others. */
  private warnings(spec: HostDeployment, others: readonly HostDeployment[]): string[] {
    const nodes = this.options.nodes();
    if (!nodes) return [];
    const mine = nodes.filter((n) => selects(spec.selector, n));
    const out: string[] = [];
    if (!mine.some((n) => ROLLOUT_STATES.has(n.machineState))) out.push('selector matches no installed node');
    for (const n of mine) {
      for (const o of others) if (o.name !== spec.name && selects(o.selector, n)) out.push(`${n.nodeId} is also selected by deployment ${o.name}`);
    }
    return out.slice(0, MAX_WARNINGS);
  }

  async apply(req: ApplyHostDeploymentsRequest, actor: Actor): Promise<ApplyHostDeploymentsResponse> {
    validateHostDeployments(req.hostDeployments);
    const specs = req.hostDeployments.map(normalizeSpec);
    const now = new Date();
    const diffs = await this.db.transaction().execute(async (trx) => {
      const existing = new Map((await listDeployments(trx, { lock: true })).map((d) => [d.spec.name, d]));
      const named = new Set(specs.map((s) => s.name));
      // The deployments there will be after this apply, for overlap warnings.
      const survivors = [...specs, ...[...existing.values()].filter((d) => !named.has(d.spec.name) && !req.prune).map((d) => d.spec)];
      const out: HostDeploymentDiff[] = [];
      const audit = async (name: string, action: string, revision: bigint | undefined, resourceVersion: bigint | undefined) =>
        appendAudit(trx, { at: now, actor: actor.name, actorKind: actor.kind, rpc: actor.rpc, deployment: name, action, reason: req.reason, outcome: 'ALLOWED', peer: actor.peer, ...(revision !== undefined ? { revision } : {}), ...(resourceVersion !== undefined ? { resourceVersion } : {}) });
      for (const spec of specs) {
        const current = existing.get(spec.name);
        const warnings = this.warnings(spec, survivors);
        if (!current) {
          out.push({ name: spec.name, action: DiffAction.DIFF_ACTION_CREATE, changedFields: [], revision: 1n, startsRollout: true, warnings });
          if (req.dryRun) continue;
          const rv = await nextResourceVersion(trx);
          await insertDeployment(trx, spec, rv, now);
          await audit(spec.name, 'apply.create', 1n, rv);
          await this.event(trx, { name: spec.name, revision: 1n }, 'deployment.applied', `created by ${actor.name}: revision 1`, now);
          continue;
        }
        const changed = changedFields(hostDeploymentJson.toJson(current.spec), hostDeploymentJson.toJson(spec));
        if (changed.length === 0) {
          out.push({ name: spec.name, action: DiffAction.DIFF_ACTION_UNCHANGED, changedFields: [], revision: current.revision, startsRollout: false, warnings });
          continue;
        }
        const newRevision = startsRevision(changed);
        const revision = newRevision ? current.revision + 1n : current.revision;
        out.push({ name: spec.name, action: DiffAction.DIFF_ACTION_UPDATE, changedFields: changed, revision, startsRollout: newRevision, warnings });
        if (req.dryRun) continue;
        const rv = await nextResourceVersion(trx);
        await updateDeploymentSpec(trx, spec, revision, newRevision, rv, now);
        await audit(spec.name, 'apply.update', revision, rv);
        await this.event(trx, { name: spec.name, revision }, 'deployment.applied', `updated by ${actor.name}: ${changed.join(', ')}${newRevision ? `; revision ${revision} starts a new rollout` : ''}`, now);
      }
      if (req.prune) {
        for (const d of existing.values()) {
          if (named.has(d.spec.name)) continue;
          out.push({ name: d.spec.name, action: DiffAction.DIFF_ACTION_DELETE, changedFields: [], revision: 0n, startsRollout: false, warnings: [] });
          if (req.dryRun) continue;
          await deleteDeployment(trx, d.spec.name);
          await audit(d.spec.name, 'apply.delete', d.revision, d.resourceVersion);
          await this.event(trx, { name: d.spec.name, revision: d.revision }, 'deployment.deleted', `pruned by ${actor.name}`, now);
        }
      }
      return out;
    });
    if (!req.dryRun && diffs.some((d) => d.action !== DiffAction.DIFF_ACTION_UNCHANGED)) this.options.changed();
    return { diffs, dryRun: req.dryRun };
  }

  private async rollout(db: HostsDb, d: StoredDeployment, withNodes: boolean): Promise<HostRollout> {
    const rows = (await nodeRollouts(db, d.spec.name)).get(d.spec.name) ?? new Map();
    return { hostDeployment: apiDeployment(d), status: rolloutStatus(d, [...rows.values()], withNodes) };
  }

  async list(req: ListHostDeploymentsRequest): Promise<ListHostDeploymentsResponse> {
    const size = pageSize(req.pageSize);
    for (const [i, p] of req.phases.entries()) {
      if (p <= 0 || HostDeploymentPhase[p] === undefined) throw new InvalidArgumentError({ field: `phases[${i}]`, description: `unknown phase ${p}` });
    }
    const filter = [...new Set(req.phases)].sort().join(',');
    const after = decodeToken(req.pageToken, filter);
    const all = await listDeployments(this.db, after === undefined ? {} : { afterName: after });
    const wanted = new Set(req.phases);
    const rollouts: HostRollout[] = [];
    let next = '';
    for (const d of all) {
      if (wanted.size > 0 && !wanted.has(effectivePhase(d).phase)) continue;
      if (rollouts.length === size) {
        next = encodeToken({ after: rollouts[rollouts.length - 1]?.hostDeployment?.name ?? '', filter });
        break;
      }
      rollouts.push(await this.rollout(this.db, d, false));
    }
    return { rollouts, nextPageToken: next };
  }

  async get(name: string): Promise<HostRollout> {
    if (name === '') throw new InvalidArgumentError({ field: 'name', description: 'required' });
    const d = await getDeployment(this.db, name);
    if (!d) throw new NotFoundError(`host deployment ${name} not found`);
    return this.rollout(this.db, d, true);
  }

  /** Runs `change` on the locked deployment; audit and event in the same transaction. */
  private async operatorChange(
    req: { name: string; reason: string; expectedResourceVersion: bigint },
    actor: Actor,
    action: string,
    change: (trx: HostsDb, d: StoredDeployment, now: Date) => Promise<string | undefined>,
  ): Promise<HostRollout> {
    requireNameAndReason(req);
    const now = new Date();
    const { rollout, changed } = await this.db.transaction().execute(async (trx) => {
      const d = await getDeployment(trx, req.name, true);
      if (!d) throw new NotFoundError(`host deployment ${req.name} not found`);
      checkVersion(d, req.expectedResourceVersion);
      const message = await change(trx, d, now);
      if (message !== undefined) {
        await appendAudit(trx, { at: now, actor: actor.name, actorKind: actor.kind, rpc: actor.rpc, deployment: d.spec.name, action, reason: req.reason, outcome: 'ALLOWED', revision: d.revision, peer: actor.peer });
        await this.event(trx, { name: d.spec.name, revision: d.revision }, `deployment.${action}`, `${message} by ${actor.name}: ${req.reason}`, now);
      }
      const after = (await getDeployment(trx, req.name)) as StoredDeployment;
      return { rollout: await this.rollout(trx, after, false), changed: message !== undefined };
    });
    if (changed) this.options.changed();
    return rollout;
  }

  pause(req: { name: string; reason: string; expectedResourceVersion: bigint }, actor: Actor): Promise<HostRollout> {
    return this.operatorChange(req, actor, 'paused', async (trx, d, now) => {
      const phase = effectivePhase(d).phase;
      if (phase === HostDeploymentPhase.HOST_DEPLOYMENT_PHASE_COMPLETED || phase === HostDeploymentPhase.HOST_DEPLOYMENT_PHASE_ABORTED) {
        throw new FailedPreconditionError(`host deployment ${d.spec.name} revision ${d.revision} is ${phaseLabel(phase)}; there is nothing to pause`);
      }
      if (d.operatorPaused) return undefined;
      await updateOperatorState(trx, d.spec.name, { operatorPaused: true, operatorPauseReason: req.reason }, await nextResourceVersion(trx), now);
      return 'paused';
    });
  }

  resume(req: { name: string; reason: string; expectedResourceVersion: bigint }, actor: Actor): Promise<HostRollout> {
    return this.operatorChange(req, actor, 'resumed', async (trx, d, now) => {
      if (d.spec.paused) throw new FailedPreconditionError(`host deployment ${d.spec.name} has paused: true in its spec; set it to false in Nix and apply`);
      if (isAborted(d)) throw new FailedPreconditionError(`host deployment ${d.spec.name} revision ${d.revision} was aborted; apply a new revision to roll out again`);
      if (!d.operatorPaused && !d.budgetPaused) return undefined;
      await updateOperatorState(trx, d.spec.name, { operatorPaused: false, operatorPauseReason: '', budgetPaused: false }, await nextResourceVersion(trx), now);
      const forgiven = await forgiveFailures(trx, d.spec.name);
      return forgiven > 0 ? `resumed (${forgiven} failed node${forgiven === 1 ? '' : 's'} no longer count against the budget)` : 'resumed';
    });
  }

  abort(req: { name: string; reason: string; expectedResourceVersion: bigint }, actor: Actor): Promise<HostRollout> {
    return this.operatorChange(req, actor, 'aborted', async (trx, d, now) => {
      if (isAborted(d)) return undefined;
      if (effectivePhase(d).phase === HostDeploymentPhase.HOST_DEPLOYMENT_PHASE_COMPLETED) {
        throw new FailedPreconditionError(`host deployment ${d.spec.name} revision ${d.revision} is completed; there is nothing to abort`);
      }
      await updateOperatorState(trx, d.spec.name, { abortedRevision: d.revision, abortReason: req.reason }, await nextResourceVersion(trx), now);
      return 'aborted';
    });
  }

  async delete(req: { name: string; reason: string; expectedResourceVersion: bigint }, actor: Actor): Promise<HostDeployment> {
    requireNameAndReason(req);
    const now = new Date();
    const deleted = await this.db.transaction().execute(async (trx) => {
      const d = await getDeployment(trx, req.name, true);
      if (!d) throw new NotFoundError(`host deployment ${req.name} not found`);
      checkVersion(d, req.expectedResourceVersion);
      await deleteDeployment(trx, d.spec.name);
      await appendAudit(trx, { at: now, actor: actor.name, actorKind: actor.kind, rpc: actor.rpc, deployment: d.spec.name, action: 'delete', reason: req.reason, outcome: 'ALLOWED', revision: d.revision, resourceVersion: d.resourceVersion, peer: actor.peer });
      await this.event(trx, { name: d.spec.name, revision: d.revision }, 'deployment.deleted', `deleted by ${actor.name}: ${req.reason}`, now);
      return apiDeployment(d);
    });
    this.options.changed();
    return deleted;
  }

  async listAgents(req: ListHostAgentsRequest): Promise<ListHostAgentsResponse> {
    const size = pageSize(req.pageSize);
    const filter = `${[...new Set(req.nodeIds)].sort().join(',')}|${req.staleOnly}`;
    const after = decodeToken(req.pageToken, filter);
    const staleBefore = new Date(Date.now() - this.options.staleAfterMs);
    const rows = await listAgents(this.db, { ...(after === undefined ? {} : { afterNodeId: after }), nodeIds: req.nodeIds, staleOnly: req.staleOnly, staleBefore, limit: size + 1 });
    const page = rows.slice(0, size);
    const desired = await desiredSystemsOf(this.db, page.map((a) => a.nodeId));
    const agents = page.map((a) => hostAgent(a, staleBefore, desired.get(a.nodeId)?.desired));
    return {
      agents,
      nextPageToken: rows.length > size ? encodeToken({ after: page[page.length - 1]?.nodeId ?? '', filter }) : '',
      staleAfter: durationOfMs(this.options.staleAfterMs),
    };
  }
}

function hostAgent(a: AgentRecord, staleBefore: Date, desired: { deployment: string; revision: bigint } | undefined): HostAgent {
  const live = isLive(a, staleBefore);
  return {
    nodeId: a.nodeId,
    hostname: a.hostname,
    connected: live,
    stale: !live,
    lastSeenAt: a.lastSeenAt,
    connectedAt: a.connectedAt,
    bootId: a.bootId,
    currentSystemPath: a.currentSystemPath,
    bootedSystemPath: a.bootedSystemPath,
    profileGeneration: a.profileGeneration,
    agentVersion: a.agentVersion,
    peerAddress: a.peerAddress,
    controllerReplica: a.streamReplica,
    deployment: desired?.deployment ?? '',
    revision: desired?.revision ?? 0n,
    lastReport: a.lastReport,
  };
}
