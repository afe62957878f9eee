// Typed view of the host-controller's tables (schema `hosts`), as kysely sees them.
import type { ColumnType, Generated, Kysely, Transaction } from 'kysely';

export type { Selectable } from 'kysely';

/** jsonb documents: the proto3 JSON of a message. */
export type JsonDocument = Record<string, unknown>;
type Json = ColumnType<JsonDocument, string | JsonDocument, string | JsonDocument>;
type NullableJson = ColumnType<JsonDocument | null, string | JsonDocument | null, string | JsonDocument | null>;

export interface HostDeploymentsTable {
  name: string;
  spec: Json;
  revision: bigint;
  resource_version: bigint;
  operator_paused: Generated<boolean>;
  operator_pause_reason: Generated<string>;
  budget_paused: Generated<boolean>;
  aborted_revision: Generated<bigint>;
  abort_reason: Generated<string>;
  /** HostDeploymentPhase name without prefix: PENDING, PROGRESSING, COMPLETED, FAILED. */
  rollout_phase: string;
  status_message: Generated<string>;
  selected_nodes: Generated<number>;
  max_unavailable_nodes: Generated<number>;
  started_at: Date | null;
  finished_at: Date | null;
  status_updated_at: Date;
  created_at: Date;
  updated_at: Date;
}

export interface NodeRolloutsTable {
  deployment: string;
  node_id: string;
  revision: bigint;
  /** NodeRolloutPhase name without prefix (ACTIVATING). */
  phase: string;
  hostname: string;
  failure_domain: string;
  system_path: string;
  generation: bigint;
  /** ActivationFailureReason name, '' for none. */
  failure_reason: string;
  message: string;
  attempts: number;
  budget_counted: boolean;
  cordoned: boolean;
  reboot_requested: boolean;
  reboot_granted_at: Date | null;
  started_at: Date | null;
  finished_at: Date | null;
  phase_changed_at: Date;
}

export interface DesiredSystemsTable {
  node_id: string;
  deployment: string;
  revision: bigint;
  desired: Json;
  reboot_grant_deadline: Date | null;
  /** Boot id of the node when the grant was given; the grant is spent once it differs. */
  reboot_grant_boot_id: Generated<string>;
  decided_at: Date;
  updated_at: Date;
}

export interface AgentsTable {
  node_id: string;
  hostname: string;
  boot_id: string;
  current_system_path: string;
  booted_system_path: string;
  profile_system_path: string;
  profile_generation: bigint;
  agent_version: string;
  system_state: string;
  journal: NullableJson;
  last_report: NullableJson;
  /** Boot id of the hello or heartbeat that first reported the host healthy on that boot. */
  healthy_boot_id: Generated<string>;
  peer_address: string;
  connected: boolean;
  stream_id: string;
  stream_replica: string;
  first_seen_at: Date;
  connected_at: Date;
  disconnected_at: Date | null;
  last_seen_at: Date;
}

export interface AgentInboxTable {
  id: Generated<bigint>;
  received_at: Date;
  node_id: string;
  /** `activation_report` or `reboot_request`. */
  kind: string;
  payload: Json;
}

export interface RolloutEventsTable {
  id: Generated<bigint>;
  at: Date;
  deployment: string;
  revision: bigint;
  node_id: string;
  kind: string;
  from_phase: string;
  to_phase: string;
  message: string;
  replica: string;
}

export interface AuditEventsTable {
  id: Generated<bigint>;
  at: Date;
  actor: string;
  actor_kind: string;
  rpc: string;
  deployment: string;
  action: string;
  reason: string;
  outcome: string;
  revision: bigint | null;
  resource_version: bigint | null;
  peer: string;
}

export interface ControllerLeaderTable {
  id: number;
  epoch: bigint;
  replica: string;
  acquired_at: Date | null;
  renewed_at: Date | null;
}

export interface ActivationIntentsTable {
  id: Generated<bigint>;
  deployment: string;
  revision: bigint;
  decided_at: Date;
  replica: string;
  /** The store path shared by the intent's nodes ('' when each has its own, or for a flake). */
  system_path: string;
  flake_ref: string;
  /** The DesiredSystem's proto3 JSON without the node's id and target. */
  template: Json;
  /** Per node: [node_id, hostname, failure_domain, attempts, generation, cordoned, system_path | null, flake_attr, from_phase]. */
  nodes: ColumnType<unknown, string, string>;
}

export interface HostsDatabase {
  host_deployments: HostDeploymentsTable;
  node_rollouts: NodeRolloutsTable;
  desired_systems: DesiredSystemsTable;
  agents: AgentsTable;
  agent_inbox: AgentInboxTable;
  rollout_events: RolloutEventsTable;
  audit_events: AuditEventsTable;
  controller_leader: ControllerLeaderTable;
  activation_intents: ActivationIntentsTable;
}

export type HostsDb = Kysely<HostsDatabase> | Transaction<HostsDatabase>;
