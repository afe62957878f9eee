// The deployer's operations. Each state change runs in one transaction that locks the machine,
// checks the lifecycle table, writes the change with a new resource_version and appends an audit
// event; pure decisions (enrollment, plans, transitions, validation) live in domain/.
import { randomUUID } from 'node:crypto';
import { type Kysely, sql, type Transaction } from 'kysely';
import { AssignmentSource, type NodeAssignment } from '../../gen/ts/ultracloud/assignment/v1/assignment.js';
import {
  type DiscoverResponse,
  type FetchPlanResponse,
  InstallerAction,
  type ReportInstallProgressRequest,
  type ReportInstallProgressResponse,
} from '../../gen/ts/ultracloud/bootstrap/v1/bootstrap_service.js';
import type { ApplyClusterStateResponse, GetClusterStateResponse } from '../../gen/ts/ultracloud/deployer/v1/cluster_service.js';
import type { ClusterState } from '../../gen/ts/ultracloud/deployer/v1/cluster_state.js';
import type { Machine } from '../../gen/ts/ultracloud/deployer/v1/machine_service.js';
import { AddressMode, type InstallPlan, PlanMode } from '../../gen/ts/ultracloud/installplan/v1/installplan.js';
import type { MachineInventory } from '../../gen/ts/ultracloud/inventory/v1/inventory.js';
import {
  ActorKind,
  AuditOutcome,
  InstallOutcome,
  InstallPhase,
  type InstallProgress,
  MachineState,
  MachineTransition,
} from '../../gen/ts/ultracloud/lifecycle/v1/lifecycle.js';
import { ConflictError, FailedPreconditionError, InvalidArgumentError, NotFoundError, PermissionDeniedError, type FieldViolation } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { type ClusterCa, issueNodeCredentials, issueToken, type NodeCredentials, sealSecret } from '../../lib/pki/index.js';
import type { BootstrapSecrets } from '../../gen/ts/ultracloud/secrets/v1/secrets.js';
import { blockedRemovals, clusterStateHash, diffClusterState, validateClusterState } from './domain/cluster-state.js';
import { checkMinimumHardware, matchEnrollment } from './domain/enrollment.js';
import { renderInstallPlan } from './domain/install-plan.js';
import { inventoryHash, normaliseInventory, primaryMacSet, validateInventory } from './domain/inventory.js';
import { allowedTransitions, hasAssignment, type LifecycleTransition, planTransition, stateName } from './domain/lifecycle.js';
import { appendAudit } from './store/audit.js';
import { type AppliedClusterState, getClusterGeneration, getClusterState, saveClusterState } from './store/cluster.js';
import { deleteNodeCredentials, type NodeCredentialRecord, saveNodeCredentials, setInstallToken } from './store/credentials.js';
import {
  allocatedAddresses,
  deleteAssignment,
  deleteMachine,
  deletePlan,
  getAssignment,
  getPlan,
  insertMachine,
  lockMachine,
  lockMachineByIdentity,
  type LockedMachine,
  lockMachineWith,
  machineMessage,
  type MachineRow,
  type MachineUpdate,
  markPlanFetched,
  type NewMachine,
  lockIdentity,
  namesInUse,
  recordAllocation,
  recordInstallingProgress,
  savePlan,
  setMachineMacs,
  takenNames,
  claimNames,
  lockNames,
  updateMachine,
} from './store/machines.js';
import type { DeployerDatabase } from './store/tables.js';
import { findByIdentity, guardedWrite, insertNewMachine, type MachineHead, readMachineSnapshot, uniqueConflictOf } from './store/one-statement.js';
import { FreshPlans } from './fresh-plans.js';
import { NameBook, type NodeNames } from './name-book.js';
import { type DeployerObserver, NO_OBSERVER } from './observer.js';
import type { AuditEntry } from './store/audit.js';

export interface DeployerSettings {
  /** Key sealing private keys at rest (32 bytes). */
  readonly secretsKey: Uint8Array;
  /** An install that reports nothing for this long goes to FAILED. */
  readonly installTimeoutMs: number;
  /** Lifetime of an install token. */
  readonly installTokenTtlMs: number;
  /** What Discover tells an installer to wait while nothing is ready. */
  readonly discoverRetryAfterMs: number;
  /** How often an installer should report progress (and so keep its install alive). */
  readonly progressIntervalMs: number;
}

export const DEFAULT_DEPLOYER_SETTINGS: Omit<DeployerSettings, 'secretsKey'> = {
  installTimeoutMs: 60 * 60_000,
  installTokenTtlMs: 6 * 60 * 60_000,
  discoverRetryAfterMs: 30_000,
  progressIntervalMs: 60_000,
};

/** Who asked for a change, for the audit log. */
export interface Actor {
  readonly name: string;
  readonly kind: ActorKind;
  readonly rpc: string;
  readonly peer?: string;
}

/**
 * How an installer's call proves the machine it acts for: the machine its credential was issued
 * to, already looked up, or a claim (the credential's hash) that the statement acting on the
 * machine matches, with `verify` to look the credential up whenever that statement does not
 * answer (it throws UnauthenticatedError for a credential that is not valid).
 */
export type InstallerCaller =
  | { readonly machineId: string; readonly claim?: undefined }
  | { readonly machineId?: undefined; readonly claim: { readonly tokenHash: string; verify(): Promise<string> } };

export const SYSTEM_ACTOR: Actor = { name: 'deployer', kind: ActorKind.ACTOR_KIND_SYSTEM, rpc: 'system' };

type Trx = Transaction<DeployerDatabase>;

// Advisory lock keys (arbitrary constants, unique within this schema's use). Each guards a
// "read what is free, then take it" step and is held only by the short transaction doing it.
// Node names have no cluster-wide lock: see claimNames (per-name locks, tried without waiting).
const LOCK_CLUSTER_STATE = 0x75630003;
const LOCK_ADDRESSES = 0x75630004;

async function advisoryLock(trx: Trx, key: number): Promise<void> {
  await sql`SELECT pg_advisory_xact_lock(${key})`.execute(trx);
}

/** A name an enrolment claimed was committed by another machine meanwhile; the Discover is retried. */
class NameRaceError extends ConflictError {}

/** Attempts of a Discover whose auto-commission lost a name race (each a fresh transaction). */
const DISCOVER_ATTEMPTS = 5;

function durationOf(ms: number) {
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

function secondsText(ms: number): string {
  return `${Math.round(ms / 1000)}s`;
}

function secondsSince(start: Date | undefined, now: Date): number {
  return start ? Math.max(0, now.getTime() - start.getTime()) / 1000 : 0;
}

/** Keeps the last `max` bytes of an installer log so one machine cannot bloat its row. */
function tail(text: string, max = 64 * 1024): string {
  return text.length > max ? text.slice(text.length - max) : text;
}

/** No names taken: what the inspection step matches with (names are picked when enrolling). */
const NO_NAMES = { nodeIds: new Set<string>(), hostnames: new Set<string>() };

/** Attempts of a new machine's one-statement Discover whose name another replica took meanwhile. */
const NEW_MACHINE_ATTEMPTS = 3;

export class Deployer {
  private cachedCluster: AppliedClusterState | undefined;
  private readonly names = new NameBook();
  private readonly freshPlans = new FreshPlans();

  constructor(
    private readonly db: Kysely<DeployerDatabase>,
    private readonly ca: ClusterCa,
    private readonly settings: DeployerSettings,
    private readonly log: Logger,
    private readonly observer: DeployerObserver = NO_OBSERVER,
  ) {}

  // ---- transitions -----------------------------------------------------------------------------

  /** Checks the lifecycle table, writes the new state and audits it, all in `trx`. */
  private async transition(
    trx: Trx,
    row: MachineRow,
    transition: LifecycleTransition,
    actor: Actor,
    reason: string,
    extra: MachineUpdate = {},
    now = new Date(),
    knownNodeId?: string,
  ): Promise<MachineRow> {
    const plan = planTransition(row.state, transition, { previousState: row.previousState });
    const update: MachineUpdate = {
      ...extra,
      state: plan.to,
      previousState: plan.previousState,
      statusMessage: extra.statusMessage ?? '',
    };
    // States before commissioning have no assignment: no need to look one up.
    const nodeId = knownNodeId ?? (hasAssignment(row.state, row.previousState) ? ((await getAssignment(trx, row.machineId))?.nodeId ?? '') : '');
    // The audit event is written by the same statement as the change (one round trip).
    const updated = await updateMachine(trx, row, update, now, {
      at: now,
      actor: actor.name,
      actorKind: actor.kind,
      rpc: actor.rpc,
      machineId: row.machineId,
      nodeId,
      from: row.state,
      to: plan.to,
      transition,
      reason,
      outcome: AuditOutcome.AUDIT_OUTCOME_ALLOWED,
      ...(actor.peer ? { peer: actor.peer } : {}),
    });
    this.log.info({ event: 'machine.transition', machine_id: row.machineId, node_id: nodeId || undefined, from: stateName(row.state), to: stateName(plan.to), transition: MachineTransition[transition], actor: actor.name, reason });
    return updated;
  }

  /**
   * The applied cluster state, parsed once per generation: a cheap generation read per call
   * keeps replicas consistent without re-parsing the whole document every time.
   */
  private async clusterState(db: Trx | Kysely<DeployerDatabase>, known?: { generation: bigint | undefined }): Promise<AppliedClusterState | undefined> {
    // `known`: the generation was already read in this transaction (with the machine's row).
    const generation = known ? known.generation : await getClusterGeneration(db);
    if (generation === undefined) return undefined;
    if (this.cachedCluster?.generation !== generation) this.cachedCluster = await getClusterState(db);
    return this.cachedCluster;
  }

  /** Renders and stores the plan, or fails the machine with the reason when it cannot. */
  private async deployPlan(trx: Trx, row: MachineRow, via: LifecycleTransition, actor: Actor, reason: string, mode = PlanMode.PLAN_MODE_INSTALL, rescueKeys: readonly string[] = [], locked?: LockedMachine): Promise<MachineRow> {
    const now = new Date();
    // `locked`: the row was locked with the cluster generation and assignment (one round trip).
    const cluster = await this.clusterState(trx, locked ? { generation: locked.clusterGeneration } : undefined);
    const assignment = locked ? locked.assignment : await getAssignment(trx, row.machineId);
    try {
      if (!cluster) throw new FailedPreconditionError('no cluster state has been applied');
      if (!assignment) throw new FailedPreconditionError('machine has no node assignment');
      let allocated: ReadonlyMap<string, ReadonlySet<string>> = new Map();
      if (allocatesFromPool(cluster.state, assignment)) {
        // Concurrent Deploys would otherwise all pick the same lowest free pool address.
        await advisoryLock(trx, LOCK_ADDRESSES);
        allocated = await allocatedAddresses(trx, row.machineId);
      }
      const rendered = renderInstallPlan({
        machineId: row.machineId,
        inventory: row.inventory,
        assignment,
        cluster: cluster.state,
        generation: cluster.generation,
        mode,
        allocated,
        extraRescueKeys: rescueKeys,
        now,
      });
      await savePlan(trx, row.machineId, rendered.plan, now);
      if (rendered.allocation) await recordAllocation(trx, row.machineId, rendered.allocation.network, rendered.allocation.address);
    } catch (err) {
      if (!(err instanceof FailedPreconditionError) || mode === PlanMode.PLAN_MODE_RESCUE) throw err;
      // A machine that is already FAILED (an operator Retry) stays as it is: the caller is told
      // why the plan still cannot be rendered, instead of that FAILED -> FAILED is no edge.
      if (!allowedTransitions(row.state).includes(MachineTransition.MACHINE_TRANSITION_PLAN_FAILED)) throw err;
      // The machine's hardware does not fit the policy (no or several root disks, pool
      // exhausted): record it on the machine rather than failing the caller's request.
      const failed = await this.transition(trx, row, MachineTransition.MACHINE_TRANSITION_PLAN_FAILED, SYSTEM_ACTOR, err.message, { lastError: err.message });
      this.log.warn({ event: 'plan.failed', machine_id: row.machineId, reason: err.message });
      return failed;
    }
    return this.transition(trx, row, via, actor, reason, { lastError: '', installProgress: null, installToken: null }, now, assignment.nodeId);
  }

  /**
   * Inside the Discover transaction: a DISCOVERED machine whose facts meet its class's minimum
   * becomes INSPECTED; an unassigned machine's status says what it waits for. Returns whether
   * an enrollment rule asks to commission it now (done in its own transaction, see autoEnroll).
   */
  private async inspect(trx: Trx, row: MachineRow, known?: { generation: bigint | undefined }): Promise<{ row: MachineRow; commission: boolean; cluster?: AppliedClusterState }> {
    if (row.state !== MachineState.MACHINE_STATE_DISCOVERED && row.state !== MachineState.MACHINE_STATE_INSPECTED) return { row, commission: false };
    const cluster = await this.clusterState(trx, known);
    let result: ReturnType<typeof matchEnrollment> | undefined;
    if (cluster) {
      try {
        // Names are not needed yet (only the class and rule), so nothing is locked here.
        result = matchEnrollment(row.inventory, cluster.state, { nodeIds: new Set(), hostnames: new Set() });
      } catch (err) {
        if (!(err instanceof FailedPreconditionError)) throw err;
        return { row: await this.setStatus(trx, row, `enrollment: ${err.message}`), commission: false };
      }
    }
    let current = row;
    if (current.state === MachineState.MACHINE_STATE_DISCOVERED) {
      if (result && result.belowMinimum.length > 0) {
        const unmet = result.belowMinimum.map((u) => u.message).join('; ');
        return { row: await this.setStatus(trx, current, `below the minimum hardware of class ${result.assignment.nodeClass}: ${unmet}`), commission: false };
      }
      current = await this.transition(trx, current, MachineTransition.MACHINE_TRANSITION_INSPECT, SYSTEM_ACTOR, 'facts validated');
    }
    if (!result) {
      return { row: await this.setStatus(trx, current, cluster ? 'no enrollment rule matched; waiting for an operator to commission' : 'no cluster state applied yet'), commission: false };
    }
    if (!result.autoCommission) {
      return { row: await this.setStatus(trx, current, `matched ${result.assignment.sourceName}; waiting for an operator to commission`), commission: false };
    }
    return { row: current, commission: true, ...(cluster ? { cluster } : {}) };
  }

  /**
   * Inside the Discover transaction, which holds the machine's row: commissions an inspected
   * machine an enrollment rule auto-commissions. No cluster-wide lock: the free names are read,
   * then the first candidate no concurrent enrolment is claiming is claimed by its per-name locks
   * (claimNames), so concurrent Discovers take different indexes instead of queueing. Throws
   * NameRaceError (the caller retries the whole transaction) when every candidate was taken
   * meanwhile or the unique indexes reject the claimed pair. A rule that auto-installs also
   * deploys the machine here, so a new machine's Discover is one transaction.
   */
  private async enroll(trx: Trx, row: MachineRow, cluster: AppliedClusterState | undefined): Promise<{ row: MachineRow; deployed?: boolean }> {
    if (row.state !== MachineState.MACHINE_STATE_INSPECTED || !cluster) return { row };
    let result: ReturnType<typeof matchEnrollment>;
    try {
      result = matchEnrollment(row.inventory, cluster.state, await takenNames(trx, row.machineId));
    } catch (err) {
      if (!(err instanceof FailedPreconditionError)) throw err;
      return { row: await this.setStatus(trx, row, `enrollment: ${err.message}`) };
    }
    if (!result || !result.autoCommission || result.belowMinimum.length > 0) return { row };
    const claimed = await claimNames(trx, result.nameCandidates);
    const names = claimed === undefined ? undefined : result.nameCandidates[claimed];
    if (!names) throw new NameRaceError(`every candidate name of machine ${row.machineId} is being claimed`);
    const assignment = { ...result.assignment, ...names, assignedAt: new Date(), clusterGeneration: cluster.generation };
    const rule = result.assignment.sourceName;
    let commissioned: MachineRow;
    try {
      commissioned = await this.commission(trx, row, assignment, SYSTEM_ACTOR, `enrollment ${rule}`);
    } catch (err) {
      if (err instanceof ConflictError) throw new NameRaceError(err.message);
      throw err;
    }
    if (!result.autoInstall) return { row: commissioned };
    // Deployed in the same transaction: the row is ours and its assignment and cluster
    // generation are known, so this is the plan upsert and the DEPLOY statement.
    const locked = { row: commissioned, clusterGeneration: cluster.generation, assignment };
    return { row: await this.deployPlan(trx, commissioned, MachineTransition.MACHINE_TRANSITION_DEPLOY, SYSTEM_ACTOR, `enrollment ${rule} auto-installs`, PlanMode.PLAN_MODE_INSTALL, [], locked), deployed: true };
  }

  /** Runs `attempt` again when it lost a name race (each attempt is its own transaction). */
  private async retryNameRace<T>(attempt: () => Promise<T>): Promise<T> {
    for (let n = 1; ; n++) {
      try {
        return await attempt();
      } catch (err) {
        if (!(err instanceof NameRaceError) || n >= DISCOVER_ATTEMPTS) throw err;
        this.log.debug({ event: 'enrollment.name_race', attempt: n, reason: err.message });
      }
    }
  }

  private async setStatus(trx: Trx, row: MachineRow, message: string): Promise<MachineRow> {
    if (row.statusMessage === message) return row;
    return updateMachine(trx, row, { statusMessage: message }, new Date());
  }

  private async commission(trx: Trx, row: MachineRow, assignment: NodeAssignment, actor: Actor, reason: string): Promise<MachineRow> {
    planTransition(row.state, MachineTransition.MACHINE_TRANSITION_COMMISSION);
    try {
      // The assignment is inserted by the same statement as the state change and its audit event.
      return await this.transition(trx, row, MachineTransition.MACHINE_TRANSITION_COMMISSION, actor, reason, { newAssignment: assignment }, new Date(), assignment.nodeId);
    } catch (err) {
      if (isUniqueViolation(err)) throw new ConflictError(`node_id ${assignment.nodeId} or hostname ${assignment.hostname} is already assigned`);
      throw err;
    }
  }

  // ---- BootstrapService ------------------------------------------------------------------------

  async discover(input: { inventory?: MachineInventory | undefined; bootId: string; installerVersion: string }, actor: Actor): Promise<DiscoverResponse> {
    if (!input.inventory) throw new InvalidArgumentError({ field: 'inventory', description: 'required' });
    const violations = validateInventory(input.inventory);
    if (violations.length > 0) throw new InvalidArgumentError(violations);
    const inventory = normaliseInventory(input.inventory);
    const hash = inventoryHash(inventory);
    const macs = primaryMacSet(inventory);
    const uuid = inventory.identity?.systemUuid ? inventory.identity.systemUuid.toLowerCase() : undefined;
    const serial = inventory.identity?.serialNumber || undefined;
    const session = issueToken('session');
    const now = new Date();

    // A machine seen for the first time (the common case of a bootstrap) is created in one
    // statement; a known machine, or a race with another Discover of the same hardware, takes
    // the general path below.
    const found = await findByIdentity(this.db, uuid, macs);
    if (!found.row) {
      const created = await this.createMachine(
        { machineId: `m-${randomUUID()}`, systemUuid: uuid, serial, inventory, inventoryHash: hash, bootId: input.bootId, sessionSecretHash: session.hash, now },
        macs,
        found.clusterGeneration,
        actor,
        input.installerVersion,
      );
      if (created) return this.discoverResponse(created.row, session.token, created.deployed ? created.row.state === MachineState.MACHINE_STATE_INSTALL_PENDING : false);
    }

    const discovered = await this.retryNameRace(() => this.db.transaction().execute(async (trx) => {
      // Concurrent Discovers of one machine (a retrying installer, several NICs racing) wait for
      // each other on the identity's locks and make exactly one row; different machines do not
      // wait for each other. The lookup runs after the locks are held (its own statement, so it
      // sees a row committed by the Discover it waited for).
      await lockIdentity(trx, uuid, macs);
      const existing = await lockMachineByIdentity(trx, uuid, macs);
      if (!existing) {
        const machineId = `m-${randomUUID()}`;
        // Row, MACs and audit event in one statement, which also reads the cluster generation.
        const created = await insertMachine(
          trx,
          { machineId, systemUuid: uuid, serial, inventory, inventoryHash: hash, bootId: input.bootId, sessionSecretHash: session.hash, now },
          macs,
          { at: now, actor: actor.name, actorKind: actor.kind, rpc: actor.rpc, machineId, from: MachineState.MACHINE_STATE_UNSPECIFIED, to: MachineState.MACHINE_STATE_DISCOVERED, transition: MachineTransition.MACHINE_TRANSITION_DISCOVER, reason: `installer ${input.installerVersion || 'unknown'}`, outcome: AuditOutcome.AUDIT_OUTCOME_ALLOWED, ...(actor.peer ? { peer: actor.peer } : {}) },
        );
        this.log.info({ event: 'machine.discovered', machine_id: machineId });
        const inspected = await this.inspect(trx, created.row, { generation: created.clusterGeneration });
        return inspected.commission ? this.enroll(trx, inspected.row, inspected.cluster) : inspected;
      }
      const previousBoot = existing.bootId;
      const changed = existing.inventoryHash !== hash;
      let current = await updateMachine(
        trx,
        existing,
        {
          bootId: input.bootId,
          sessionSecretHash: session.hash,
          seen: true,
          ...(changed ? { inventory, inventoryHash: hash, systemUuid: uuid ?? null, serial: serial ?? null } : {}),
        },
        now,
        changed ? { at: now, actor: actor.name, actorKind: actor.kind, rpc: actor.rpc, machineId: existing.machineId, reason: 'inventory changed', outcome: AuditOutcome.AUDIT_OUTCOME_ALLOWED, ...(actor.peer ? { peer: actor.peer } : {}) } : undefined,
      );
      if (changed) await setMachineMacs(trx, existing.machineId, macs);
      const rebooted = input.bootId !== '' && previousBoot !== '' && input.bootId !== previousBoot;
      if (current.state === MachineState.MACHINE_STATE_REPROVISIONING && (rebooted || previousBoot === '')) {
        current = await this.deployPlan(trx, current, MachineTransition.MACHINE_TRANSITION_INSTALLER_BOOTED, actor, 'installer booted for reinstall');
      } else if (current.state === MachineState.MACHINE_STATE_INSTALLING && rebooted) {
        const reason = 'installer restarted during installation (new boot id)';
        current = await this.transition(trx, current, MachineTransition.MACHINE_TRANSITION_INSTALL_FAILED, SYSTEM_ACTOR, reason, { lastError: reason, installToken: null });
      } else {
        const inspected = await this.inspect(trx, current);
        return inspected.commission ? this.enroll(trx, inspected.row, inspected.cluster) : inspected;
      }
      return { row: current };
    }));
    const row = discovered.row;

    let planReady: boolean;
    if ('deployed' in discovered && discovered.deployed) {
      // This call just rendered and stored an unfetched install plan (or failed the machine).
      planReady = row.state === MachineState.MACHINE_STATE_INSTALL_PENDING;
    } else if (row.state === MachineState.MACHINE_STATE_INSTALL_PENDING || row.state === MachineState.MACHINE_STATE_RESCUE) {
      const plan = await getPlan(this.db, row.machineId);
      planReady =
        plan !== undefined &&
        plan.fetchedAt === null &&
        ((row.state === MachineState.MACHINE_STATE_INSTALL_PENDING && plan.plan.mode === PlanMode.PLAN_MODE_INSTALL) ||
          (row.state === MachineState.MACHINE_STATE_RESCUE && plan.plan.mode === PlanMode.PLAN_MODE_RESCUE));
    } else {
      planReady = false;
    }
    return this.discoverResponse(row, session.token, planReady);
  }

  private discoverResponse(row: Pick<MachineRow, 'machineId' | 'state' | 'statusMessage' | 'lastError'>, sessionSecret: string, planReady: boolean): DiscoverResponse {
    return {
      machineId: row.machineId,
      state: row.state,
      sessionSecret,
      planReady,
      retryAfter: planReady ? undefined : durationOf(this.settings.discoverRetryAfterMs),
      message: planReady ? 'plan ready' : row.statusMessage || row.lastError || `machine is ${stateName(row.state)}`,
    };
  }

  /**
   * A new machine's Discover in one statement: the same decisions as the general path (record,
   * inspect, enrol, deploy; see inspect and enroll) taken in memory, then the machine, its MACs,
   * assignment, plan and one audit event per step written together. Returns undefined, having
   * written nothing, when the general path must decide instead: another Discover of the same
   * hardware got in first, the plan needs an address from a pool (allocated under a lock), or
   * names kept colliding with other replicas' enrolments.
   */
  private async createMachine(
    machine: NewMachine,
    macs: readonly string[],
    clusterGeneration: bigint | undefined,
    actor: Actor,
    installerVersion: string,
  ): Promise<{ row: MachineHead; deployed: boolean } | undefined> {
    const cluster = await this.clusterState(this.db, { generation: clusterGeneration });
    const { machineId, now, inventory } = machine;
    const audit = (a: Omit<AuditEntry, 'at' | 'machineId' | 'outcome'>): Omit<AuditEntry, 'resourceVersion'> => ({ at: now, machineId, outcome: AuditOutcome.AUDIT_OUTCOME_ALLOWED, ...a });
    const system = { actor: SYSTEM_ACTOR.name, actorKind: SYSTEM_ACTOR.kind, rpc: SYSTEM_ACTOR.rpc };
    for (let attempt = 1; attempt <= NEW_MACHINE_ATTEMPTS; attempt++) {
      const audits = [
        audit({ actor: actor.name, actorKind: actor.kind, rpc: actor.rpc, from: MachineState.MACHINE_STATE_UNSPECIFIED, to: MachineState.MACHINE_STATE_DISCOVERED, transition: MachineTransition.MACHINE_TRANSITION_DISCOVER, reason: `installer ${installerVersion || 'unknown'}`, ...(actor.peer ? { peer: actor.peer } : {}) }),
      ];
      let state: MachineState = MachineState.MACHINE_STATE_DISCOVERED;
      const step = (transition: LifecycleTransition, reason: string, nodeId = '') => {
        const to = planTransition(state, transition).to;
        audits.push(audit({ ...system, nodeId, from: state, to, transition, reason }));
        state = to;
      };
      let statusMessage = '';
      let lastError = '';
      let assignment: NodeAssignment | undefined;
      let plan: InstallPlan | undefined;
      let reserved: NodeNames | undefined;
      let deployed = false;
      const inspected = this.inspectNew(inventory, cluster);
      if (inspected.inspect) step(MachineTransition.MACHINE_TRANSITION_INSPECT, 'facts validated');
      statusMessage = inspected.status;
      if (inspected.commission && cluster) {
        let result: ReturnType<typeof matchEnrollment>;
        try {
          result = matchEnrollment(inventory, cluster.state, await this.names.taken(this.db));
        } catch (err) {
          if (!(err instanceof FailedPreconditionError)) throw err;
          statusMessage = `enrollment: ${err.message}`;
          result = undefined;
        }
        if (result && result.autoCommission && result.belowMinimum.length === 0) {
          reserved = result.nameCandidates.find((names) => this.names.reserve(names));
          if (!reserved) return undefined;
          const rule = result.assignment.sourceName;
          assignment = { ...result.assignment, ...reserved, assignedAt: now, clusterGeneration: cluster.generation };
          step(MachineTransition.MACHINE_TRANSITION_COMMISSION, `enrollment ${rule}`, assignment.nodeId);
          if (result.autoInstall) {
            deployed = true;
            if (allocatesFromPool(cluster.state, assignment)) {
              this.names.settle(reserved, false);
              return undefined;
            }
            try {
              plan = renderInstallPlan({ machineId, inventory, assignment, cluster: cluster.state, generation: cluster.generation, mode: PlanMode.PLAN_MODE_INSTALL, allocated: new Map(), extraRescueKeys: [], now }).plan;
              step(MachineTransition.MACHINE_TRANSITION_DEPLOY, `enrollment ${rule} auto-installs`, assignment.nodeId);
            } catch (err) {
              if (!(err instanceof FailedPreconditionError)) throw err;
              step(MachineTransition.MACHINE_TRANSITION_PLAN_FAILED, err.message, assignment.nodeId);
              lastError = err.message;
              this.log.warn({ event: 'plan.failed', machine_id: machineId, reason: err.message });
            }
          }
        }
      }
      try {
        const row = await insertNewMachine(this.db, { machine, macs, final: { state, statusMessage, lastError }, audits, assignment, plan });
        if (reserved) this.names.settle(reserved, true);
        if (plan && assignment && cluster && row.state === MachineState.MACHINE_STATE_INSTALL_PENDING) {
          this.freshPlans.put({ machineId, sessionSecretHash: machine.sessionSecretHash, resourceVersion: row.resourceVersion, assignment, plan, clusterGeneration: cluster.generation });
        }
        this.log.info({ event: 'machine.discovered', machine_id: machineId, node_id: assignment?.nodeId, state: stateName(state), transitions: audits.map((a) => MachineTransition[a.transition ?? 0]) });
        return { row, deployed };
      } catch (err) {
        if (reserved) this.names.settle(reserved, false);
        const conflict = uniqueConflictOf(err);
        if (conflict === 'name') {
          // Another replica (or an operator) took the name meanwhile: read the names again.
          this.names.invalidate();
          this.log.debug({ event: 'enrollment.name_race', attempt, machine_id: machineId });
          continue;
        }
        if (conflict === 'identity') return undefined;
        throw err;
      }
    }
    return undefined;
  }

  /**
   * What inspect decides for a machine just discovered: whether its facts pass its class's
   * minimum (DISCOVERED -> INSPECTED), the status shown while it waits, and whether an
   * enrollment rule asks to commission it now.
   */
  private inspectNew(inventory: MachineInventory, cluster: AppliedClusterState | undefined): { inspect: boolean; status: string; commission: boolean } {
    let result: ReturnType<typeof matchEnrollment> | undefined;
    if (cluster) {
      try {
        result = matchEnrollment(inventory, cluster.state, NO_NAMES);
      } catch (err) {
        if (!(err instanceof FailedPreconditionError)) throw err;
        return { inspect: false, status: `enrollment: ${err.message}`, commission: false };
      }
    }
    if (result && result.belowMinimum.length > 0) {
      const unmet = result.belowMinimum.map((u) => u.message).join('; ');
      return { inspect: false, status: `below the minimum hardware of class ${result.assignment.nodeClass}: ${unmet}`, commission: false };
    }
    if (!result) return { inspect: true, status: cluster ? 'no enrollment rule matched; waiting for an operator to commission' : 'no cluster state applied yet', commission: false };
    if (!result.autoCommission) return { inspect: true, status: `matched ${result.assignment.sourceName}; waiting for an operator to commission`, commission: false };
    return { inspect: true, status: '', commission: true };
  }

  async fetchPlan(machineId: string, caller: InstallerCaller, actor: Actor): Promise<FetchPlanResponse> {
    const denied = 'the session secret was issued to another machine';
    if (!machineId) {
      await this.callerMachine(caller);
      throw new InvalidArgumentError({ field: 'machine_id', description: 'required' });
    }
    if (caller.machineId !== undefined && machineId !== caller.machineId) throw new PermissionDeniedError(denied);
    const now = new Date();
    const fast = await this.fetchInstallPlan(machineId, caller.claim?.tokenHash, actor, now);
    if (fast) return fast;
    if ((await this.callerMachine(caller)) !== machineId) throw new PermissionDeniedError(denied);
    return this.db.transaction().execute(async (trx) => {
      const locked = await lockMachineWith(trx, machineId, true);
      if (!locked) throw new NotFoundError(`machine ${machineId} not found`);
      const { row, assignment } = locked;
      const plan = await getPlan(trx, machineId);
      const rescue = row.state === MachineState.MACHINE_STATE_RESCUE;
      if (!plan || (!rescue && row.state !== MachineState.MACHINE_STATE_INSTALL_PENDING)) {
        throw new FailedPreconditionError(`no plan is ready: machine is ${stateName(row.state)}`);
      }
      if (plan.fetchedAt !== null) {
        throw new FailedPreconditionError('the plan was already fetched; an operator Reinstall or Retry issues a new one');
      }
      if (!assignment) throw new FailedPreconditionError('machine has no node assignment');
      const token = issueToken('install', { ttlMs: this.settings.installTokenTtlMs, now });
      const installToken = { hash: token.hash, expiresAt: token.expiresAt as Date };
      await markPlanFetched(trx, machineId, now);
      const caChainPem = this.ca.certificatePem;
      if (rescue) {
        await updateMachine(trx, row, { progress: true, installToken }, now, { at: now, actor: actor.name, actorKind: actor.kind, rpc: actor.rpc, machineId, nodeId: assignment.nodeId, reason: 'rescue plan fetched', outcome: AuditOutcome.AUDIT_OUTCOME_ALLOWED, ...(actor.peer ? { peer: actor.peer } : {}) });
        return {
          assignment,
          secrets: { nodeId: assignment.nodeId, sshHostEd25519PrivateKey: '', sshHostEd25519PublicKey: '', tlsCertificatePem: '', tlsPrivateKeyPem: '', caChainPem, installToken: token.token, installTokenExpiresAt: token.expiresAt, tlsCertificateExpiresAt: undefined, issuedAt: now },
          plan: plan.plan,
        };
      }
      const cluster = await this.clusterState(trx, { generation: locked.clusterGeneration });
      const creds = await issueNodeCredentials(this.ca, { nodeId: assignment.nodeId, hostname: assignment.hostname, domain: cluster?.state.cluster?.domain ?? '', now });
      await saveNodeCredentials(trx, machineId, this.credentialRecord(machineId, assignment.nodeId, creds, now));
      const started: InstallProgress = { phase: InstallPhase.INSTALL_PHASE_UNSPECIFIED, percent: 0, message: 'plan fetched', logTail: '', updatedAt: now, outcome: InstallOutcome.INSTALL_OUTCOME_IN_PROGRESS, failureReason: '', startedAt: now };
      await this.transition(trx, row, MachineTransition.MACHINE_TRANSITION_START_INSTALL, actor, 'plan fetched', { installProgress: started, progress: true, installToken }, now, assignment.nodeId);
      return {
        assignment,
        secrets: this.issuedSecrets(assignment.nodeId, creds, token, now),
        plan: plan.plan,
      };
    });
  }

  /** The node's credentials as stored: private keys sealed with the secrets key. */
  private credentialRecord(machineId: string, nodeId: string, creds: NodeCredentials, now: Date): NodeCredentialRecord {
    return {
      nodeId,
      sshPublicKey: creds.sshHostEd25519PublicKey,
      sshPrivateKeySealed: sealSecret(this.settings.secretsKey, creds.sshHostEd25519PrivateKey, `ssh:${machineId}`),
      tlsCertificatePem: creds.tlsCertificatePem,
      tlsPrivateKeySealed: sealSecret(this.settings.secretsKey, creds.tlsPrivateKeyPem, `tls:${machineId}`),
      tlsExpiresAt: creds.tlsCertificateExpiresAt,
      issuedAt: now,
    };
  }

  /** The BootstrapSecrets a FetchPlan of an install plan hands out. */
  private issuedSecrets(nodeId: string, creds: NodeCredentials, token: ReturnType<typeof issueToken>, now: Date): BootstrapSecrets {
    return {
      nodeId,
      sshHostEd25519PrivateKey: creds.sshHostEd25519PrivateKey,
      sshHostEd25519PublicKey: creds.sshHostEd25519PublicKey,
      tlsCertificatePem: creds.tlsCertificatePem,
      tlsPrivateKeyPem: creds.tlsPrivateKeyPem,
      caChainPem: creds.caChainPem,
      installToken: token.token,
      installTokenExpiresAt: token.expiresAt,
      tlsCertificateExpiresAt: creds.tlsCertificateExpiresAt,
      issuedAt: now,
    };
  }

  /**
   * FetchPlan of an install plan in one statement: read the machine, issue its credentials, then
   * write credentials, plan fetch, the INSTALLING transition and its audit event guarded by the
   * resource_version read. Undefined (nothing written) when the general path must answer: a
   * rescue plan, no plan to hand out (it says why), or the machine changed meanwhile.
   */
  private async fetchInstallPlan(machineId: string, sessionSecretHash: string | undefined, actor: Actor, now: Date): Promise<FetchPlanResponse | undefined> {
    const snap = await this.planSnapshot(machineId, sessionSecretHash);
    if (!snap) return undefined;
    const { row, assignment } = snap;
    const token = issueToken('install', { ttlMs: this.settings.installTokenTtlMs, now });
    const cluster = await this.clusterState(this.db, { generation: snap.clusterGeneration });
    const creds = await issueNodeCredentials(this.ca, { nodeId: assignment.nodeId, hostname: assignment.hostname, domain: cluster?.state.cluster?.domain ?? '', now });
    const transition = planTransition(row.state, MachineTransition.MACHINE_TRANSITION_START_INSTALL);
    const started: InstallProgress = { phase: InstallPhase.INSTALL_PHASE_UNSPECIFIED, percent: 0, message: 'plan fetched', logTail: '', updatedAt: now, outcome: InstallOutcome.INSTALL_OUTCOME_IN_PROGRESS, failureReason: '', startedAt: now };
    const written = await guardedWrite(this.db, {
      machineId,
      resourceVersion: row.resourceVersion,
      state: row.state,
      ...(sessionSecretHash !== undefined ? { sessionSecretHash } : {}),
      now,
      update: { state: transition.to, previousState: transition.previousState, statusMessage: '', installProgress: started, progress: true, installToken: { hash: token.hash, expiresAt: token.expiresAt as Date } },
      audits: [{ at: now, actor: actor.name, actorKind: actor.kind, rpc: actor.rpc, machineId, nodeId: assignment.nodeId, from: row.state, to: transition.to, transition: transition.transition, reason: 'plan fetched', outcome: AuditOutcome.AUDIT_OUTCOME_ALLOWED, ...(actor.peer ? { peer: actor.peer } : {}) }],
      planFetched: true,
      credentials: this.credentialRecord(machineId, assignment.nodeId, creds, now),
    });
    if (!written) return undefined;
    this.log.info({ event: 'machine.transition', machine_id: machineId, node_id: assignment.nodeId, from: stateName(row.state), to: stateName(transition.to), transition: MachineTransition[transition.transition], actor: actor.name, reason: 'plan fetched' });
    return {
      assignment,
      secrets: this.issuedSecrets(assignment.nodeId, creds, token, now),
      plan: snap.plan,
    };
  }

  /**
   * What FetchPlan's one-statement path needs of a machine whose install plan is ready to hand
   * out: what this replica's Discover just wrote (no read), else the machine as stored (with a
   * claim: only if it holds that session secret). Undefined when no such plan is ready.
   */
  private async planSnapshot(machineId: string, sessionSecretHash: string | undefined): Promise<{ row: Pick<MachineRow, 'state' | 'resourceVersion'>; assignment: NodeAssignment; plan: InstallPlan; clusterGeneration: bigint | undefined } | undefined> {
    const fresh = sessionSecretHash !== undefined ? this.freshPlans.take(machineId, sessionSecretHash) : undefined;
    if (fresh) return { row: { state: MachineState.MACHINE_STATE_INSTALL_PENDING, resourceVersion: fresh.resourceVersion }, assignment: fresh.assignment, plan: fresh.plan, clusterGeneration: fresh.clusterGeneration };
    const snap = await readMachineSnapshot(this.db, machineId, sessionSecretHash);
    if (!snap || snap.row.state !== MachineState.MACHINE_STATE_INSTALL_PENDING || !snap.plan || snap.plan.fetchedAt !== null || !snap.assignment) return undefined;
    return { row: snap.row, assignment: snap.assignment, plan: snap.plan.plan, clusterGeneration: snap.clusterGeneration };
  }

  /** The machine the caller's credential was issued to (looked up now for a claim; throws when it is not valid). */
  private async callerMachine(caller: InstallerCaller): Promise<string> {
    return caller.machineId ?? caller.claim.verify();
  }

  async reportProgress(req: ReportInstallProgressRequest, caller: InstallerCaller, actor: Actor): Promise<ReportInstallProgressResponse> {
    const violations: FieldViolation[] = [];
    if (!req.machineId) violations.push({ field: 'machine_id', description: 'required' });
    if (req.percent > 100) violations.push({ field: 'percent', description: `must be 0-100, got ${req.percent}` });
    if (req.outcome === InstallOutcome.INSTALL_OUTCOME_UNSPECIFIED) violations.push({ field: 'outcome', description: 'required' });
    if (req.phase === InstallPhase.INSTALL_PHASE_UNSPECIFIED && req.outcome === InstallOutcome.INSTALL_OUTCOME_IN_PROGRESS) {
      violations.push({ field: 'phase', description: 'required while the install is in progress' });
    }
    if (violations.length > 0) {
      await this.callerMachine(caller);
      throw new InvalidArgumentError(violations);
    }
    const denied = 'the install token was issued to another machine';
    if (caller.machineId !== undefined && req.machineId !== caller.machineId) throw new PermissionDeniedError(denied);
    const tokenHash = caller.claim?.tokenHash;
    const now = new Date();
    const again = durationOf(this.settings.progressIntervalMs);
    if (req.outcome === InstallOutcome.INSTALL_OUTCOME_IN_PROGRESS) {
      // The common case, an install still in progress: one statement, no transaction. The
      // stored startedAt is kept by the statement; this value only fills it when absent.
      const progress: InstallProgress = { phase: req.phase, percent: req.percent, message: req.message, logTail: tail(req.logTail), updatedAt: now, outcome: req.outcome, failureReason: '', startedAt: now };
      if (await recordInstallingProgress(this.db, req.machineId, progress, now, tokenHash)) {
        return { state: MachineState.MACHINE_STATE_INSTALLING, nextAction: InstallerAction.INSTALLER_ACTION_CONTINUE, retryAfter: again };
      }
    } else if (req.outcome === InstallOutcome.INSTALL_OUTCOME_SUCCEEDED || req.outcome === InstallOutcome.INSTALL_OUTCOME_FAILED) {
      // The end of an install: one statement guarded by the INSTALLING state (see finishInstall).
      const finished = await this.finishInstall(req, tokenHash, actor, now);
      if (finished) return finished;
    }
    if ((await this.callerMachine(caller)) !== req.machineId) throw new PermissionDeniedError(denied);
    let ended: { ending: 'succeeded' | 'failed'; seconds: number } | undefined;
    const answer = await this.db.transaction().execute(async (trx): Promise<ReportInstallProgressResponse> => {
      const locked = await lockMachineWith(trx, req.machineId, true);
      if (!locked) throw new NotFoundError(`machine ${req.machineId} not found`);
      const { row } = locked;
      const nodeId = locked.assignment?.nodeId ?? '';
      const progress: InstallProgress = {
        phase: req.phase,
        percent: req.percent,
        message: req.message,
        logTail: tail(req.logTail),
        updatedAt: now,
        outcome: req.outcome,
        failureReason: req.outcome === InstallOutcome.INSTALL_OUTCOME_FAILED ? req.message : '',
        startedAt: row.installProgress?.startedAt ?? now,
      };
      if (row.state === MachineState.MACHINE_STATE_RESCUE) {
        await updateMachine(trx, row, { installProgress: progress, progress: true, statusMessage: req.message }, now);
        return { state: row.state, nextAction: InstallerAction.INSTALLER_ACTION_CONTINUE, retryAfter: again };
      }
      if (req.outcome === InstallOutcome.INSTALL_OUTCOME_RESCUE_READY) {
        // A rescue heartbeat from a machine no longer in RESCUE: Reinstall and Delete revoke the
        // token, so an operator called ExitRescue, and the installer reboots into the system
        // (never records rescue progress on, or keeps alive, an install it returned to).
        return { state: row.state, nextAction: InstallerAction.INSTALLER_ACTION_REBOOT, retryAfter: undefined };
      }
      if (row.state !== MachineState.MACHINE_STATE_INSTALLING) {
        return { state: row.state, nextAction: InstallerAction.INSTALLER_ACTION_REDISCOVER, retryAfter: durationOf(this.settings.discoverRetryAfterMs) };
      }
      switch (req.outcome) {
        case InstallOutcome.INSTALL_OUTCOME_SUCCEEDED: {
          const done = await this.transition(trx, row, MachineTransition.MACHINE_TRANSITION_INSTALL_SUCCEEDED, actor, req.message || 'install succeeded', { installProgress: progress, progress: true, installToken: null }, now, nodeId);
          ended = { ending: 'succeeded', seconds: secondsSince(progress.startedAt, now) };
          return { state: done.state, nextAction: InstallerAction.INSTALLER_ACTION_REBOOT, retryAfter: undefined };
        }
        case InstallOutcome.INSTALL_OUTCOME_FAILED: {
          const reason = req.message || 'installer reported failure';
          const failed = await this.transition(trx, row, MachineTransition.MACHINE_TRANSITION_INSTALL_FAILED, actor, reason, { installProgress: progress, progress: true, lastError: reason, installToken: null }, now, nodeId);
          ended = { ending: 'failed', seconds: secondsSince(progress.startedAt, now) };
          return { state: failed.state, nextAction: InstallerAction.INSTALLER_ACTION_REDISCOVER, retryAfter: durationOf(this.settings.discoverRetryAfterMs) };
        }
        default:
          await updateMachine(trx, row, { installProgress: progress, progress: true }, now);
          return { state: row.state, nextAction: InstallerAction.INSTALLER_ACTION_CONTINUE, retryAfter: again };
      }
    });
    if (ended) this.observer.installFinished(ended.ending, ended.seconds);
    return answer;
  }

  /**
   * The final report of an install while the machine is INSTALLING, as one statement: the
   * INSTALLED or FAILED transition, the progress (keeping its startedAt), the install token
   * revoked and the audit event. Undefined (nothing written) when the machine is not INSTALLING:
   * the general path answers.
   */
  private async finishInstall(req: ReportInstallProgressRequest, installTokenHash: string | undefined, actor: Actor, now: Date): Promise<ReportInstallProgressResponse | undefined> {
    const succeeded = req.outcome === InstallOutcome.INSTALL_OUTCOME_SUCCEEDED;
    const from = MachineState.MACHINE_STATE_INSTALLING;
    const transition = planTransition(from, succeeded ? MachineTransition.MACHINE_TRANSITION_INSTALL_SUCCEEDED : MachineTransition.MACHINE_TRANSITION_INSTALL_FAILED);
    const reason = succeeded ? req.message || 'install succeeded' : req.message || 'installer reported failure';
    const progress: InstallProgress = { phase: req.phase, percent: req.percent, message: req.message, logTail: tail(req.logTail), updatedAt: now, outcome: req.outcome, failureReason: succeeded ? '' : req.message, startedAt: now };
    const row = await guardedWrite(this.db, {
      machineId: req.machineId,
      state: from,
      ...(installTokenHash !== undefined ? { installTokenHash } : {}),
      now,
      keepStartedAt: true,
      update: { state: transition.to, previousState: transition.previousState, statusMessage: '', installProgress: progress, progress: true, installToken: null, ...(succeeded ? {} : { lastError: reason }) },
      audits: [{ at: now, actor: actor.name, actorKind: actor.kind, rpc: actor.rpc, machineId: req.machineId, nodeId: '', from, to: transition.to, transition: transition.transition, reason, outcome: AuditOutcome.AUDIT_OUTCOME_ALLOWED, ...(actor.peer ? { peer: actor.peer } : {}) }],
    });
    if (!row) return undefined;
    this.log.info({ event: 'machine.transition', machine_id: req.machineId, from: stateName(from), to: stateName(transition.to), transition: MachineTransition[transition.transition], actor: actor.name, reason });
    this.observer.installFinished(succeeded ? 'succeeded' : 'failed', secondsSince(row.installProgress?.startedAt ?? now, now));
    return succeeded
      ? { state: row.state, nextAction: InstallerAction.INSTALLER_ACTION_REBOOT, retryAfter: undefined }
      : { state: row.state, nextAction: InstallerAction.INSTALLER_ACTION_REDISCOVER, retryAfter: durationOf(this.settings.discoverRetryAfterMs) };
  }

  /** Fails installs that stopped reporting. Safe to run on every replica at once. */
  async expireStalledInstalls(now = new Date()): Promise<number> {
    const cutoff = new Date(now.getTime() - this.settings.installTimeoutMs);
    const stale = await this.db
      .selectFrom('machines')
      .select('machine_id')
      .where('state', '=', stateName(MachineState.MACHINE_STATE_INSTALLING))
      .where((eb) => eb(eb.fn.coalesce('progress_at', 'state_changed_at'), '<', cutoff))
      .execute();
    let expired = 0;
    for (const { machine_id } of stale) {
      await this.db.transaction().execute(async (trx) => {
        const row = await lockMachine(trx, machine_id);
        const last = row?.progressAt ?? row?.stateChangedAt;
        if (!row || row.state !== MachineState.MACHINE_STATE_INSTALLING || !last || last >= cutoff) return;
        const reason = `no install progress reported for ${secondsText(this.settings.installTimeoutMs)}`;
        await this.transition(trx, row, MachineTransition.MACHINE_TRANSITION_INSTALL_TIMED_OUT, SYSTEM_ACTOR, reason, { lastError: reason, installToken: null }, now);
        expired++;
        return secondsSince(row.installProgress?.startedAt ?? row.stateChangedAt, now);
      }).then((seconds) => {
        if (seconds !== undefined) this.observer.installFinished('timed_out', seconds);
      });
    }
    return expired;
  }

  // ---- ClusterService --------------------------------------------------------------------------

  async applyClusterState(input: { state?: ClusterState | undefined; dryRun: boolean; expectedGeneration: bigint }, actor: Actor, reason = ''): Promise<ApplyClusterStateResponse> {
    if (!input.state) throw new InvalidArgumentError({ field: 'state', description: 'required' });
    const state = input.state;
    const violations = validateClusterState(state).map((v) => ({ field: `state.${v.field}`, description: v.description }));
    if (violations.length > 0) throw new InvalidArgumentError(violations);
    const hash = clusterStateHash(state);
    return this.db.transaction().execute(async (trx) => {
      await advisoryLock(trx, LOCK_CLUSTER_STATE);
      const current = await getClusterState(trx, { forUpdate: true });
      const generation = current?.generation ?? 0n;
      if (input.expectedGeneration !== 0n && input.expectedGeneration !== generation) {
        throw new ConflictError(`expected_generation ${input.expectedGeneration} is stale: the applied generation is ${generation}`);
      }
      if (current?.hash === hash) return { generation, applied: false, changes: [] };
      const changes = diffClusterState(current?.state, state);
      const blocked = blockedRemovals(changes, await namesInUse(trx));
      if (blocked.length > 0) throw new FailedPreconditionError(blocked.join('\n'));
      if (input.dryRun) return { generation, applied: false, changes };
      const now = new Date();
      const applied: AppliedClusterState = { state, generation: generation + 1n, hash, appliedAt: now, appliedBy: actor.name };
      await saveClusterState(trx, applied);
      await appendAudit(trx, { at: now, actor: actor.name, actorKind: actor.kind, rpc: actor.rpc, reason: reason || `cluster state generation ${applied.generation} (${changes.length} changes)`, outcome: AuditOutcome.AUDIT_OUTCOME_ALLOWED, resourceVersion: applied.generation, ...(actor.peer ? { peer: actor.peer } : {}) });
      this.log.info({ event: 'cluster_state.applied', generation: String(applied.generation), changes: changes.length, actor: actor.name });
      return { generation: applied.generation, applied: true, changes };
    });
  }

  async getClusterState(): Promise<GetClusterStateResponse> {
    const current = await getClusterState(this.db);
    if (!current) throw new NotFoundError('no cluster state has been applied yet');
    return { state: current.state, generation: current.generation, appliedAt: current.appliedAt, appliedBy: current.appliedBy };
  }

  // ---- operator transitions --------------------------------------------------------------------

  /** One operator transition with optimistic concurrency (expected_resource_version). */
  async operatorTransition(
    request: { machineId: string; reason: string; expectedResourceVersion: bigint },
    transition: LifecycleTransition,
    actor: Actor,
    options: { commission?: Partial<NodeAssignment>; rescueKeys?: readonly string[] } = {},
  ): Promise<Machine | undefined> {
    const violations: FieldViolation[] = [];
    if (!request.machineId) violations.push({ field: 'machine_id', description: 'required' });
    if (!request.reason.trim()) violations.push({ field: 'reason', description: 'required: say why, it goes to the audit log' });
    if (violations.length > 0) throw new InvalidArgumentError(violations);
    return this.db.transaction().execute(async (trx) => {
      let row = await lockMachine(trx, request.machineId);
      if (!row) throw new NotFoundError(`machine ${request.machineId} not found`);
      if (request.expectedResourceVersion !== 0n && request.expectedResourceVersion !== row.resourceVersion) {
        throw new ConflictError(`expected_resource_version ${request.expectedResourceVersion} is stale: machine ${row.machineId} is at ${row.resourceVersion}`);
      }
      const plan = planTransition(row.state, transition, { previousState: row.previousState });
      switch (transition) {
        case MachineTransition.MACHINE_TRANSITION_COMMISSION:
          row = await this.commissionByOperator(trx, row, options.commission ?? {}, actor, request.reason);
          break;
        case MachineTransition.MACHINE_TRANSITION_DEPLOY:
        case MachineTransition.MACHINE_TRANSITION_RETRY:
          row = await this.deployPlan(trx, row, transition, actor, request.reason);
          break;
        case MachineTransition.MACHINE_TRANSITION_RESCUE:
          await this.deployPlanForRescue(trx, row, options.rescueKeys ?? []);
          row = await this.transition(trx, row, transition, actor, request.reason);
          break;
        case MachineTransition.MACHINE_TRANSITION_DELETE: {
          const assignment = await getAssignment(trx, row.machineId);
          await appendAudit(trx, { at: new Date(), actor: actor.name, actorKind: actor.kind, rpc: actor.rpc, machineId: row.machineId, nodeId: assignment?.nodeId ?? '', from: row.state, to: MachineState.MACHINE_STATE_UNSPECIFIED, transition, reason: request.reason, outcome: AuditOutcome.AUDIT_OUTCOME_ALLOWED, ...(actor.peer ? { peer: actor.peer } : {}) });
          const last = await machineMessage(trx, row);
          await deleteMachine(trx, row.machineId);
          return last;
        }
        default: {
          const extra: MachineUpdate = transition === MachineTransition.MACHINE_TRANSITION_MARK_FAILED ? { lastError: request.reason } : {};
          row = await this.transition(trx, row, transition, actor, request.reason, extra);
        }
      }
      if (plan.assignment === 'drop') await deleteAssignment(trx, row.machineId);
      if (plan.secrets !== 'keep') {
        await setInstallToken(trx, row.machineId, null);
        if (plan.secrets === 'revoke') {
          await deleteNodeCredentials(trx, row.machineId);
          await deletePlan(trx, row.machineId);
        }
      }
      return machineMessage(trx, (await lockMachine(trx, row.machineId)) as MachineRow);
    });
  }

  private async commissionByOperator(trx: Trx, row: MachineRow, overrides: Partial<NodeAssignment>, actor: Actor, reason: string): Promise<MachineRow> {
    const cluster = await getClusterState(trx);
    if (!cluster) throw new FailedPreconditionError('no cluster state has been applied; nothing to commission into');
    const matched = matchEnrollment(row.inventory, cluster.state, await takenNames(trx, row.machineId));
    const nodeClass = overrides.nodeClass || matched?.assignment.nodeClass;
    if (!nodeClass) throw new FailedPreconditionError('no enrollment rule matches this machine: give node_class, pool, node_id and hostname');
    const classDef = cluster.state.nodeClasses[nodeClass];
    if (!classDef) throw new InvalidArgumentError({ field: 'node_class', description: `unknown node class "${nodeClass}"` });
    const unmet = checkMinimumHardware(row.inventory, classDef.minimumHardware);
    if (unmet.length > 0) throw new FailedPreconditionError(`machine is below the minimum hardware of class ${nodeClass}: ${unmet.map((u) => u.message).join('; ')}`);
    const pool = overrides.pool || matched?.assignment.pool || '';
    if (pool && !cluster.state.pools[pool]) throw new InvalidArgumentError({ field: 'pool', description: `unknown pool "${pool}"` });
    let nodeId = overrides.nodeId || matched?.assignment.nodeId;
    let hostname = overrides.hostname || matched?.assignment.hostname || nodeId;
    if (!nodeId || !hostname) throw new InvalidArgumentError({ field: 'node_id', description: 'required when no enrollment rule names the node' });
    if (matched && !overrides.nodeId && !overrides.hostname) {
      // The rule's names: claim a free candidate as an auto-commission does.
      const claimed = await claimNames(trx, matched.nameCandidates);
      const names = claimed === undefined ? undefined : matched.nameCandidates[claimed];
      if (!names) throw new ConflictError(`the names enrollment rule ${matched.assignment.sourceName} offers are being claimed; try again`);
      ({ nodeId, hostname } = names);
    } else {
      // Names given by the operator: wait for a concurrent claim of them to end; the unique
      // indexes then decide (ConflictError when taken).
      await lockNames(trx, { nodeId, hostname });
    }
    const installProfile = overrides.installProfile || matched?.assignment.installProfile || classDef.installProfile;
    if (!cluster.state.installProfiles[installProfile]) throw new InvalidArgumentError({ field: 'install_profile', description: `unknown install profile "${installProfile}"` });
    const overridden = Boolean(overrides.nodeClass || overrides.pool || overrides.nodeId || overrides.hostname);
    const assignment: NodeAssignment = {
      nodeId,
      hostname,
      nodeClass,
      pool,
      // As enrollment merges them: class defaults, then the pool's, then the matched rule's (when
      // the operator kept its class and pool), then the operator's.
      labels: {
        ...classDef.defaultLabels,
        ...(pool ? cluster.state.pools[pool]?.labels : {}),
        ...(matched && matched.assignment.nodeClass === nodeClass && matched.assignment.pool === pool ? matched.assignment.labels : {}),
        ...(overrides.labels ?? {}),
      },
      failureDomain: overrides.failureDomain || matched?.assignment.failureDomain || '',
      installProfile,
      source: overridden || !matched ? AssignmentSource.ASSIGNMENT_SOURCE_OPERATOR : matched.assignment.source,
      sourceName: overridden || !matched ? actor.name : matched.assignment.sourceName,
      assignedAt: new Date(),
      clusterGeneration: cluster.generation,
    };
    return this.commission(trx, row, assignment, actor, reason);
  }

  private async deployPlanForRescue(trx: Trx, row: MachineRow, keys: readonly string[]): Promise<void> {
    const cluster = await getClusterState(trx);
    const assignment = await getAssignment(trx, row.machineId);
    if (!cluster || !assignment) {
      // Unassigned machines still boot the rescue environment; they get a minimal plan.
      throw new FailedPreconditionError('rescue needs a node assignment and an applied cluster state');
    }
    const rendered = renderInstallPlan({ machineId: row.machineId, inventory: row.inventory, assignment, cluster: cluster.state, generation: cluster.generation, mode: PlanMode.PLAN_MODE_RESCUE, allocated: await allocatedAddresses(trx, row.machineId), extraRescueKeys: keys, now: new Date() });
    await savePlan(trx, row.machineId, rendered.plan, new Date());
  }
}

function isUniqueViolation(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: string }).code === '23505';
}

/** Whether rendering this node's plan takes an address from its network's pool. */
function allocatesFromPool(cluster: ClusterState, assignment: NodeAssignment): boolean {
  if ((cluster.nodes[assignment.nodeId]?.staticAddresses.length ?? 0) > 0) return false;
  const profile = cluster.installProfiles[assignment.installProfile];
  const network = profile ? cluster.networks[profile.network] : undefined;
  return network?.addressMode === AddressMode.ADDRESS_MODE_STATIC;
}
