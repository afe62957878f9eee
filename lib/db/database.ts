// Kysely factory over the two places UltraCloud keeps its state: a PostgreSQL server (`pg` pool)
// when a URL is configured, otherwise embedded PGlite (Postgres compiled to WASM) in the state
// directory. Both are set up to hand back the same JavaScript types, so store code and its tests
// behave the same on either.

import { mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PGlite, type PGliteOptions } from '@electric-sql/pglite';
import { Kysely, PostgresDialect, type Dialect, type PostgresCursor, type PostgresPool, type PostgresPoolClient, type PostgresQueryResult } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import pg, { type CustomTypesConfig } from 'pg';
import { preparedStatementName } from './statement-cache.js';

export type DatabaseKind = 'postgres' | 'pglite';

export interface DatabaseOptions {
  /** `postgres://…` connection string. Unset ⇒ embedded PGlite. */
  readonly url?: string | undefined;
  /** PGlite keeps its files in `<stateDir>/pgdata`. Unset (and no url) ⇒ in-memory PGlite. */
  readonly stateDir?: string | undefined;
  /** Maximum connections of the `pg` pool. Default 10. */
  readonly poolSize?: number | undefined;
  /** Server-side `statement_timeout` for every `pg` connection (not PGlite). Default: none. */
  readonly statementTimeoutMs?: number | undefined;
  /**
   * How long to wait for a `pg` connection, whether opening one or waiting for a free pool slot
   * (pg uses one timer for both). Default 30 s; 0 waits forever.
   */
  readonly connectTimeoutMs?: number | undefined;
  /** Shown in `pg_stat_activity`. Default `ultracloud`. */
  readonly applicationName?: string | undefined;
  /**
   * Called when an idle pooled connection fails (server restart, network). `pg` drops that
   * connection and opens a new one on demand; without a listener the error would crash the process.
   */
  readonly onIdleConnectionError?: ((error: Error) => void) | undefined;
}

/** An open database. Open one per process and share it: PGlite allows a single connection. */
export interface Database<DB> {
  readonly db: Kysely<DB>;
  readonly kind: DatabaseKind;
  /** Ends the pool or shuts PGlite down (flushing it to disk). Safe to call twice. */
  close(): Promise<void>;
}

export async function openDatabase<DB = unknown>(options: DatabaseOptions = {}): Promise<Database<DB>> {
  if (options.url !== undefined && options.url !== '') {
    return openPostgres<DB>(options.url, options);
  }
  return openPGlite<DB>(options.stateDir);
}

// ---------------------------------------------------------------------------------------------
// Type mapping shared by both drivers.

const OID = {
  int8: 20,
  int8Array: 1016,
  textArray: 1009,
  date: 1082,
  dateArray: 1182,
  timestamp: 1114,
  timestampArray: 1115,
} as const;

// Identifiers, sizes and counters are int8; a JS number silently loses precision above 2^53, and
// PGlite's default (number when small, bigint when large) would make the type depend on the value.
const parseInt8 = (text: string): bigint => BigInt(text);

// `date` has no time zone: a JS Date would pin it to midnight in some zone (UTC on PGlite, local
// on pg), so keep it as the 'YYYY-MM-DD' text Postgres sent.
const parseDate = (text: string): string => text;

// `timestamp without time zone` is read as UTC on both drivers (pg would use the process zone).
const parseTimestampAsUtc = (text: string): Date => new Date(`${text.replace(' ', 'T')}Z`);

type NestedArray<T> = (T | null | NestedArray<T>)[];

function mapNested<T>(values: NestedArray<string>, parse: (text: string) => T): NestedArray<T> {
  return values.map((value) =>
    value === null ? null : Array.isArray(value) ? mapNested(value, parse) : parse(value),
  );
}

function pgTypeOverrides(): CustomTypesConfig {
  const types = new pg.TypeOverrides();
  // Array literals are parsed as text[] first, then element by element, so arrays match PGlite,
  // whose array parsers reuse the element parser.
  // @types/pg types the returned parser's argument as a number; it receives the value text.
  const parseTextArray = types.getTypeParser(OID.textArray, 'text') as unknown as (text: string) => NestedArray<string>;
  const arrayOf =
    <T>(parse: (text: string) => T) =>
    (text: string): NestedArray<T> =>
      mapNested(parseTextArray(text), parse);
  types.setTypeParser(OID.int8, 'text', parseInt8);
  types.setTypeParser(OID.int8Array, 'text', arrayOf(parseInt8));
  types.setTypeParser(OID.date, 'text', parseDate);
  types.setTypeParser(OID.dateArray, 'text', arrayOf(parseDate));
  types.setTypeParser(OID.timestamp, 'text', parseTimestampAsUtc);
  types.setTypeParser(OID.timestampArray, 'text', arrayOf(parseTimestampAsUtc));
  return types;
}

// PGlite derives its array parsers from these element parsers.
const pgliteParsers: NonNullable<PGliteOptions['parsers']> = {
  [OID.int8]: parseInt8,
  [OID.date]: parseDate,
  [OID.timestamp]: parseTimestampAsUtc,
};

// ---------------------------------------------------------------------------------------------
// PostgreSQL server.

async function openPostgres<DB>(url: string, options: DatabaseOptions): Promise<Database<DB>> {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize ?? 10,
    application_name: options.applicationName ?? 'ultracloud',
    ...(options.statementTimeoutMs !== undefined ? { statement_timeout: options.statementTimeoutMs } : {}),
    // A request fails rather than hangs when the server is unreachable or the pool is exhausted.
    connectionTimeoutMillis: options.connectTimeoutMs ?? 30_000,
    idleTimeoutMillis: 30_000,
    types: pgTypeOverrides(),
  });
  pool.on('error', (error) => {
    if (options.onIdleConnectionError !== undefined) options.onIdleConnectionError(error);
    else process.emitWarning(`idle PostgreSQL connection failed: ${error.message}`, 'UltraCloudDatabase');
  });
  // Check the URL now, so a bad one is reported at start rather than on the first request.
  try {
    const client = await pool.connect();
    client.release();
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw new Error(`cannot connect to PostgreSQL at ${redactUrl(url)}: ${errorMessage(error)}`, { cause: error });
  }
  return wrap<DB>('postgres', new PostgresDialect({ pool: namingPool(pool) }));
}

/**
 * The pool as kysely sees it: a statement a StatementCache named (see `preparedStatementName`)
 * runs as that named prepared statement, so each connection parses it once; every other statement
 * runs unnamed, as pg would run it. One wrapper per pg client, since kysely keys its connection
 * objects by client.
 */
function namingPool(pool: pg.Pool): PostgresPool {
  const wrappers = new WeakMap<pg.PoolClient, PostgresPoolClient>();
  const wrap = (client: pg.PoolClient): PostgresPoolClient => {
    function query<R>(sql: string, parameters: ReadonlyArray<unknown>): Promise<PostgresQueryResult<R>>;
    function query<R>(cursor: PostgresCursor<R>): PostgresCursor<R>;
    function query<R>(sqlOrCursor: string | PostgresCursor<R>, parameters?: ReadonlyArray<unknown>): Promise<PostgresQueryResult<R>> | PostgresCursor<R> {
      if (typeof sqlOrCursor !== 'string') return client.query(sqlOrCursor as unknown as pg.Submittable) as unknown as PostgresCursor<R>;
      const name = preparedStatementName(sqlOrCursor);
      // kysely hands over a fresh array per call and pg only reads it: no copy.
      const values = (parameters ?? []) as unknown[];
      const config: pg.QueryConfig = name === undefined ? { text: sqlOrCursor, values } : { name, text: sqlOrCursor, values };
      return client.query(config) as unknown as Promise<PostgresQueryResult<R>>;
    }
    return { query, release: (destroy?: boolean) => client.release(destroy) };
  };
  return {
    async connect() {
      const client = await pool.connect();
      let wrapper = wrappers.get(client);
      if (wrapper === undefined) {
        wrapper = wrap(client);
        wrappers.set(client, wrapper);
      }
      return wrapper;
    },
    end: () => pool.end(),
  };
}

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return '<unparseable url>';
  }
}

// ---------------------------------------------------------------------------------------------
// Embedded PGlite.

async function openPGlite<DB>(stateDir: string | undefined): Promise<Database<DB>> {
  let client: PGlite;
  let unlock = async (): Promise<void> => undefined;
  if (stateDir === undefined) {
    client = await openMemoryPGlite();
  } else {
    const dataDir = join(stateDir, 'pgdata');
    await mkdir(dataDir, { recursive: true });
    unlock = await lockDataDir(dataDir);
    try {
      client = await PGlite.create({ dataDir, parsers: pgliteParsers });
    } catch (error) {
      await unlock();
      throw error;
    }
  }
  // PGlite has one connection. kysely-pglite-dialect's driver hands it to one caller at a time and
  // queues the others until release, so a transaction owns it from BEGIN to COMMIT and concurrent
  // transactions run one after another (test/unit/db.test.ts proves it). The flip side: inside
  // `db.transaction().execute(trx => …)` every query must use `trx`; a query on `db` waits for the
  // connection the transaction holds and never completes.
  return wrap<DB>('pglite', new PGliteDialect(client), unlock);
}

// PGlite takes no lock on its data directory: a second instance (another `ultracloud up` in the
// same directory, or a second open in this process) would run alongside and corrupt it.
async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const lockFile = `${dataDir}.lock`;
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(lockFile, `${process.pid}\n`, { flag: 'wx' });
      return () => unlink(lockFile).catch(() => undefined);
    } catch (error) {
      if (!isErrno(error, 'EEXIST') || attempt > 0) throw error;
    }
    const owner = Number.parseInt(await readFile(lockFile, 'utf8').catch(() => ''), 10);
    if (Number.isInteger(owner) && processIsAlive(owner)) {
      throw new Error(
        `PGlite data directory ${dataDir} is in use by process ${owner}` +
          `${owner === process.pid ? ' (this one)' : ''}; open it once per process, or remove ${lockFile} if that process is gone`,
      );
    }
    await unlink(lockFile).catch(() => undefined); // left by a process that died
  }
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return isErrno(error, 'EPERM'); // exists, but belongs to another user
  }
}

function isErrno(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}

// initdb is most of PGlite's start-up cost (≈5 s here, versus ≈1 s to start from an existing data
// directory). In-memory databases are what tests open, many per run, so the first one's pristine
// data directory is kept and later ones start from a copy of it.
let memoryTemplate: Blob | undefined;
// Opening is CPU-bound on the one JS thread and each instance reserves 128 MiB up front; opening
// one at a time is faster overall than letting many start together. It also makes the template
// check below race-free.
let memoryOpenQueue: Promise<unknown> = Promise.resolve();

function openMemoryPGlite(): Promise<PGlite> {
  const open = memoryOpenQueue.then(async () => {
    if (memoryTemplate !== undefined) {
      return PGlite.create({ loadDataDir: memoryTemplate, parsers: pgliteParsers });
    }
    const client = await PGlite.create({ parsers: pgliteParsers });
    try {
      memoryTemplate = await client.dumpDataDir('none');
    } catch (error) {
      await client.close();
      throw error;
    }
    return client;
  });
  memoryOpenQueue = open.catch(() => undefined);
  return open;
}

// ---------------------------------------------------------------------------------------------

function wrap<DB>(kind: DatabaseKind, dialect: Dialect, afterClose?: () => Promise<void>): Database<DB> {
  const db = new Kysely<DB>({ dialect });
  let closing: Promise<void> | undefined;
  return {
    db,
    kind,
    close() {
      closing ??= db.destroy().finally(() => afterClose?.());
      return closing;
    },
  };
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
