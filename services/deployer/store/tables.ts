// Typed view of the deployer's tables (schema `deployer`), as kysely sees them.
import type { ColumnType, Generated } from 'kysely';

/** Documents stored as jsonb: the proto3 JSON form of the message (its generated toJSON). */
export type JsonDocument = Record<string, unknown>;
type Json = ColumnType<JsonDocument, string | JsonDocument, string | JsonDocument>;

export interface MachinesTable {
  machine_id: string;
  system_uuid: string | null;
  serial: string | null;
  /** State name as in docs/lifecycle.md (`install-pending`). */
  state: string;
  previous_state: string | null;
  resource_version: bigint;
  inventory: Json;
  inventory_hash: string;
  boot_id: string;
  status_message: string;
  last_error: string;
  install_progress: ColumnType<JsonDocument | null, string | JsonDocument | null, string | JsonDocument | null>;
  session_secret_hash: string | null;
  install_token_hash: string | null;
  install_token_expires_at: Date | null;
  created_at: Date;
  updated_at: Date;
  state_changed_at: Date;
  last_seen_at: Date;
  progress_at: Date | null;
}

export interface MachineMacsTable {
  mac: string;
  machine_id: string;
}

export interface AssignmentsTable {
  machine_id: string;
  node_id: string;
  hostname: string;
  node_class: string;
  pool: string;
  labels: ColumnType<Record<string, string>, string, string>;
  failure_domain: string;
  install_profile: string;
  source: string;
  source_name: string;
  assigned_at: Date;
  cluster_generation: bigint;
}

export interface InstallPlansTable {
  machine_id: string;
  plan: Json;
  created_at: Date;
  fetched_at: Date | null;
  cluster_generation: bigint;
}

export interface NodeCredentialsTable {
  machine_id: string;
  node_id: string;
  ssh_public_key: string;
  ssh_private_key_sealed: string;
  tls_certificate_pem: string;
  tls_private_key_sealed: string;
  tls_expires_at: Date;
  issued_at: Date;
}

export interface AddressAllocationsTable {
  network: string;
  address: string;
  machine_id: string;
}

export interface ClusterStateTable {
  id: number;
  generation: bigint;
  document: Json;
  hash: string;
  applied_at: Date;
  applied_by: string;
}

export interface CertificateAuthorityTable {
  id: number;
  certificate_pem: string;
  private_key_sealed: string;
  created_at: Date;
}

export interface AuditEventsTable {
  id: Generated<bigint>;
  at: Date;
  actor: string;
  actor_kind: string;
  rpc: string;
  machine_id: string;
  node_id: string;
  from_state: string;
  to_state: string;
  transition: string;
  reason: string;
  outcome: string;
  resource_version: bigint | null;
  peer: string;
}

export interface OperatorTokensTable {
  token_id: string;
  name: string;
  /** `viewer`, `operator` or `admin`. */
  role: string;
  /** SHA-256 of the secret, hex. */
  token_hash: string;
  description: string;
  created_by: string;
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
}

/** A deleted machine's last version, kept for watchers (written by a trigger on machines). */
export interface MachineDeletionsTable {
  /** The deletion's own resource_version, from the cluster-wide sequence. */
  resource_version: bigint;
  machine_id: string;
  deleted_at: Date;
  /** The machines row as `to_jsonb`, without its secret hashes. */
  machine: ColumnType<JsonDocument, never, never>;
  /** The assignments row as `to_jsonb`, if it had one. */
  assignment: ColumnType<JsonDocument | null, never, never>;
  /** The install_plans row as `to_jsonb`, if it had one. */
  plan: ColumnType<JsonDocument | null, never, never>;
}

/** Deletions up to `pruned_through` are no longer kept: watches from before it are refused. */
export interface MachineWatchHorizonTable {
  id: number;
  pruned_through: bigint;
}

export interface DeployerDatabase {
  machines: MachinesTable;
  machine_macs: MachineMacsTable;
  assignments: AssignmentsTable;
  install_plans: InstallPlansTable;
  node_credentials: NodeCredentialsTable;
  address_allocations: AddressAllocationsTable;
  cluster_state: ClusterStateTable;
  certificate_authority: CertificateAuthorityTable;
  audit_events: AuditEventsTable;
  machine_deletions: MachineDeletionsTable;
  machine_watch_horizon: MachineWatchHorizonTable;
  operator_tokens: OperatorTokensTable;
}
