// Many rows in one statement with one bound parameter. The rows travel as one JSON array and
// PostgreSQL turns them into records of the table's own row type (jsonb_populate_recordset):
// a batch of thousands costs one JSON parse on the server, instead of a placeholder per column
// per row (which kysely and pg build and bind one by one, and PostgreSQL caps at 65,535).
import { type Kysely, type RawBuilder, sql } from 'kysely';

const bigintsAsStrings = (_key: string, value: unknown) => (typeof value === 'bigint' ? value.toString() : value);

/**
 * JSON for jsonb_populate_recordset: bigints as strings (the column's type reads them), Dates as
 * ISO. Column values are converted first, so the rows serialise without a replacer (which slows
 * JSON.stringify several times over) and a timestamp shared by many rows, as a batch's are, is
 * formatted once; a bigint nested in a document falls back to the replacer.
 */
export function jsonRows(rows: readonly object[]): string {
  let lastTime = Number.NaN;
  let lastIso: string | null = null;
  const ready = new Array<Record<string, unknown>>(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i] as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const key in row) {
      const value = row[key];
      if (typeof value === 'bigint') out[key] = value.toString();
      else if (value instanceof Date) {
        const time = value.getTime();
        // As Date's toJSON: null for an invalid date.
        if (time !== lastTime) lastIso = Number.isNaN(time) ? null : value.toISOString();
        lastTime = time;
        out[key] = lastIso;
      } else out[key] = value;
    }
    ready[i] = out;
  }
  try {
    return JSON.stringify(ready);
  } catch (err) {
    if (err instanceof TypeError) return JSON.stringify(rows, bigintsAsStrings);
    throw err;
  }
}

export interface JsonRowsWrite {
  /** Table name as the store sees it (qualified by the service's schema plugin). */
  readonly table: string;
  /** Columns written; every row object carries them under these names (nested objects fill jsonb columns). */
  readonly columns: readonly string[];
  readonly rows: readonly object[];
  /** Upsert: on a conflict over these columns, set `update` from the new row. Keys must be unique within `rows`. */
  readonly onConflict?: { readonly columns: readonly string[]; readonly update: readonly string[] };
}

/**
 * The INSERT (or upsert) of `rows`, in their order, as a statement or a data-modifying CTE of a
 * larger one; `when`: a condition (evaluated once) under which the rows are written at all.
 */
function jsonRowsInsert(w: JsonRowsWrite, when?: RawBuilder<unknown>): RawBuilder<unknown> {
  const columns = sql.join(w.columns.map((c) => sql.id(c)));
  const selected = sql.join(w.columns.map((c) => sql.id('r', c)));
  const conflict = w.onConflict
    ? sql` ON CONFLICT (${sql.join(w.onConflict.columns.map((c) => sql.id(c)))}) DO UPDATE SET ${sql.join(w.onConflict.update.map((c) => sql`${sql.id(c)} = ${sql.id('excluded', c)}`))}`
    : sql``;
  return sql`INSERT INTO ${sql.table(w.table)} (${columns})
    SELECT ${selected} FROM jsonb_populate_recordset(NULL::${sql.table(w.table)}, ${jsonRows(w.rows)}::jsonb) WITH ORDINALITY AS r${when ? sql` WHERE ${when}` : sql``}
    ORDER BY r.ordinality${conflict}`;
}

/** INSERT (or upsert) `rows` in one statement, in their order (serial ids ascend with it). Does nothing for no rows. */
export async function writeJsonRows(db: Kysely<unknown> | { executeQuery: Kysely<unknown>['executeQuery'] }, w: JsonRowsWrite): Promise<void> {
  if (w.rows.length === 0) return;
  await jsonRowsInsert(w).execute(db as Kysely<unknown>);
}
