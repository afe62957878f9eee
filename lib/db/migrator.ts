// Forward-only, per-service migrations. Each service owns one Postgres schema (`deployer`,
// `hosts`, `scheduler`); its tables and its migration bookkeeping live there, so services sharing
// one database (as `ultracloud up` does on PGlite) cannot see or break each other's tables.

import { Kysely, Migrator, sql, type Migration, type MigrationResult } from 'kysely';

/**
 * What a migration sees: any table, any column. Migrations outlive the service's current
 * `Database` interface, so they must not be typed against it.
 */
export type MigrationDatabase = Kysely<Record<string, Record<string, unknown>>>;

export interface ServiceMigration {
  /** Runs inside the migration transaction with the service schema as the default schema. */
  up(db: MigrationDatabase): Promise<void>;
}

export interface NamedServiceMigration extends ServiceMigration {
  /** Applied in ascending string order, e.g. `0001_machines`; never renamed once released. */
  readonly name: string;
}

/** Either a list (in order) or a record keyed by migration name. */
export type ServiceMigrations =
  | readonly NamedServiceMigration[]
  | Readonly<Record<string, ServiceMigration>>;

export interface MigrateOptions {
  /** The service's Postgres schema, e.g. `deployer`. */
  readonly schema: string;
  readonly migrations: ServiceMigrations;
}

export interface MigrationReport {
  readonly schema: string;
  /** Migrations applied by this call, in order; empty when the schema was already current. */
  readonly applied: readonly string[];
}

export type MigrationErrorReason =
  | 'invalid-migrations'
  | 'unknown-applied-migration'
  | 'out-of-order'
  | 'migration-failed';

export class MigrationError extends Error {
  readonly reason: MigrationErrorReason;
  readonly schema: string;
  /** The migration the error is about, when there is one. */
  readonly migration: string | undefined;

  constructor(
    reason: MigrationErrorReason,
    schema: string,
    migration: string | undefined,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'MigrationError';
    this.reason = reason;
    this.schema = schema;
    this.migration = migration;
  }
}

const MIGRATION_TABLE = 'kysely_migration';
const MIGRATION_LOCK_TABLE = 'kysely_migration_lock';
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Brings `schema` up to the latest of `migrations`. Creates the schema when absent, applies every
 * pending migration in one transaction (so a failure leaves the schema as it was) and returns the
 * names it applied. Refuses, without changing anything, when the database has applied a
 * migration this code does not know: that database was written by a newer release.
 */
export async function migrateToLatest<DB>(db: Kysely<DB>, options: MigrateOptions): Promise<MigrationReport> {
  const { schema } = options;
  if (!SCHEMA_NAME.test(schema)) {
    throw new MigrationError('invalid-migrations', schema, undefined, `invalid schema name "${schema}"`);
  }
  const migrations = normalize(schema, options.migrations);
  const known = migrations.map((m) => m.name);

  // Checked before kysely runs so the refusal names the schema and says what to do; kysely repeats
  // these checks under its lock, and its messages are translated below.
  const applied = await appliedMigrations(db, schema);
  const unknown = applied.filter((name) => !known.includes(name));
  if (unknown.length > 0) {
    throw unknownAppliedMigration(schema, unknown[0] as string);
  }
  const lastApplied = applied.reduce<string | undefined>((max, name) => (max === undefined || name > max ? name : max), undefined);
  const late = lastApplied === undefined ? undefined : known.find((name) => !applied.includes(name) && name < lastApplied);
  if (late !== undefined) {
    throw outOfOrder(schema, late, lastApplied as string);
  }

  const provider: Record<string, Migration> = {};
  for (const migration of migrations) {
    provider[migration.name] = {
      async up(trx) {
        // `SET LOCAL` ends with the transaction, so a pooled connection does not keep it. It
        // makes raw SQL in a migration (`sql\`create index …\``, enum types) land in the service
        // schema too; the plugin from withSchema only rewrites builder-made table references.
        await sql`set local search_path to ${sql.id(schema)}`.execute(trx);
        await migration.up(trx.withSchema(schema));
      },
    };
  }

  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => provider },
    migrationTableSchema: schema,
    migrationTableName: MIGRATION_TABLE,
    migrationLockTableName: MIGRATION_LOCK_TABLE,
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error !== undefined) {
    throw translateError(schema, error, results ?? []);
  }
  return {
    schema,
    applied: (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName),
  };
}

/** Names of the migrations applied to `schema`, in name order; empty for a new schema. */
export async function appliedMigrations<DB>(db: Kysely<DB>, schema: string): Promise<string[]> {
  const table = await sql<{ found: string | null }>`
    select to_regclass(${`${quoteIdent(schema)}.${MIGRATION_TABLE}`})::text as found`.execute(db);
  if (table.rows[0]?.found == null) return [];
  const rows = await sql<{ name: string }>`select name from ${sql.table(`${schema}.${MIGRATION_TABLE}`)} order by name`.execute(db);
  return rows.rows.map((r) => r.name);
}

function normalize(schema: string, migrations: ServiceMigrations): NamedServiceMigration[] {
  const list: NamedServiceMigration[] = isList(migrations)
    ? [...migrations]
    : Object.entries(migrations).map(([name, m]) => ({ name, up: (db: MigrationDatabase) => m.up(db) }));
  const invalid = (message: string, name?: string): MigrationError =>
    new MigrationError('invalid-migrations', schema, name, `migrations for schema "${schema}": ${message}`);
  const seen = new Set<string>();
  for (const [index, { name }] of list.entries()) {
    if (typeof name !== 'string' || name.trim() === '') throw invalid(`migration #${index} has no name`);
    if (seen.has(name)) throw invalid(`migration "${name}" is listed twice`, name);
    seen.add(name);
    const previous = list[index - 1];
    // Kysely applies migrations in name order; a list that disagrees (e.g. "10_x" before "9_y")
    // would run in an order nobody wrote, so it is rejected.
    if (isList(migrations) && previous !== undefined && previous.name > name) {
      throw invalid(`migration "${name}" is listed after "${previous.name}" but sorts before it; use zero-padded names`, name);
    }
  }
  return list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function isList(migrations: ServiceMigrations): migrations is readonly NamedServiceMigration[] {
  return Array.isArray(migrations);
}

function unknownAppliedMigration(schema: string, name: string): MigrationError {
  return new MigrationError(
    'unknown-applied-migration',
    schema,
    name,
    `schema "${schema}" has migration "${name}" applied, which this version does not know; ` +
      'the database was migrated by a newer UltraCloud and migrations are forward-only, so run that version or newer',
  );
}

function outOfOrder(schema: string, pending: string, lastApplied: string): MigrationError {
  return new MigrationError(
    'out-of-order',
    schema,
    pending,
    `schema "${schema}": pending migration "${pending}" sorts before the already applied "${lastApplied}"; ` +
      'new migrations must be named to sort after every released one',
  );
}

function translateError(schema: string, error: unknown, results: readonly MigrationResult[]): MigrationError {
  const failed = results.find((r) => r.status === 'Error');
  const cause = error instanceof Error ? error.message : String(error);
  if (failed !== undefined) {
    return new MigrationError(
      'migration-failed',
      schema,
      failed.migrationName,
      `migration "${failed.migrationName}" in schema "${schema}" failed: ${cause} (rolled back; no migration of this run was applied)`,
      { cause: error },
    );
  }
  // A concurrent migrator may have changed the schema between the checks above and kysely's lock.
  const missing = /previously executed migration (\S+) is missing/.exec(cause);
  if (missing?.[1] !== undefined) return unknownAppliedMigration(schema, missing[1]);
  return new MigrationError('migration-failed', schema, undefined, `migrating schema "${schema}" failed: ${cause}`, {
    cause: error,
  });
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

