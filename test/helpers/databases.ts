// Storage tests run on every database UltraCloud supports: embedded PGlite always, and the
// PostgreSQL server named by ULTRACLOUD_TEST_DATABASE_URL. Each test gets a database of its own
// (a fresh in-memory PGlite, or a fresh CREATE DATABASE on the server), so tests run in parallel.

import { randomBytes } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import type { Kysely } from 'kysely';
import pg from 'pg';
import { openDatabase, type Database } from '../../lib/db/index.js';

export type DatabaseTargetName = 'pglite' | 'postgres';

export const TEST_DATABASE_URL_VARIABLE = 'ULTRACLOUD_TEST_DATABASE_URL';

export interface AvailableDatabaseTarget {
  readonly name: DatabaseTargetName;
  readonly available: true;
  /** A new, empty database; `close()` also deletes it. */
  open<DB = unknown>(): Promise<Database<DB>>;
}

export interface UnavailableDatabaseTarget {
  readonly name: DatabaseTargetName;
  readonly available: false;
  /** One line saying why the target cannot run. */
  readonly reason: string;
  /** True under CI: a missing target is then a failure, not a skip. */
  readonly required: boolean;
}

export type DatabaseTarget = AvailableDatabaseTarget | UnavailableDatabaseTarget;

export type StorageTestImplementation<DB> = (
  t: ExecutionContext,
  db: Kysely<DB>,
  target: DatabaseTargetName,
) => Promise<void>;

function inCi(): boolean {
  return process.env.CI === 'true';
}

function serverUrl(): string | undefined {
  const url = process.env[TEST_DATABASE_URL_VARIABLE];
  return url === undefined || url === '' ? undefined : url;
}

/** The targets a storage test must run on, in a stable order: pglite, then postgres. */
export function databaseTargets(): DatabaseTarget[] {
  const pglite: AvailableDatabaseTarget = {
    name: 'pglite',
    available: true,
    open: <DB>() => openDatabase<DB>(),
  };
  const url = serverUrl();
  if (url === undefined) {
    const required = inCi();
    return [
      pglite,
      {
        name: 'postgres',
        available: false,
        required,
        reason: required
          ? `${TEST_DATABASE_URL_VARIABLE} is required when CI=true (e.g. postgres://postgres@127.0.0.1:5432/test)`
          : `${TEST_DATABASE_URL_VARIABLE} is not set`,
      },
    ];
  }
  return [
    pglite,
    {
      name: 'postgres',
      available: true,
      async open<DB>() {
        const scratch = await createTestDatabase();
        try {
          const database = await openDatabase<DB>({
            url: scratch.url,
            poolSize: 5,
            applicationName: 'ultracloud-test',
            // PGlite tests in the same process hold the event loop for a second at a time, so a
            // queue for pool slots can take longer than any production timeout would allow.
            connectTimeoutMs: 120_000,
          });
          return {
            db: database.db,
            kind: database.kind,
            async close() {
              try {
                await database.close();
              } finally {
                await scratch.drop();
              }
            },
          };
        } catch (error) {
          await scratch.drop();
          throw error;
        }
      },
    },
  ];
}

/**
 * Registers one ava test per target, titled `<title> [<target>]`. The database is opened before
 * `implementation` runs and closed (and deleted) after it, pass or fail. A target that cannot run
 * becomes a skipped test whose title gives the reason, or under CI a failing one.
 */
export function storageTest<DB = unknown>(title: string, implementation: StorageTestImplementation<DB>): void {
  for (const target of databaseTargets()) {
    const targetTitle = `${title} [${target.name}]`;
    if (!target.available) {
      unavailableTargetTest(targetTitle, target);
      continue;
    }
    test(targetTitle, async (t) => {
      const database = await target.open<DB>();
      t.teardown(() => database.close());
      await implementation(t, database.db, target.name);
    });
  }
}

/**
 * Registers the test that stands in for one that cannot run on `target`: skipped with the reason
 * in its title, or under CI failing with it.
 */
export function unavailableTargetTest(targetTitle: string, target: UnavailableDatabaseTarget): void {
  if (target.required) {
    test(targetTitle, (t) => {
      t.fail(target.reason);
    });
  } else {
    test.skip(`${targetTitle} — skipped: ${target.reason}`, () => undefined);
  }
}

export interface ScratchDatabase {
  /** URL of a new, empty database on the test server. */
  readonly url: string;
  /** Drops the database, disconnecting any session still using it. Safe to call twice. */
  drop(): Promise<void>;
}

/**
 * Creates an empty database on the server in ULTRACLOUD_TEST_DATABASE_URL, for tests that start a
 * real server process against a URL. Throws when the variable is unset; check `databaseTargets()`
 * first to skip (or fail under CI) with its reason.
 */
export async function createTestDatabase(): Promise<ScratchDatabase> {
  const adminUrl = serverUrl();
  if (adminUrl === undefined) {
    throw new Error(`${TEST_DATABASE_URL_VARIABLE} is not set`);
  }
  const name = `ultracloud_test_${randomBytes(6).toString('hex')}`;
  const forceDrop = await withAdmin(adminUrl, async (admin) => {
    await admin.query(`create database ${pg.escapeIdentifier(name)}`);
    const version = await admin.query<{ server_version_num: string }>('show server_version_num');
    // DROP DATABASE … WITH (FORCE) exists from PostgreSQL 13.
    return Number(version.rows[0]?.server_version_num ?? 0) >= 130000;
  });
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  let dropped: Promise<void> | undefined;
  return {
    url: url.toString(),
    drop() {
      dropped ??= withAdmin(adminUrl, async (admin) => {
        await admin.query(`drop database if exists ${pg.escapeIdentifier(name)}${forceDrop ? ' with (force)' : ''}`);
      });
      return dropped;
    },
  };
}

// A short-lived connection per call: creating and dropping databases is rare, and a shared pool
// would need a process-wide teardown that ava does not offer to helpers.
async function withAdmin<T>(url: string, run: (admin: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: url, application_name: 'ultracloud-test-admin' });
  await admin.connect();
  try {
    return await run(admin);
  } finally {
    await admin.end();
  }
}
