export { openDatabase, type Database, type DatabaseKind, type DatabaseOptions } from './database.js';
export {
  appliedMigrations,
  migrateToLatest,
  MigrationError,
  type MigrateOptions,
  type MigrationDatabase,
  type MigrationErrorReason,
  type MigrationReport,
  type NamedServiceMigration,
  type ServiceMigration,
  type ServiceMigrations,
} from './migrator.js';
export { serviceDatabase, type SchemaScopable } from './service-schema.js';
