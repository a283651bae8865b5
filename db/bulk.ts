// Many rows or values in one parameter. Multi-row inserts that skip rows whose unique key exists
// (`on conflict do nothing`), with all rows sent as one JSON parameter that Postgres expands with
// json_to_recordset, and `column = any(array)` for long lists of ids or keys. A batch of hundreds of
// wide rows (decisions with their request and response) is then one short statement and one
// JSON.stringify of the rows as they are, instead of a statement with a placeholder per value, which
// costs the worker far more CPU to build and send than the rows themselves.
import { and, getTableColumns, sql, type Column, type SQL } from 'drizzle-orm';
import { getTableConfig, type PgTable } from 'drizzle-orm/pg-core';
import type { Database } from './pool.js';

interface TableShape {
  /** [row key, column] for every column. */
  columns: [string, Column][];
  /** The statement around the JSON parameter, by the columns set and the columns returned. */
  statements: Map<string, { before: string; after: string }>;
  name: string;
}

const shapes = new WeakMap<PgTable, TableShape>();

function shapeOf(table: PgTable): TableShape {
  let shape = shapes.get(table);
  if (!shape) {
    const config = getTableConfig(table);
    const name = config.schema ? `${quote(config.schema)}.${quote(config.name)}` : quote(config.name);
    shape = { columns: Object.entries(getTableColumns(table)), statements: new Map(), name };
    shapes.set(table, shape);
  }
  return shape;
}

const quote = (identifier: string) => `"${identifier.replaceAll('"', '""')}"`;

/** The type of a column in a record definition (serial types exist only in CREATE TABLE). */
function recordType(column: Column): string {
  const type = column.getSQLType();
  return ({ bigserial: 'bigint', serial: 'integer', smallserial: 'smallint' } as Record<string, string>)[type] ?? type;
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
  const records = rows as readonly Record<string, unknown>[];
  const used = shape.columns.filter(([key]) => records.some((row) => row[key] !== undefined));
  for (const [key, column] of used) {
    if (column.hasDefault && records.some((row) => row[key] === undefined)) throw new Error(`insertNewRows: every row must set ${column.name} or none may`);
  }
  const returned = Object.entries(returning ?? {});
  const signature = `${used.map(([key]) => key).join(',')}|${returned.map(([alias, column]) => `${alias}=${column.name}`).join(',')}`;
  let statement = shape.statements.get(signature);
  if (!statement) {
    // Each JSON key becomes a typed column of the record set; JSON null and absent keys become NULL.
    const targets = used.map(([, column]) => quote(column.name)).join(', ');
    const sources = used.map(([key]) => quote(key)).join(', ');
    const definitions = used.map(([key, column]) => `${quote(key)} ${recordType(column)}`).join(', ');
    const returns = returned.length > 0 ? ` returning ${returned.map(([alias, column]) => `${quote(column.name)} as ${quote(alias)}`).join(', ')}` : '';
    statement = {
      before: `insert into ${shape.name} (${targets}) select ${sources} from json_to_recordset(`,
      after: `::json) as rows(${definitions}) on conflict do nothing${returns}`,
    };
    shape.statements.set(signature, statement);
  }
  const result = await db.execute<Record<string, unknown>>(sql`${sql.raw(statement.before)}${JSON.stringify(rows)}${sql.raw(statement.after)}`);
  return result.rows.map((row) => Object.fromEntries(returned.map(([alias, column]) => [alias, row[alias] === null ? null : column.mapFromDriverValue(row[alias])]))) as {
    [K in keyof TReturn]: TReturn[K]['_']['data'];
  }[];
}

/**
 * `column = any($1)`: a list of values as one array parameter, where drizzle's inArray makes a
 * placeholder per value (far more CPU to build and send for the hundreds of keys of a batch).
 */
export function inList(column: Column, values: readonly unknown[]): SQL {
  return sql`${column} = any(${sql.param(values)}::${sql.raw(recordType(column))}[])`;
}

/**
 * Inserts the rows that are new and returns the id of every row by its key: the ids of the rows it
 * inserted, and those stored before (by a retry or a concurrent writer) read back within `scope`.
 * `key` is the unique text column within the scope; `keyOf` reads it from a row.
 */
export async function insertKeyedRows<TTable extends PgTable>(
  db: Database,
  table: TTable,
  rows: readonly TTable['$inferInsert'][],
  columns: { id: Column; key: Column; scope: SQL },
  keyOf: (row: TTable['$inferInsert']) => string,
): Promise<Map<string, number>> {
  const ids = new Map<string, number>();
  for (let i = 0; i < rows.length; i += 500) {
    const chunk = rows.slice(i, i + 500);
    const inserted = await insertNewRows(db, table, chunk, { id: columns.id, key: columns.key });
    for (const row of inserted) ids.set(row.key as string, row.id as number);
    const missing = chunk.map(keyOf).filter((key) => !ids.has(key));
    if (missing.length === 0) continue;
    const existing = await db.execute<{ id: number | string; key: string }>(
      sql`select ${columns.id} as id, ${columns.key} as key from ${table} where ${and(columns.scope, inList(columns.key, missing))}`,
    );
    for (const row of existing.rows) ids.set(row.key, Number(row.id));
  }
  return ids;
}
