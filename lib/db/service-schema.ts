// The view one service has of the shared database: its own Postgres schema, under unqualified
// table names, so store code says `machines` and the query reads `deployer.machines`.

import {
  OperationNodeTransformer,
  TableNode,
  type Kysely,
  type KyselyPlugin,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  type QueryResult,
  type RawNode,
  type RootOperationNode,
  type UnknownRow,
} from 'kysely';

/**
 * `db` scoped to `schema`: builder queries (select, join, subquery, CTE, insert, update … from,
 * delete, on conflict, returning) and `sql.table('machines')` inside raw SQL resolve in the
 * schema. Table names written as plain text in raw SQL are not rewritten; use `sql.table()`.
 */
export function serviceDatabase<DB>(db: SchemaScopable, schema: string): Kysely<DB> {
  // The process-wide handle does not know the services' tables (they share it); each service
  // names its own.
  return db.withSchema(schema).withPlugin(new RawTableSchemaPlugin(schema)) as Kysely<DB>;
}

/** Any Kysely instance, whatever tables it was typed with. */
export interface SchemaScopable {
  withSchema(schema: string): { withPlugin(plugin: KyselyPlugin): unknown };
}

// kysely's withSchema plugin qualifies only tables it finds in a query's FROM/INTO/JOIN/USING
// clauses; a raw `sql` root has none, so `sql.table('machines')` would silently fall through to
// the search path (e.g. `public.machines`). This qualifies tables passed directly to raw SQL.
class RawTableSchemaPlugin implements KyselyPlugin {
  readonly #transformer: RawTableSchemaTransformer;

  constructor(schema: string) {
    this.#transformer = new RawTableSchemaTransformer(schema);
  }

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    return this.#transformer.transformNode(args.node, args.queryId);
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return args.result;
  }
}

class RawTableSchemaTransformer extends OperationNodeTransformer {
  readonly #schema: string;

  constructor(schema: string) {
    super();
    this.#schema = schema;
  }

  protected override transformRaw(node: RawNode, queryId?: PluginTransformQueryArgs['queryId']): RawNode {
    const transformed = super.transformRaw(node, queryId);
    return {
      ...transformed,
      parameters: transformed.parameters.map((parameter) =>
        TableNode.is(parameter) && parameter.table.schema === undefined
          ? TableNode.createWithSchema(this.#schema, parameter.table.identifier.name)
          : parameter,
      ),
    };
  }
}
