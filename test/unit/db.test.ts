import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import test from 'ava';
import { sql, type Generated, type Kysely } from 'kysely';
import {
  appliedMigrations,
  migrateToLatest,
  MigrationError,
  openDatabase,
  serviceDatabase,
  type NamedServiceMigration,
} from '../../lib/db/index.js';
import { jsonRows, writeJsonRows } from '../../lib/db/json-rows.js';
import { preparedStatementName, StatementCache } from '../../lib/db/statement-cache.js';
import { storageTest } from '../helpers/databases.js';

// ---------------------------------------------------------------------------------------------
// Two small services' migrations, shaped like the real ones.

const createMachines: NamedServiceMigration = {
  name: '0001_machines',
  async up(db) {
    await db.schema
      .createTable('machines')
      .addColumn('id', 'bigserial', (c) => c.primaryKey())
      .addColumn('hostname', 'text', (c) => c.notNull().unique())
      .addColumn('pool_id', 'bigint')
      .execute();
    await db.schema
      .createTable('pools')
      .addColumn('id', 'bigserial', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull())
      .execute();
  },
};

const addMachineState: NamedServiceMigration = {
  name: '0002_machine_state',
  async up(db) {
    await db.schema.alterTable('machines').addColumn('state', 'text', (c) => c.notNull().defaultTo('discovered')).execute();
    // Raw SQL: must land in the service schema too.
    await sql`create index machines_state on machines (state)`.execute(db);
    await db.insertInto('pools').values({ name: 'default' }).execute();
  },
};

const deployerMigrations = [createMachines, addMachineState] as const;

const hostsMigrations: NamedServiceMigration[] = [
  {
    name: '0001_deployments',
    async up(db) {
      await db.schema
        .createTable('deployments')
        .addColumn('id', 'bigserial', (c) => c.primaryKey())
        .addColumn('target', 'text', (c) => c.notNull())
        .execute();
      // Same name as a deployer table, on purpose.
      await db.schema.createTable('pools').addColumn('label', 'text').execute();
    },
  },
];

interface DeployerTables {
  machines: { id: Generated<bigint>; hostname: string; pool_id: bigint | null; state: Generated<string> };
  pools: { id: Generated<bigint>; name: string };
}

async function tablesIn(db: Kysely<unknown>, schema: string): Promise<string[]> {
  const result = await sql<{ table_name: string }>`
    select table_name from information_schema.tables where table_schema = ${schema} order by table_name`.execute(db);
  return result.rows.map((r) => r.table_name);
}

// ---------------------------------------------------------------------------------------------
// Migrations

storageTest('migrations apply from empty into the service schema', async (t, db) => {
  const report = await migrateToLatest(db, { schema: 'deployer', migrations: deployerMigrations });

  t.deepEqual(report, { schema: 'deployer', applied: ['0001_machines', '0002_machine_state'] });
  t.deepEqual(await tablesIn(db, 'deployer'), ['kysely_migration', 'kysely_migration_lock', 'machines', 'pools']);
  t.deepEqual(await tablesIn(db, 'public'), []);
  const index = await sql<{ schemaname: string }>`select schemaname from pg_indexes where indexname = 'machines_state'`.execute(db);
  t.deepEqual(index.rows, [{ schemaname: 'deployer' }]);
  t.deepEqual(await appliedMigrations(db, 'deployer'), ['0001_machines', '0002_machine_state']);
});

storageTest('re-running migrations is a no-op and later migrations apply on top', async (t, db) => {
  await migrateToLatest(db, { schema: 'deployer', migrations: [createMachines] });
  const again = await migrateToLatest(db, { schema: 'deployer', migrations: [createMachines] });
  t.deepEqual(again.applied, []);

  const next = await migrateToLatest(db, { schema: 'deployer', migrations: deployerMigrations });
  t.deepEqual(next.applied, ['0002_machine_state']);
  t.deepEqual((await migrateToLatest(db, { schema: 'deployer', migrations: deployerMigrations })).applied, []);
  // The data migration ran once.
  const pools = await serviceDatabase<DeployerTables>(db, 'deployer').selectFrom('pools').select('name').execute();
  t.deepEqual(pools, [{ name: 'default' }]);
});

storageTest('migrations given as a record apply in name order', async (t, db) => {
  const report = await migrateToLatest(db, {
    schema: 'deployer',
    migrations: { '0002_machine_state': addMachineState, '0001_machines': createMachines },
  });
  t.deepEqual(report.applied, ['0001_machines', '0002_machine_state']);
});

storageTest('two services migrate into their own schemas and do not see each other', async (t, db) => {
  await migrateToLatest(db, { schema: 'deployer', migrations: deployerMigrations });
  await migrateToLatest(db, { schema: 'hosts', migrations: hostsMigrations });

  t.deepEqual(await tablesIn(db, 'hosts'), ['deployments', 'kysely_migration', 'kysely_migration_lock', 'pools']);
  t.deepEqual(await appliedMigrations(db, 'hosts'), ['0001_deployments']);
  t.deepEqual(await appliedMigrations(db, 'deployer'), ['0001_machines', '0002_machine_state']);

  const hosts = serviceDatabase<{ machines: { id: bigint }; pools: { label: string | null } }>(db, 'hosts');
  const error = await t.throwsAsync(hosts.selectFrom('machines').selectAll().execute());
  t.regex(error.message, /relation "hosts\.machines" does not exist/);
  // Same table name, different tables.
  t.deepEqual(await hosts.selectFrom('pools').selectAll().execute(), []);
});

storageTest('a migration applied by a newer version is refused and nothing runs', async (t, db) => {
  await migrateToLatest(db, { schema: 'deployer', migrations: deployerMigrations });
  const thirdRan: string[] = [];
  const olderCode: NamedServiceMigration[] = [
    createMachines,
    { name: '0001b_never', up: async () => void thirdRan.push('ran') },
  ];

  const error = await t.throwsAsync(migrateToLatest(db, { schema: 'deployer', migrations: olderCode }), {
    instanceOf: MigrationError,
  });
  t.is(error.reason, 'unknown-applied-migration');
  t.is(error.migration, '0002_machine_state');
  t.regex(error.message, /schema "deployer" has migration "0002_machine_state" applied, which this version does not know/);
  t.deepEqual(thirdRan, []);
  t.deepEqual(await appliedMigrations(db, 'deployer'), ['0001_machines', '0002_machine_state']);
});

storageTest('a new migration that sorts before an applied one is refused', async (t, db) => {
  await migrateToLatest(db, { schema: 'deployer', migrations: deployerMigrations });
  const late: NamedServiceMigration = { name: '0001a_late', up: async () => undefined };
  const error = await t.throwsAsync(
    migrateToLatest(db, { schema: 'deployer', migrations: [createMachines, late, addMachineState] }),
    { instanceOf: MigrationError },
  );
  t.is(error.reason, 'out-of-order');
  t.regex(error.message, /"0001a_late" sorts before the already applied "0002_machine_state"/);
});

storageTest('a failing migration is named and rolls back every migration of its run', async (t, db) => {
  await migrateToLatest(db, { schema: 'deployer', migrations: [createMachines] });
  const createsThenFails: NamedServiceMigration = {
    name: '0003_broken',
    async up(db) {
      await db.schema.createTable('half_done').addColumn('id', 'bigint').execute();
      await sql`insert into no_such_table values (1)`.execute(db);
    },
  };

  const error = await t.throwsAsync(
    migrateToLatest(db, { schema: 'deployer', migrations: [createMachines, addMachineState, createsThenFails] }),
    { instanceOf: MigrationError },
  );
  t.is(error.reason, 'migration-failed');
  t.is(error.migration, '0003_broken');
  t.regex(error.message, /migration "0003_broken" in schema "deployer" failed: relation "no_such_table" does not exist/);

  // Neither 0002 (which succeeded in the same run) nor the first half of 0003 remains.
  t.deepEqual(await tablesIn(db, 'deployer'), ['kysely_migration', 'kysely_migration_lock', 'machines', 'pools']);
  t.deepEqual(await appliedMigrations(db, 'deployer'), ['0001_machines']);
  const columns = await sql<{ column_name: string }>`
    select column_name from information_schema.columns
    where table_schema = 'deployer' and table_name = 'machines' and column_name = 'state'`.execute(db);
  t.deepEqual(columns.rows, []);

  // Once fixed, the same database migrates.
  const fixed = await migrateToLatest(db, { schema: 'deployer', migrations: deployerMigrations });
  t.deepEqual(fixed.applied, ['0002_machine_state']);
});

test('migration lists must be in name order and uniquely named', async (t) => {
  // Validation happens before the database is touched, so no database is needed.
  const db = undefined as unknown as Kysely<unknown>;
  const misordered = await t.throwsAsync(
    migrateToLatest(db, {
      schema: 'deployer',
      migrations: [
        { name: '9_b', up: async () => undefined },
        { name: '10_a', up: async () => undefined },
      ],
    }),
    { instanceOf: MigrationError },
  );
  t.regex(misordered.message, /"10_a" is listed after "9_b" but sorts before it/);
  const duplicate = await t.throwsAsync(
    migrateToLatest(db, { schema: 'deployer', migrations: [createMachines, createMachines] }),
    { instanceOf: MigrationError },
  );
  t.regex(duplicate.message, /"0001_machines" is listed twice/);
  const badSchema = await t.throwsAsync(migrateToLatest(db, { schema: 'Deployer; drop', migrations: [] }), {
    instanceOf: MigrationError,
  });
  t.regex(badSchema.message, /invalid schema name/);
});

// ---------------------------------------------------------------------------------------------
// The service-scoped Kysely

storageTest('serviceDatabase resolves tables in the service schema for every kind of query', async (t, db) => {
  await migrateToLatest(db, { schema: 'deployer', migrations: deployerMigrations });
  // A same-named table in public must not be picked up through the search path.
  await sql`create table public.machines (id bigint, hostname text)`.execute(db);
  await sql`insert into public.machines values (99, 'decoy')`.execute(db);
  const deployer = serviceDatabase<DeployerTables>(db, 'deployer');

  const pool = await deployer.insertInto('pools').values({ name: 'gpu' }).returning('id').executeTakeFirstOrThrow();
  await deployer
    .insertInto('machines')
    .values([
      { hostname: 'n1', pool_id: pool.id },
      { hostname: 'n2', pool_id: null },
    ])
    .onConflict((oc) => oc.column('hostname').doNothing())
    .execute();
  await deployer.updateTable('machines').set({ state: 'inspected' }).where('hostname', '=', 'n1').execute();
  await deployer
    .updateTable('machines')
    .from('pools')
    .set({ state: 'commissioned' })
    .whereRef('machines.pool_id', '=', 'pools.id')
    .where('pools.name', '=', 'gpu')
    .execute();

  const joined = await deployer
    .selectFrom('machines as m')
    .leftJoin('pools as p', 'p.id', 'm.pool_id')
    .select(['m.hostname', 'm.state', 'p.name as pool'])
    .where('m.id', 'in', deployer.selectFrom('machines').select('id'))
    .orderBy('m.hostname')
    .execute();
  t.deepEqual(joined, [
    { hostname: 'n1', state: 'commissioned', pool: 'gpu' },
    { hostname: 'n2', state: 'discovered', pool: null },
  ]);

  const withCte = await deployer
    .with('busy', (qb) => qb.selectFrom('machines').select('hostname').where('state', '!=', 'discovered'))
    .selectFrom('busy')
    .select('hostname')
    .execute();
  t.deepEqual(withCte, [{ hostname: 'n1' }]);

  const viaSqlTable = await sql<{ n: number }>`select count(*)::int as n from ${sql.table('machines')}`.execute(deployer);
  t.deepEqual(viaSqlTable.rows, [{ n: 2 }]);
  const rawInBuilder = await deployer
    .selectFrom('pools')
    .select('name')
    .where(sql<boolean>`exists (select 1 from ${sql.table('machines')} where pool_id = ${sql.ref('pools.id')})`)
    .execute();
  t.deepEqual(rawInBuilder, [{ name: 'gpu' }]);

  await deployer.transaction().execute(async (trx) => {
    await trx.deleteFrom('machines').where('hostname', '=', 'n2').execute();
  });
  t.is((await deployer.selectFrom('machines').select('hostname').execute()).length, 1);
  const decoy = await sql<{ hostname: string }>`select hostname from public.machines`.execute(db);
  t.deepEqual(decoy.rows, [{ hostname: 'decoy' }]);
});

// ---------------------------------------------------------------------------------------------
// Types

interface TypesTable {
  samples: {
    id: bigint;
    big: bigint;
    bigs: bigint[];
    small: number;
    amount: string;
    at: Date;
    local_at: Date;
    day: string;
    doc: unknown;
    list: unknown;
    flag: boolean;
    label: string | null;
  };
}

storageTest('column types read back as the same JavaScript values on every driver', async (t, db) => {
  await sql`
    create table samples (
      id int8 primary key, big int8, bigs int8[], small int4, amount numeric(30, 10), at timestamptz,
      local_at timestamp, day date, doc jsonb, list jsonb, flag boolean, label text
    )`.execute(db);
  const typed = db as unknown as Kysely<TypesTable>;
  const at = new Date('2024-05-06T07:08:09.123Z');
  const row = {
    id: 1n,
    big: 9_007_199_254_740_993n, // 2^53 + 1: not representable as a JS number
    bigs: [1n, -2n, 9_223_372_036_854_775_807n],
    small: 42,
    amount: '12345678901234567890.0123456789',
    at,
    local_at: new Date('2024-05-06T07:08:09.123Z'),
    day: '2024-02-29',
    doc: { nested: { ok: true, n: 1.5 }, tags: ['a', 'b'] },
    // pg sends a JS array as a Postgres array literal; stringify JSON arrays for jsonb.
    list: JSON.stringify([1, 'two', null]),
    flag: false,
    label: null,
  };
  await typed.insertInto('samples').values(row).execute();
  await typed.insertInto('samples').values({ ...row, id: 2n, big: 5n, flag: true }).execute();

  const read = await typed.selectFrom('samples').selectAll().orderBy('id').execute();
  t.deepEqual(read[0], { ...row, list: [1, 'two', null] });
  t.is(typeof read[1]?.big, 'bigint');
  t.is(read[1]?.big, 5n);
  t.is(read[1]?.flag, true);
  t.true(read[0]?.at instanceof Date);

  // Values produced by the server, not round-tripped from the client.
  const computed = await sql<{ count: bigint; sum: string; now: Date; today: string; parts: bigint[] }>`
    select count(*) as count, sum(big) as sum, now() as now, '2024-01-02'::date as today,
           array[1, 2]::int8[] as parts, '2024-01-02 03:04:05.123456'::timestamp as micro
    from samples`.execute(db);
  t.like(computed.rows[0], { count: 2n, sum: '9007199254740998', today: '2024-01-02', parts: [1n, 2n] });
  t.true(computed.rows[0]?.now instanceof Date);
  t.deepEqual((computed.rows[0] as { micro?: Date }).micro, new Date('2024-01-02T03:04:05.123Z'));

  // bigint parameters compare against int8 columns.
  const found = await typed.selectFrom('samples').select('id').where('big', '=', 9_007_199_254_740_993n).execute();
  t.deepEqual(found, [{ id: 1n }]);
});

test('jsonRows writes what JSON.stringify would, with bigints as strings', (t) => {
  const shared = new Date('2026-01-02T03:04:05.678Z');
  const rows = [
    { n: 1n, at: shared, other: new Date('2026-01-02T03:04:06Z'), again: shared, bad: new Date(Number.NaN), none: null, flag: true, count: 3, text: 'é "q"\n', doc: { nested: [1, { x: 'y' }], when: shared } },
    { n: -9_007_199_254_740_993n, at: shared, other: shared, again: new Date(0), bad: shared, none: null, flag: false, count: 0, text: '', doc: {} },
  ];
  const reference = JSON.stringify(rows, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));
  t.is(jsonRows(rows), reference);
  t.deepEqual(JSON.parse(jsonRows(rows))[0], { n: '1', at: '2026-01-02T03:04:05.678Z', other: '2026-01-02T03:04:06.000Z', again: '2026-01-02T03:04:05.678Z', bad: null, none: null, flag: true, count: 3, text: 'é "q"\n', doc: { nested: [1, { x: 'y' }], when: '2026-01-02T03:04:05.678Z' } });
  // A bigint inside a document is written as a string too.
  const nested = [{ doc: { revision: 7n, list: [8n] } }];
  t.is(jsonRows(nested), '[{"doc":{"revision":"7","list":["8"]}}]');
});

storageTest('writeJsonRows inserts and upserts many rows in one statement, in order, in the service schema', async (t, db) => {
  await migrateToLatest(db, { schema: 'deployer', migrations: deployerMigrations });
  await sql`create table deployer.entries (
    id bigserial primary key, node text not null unique, revision int8 not null, at timestamptz not null,
    doc jsonb not null, note text, flag boolean not null default false)`.execute(db);
  const scoped = serviceDatabase<{ entries: { id: Generated<bigint>; node: string; revision: bigint; at: Date; doc: unknown; note: string | null; flag: boolean } }>(db, 'deployer');
  const at = new Date('2026-01-02T03:04:05.678Z');
  const rows = Array.from({ length: 1000 }, (_, i) => ({ node: `n${i}`, revision: 9_007_199_254_740_993n + BigInt(i), at, doc: { path: `/nix/store/${i}`, list: [i, 'x'] }, note: i % 2 === 0 ? null : `it's "quoted" ${i}` }));
  await writeJsonRows(scoped, { table: 'entries', columns: ['node', 'revision', 'at', 'doc', 'note'], rows });

  const read = await scoped.selectFrom('entries').selectAll().orderBy('id').execute();
  t.is(read.length, 1000);
  // Ids ascend in the order of the rows given.
  t.deepEqual(read.map((r) => r.node), rows.map((r) => r.node));
  t.deepEqual(read[1], { id: read[1]?.id, node: 'n1', revision: 9_007_199_254_740_994n, at, doc: { path: '/nix/store/1', list: [1, 'x'] }, note: 'it\'s "quoted" 1', flag: false });
  t.is(read[0]?.note, null);

  // Upsert: existing rows get the listed columns, new ones are inserted; columns not listed keep their value.
  await scoped.updateTable('entries').set({ flag: true }).where('node', '=', 'n5').execute();
  await writeJsonRows(scoped, {
    table: 'entries',
    columns: ['node', 'revision', 'at', 'doc', 'note'],
    rows: [
      { node: 'n5', revision: 1n, at, doc: { changed: true }, note: 'again' },
      { node: 'new', revision: 2n, at, doc: {}, note: null },
    ],
    onConflict: { columns: ['node'], update: ['revision', 'doc', 'note'] },
  });
  t.like(await scoped.selectFrom('entries').selectAll().where('node', '=', 'n5').executeTakeFirstOrThrow(), { revision: 1n, doc: { changed: true }, note: 'again', flag: true });
  t.is((await scoped.selectFrom('entries').select('node').execute()).length, 1001);
  // Nothing to write is no statement; a bad row fails the whole statement and writes nothing.
  await writeJsonRows(scoped, { table: 'entries', columns: ['node'], rows: [] });
  await t.throwsAsync(writeJsonRows(scoped, { table: 'entries', columns: ['node', 'revision', 'at', 'doc'], rows: [{ node: 'ok', revision: 1n, at, doc: {} }, { node: 'bad', revision: 'not a number', at, doc: {} }] }));
  t.is((await scoped.selectFrom('entries').select('node').execute()).length, 1001);
});

storageTest('cached statements bind values by name; on the server each runs as one named prepared statement per connection', async (t, db, target) => {
  await sql`create table counters (id int primary key, value int8 not null)`.execute(db);
  const counters = db as unknown as Kysely<CounterTable>;
  const cache = new StatementCache();
  const bump = (id: number, by: bigint) =>
    cache.execute<{ value: bigint }, CounterTable>(counters, 'bump', (p) =>
      counters
        .insertInto('counters')
        .values({ id: p('id'), value: p('by') })
        .onConflict((oc) => oc.column('id').doUpdateSet((eb) => ({ value: eb('counters.value', '+', eb.ref('excluded.value')) })))
        .returning('value'),
    { id, by });
  const values: bigint[] = [];
  for (let i = 0; i < 12; i++) values.push((await bump(i % 2, BigInt(i))).rows[0]?.value ?? -1n);
  t.deepEqual(values, [0n, 1n, 2n, 4n, 6n, 9n, 12n, 16n, 20n, 25n, 30n, 36n]);
  t.is(cache.size, 1);
  await t.throwsAsync(cache.execute(counters, 'bump', () => t.fail('built twice') as never, { id: 1 }), { message: 'statement bump: no value for parameter by' });

  // Inside a transaction the statement runs on the transaction's connection, and a rollback undoes it.
  await t.throwsAsync(
    counters.transaction().execute(async (trx) => {
      await cache.execute(trx, 'bump', () => t.fail('built twice') as never, { id: 0, by: 100n });
      throw new Error('roll back');
    }),
    { message: 'roll back' },
  );
  t.deepEqual(await counters.selectFrom('counters').select(['id', 'value']).orderBy('id').execute(), [{ id: 0, value: 30n }, { id: 1, value: 36n }]);

  if (target === 'postgres') {
    // Every connection that ran it holds it prepared under the name its text carries.
    const prepared = await counters.connection().execute(async (conn) => {
      await cache.execute(conn, 'bump', () => t.fail('built twice') as never, { id: 0, by: 0n });
      return sql<{ name: string; statement: string }>`select name, statement from pg_prepared_statements`.execute(conn);
    });
    const names = prepared.rows.map((r) => r.name);
    t.is(names.length, 1, names.join(', '));
    t.regex(names[0] ?? '', /^uc_[0-9a-f]{24}$/);
    t.is(preparedStatementName(prepared.rows[0]?.statement ?? ''), names[0]);
    t.true(prepared.rows[0]?.statement.includes('insert into "counters"'));
  }
  // Past its limit a cache runs new statements unnamed.
  const small = new StatementCache(1);
  const select = (key: string, id: number) => small.execute<{ id: number }, CounterTable>(counters, key, (p) => counters.selectFrom('counters').select('id').where('id', '=', p('id')), { id });
  await select('first', 0);
  await select('second', 1);
  const texts = await counters.connection().execute(async (conn) => {
    await small.execute(conn, 'first', () => t.fail('built twice') as never, { id: 0 });
    await small.execute(conn, 'second', () => t.fail('built twice') as never, { id: 1 });
    return target === 'postgres' ? (await sql<{ statement: string }>`select statement from pg_prepared_statements`.execute(conn)).rows.map((r) => r.statement) : [];
  });
  if (target === 'postgres') t.is(texts.filter((text) => text.includes('select "id" from "counters"')).length, 1);
  t.is(small.size, 2);
  // Statements from anywhere else carry no name.
  t.is(preparedStatementName('select 1'), undefined);
  t.is(preparedStatementName('/* ultracloud:prepare unterminated'), undefined);
});

// ---------------------------------------------------------------------------------------------
// Concurrency

interface CounterTable {
  counters: { id: number; value: bigint };
}

storageTest('50 concurrent read-modify-write transactions lose no update', async (t, db) => {
  await sql`create table counters (id int primary key, value int8 not null)`.execute(db);
  const counters = db as unknown as Kysely<CounterTable>;
  await counters.insertInto('counters').values({ id: 1, value: 0n }).execute();

  const increment = async (i: number): Promise<void> => {
    await counters.transaction().execute(async (trx) => {
      const { value } = await trx.selectFrom('counters').select('value').where('id', '=', 1).forUpdate().executeTakeFirstOrThrow();
      await yieldToEventLoop(); // give other callers every chance to interleave
      await trx.updateTable('counters').set({ value: value + 1n }).where('id', '=', 1).execute();
      if (i % 10 === 9) throw new Error('rolled back on purpose');
    });
  };
  const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => increment(i)));

  const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  t.deepEqual(
    rejected.map((r) => (r.reason as Error).message),
    Array.from({ length: 5 }, () => 'rolled back on purpose'),
  );
  const { value } = await counters.selectFrom('counters').select('value').where('id', '=', 1).executeTakeFirstOrThrow();
  t.is(value, 45n);
});

test('PGlite runs concurrent transactions one at a time on its single connection', async (t) => {
  const database = await openDatabase<CounterTable>();
  t.teardown(() => database.close());
  const { db } = database;
  await sql`create table counters (id int primary key, value int8 not null)`.execute(db);
  await db.insertInto('counters').values({ id: 1, value: 0n }).execute();

  const events: string[] = [];
  // No FOR UPDATE: only the serialisation of whole transactions keeps this correct.
  const increment = (i: number): Promise<void> =>
    db.transaction().execute(async (trx) => {
      events.push(`begin ${i}`);
      const { value } = await trx.selectFrom('counters').select('value').where('id', '=', 1).executeTakeFirstOrThrow();
      await yieldToEventLoop();
      await trx.updateTable('counters').set({ value: value + 1n }).where('id', '=', 1).execute();
      events.push(`end ${i}`);
    });
  // Plain queries on `db` queue for the connection as well and never land inside a transaction.
  const reads = Array.from({ length: 10 }, () =>
    db.selectFrom('counters').select('value').executeTakeFirstOrThrow().then(() => void events.push('read')),
  );
  await Promise.all([...Array.from({ length: 50 }, (_, i) => increment(i)), ...reads]);

  const withoutReads = events.filter((e) => e !== 'read');
  for (let i = 0; i < withoutReads.length; i += 2) {
    const begin = withoutReads[i] ?? '';
    t.is(withoutReads[i + 1], begin.replace('begin', 'end'), `transaction interleaved at event ${i}: ${withoutReads.slice(i, i + 3).join(', ')}`);
  }
  t.is(events.filter((e) => e === 'read').length, 10);
  const { value } = await db.selectFrom('counters').select('value').where('id', '=', 1).executeTakeFirstOrThrow();
  t.is(value, 50n);
});

// ---------------------------------------------------------------------------------------------
// PGlite on disk

test('PGlite data written with a state dir survives close and reopen, one opener at a time', async (t) => {
  const stateDir = await mkdtemp(join(tmpdir(), 'ultracloud-db-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));

  // A lock left by a process that no longer exists does not block the open.
  await mkdir(join(stateDir, 'pgdata'));
  await writeFile(join(stateDir, 'pgdata.lock'), '2147483646\n');
  const first = await openDatabase({ stateDir });
  await migrateToLatest(first.db, { schema: 'deployer', migrations: deployerMigrations });
  await serviceDatabase<DeployerTables>(first.db, 'deployer').insertInto('machines').values({ hostname: 'kept', pool_id: 7n }).execute();
  await first.close();
  await first.close(); // idempotent
  t.true(existsSync(join(stateDir, 'pgdata', 'PG_VERSION')));

  const second = await openDatabase({ stateDir });
  t.teardown(() => second.close());
  // A second PGlite on the same files would corrupt them.
  const inUse = await t.throwsAsync(openDatabase({ stateDir }));
  t.regex(inUse.message, new RegExp(`data directory .*pgdata is in use by process ${process.pid} \\(this one\\)`));
  t.deepEqual((await migrateToLatest(second.db, { schema: 'deployer', migrations: deployerMigrations })).applied, []);
  const machines = await serviceDatabase<DeployerTables>(second.db, 'deployer').selectFrom('machines').select(['hostname', 'pool_id']).execute();
  t.deepEqual(machines, [{ hostname: 'kept', pool_id: 7n }]);
});

test('an unreachable PostgreSQL URL fails at open with the URL, password redacted', async (t) => {
  const error = await t.throwsAsync(openDatabase({ url: 'postgres://app:s3cret@127.0.0.1:1/nowhere' }));
  t.regex(error.message, /^cannot connect to PostgreSQL at postgres:\/\/app:\*\*\*@127\.0\.0\.1:1\/nowhere: /);
  t.notRegex(error.message, /s3cret/);
});
