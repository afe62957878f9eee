// The deployer's schema, forward-only. Never edit a released migration: add a new one.
import { sql } from 'kysely';
import type { NamedServiceMigration } from '../../../lib/db/index.js';

export const DEPLOYER_SCHEMA = 'deployer';

export const deployerMigrations: readonly NamedServiceMigration[] = [
  {
    name: '0001_initial',
    async up(db) {
      // One cluster-wide sequence for resource versions: a watcher resumes from a single number.
      await sql`CREATE SEQUENCE resource_version_seq`.execute(db);

      await db.schema
        .createTable('machines')
        .addColumn('machine_id', 'text', (c) => c.primaryKey())
        .addColumn('system_uuid', 'text')
        .addColumn('serial', 'text')
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('previous_state', 'text')
        .addColumn('resource_version', 'bigint', (c) => c.notNull())
        .addColumn('inventory', 'jsonb', (c) => c.notNull())
        .addColumn('inventory_hash', 'text', (c) => c.notNull())
        .addColumn('boot_id', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('status_message', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('last_error', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('install_progress', 'jsonb')
        .addColumn('session_secret_hash', 'text')
        .addColumn('install_token_hash', 'text')
        .addColumn('install_token_expires_at', 'timestamptz')
        .addColumn('created_at', 'timestamptz', (c) => c.notNull())
        .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
        .addColumn('state_changed_at', 'timestamptz', (c) => c.notNull())
        .addColumn('last_seen_at', 'timestamptz', (c) => c.notNull())
        .addColumn('progress_at', 'timestamptz')
        .execute();
      // Identity: the same DMI system UUID is the same machine.
      await sql`CREATE UNIQUE INDEX machines_system_uuid ON machines (system_uuid) WHERE system_uuid IS NOT NULL`.execute(db);
      await sql`CREATE UNIQUE INDEX machines_session_secret_hash ON machines (session_secret_hash) WHERE session_secret_hash IS NOT NULL`.execute(db);
      await sql`CREATE UNIQUE INDEX machines_install_token_hash ON machines (install_token_hash) WHERE install_token_hash IS NOT NULL`.execute(db);
      await db.schema.createIndex('machines_state').on('machines').columns(['state', 'state_changed_at']).execute();
      await db.schema.createIndex('machines_resource_version').on('machines').column('resource_version').execute();

      // Identity: any shared permanent MAC is the same machine; a MAC belongs to one machine.
      await db.schema
        .createTable('machine_macs')
        .addColumn('mac', 'text', (c) => c.primaryKey())
        .addColumn('machine_id', 'text', (c) => c.notNull().references('machines.machine_id').onDelete('cascade'))
        .execute();
      await db.schema.createIndex('machine_macs_machine').on('machine_macs').column('machine_id').execute();

      // The unique constraints are what guarantee one node_id and one hostname per cluster.
      await db.schema
        .createTable('assignments')
        .addColumn('machine_id', 'text', (c) => c.primaryKey().references('machines.machine_id').onDelete('cascade'))
        .addColumn('node_id', 'text', (c) => c.notNull().unique())
        .addColumn('hostname', 'text', (c) => c.notNull().unique())
        .addColumn('node_class', 'text', (c) => c.notNull())
        .addColumn('pool', 'text', (c) => c.notNull())
        .addColumn('labels', 'jsonb', (c) => c.notNull())
        .addColumn('failure_domain', 'text', (c) => c.notNull())
        .addColumn('install_profile', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('source_name', 'text', (c) => c.notNull())
        .addColumn('assigned_at', 'timestamptz', (c) => c.notNull())
        .addColumn('cluster_generation', 'bigint', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('install_plans')
        .addColumn('machine_id', 'text', (c) => c.primaryKey().references('machines.machine_id').onDelete('cascade'))
        .addColumn('plan', 'jsonb', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull())
        .addColumn('fetched_at', 'timestamptz')
        .addColumn('cluster_generation', 'bigint', (c) => c.notNull())
        .execute();

      // Private keys are sealed (AES-256-GCM, key from config). Tokens live on the machine row, hashed.
      await db.schema
        .createTable('node_credentials')
        .addColumn('machine_id', 'text', (c) => c.primaryKey().references('machines.machine_id').onDelete('cascade'))
        .addColumn('node_id', 'text', (c) => c.notNull())
        .addColumn('ssh_public_key', 'text', (c) => c.notNull())
        .addColumn('ssh_private_key_sealed', 'text', (c) => c.notNull())
        .addColumn('tls_certificate_pem', 'text', (c) => c.notNull())
        .addColumn('tls_private_key_sealed', 'text', (c) => c.notNull())
        .addColumn('tls_expires_at', 'timestamptz', (c) => c.notNull())
        .addColumn('issued_at', 'timestamptz', (c) => c.notNull())
        .execute();

      // Static addresses handed out from a network's pool; the key makes a double grant impossible.
      await db.schema
        .createTable('address_allocations')
        .addColumn('network', 'text', (c) => c.notNull())
        .addColumn('address', 'text', (c) => c.notNull())
        .addColumn('machine_id', 'text', (c) => c.notNull().references('machines.machine_id').onDelete('cascade'))
        .addPrimaryKeyConstraint('address_allocations_pkey', ['network', 'address'])
        .execute();

      await db.schema
        .createTable('cluster_state')
        .addColumn('id', 'integer', (c) => c.primaryKey().check(sql`id = 1`))
        .addColumn('generation', 'bigint', (c) => c.notNull())
        .addColumn('document', 'jsonb', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull())
        .addColumn('applied_at', 'timestamptz', (c) => c.notNull())
        .addColumn('applied_by', 'text', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('certificate_authority')
        .addColumn('id', 'integer', (c) => c.primaryKey().check(sql`id = 1`))
        .addColumn('certificate_pem', 'text', (c) => c.notNull())
        .addColumn('private_key_sealed', 'text', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull())
        .execute();

      // Append-only: rows are never updated or deleted (machine deletion keeps its history).
      await db.schema
        .createTable('audit_events')
        .addColumn('id', 'bigserial', (c) => c.primaryKey())
        .addColumn('at', 'timestamptz', (c) => c.notNull())
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('actor_kind', 'text', (c) => c.notNull())
        .addColumn('rpc', 'text', (c) => c.notNull())
        .addColumn('machine_id', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('node_id', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('from_state', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('to_state', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('transition', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('reason', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('outcome', 'text', (c) => c.notNull())
        .addColumn('resource_version', 'bigint')
        .addColumn('peer', 'text', (c) => c.notNull().defaultTo(''))
        .execute();
      await db.schema.createIndex('audit_events_machine').on('audit_events').columns(['machine_id', 'id']).execute();
    },
  },
  {
    name: '0003_operator_tokens',
    async up(db) {
      // Operator bearer tokens issued through AccessService. Only the SHA-256 of the secret is
      // kept; a token is looked up by that hash on every call, so a revocation applies at once
      // on every replica.
      await db.schema
        .createTable('operator_tokens')
        .addColumn('token_id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('token_hash', 'text', (c) => c.notNull().unique())
        .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull())
        .addColumn('expires_at', 'timestamptz')
        .addColumn('revoked_at', 'timestamptz')
        .addColumn('last_used_at', 'timestamptz')
        .execute();
      // Names identify tokens to people and in the audit log: one valid token per name.
      await sql`CREATE UNIQUE INDEX operator_tokens_live_name ON operator_tokens (name) WHERE revoked_at IS NULL`.execute(db);
    },
  },
  {
    name: '0004_machine_watch',
    async up(db) {
      // WatchMachines reads changes from the tables themselves. Two triggers give it what the
      // rows alone do not say, whichever code path writes a machine: the resource_version a
      // machine was created with (a watcher resuming from an older version is told ADDED), and
      // a deleted machine's last version, with a resource_version of its own (watchers get
      // DELETED after the row is gone).
      await sql`ALTER TABLE machines ADD COLUMN created_resource_version bigint`.execute(db);
      // Machines discovered before this migration: their first audit event carries it.
      await sql`UPDATE machines m SET created_resource_version = (SELECT min(a.resource_version) FROM audit_events a WHERE a.machine_id = m.machine_id)`.execute(db);
      await sql`
        CREATE FUNCTION machines_record_creation() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
        BEGIN
          NEW.created_resource_version := NEW.resource_version;
          RETURN NEW;
        END $$`.execute(db);
      await sql`CREATE TRIGGER machines_record_creation BEFORE INSERT ON machines FOR EACH ROW EXECUTE FUNCTION machines_record_creation()`.execute(db);

      // The machine row (without its secret hashes), its assignment and plan as they were when it
      // was deleted. Rows older than the retention are pruned; machine_watch_horizon says up to
      // which resource_version, so a watch resuming from before it is refused (OUT_OF_RANGE).
      await db.schema
        .createTable('machine_deletions')
        .addColumn('resource_version', 'bigint', (c) => c.primaryKey())
        .addColumn('machine_id', 'text', (c) => c.notNull())
        .addColumn('deleted_at', 'timestamptz', (c) => c.notNull())
        .addColumn('machine', 'jsonb', (c) => c.notNull())
        .addColumn('assignment', 'jsonb')
        .addColumn('plan', 'jsonb')
        .execute();
      await db.schema.createIndex('machine_deletions_deleted_at').on('machine_deletions').column('deleted_at').execute();
      await sql`
        CREATE FUNCTION machines_record_deletion() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
        BEGIN
          INSERT INTO machine_deletions (resource_version, machine_id, deleted_at, machine, assignment, plan)
          VALUES (
            nextval('resource_version_seq'),
            OLD.machine_id,
            now(),
            to_jsonb(OLD) - 'session_secret_hash' - 'install_token_hash' - 'install_token_expires_at',
            (SELECT to_jsonb(a) FROM assignments a WHERE a.machine_id = OLD.machine_id),
            (SELECT to_jsonb(p) FROM install_plans p WHERE p.machine_id = OLD.machine_id)
          );
          RETURN OLD;
        END $$`.execute(db);
      // BEFORE: the assignment and plan rows, removed by the cascade, are still there.
      await sql`CREATE TRIGGER machines_record_deletion BEFORE DELETE ON machines FOR EACH ROW EXECUTE FUNCTION machines_record_deletion()`.execute(db);
      await db.schema
        .createTable('machine_watch_horizon')
        .addColumn('id', 'integer', (c) => c.primaryKey().check(sql`id = 1`))
        .addColumn('pruned_through', 'bigint', (c) => c.notNull())
        .execute();
      await sql`INSERT INTO machine_watch_horizon (id, pruned_through) VALUES (1, 0)`.execute(db);
    },
  },
];
