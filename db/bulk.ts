// Multi-row inserts that skip rows whose unique key exists (`on conflict do nothing`), with all rows
// sent as one JSON parameter that Postgres expands with json_populate_recordset. A batch of hundreds
// of wide rows (decisions with their request and response) is then one short statement and one
// JSON.stringify, instead of a statement with a placeholder per value, which costs the worker far
// more CPU to build and send than the rows themselves.
import { getTableColumns, sql, type Column } from 'drizzle-orm';
import { getTableConfig, type PgTable } from 'drizzle-orm/pg-core';
import type { Database } from './pool.js';

interface TableShape {
  /** [row key, column name] for every column. */
  columns: [string, Column][];
  rowType: ReturnType<typeof sql.identifier> | ReturnType<typeof sql>;
  name: ReturnType<typeof sql.identifier> | ReturnType<typeof sql>;
}

const shapes = new WeakMap<PgTable, TableShape>();

function shapeOf(table: PgTable): TableShape {
  let shape = shapes.get(table);
  if (!shape) {
    const config = getTableConfig(table);
    const name = config.schema ? sql`${sql.identifier(config.schema)}.${sql.identifier(config.name)}` : sql.identifier(config.name);
    shape = { columns: Object.entries(getTableColumns(table)), rowType: name, name };
    shapes.set(table, shape);
  }
  return shape;
}

/**
 * Inserts `rows` (keys as in the drizzle table), skipping those that conflict with a unique key, and
 * returns the `returning` columns of the rows it inserted. Every row must set the same columns: a
 * key left undefined in one row but set in another would be stored as null, not as its default.
 */
export async function insertNewRows<TTable extends PgTable, TReturn extends Record<string, Column> = Record<never, Column>>(
  db: Pick<Database, 'execute'>,
  table: TTable,
  rows: readonly TTable['$inferInsert'][],
  returning?: TReturn,
): Promise<{ [K in keyof TReturn]: TReturn[K]['_']['data'] }[]> {
  if (rows.length === 0) return [];
  const shape = shapeOf(table);
  const used = shape.columns.filter(([key]) => rows.some((row) => (row as Record<string, unknown>)[key] !== undefined));
  const records = rows.map((row) => {
    const record: Record<string, unknown> = {};
    for (const [key, column] of used) {
      const value = (row as Record<string, unknown>)[key];
      if (value === undefined && column.hasDefault) throw new Error(`insertNewRows: every row must set ${column.name} or none may`);
      record[column.name] = value ?? null;
    }
    return record;
  });
  const names = sql.join(
    used.map(([, column]) => sql.identifier(column.name)),
    sql`, `,
  );
  const returned = Object.entries(returning ?? {});
  const returningSql =
    returned.length > 0
      ? sql` returning ${sql.join(
          returned.map(([alias, column]) => sql`${sql.identifier(column.name)} as ${sql.identifier(alias)}`),
          sql`, `,
        )}`
      : sql``;
  const result = await db.execute<Record<string, unknown>>(
    sql`insert into ${shape.name} (${names}) select ${names} from json_populate_recordset(null::${shape.rowType}, ${JSON.stringify(records)}::json) on conflict do nothing${returningSql}`,
  );
  return result.rows.map((row) => Object.fromEntries(returned.map(([alias, column]) => [alias, row[alias] === null ? null : column.mapFromDriverValue(row[alias])]))) as {
    [K in keyof TReturn]: TReturn[K]['_']['data'];
  }[];
}
