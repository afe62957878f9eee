// The host-controller's schema `hosts`, forward-only. Never edit a released migration: add a new one.
import { sql } from 'kysely';
import type { NamedServiceMigration } from '../../../lib/db/index.js';

export const HOSTS_SCHEMA = 'hosts';

export const hostsMigrations: readonly NamedServiceMigration[] = [
  {
    name: '0001_host_rollout',
    async up(db) {
      // One sequence for resource versions of every deployment.
      await sql`CREATE SEQUENCE resource_version_seq`.execute(db);

      // Each HostDeployment as applied (proto3 JSON, output-only fields dropped) and what the
      // leader last computed about its rollout; pauses and aborts are laid over that when read.
      await db.schema
        .createTable('host_deployments')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('spec', 'jsonb', (c) => c.notNull())
        .addColumn('revision', 'bigint', (c) => c.notNull())
        .addColumn('resource_version', 'bigint', (c) => c.notNull())
        .addColumn('operator_paused', 'boolean', (c) => c.notNull().defaultTo(false))
        .addColumn('operator_pause_reason', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('budget_paused', 'boolean', (c) => c.notNull().defaultTo(false))
        .addColumn('aborted_revision', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('abort_reason', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('rollout_phase', 'text', (c) => c.notNull())
        .addColumn('status_message', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('selected_nodes', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('max_unavailable_nodes', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('started_at', 'timestamptz')
        .addColumn('finished_at', 'timestamptz')
        .addColumn('status_updated_at', 'timestamptz', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull())
        .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
        .execute();

      // One node's place in one deployment's rollout. Written by the leader only (and by
      // ResumeHostDeployment, which forgives counted failures), under the deployment's row lock.
      await db.schema
        .createTable('node_rollouts')
        .addColumn('deployment', 'text', (c) => c.notNull().references('host_deployments.name').onDelete('cascade'))
        .addColumn('node_id', 'text', (c) => c.notNull())
        .addColumn('revision', 'bigint', (c) => c.notNull())
        .addColumn('phase', 'text', (c) => c.notNull())
        .addColumn('hostname', 'text', (c) => c.notNull())
        .addColumn('failure_domain', 'text', (c) => c.notNull())
        .addColumn('system_path', 'text', (c) => c.notNull())
        .addColumn('generation', 'bigint', (c) => c.notNull())
        .addColumn('failure_reason', 'text', (c) => c.notNull())
        .addColumn('message', 'text', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull())
        .addColumn('budget_counted', 'boolean', (c) => c.notNull())
        .addColumn('cordoned', 'boolean', (c) => c.notNull())
        .addColumn('reboot_requested', 'boolean', (c) => c.notNull())
        .addColumn('reboot_granted_at', 'timestamptz')
        .addColumn('started_at', 'timestamptz')
        .addColumn('finished_at', 'timestamptz')
        .addColumn('phase_changed_at', 'timestamptz', (c) => c.notNull())
        .addPrimaryKeyConstraint('node_rollouts_pkey', ['deployment', 'node_id'])
        .execute();
      await db.schema.createIndex('node_rollouts_node').on('node_rollouts').column('node_id').execute();

      // What each node is to run: written by the leader in the same transaction that moves the
      // node to ACTIVATING (so a decision is recorded before any replica sends it), read by the
      // replica holding the node's stream, which delivers it.
      await db.schema
        .createTable('desired_systems')
        .addColumn('node_id', 'text', (c) => c.primaryKey())
        .addColumn('deployment', 'text', (c) => c.notNull())
        .addColumn('revision', 'bigint', (c) => c.notNull())
        .addColumn('desired', 'jsonb', (c) => c.notNull())
        .addColumn('reboot_grant_deadline', 'timestamptz')
        .addColumn('decided_at', 'timestamptz', (c) => c.notNull())
        .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('desired_systems_deployment').on('desired_systems').column('deployment').execute();

      // Every nix-agent seen: what its host runs, its stream and which replica holds it.
      await db.schema
        .createTable('agents')
        .addColumn('node_id', 'text', (c) => c.primaryKey())
        .addColumn('hostname', 'text', (c) => c.notNull())
        .addColumn('boot_id', 'text', (c) => c.notNull())
        .addColumn('current_system_path', 'text', (c) => c.notNull())
        .addColumn('booted_system_path', 'text', (c) => c.notNull())
        .addColumn('profile_system_path', 'text', (c) => c.notNull())
        .addColumn('profile_generation', 'bigint', (c) => c.notNull())
        .addColumn('agent_version', 'text', (c) => c.notNull())
        .addColumn('system_state', 'text', (c) => c.notNull())
        .addColumn('journal', 'jsonb')
        .addColumn('last_report', 'jsonb')
        .addColumn('healthy_boot_id', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('peer_address', 'text', (c) => c.notNull())
        .addColumn('connected', 'boolean', (c) => c.notNull())
        .addColumn('stream_id', 'text', (c) => c.notNull())
        .addColumn('stream_replica', 'text', (c) => c.notNull())
        .addColumn('first_seen_at', 'timestamptz', (c) => c.notNull())
        .addColumn('connected_at', 'timestamptz', (c) => c.notNull())
        .addColumn('disconnected_at', 'timestamptz')
        .addColumn('last_seen_at', 'timestamptz', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('agents_stream_replica').on('agents').column('stream_replica').execute();

      // Agent messages the leader has yet to act on, persisted by whichever replica received
      // them before they are acknowledged. Removed once the leader has applied them.
      await db.schema
        .createTable('agent_inbox')
        .addColumn('id', 'bigserial', (c) => c.primaryKey())
        .addColumn('received_at', 'timestamptz', (c) => c.notNull())
        .addColumn('node_id', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('payload', 'jsonb', (c) => c.notNull())
        .execute();

      // The append-only rollout event log: every node phase change and every controller
      // decision, in the order they were committed for each deployment.
      await db.schema
        .createTable('rollout_events')
        .addColumn('id', 'bigserial', (c) => c.primaryKey())
        .addColumn('at', 'timestamptz', (c) => c.notNull())
        .addColumn('deployment', 'text', (c) => c.notNull())
        .addColumn('revision', 'bigint', (c) => c.notNull())
        .addColumn('node_id', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('from_phase', 'text', (c) => c.notNull())
        .addColumn('to_phase', 'text', (c) => c.notNull())
        .addColumn('message', 'text', (c) => c.notNull())
        .addColumn('replica', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('rollout_events_deployment').on('rollout_events').columns(['deployment', 'id']).execute();
      await db.schema.createIndex('rollout_events_node').on('rollout_events').columns(['node_id', 'id']).execute();

      // Operator calls (apply, pause, resume, abort, delete), never updated or deleted.
      await db.schema
        .createTable('audit_events')
        .addColumn('id', 'bigserial', (c) => c.primaryKey())
        .addColumn('at', 'timestamptz', (c) => c.notNull())
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('actor_kind', 'text', (c) => c.notNull())
        .addColumn('rpc', 'text', (c) => c.notNull())
        .addColumn('deployment', 'text', (c) => c.notNull())
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('outcome', 'text', (c) => c.notNull())
        .addColumn('revision', 'bigint')
        .addColumn('resource_version', 'bigint')
        .addColumn('peer', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('audit_events_deployment').on('audit_events').columns(['deployment', 'id']).execute();

      // The leader's fencing token: each new leader increments epoch; a leader's transaction
      // first checks that the epoch is still its own, so a replica that lost the lock cannot
      // write after its successor started.
      await db.schema
        .createTable('controller_leader')
        .addColumn('id', 'integer', (c) => c.primaryKey())
        .addColumn('epoch', 'bigint', (c) => c.notNull())
        .addColumn('replica', 'text', (c) => c.notNull())
        .addColumn('acquired_at', 'timestamptz')
        .addColumn('renewed_at', 'timestamptz')
        .execute();
      await sql`INSERT INTO controller_leader (id, epoch, replica) VALUES (1, 0, '')`.execute(db);
    },
  },
  {
    name: '0002_reboot_grant_boot',
    async up(db) {
      // A reboot grant is for the boot it was given to: once the node has rebooted it is spent.
      await db.schema.alterTable('desired_systems').addColumn('reboot_grant_boot_id', 'text', (c) => c.notNull().defaultTo('')).execute();
    },
  },
  {
    name: '0003_activation_intents',
    async up(db) {
      // Activations the leader committed and may already have sent, whose node entries, desired
      // systems and events are still to be written (see store/intents.ts). One row per deployment
      // and batch of a large decision; deleted in the statement that writes what it stands for.
      await db.schema
        .createTable('activation_intents')
        .addColumn('id', 'bigserial', (c) => c.primaryKey())
        .addColumn('deployment', 'text', (c) => c.notNull().references('host_deployments.name').onDelete('cascade'))
        .addColumn('revision', 'bigint', (c) => c.notNull())
        .addColumn('decided_at', 'timestamptz', (c) => c.notNull())
        .addColumn('replica', 'text', (c) => c.notNull())
        .addColumn('system_path', 'text', (c) => c.notNull())
        .addColumn('flake_ref', 'text', (c) => c.notNull())
        .addColumn('template', 'jsonb', (c) => c.notNull())
        .addColumn('nodes', 'json', (c) => c.notNull())
        .execute();
      // Written once and read once: kept as it is, not compressed.
      await sql`ALTER TABLE activation_intents ALTER COLUMN nodes SET STORAGE EXTERNAL`.execute(db);
    },
  },
];
