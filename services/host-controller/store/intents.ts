// Activation intents: how the leader commits a decision of thousands of activations before it
// sends them, without first writing a node entry, a desired system and an event per node. The
// tick's transaction stores, per deployment revision, one row naming the nodes and what differs
// between them; everything else about such an activation is fixed (a fresh start at the
// decision's instant, the desired system the revision's template plus the node's own fields).
// Once committed the decision is made: the leader sends it, then writes the node entries,
// desired systems and events it stands for in one fenced statement that also deletes the intent.
// Every tick first writes whatever intents are still there (a leader that died between the two
// leaves them for its successor), so planning always sees the nodes as ACTIVATING and a node is
// never handed a desired system twice.
import { ActivationFailureReason, type DesiredSystem, NodeRolloutPhase as P } from '../../../gen/ts/ultracloud/system/v1/system.js';
import type { NodeRollout } from '../domain/node-rollout.js';
import { sameTemplate } from '../domain/desired-system.js';
import { ACTIVATION_MESSAGE } from '../domain/rollout-planner.js';
import { sql } from 'kysely';
import { desiredTemplateJson } from './documents.js';
import { desiredSystemsFrom, nodeRolloutsFrom } from './rollouts.js';
import type { HostsDb, JsonDocument } from './tables.js';

/** One activation as the tick decided it: the node's new entry, its desired system and the phase it left. */
export interface DecidedActivation {
  readonly deployment: string;
  readonly row: NodeRollout;
  readonly desired: DesiredSystem;
  readonly fromPhase: string;
}

/** [node_id, hostname, failure_domain, attempts, generation, cordoned, system_path | null (the shared one), flake_attr, from_phase] */
type IntentNode = [string, string, string, number, string, boolean, string | null, string, string];

export interface ActivationIntent {
  readonly deployment: string;
  readonly revision: bigint;
  readonly decidedAt: Date;
  readonly replica: string;
  readonly systemPath: string;
  readonly flakeRef: string;
  readonly template: JsonDocument;
  readonly nodes: IntentNode[];
}

/** Whether writing the intent reproduces this node entry exactly: a fresh start at `at`, nothing else carried over. */
function freshStart(r: NodeRollout, d: DesiredSystem, at: number): boolean {
  return (
    r.phase === P.NODE_ROLLOUT_PHASE_ACTIVATING &&
    r.revision === d.revision &&
    r.nodeId === d.nodeId &&
    r.systemPath === d.systemPath &&
    r.message === ACTIVATION_MESSAGE &&
    r.failureReason === ActivationFailureReason.ACTIVATION_FAILURE_REASON_UNSPECIFIED &&
    !r.budgetCounted &&
    !r.rebootRequested &&
    r.rebootGrantedAt === undefined &&
    r.finishedAt === undefined &&
    r.startedAt?.getTime() === at &&
    r.phaseChangedAt.getTime() === at &&
    d.createdAt?.getTime() === at
  );
}

interface IntentGroup {
  readonly first: DesiredSystem;
  readonly intent: ActivationIntent;
}

/**
 * Gathers a tick's activations into intents, one per deployment revision, as the tick decides
 * them; `add` refuses those to be written with the tick as before: any whose entry is not a fresh
 * start at `now` or whose desired system does not share its group's template.
 */
export class IntentBuilder {
  private readonly groups = new Map<string, IntentGroup>();
  private last: IntentGroup | undefined;
  private readonly at: number;
  /** The nodes taken, in the order added. */
  readonly nodeIds: string[] = [];

  constructor(
    private readonly now: Date,
    private readonly replica: string,
  ) {
    this.at = now.getTime();
  }

  /** True when the activation is now part of an intent (and is not to be written by the tick). */
  add(a: DecidedActivation): boolean {
    const d = a.desired;
    if (a.deployment !== d.deployment || !freshStart(a.row, d, this.at)) return false;
    // A decision's activations come deployment by deployment: most find the group of the last.
    let g = this.last;
    if (!g || g.first.deployment !== d.deployment || g.first.revision !== d.revision) {
      const key = `${d.deployment}\u0000${d.revision}`;
      g = this.groups.get(key);
      if (!g) {
        g = { first: d, intent: { deployment: d.deployment, revision: d.revision, decidedAt: this.now, replica: this.replica, systemPath: d.systemPath, flakeRef: d.flakeRef, template: desiredTemplateJson(d), nodes: [] } };
        this.groups.set(key, g);
      }
      this.last = g;
    }
    if (g.first !== d && !sameTemplate(g.first, d)) return false;
    const r = a.row;
    g.intent.nodes.push([r.nodeId, r.hostname, r.failureDomain, r.attempts, r.generation.toString(), r.cordoned, d.systemPath === g.intent.systemPath ? null : d.systemPath, d.flakeAttr, a.fromPhase]);
    this.nodeIds.push(r.nodeId);
    return true;
  }

  get intents(): ActivationIntent[] {
    return [...this.groups.values()].map((g) => g.intent);
  }
}

/** Splits activations into intents and those written with the tick, as IntentBuilder decides. */
export function activationIntents(activations: readonly DecidedActivation[], now: Date, replica: string): { intents: ActivationIntent[]; rest: DecidedActivation[] } {
  const builder = new IntentBuilder(now, replica);
  const rest = activations.filter((a) => !builder.add(a));
  return { intents: builder.intents, rest };
}

export async function saveIntents(db: HostsDb, intents: readonly ActivationIntent[]): Promise<void> {
  if (intents.length === 0) return;
  await db
    .insertInto('activation_intents')
    .values(
      intents.map((i) => ({
        deployment: i.deployment,
        revision: i.revision,
        decided_at: i.decidedAt,
        replica: i.replica,
        system_path: i.systemPath,
        flake_ref: i.flakeRef,
        template: JSON.stringify(i.template),
        nodes: JSON.stringify(i.nodes),
      })),
    )
    .execute();
}

/**
 * Writes every stored intent as the node entries, desired systems (replacing any outstanding
 * reboot grant, as a new desired system does) and `decision.activate` events it stands for, and
 * deletes it, in one statement fenced by the leader's epoch (as a transaction would be: nothing is
 * written unless it still leads). The nodes written, or 'deposed'.
 */
export async function writeIntents(db: HostsDb, epoch: bigint, now: Date): Promise<string[] | 'deposed'> {
  const r = await sql<{ fenced: boolean; node_ids: string[] | null }>`WITH
    fence AS (UPDATE ${sql.table('controller_leader')} SET renewed_at = ${now} WHERE id = 1 AND epoch = ${epoch} RETURNING 1),
    taken AS (DELETE FROM ${sql.table('activation_intents')} WHERE (SELECT count(*) FROM fence) = 1 RETURNING *),
    nodes AS (
      SELECT t.id, n.ordinality, t.deployment, t.revision, t.decided_at, t.replica, t.template, t.flake_ref,
        n.value->>0 AS node_id, n.value->>1 AS hostname, n.value->>2 AS failure_domain, (n.value->>3)::int4 AS attempts,
        (n.value->>4)::int8 AS generation, (n.value->>5)::boolean AS cordoned, coalesce(n.value->>6, t.system_path) AS system_path,
        n.value->>7 AS flake_attr, n.value->>8 AS from_phase
      FROM taken AS t, json_array_elements(t.nodes) WITH ORDINALITY AS n(value, ordinality)),
    entries AS (${nodeRolloutsFrom(sql`
      SELECT deployment, node_id, revision, 'ACTIVATING', hostname, failure_domain, system_path, generation, '', ${ACTIVATION_MESSAGE}::text,
        attempts, false, cordoned, false, NULL::timestamptz, decided_at, NULL::timestamptz, decided_at FROM nodes`)}),
    desired AS (${desiredSystemsFrom(sql`nodes`)}),
    events AS (
      INSERT INTO ${sql.table('rollout_events')} (at, deployment, revision, node_id, kind, from_phase, to_phase, message, replica)
      SELECT decided_at, deployment, revision, node_id, 'decision.activate', from_phase, 'ACTIVATING',
        CASE WHEN system_path <> '' THEN system_path ELSE flake_ref || '#' || flake_attr END, replica
      FROM nodes ORDER BY id, ordinality)
    SELECT (SELECT count(*) FROM fence) = 1 AS fenced, (SELECT array_agg(node_id ORDER BY id, ordinality) FROM nodes) AS node_ids`.execute(db);
  const row = r.rows[0];
  if (!row?.fenced) return 'deposed';
  return row.node_ids ?? [];
}
