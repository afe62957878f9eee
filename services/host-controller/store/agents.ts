// The nix-agents the controller knows (table agents) and the inbox of their messages that the
// leader has yet to act on (table agent_inbox).
import { sql } from 'kysely';
import { ActivationPhase, type ActivationReport, type HostAgentHello } from '../../../gen/ts/ultracloud/host/v1/host_agent_service.js';
import { activationJournalJson, activationReportJson } from './documents.js';
import type { AgentsTable, HostsDb, JsonDocument, Selectable } from './tables.js';

export interface StreamIdentity {
  readonly streamId: string;
  readonly replica: string;
  readonly peer: string;
}

/** The hello of a new stream; the stream becomes the node's only one. */
export async function recordHello(db: HostsDb, hello: HostAgentHello, stream: StreamIdentity, healthy: boolean, now: Date): Promise<void> {
  const journal = hello.journal ? JSON.stringify(activationJournalJson.toJson(hello.journal)) : null;
  const values = {
    node_id: hello.nodeId,
    hostname: hello.hostname,
    boot_id: hello.bootId,
    current_system_path: hello.currentSystemPath,
    booted_system_path: hello.bootedSystemPath,
    profile_system_path: hello.profileSystemPath,
    profile_generation: hello.profileGeneration,
    agent_version: hello.agentVersion,
    system_state: hello.systemState,
    journal,
    peer_address: stream.peer,
    connected: true,
    stream_id: stream.streamId,
    stream_replica: stream.replica,
    connected_at: now,
    disconnected_at: null,
    last_seen_at: now,
  };
  await db
    .insertInto('agents')
    .values({ ...values, first_seen_at: now, last_report: null, healthy_boot_id: healthy ? hello.bootId : '' })
    .onConflict((oc) =>
      oc.column('node_id').doUpdateSet({
        ...values,
        ...(healthy ? { healthy_boot_id: hello.bootId } : {}),
      }),
    )
    .execute();
}

/** The host reported itself running (or degraded) with no unconfirmed activation on this boot. */
export async function markHealthy(db: HostsDb, nodeId: string, streamId: string, bootId: string): Promise<void> {
  await db.updateTable('agents').set({ healthy_boot_id: bootId }).where('node_id', '=', nodeId).where('stream_id', '=', streamId).execute();
}

/** The stream ended; a newer stream of the node (on any replica) is left alone. */
export async function recordDisconnect(db: HostsDb, nodeId: string, streamId: string, now: Date): Promise<void> {
  await db.updateTable('agents').set({ connected: false, disconnected_at: now }).where('node_id', '=', nodeId).where('stream_id', '=', streamId).execute();
}

/** At start and stop: streams this replica held before are gone. */
export async function disconnectReplica(db: HostsDb, replica: string, now: Date): Promise<void> {
  await db.updateTable('agents').set({ connected: false, disconnected_at: now }).where('stream_replica', '=', replica).where('connected', '=', true).execute();
}

export interface Heartbeat {
  readonly nodeId: string;
  readonly streamId: string;
  readonly at: Date;
  readonly systemState: string;
}

/** Liveness of many streams in one statement. */
export async function touchAgents(db: HostsDb, beats: readonly Heartbeat[]): Promise<void> {
  if (beats.length === 0) return;
  await sql`
    UPDATE ${sql.table('agents')} AS a
    SET last_seen_at = u.at, system_state = CASE WHEN u.state = '' THEN a.system_state ELSE u.state END
    FROM unnest(${beats.map((b) => b.nodeId)}::text[], ${beats.map((b) => b.streamId)}::text[], ${beats.map((b) => b.at.toISOString())}::timestamptz[], ${beats.map((b) => b.systemState)}::text[])
      AS u(node_id, stream_id, at, state)
    WHERE a.node_id = u.node_id AND a.stream_id = u.stream_id AND a.last_seen_at < u.at`.execute(db);
}

/** The agent's latest activation report; a confirmed one also says what the host runs now. */
export async function recordReport(db: HostsDb, nodeId: string, streamId: string, report: ActivationReport, now: Date): Promise<void> {
  const confirmed = report.phase === ActivationPhase.ACTIVATION_PHASE_CONFIRMED && report.systemPath !== '';
  await db
    .updateTable('agents')
    .set({
      last_report: JSON.stringify(activationReportJson.toJson(report)),
      last_seen_at: now,
      ...(confirmed ? { current_system_path: report.systemPath } : {}),
      ...(report.generation > 0n ? { profile_generation: report.generation } : {}),
    })
    .where('node_id', '=', nodeId)
    .where('stream_id', '=', streamId)
    .execute();
}

export async function streamOwner(db: HostsDb, nodeId: string): Promise<string | undefined> {
  const r = await db.selectFrom('agents').select('stream_id').where('node_id', '=', nodeId).executeTakeFirst();
  return r?.stream_id;
}

export interface AgentRecord {
  readonly nodeId: string;
  readonly hostname: string;
  readonly bootId: string;
  readonly currentSystemPath: string;
  readonly bootedSystemPath: string;
  readonly profileGeneration: bigint;
  readonly agentVersion: string;
  readonly systemState: string;
  readonly healthyBootId: string;
  readonly peerAddress: string;
  /** A stream is open per the replica that holds it (see `live` for staleness). */
  readonly connected: boolean;
  readonly streamReplica: string;
  readonly connectedAt: Date;
  readonly lastSeenAt: Date;
  readonly lastReport: ActivationReport | undefined;
}

function agentFromRow(r: Selectable<AgentsTable>): AgentRecord {
  return {
    nodeId: r.node_id,
    hostname: r.hostname,
    bootId: r.boot_id,
    currentSystemPath: r.current_system_path,
    bootedSystemPath: r.booted_system_path,
    profileGeneration: r.profile_generation,
    agentVersion: r.agent_version,
    systemState: r.system_state,
    healthyBootId: r.healthy_boot_id,
    peerAddress: r.peer_address,
    connected: r.connected,
    streamReplica: r.stream_replica,
    connectedAt: r.connected_at,
    lastSeenAt: r.last_seen_at,
    lastReport: r.last_report ? activationReportJson.fromJson(r.last_report) : undefined,
  };
}

/** Connected and heard from within the stale window. */
export function isLive(a: Pick<AgentRecord, 'connected' | 'lastSeenAt'>, staleBefore: Date): boolean {
  return a.connected && a.lastSeenAt.getTime() >= staleBefore.getTime();
}

/**
 * What the leader plans with, per agent: whether it is live (`connected`: connected and heard
 * from since `staleBefore`, as isLive says), whether it reported the host healthy on its current
 * boot, its boot and what the host runs. The database compares the times: a fleet's worth of
 * timestamps decoded on every tick would cost the leader more than the rest of the read.
 */
export interface AgentLivenessRecord {
  readonly nodeId: string;
  readonly bootId: string;
  readonly currentSystemPath: string;
  readonly connected: boolean;
  readonly healthyThisBoot: boolean;
}

/** Every agent's liveness by node id. */
export async function agentsLiveness(db: HostsDb, staleBefore: Date): Promise<Map<string, AgentLivenessRecord>> {
  const rows = await db
    .selectFrom('agents')
    .select((eb) => [
      'node_id',
      'boot_id',
      'current_system_path',
      eb.and([eb('connected', '=', true), eb('last_seen_at', '>=', staleBefore)]).as('live'),
      eb.and([eb('healthy_boot_id', '<>', ''), eb('healthy_boot_id', '=', eb.ref('boot_id'))]).as('healthy'),
    ])
    .execute();
  const out = new Map<string, AgentLivenessRecord>();
  for (const r of rows) out.set(r.node_id, { nodeId: r.node_id, bootId: r.boot_id, currentSystemPath: r.current_system_path, connected: r.live === true, healthyThisBoot: r.healthy === true });
  return out;
}

export interface AgentQuery {
  readonly afterNodeId?: string;
  readonly nodeIds: readonly string[];
  readonly staleOnly: boolean;
  readonly staleBefore: Date;
  readonly limit: number;
}

export async function listAgents(db: HostsDb, q: AgentQuery): Promise<AgentRecord[]> {
  let query = db.selectFrom('agents').selectAll().orderBy('node_id').limit(q.limit);
  if (q.afterNodeId !== undefined) query = query.where('node_id', '>', q.afterNodeId);
  if (q.nodeIds.length > 0) query = query.where('node_id', 'in', [...q.nodeIds]);
  if (q.staleOnly) query = query.where((eb) => eb.or([eb('connected', '=', false), eb('last_seen_at', '<', q.staleBefore)]));
  return (await query.execute()).map(agentFromRow);
}

// ---- the inbox --------------------------------------------------------------------------------

export type InboxKind = 'activation_report' | 'reboot_request';

export interface InboxEntry {
  readonly id: bigint;
  readonly nodeId: string;
  readonly kind: InboxKind;
  readonly payload: JsonDocument;
}

export async function enqueue(db: HostsDb, nodeId: string, kind: InboxKind, payload: JsonDocument, now: Date): Promise<void> {
  await db.insertInto('agent_inbox').values({ received_at: now, node_id: nodeId, kind, payload: JSON.stringify(payload) }).execute();
}

/** The oldest entries, locked so that a second leader's transaction would wait rather than repeat them. */
export async function takeInbox(db: HostsDb, limit: number): Promise<InboxEntry[]> {
  const rows = await db.selectFrom('agent_inbox').selectAll().orderBy('id').limit(limit).forUpdate().execute();
  return rows.map((r) => ({ id: r.id, nodeId: r.node_id, kind: r.kind as InboxKind, payload: r.payload }));
}

export async function deleteInbox(db: HostsDb, ids: readonly bigint[]): Promise<void> {
  if (ids.length === 0) return;
  await db.deleteFrom('agent_inbox').where('id', 'in', [...ids]).execute();
}
