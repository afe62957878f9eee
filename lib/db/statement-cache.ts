// Statements built with kysely once and then only re-bound. Building and compiling a query costs
// tens to hundreds of microseconds of CPU per call (a tree of frozen nodes, the schema plugin's
// transform, the compiler), which on a hot path costs more than the database round trip itself.
// A cached statement is built the first time its key is seen, with a named placeholder in place
// of every value; later calls reuse the SQL text and only put the values in order.
//
// The contract: everything that changes the SQL text (which columns are set, how many rows,
// which optional CTEs) must be in the key; everything else must come from `param(name)`.
//
// On a PostgreSQL server each cached statement also runs as a named prepared statement: its text
// starts with a comment that names it (a digest of the text), and the pool kysely is given
// (lib/db/database.ts) passes that name to pg. The server then parses and analyses the statement
// once per connection instead of on every call, and may keep a generic plan for it. PGlite runs the
// text as it is; the comment changes nothing there.
import { createHash } from 'node:crypto';
import { type Compilable, CompiledQuery, type Kysely, type QueryResult, type RawBuilder, type Transaction } from 'kysely';

const PLACEHOLDER_PREFIX = '\u0000ultracloud-param:';
const NAME_PREFIX = '/* ultracloud:prepare ';
const NAME_SUFFIX = ' */ ';

/**
 * The prepared-statement name a StatementCache gave this SQL text, or undefined when the text did
 * not come from one (anything else runs as an unnamed statement, parsed on every call).
 */
export function preparedStatementName(sql: string): string | undefined {
  if (!sql.startsWith(NAME_PREFIX)) return undefined;
  const end = sql.indexOf(NAME_SUFFIX, NAME_PREFIX.length);
  return end < 0 ? undefined : sql.slice(NAME_PREFIX.length, end);
}

type Slot = { readonly name: string } | { readonly value: unknown };

interface Prepared {
  readonly sql: string;
  readonly slots: readonly Slot[];
}

/** Stands for a value given at call time under `name` (typed as whatever the builder expects). */
export type Param = <T = never>(name: string) => T;

const param: Param = <T>(name: string) => `${PLACEHOLDER_PREFIX}${name}` as T;

export class StatementCache {
  private readonly prepared = new Map<string, Prepared>();

  /**
   * @param maxNamed how many of this cache's statements get a name: each named statement holds a
   *   parsed statement and plan in every server connection that ran it, so a cache whose keys keep
   *   growing runs the rest unnamed.
   */
  constructor(private readonly maxNamed = 64) {}

  /** Runs the statement `key` (built by `build` on first use) with `values` bound by name. */
  async execute<R, DB = unknown>(
    db: Kysely<DB> | Transaction<DB>,
    key: string,
    build: (param: Param) => Compilable<R> | RawBuilder<R>,
    values: Readonly<Record<string, unknown>>,
  ): Promise<QueryResult<R>> {
    let p = this.prepared.get(key);
    if (!p) {
      const query = build(param);
      // Shapes are only ever added, so the first maxNamed of them are the named ones.
      p = prepare(isRawBuilder(query) ? query.compile(db) : query.compile(), this.prepared.size < this.maxNamed);
      this.prepared.set(key, p);
    }
    const parameters = p.slots.map((slot) => {
      if ('value' in slot) return slot.value;
      if (!(slot.name in values)) throw new Error(`statement ${key}: no value for parameter ${slot.name}`);
      return values[slot.name];
    });
    return db.executeQuery<R>(CompiledQuery.raw(p.sql, parameters));
  }

  /** How many distinct statements are cached (their shapes). */
  get size(): number {
    return this.prepared.size;
  }
}

function isRawBuilder<R>(query: Compilable<R> | RawBuilder<R>): query is RawBuilder<R> {
  return (query as { isRawBuilder?: boolean }).isRawBuilder === true;
}

function prepare(compiled: CompiledQuery<unknown>, named: boolean): Prepared {
  const slots = compiled.parameters.map((value): Slot => {
    if (typeof value === 'string' && value.startsWith(PLACEHOLDER_PREFIX)) return { name: value.slice(PLACEHOLDER_PREFIX.length) };
    return { value };
  });
  if (!named) return { sql: compiled.sql, slots };
  // The same text always gets the same name, so every connection and every cache agree on it.
  const name = `uc_${createHash('sha256').update(compiled.sql).digest('hex').slice(0, 24)}`;
  return { sql: `${NAME_PREFIX}${name}${NAME_SUFFIX}${compiled.sql}`, slots };
}
