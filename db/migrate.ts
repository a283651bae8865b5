// Applies the committed drizzle-kit migrations, one process at a time (advisory lock).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import pg from 'pg';
import { z } from 'zod';

export const migrationsFolder = fileURLToPath(new URL('./migrations', import.meta.url));
// Any fixed 64-bit number; names the lock that serialises migrations across processes.
const migrationLock = 7_361_221_901;

const journalSchema = z.object({ entries: z.array(z.object({ idx: z.number(), tag: z.string(), when: z.number() })) });

export interface MigrationState {
  /** Migrations this checkout carries. */
  expected: number;
  /** Migrations the database has applied. */
  applied: number;
  /** Tag of the newest applied migration, e.g. `0000_initial`. */
  current: string | null;
  latest: string | null;
  upToDate: boolean;
}

export function committedMigrations() {
  const journal = journalSchema.parse(JSON.parse(readFileSync(`${migrationsFolder}/meta/_journal.json`, 'utf8')));
  return journal.entries;
}

export async function applyMigrations(url: string): Promise<MigrationState> {
  const client = new pg.Client({ connectionString: url, application_name: 'tenet-migrate' });
  // A server that ends the connection (shut down, e.g. on Ctrl-C during start-up) fails the query in
  // progress; between queries pg would emit it as an 'error' event, which with no listener ends the process.
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query('select pg_advisory_lock($1)', [migrationLock]);
    try {
      // Notices such as "schema already exists, skipping" are noise here.
      client.on('notice', () => undefined);
      await migrate(drizzle(client), { migrationsFolder });
    } finally {
      await client.query('select pg_advisory_unlock($1)', [migrationLock]);
    }
    return await readMigrationState(client);
  } finally {
    await client.end();
  }
}

export async function readMigrationState(client: pg.ClientBase | pg.Pool): Promise<MigrationState> {
  const entries = committedMigrations();
  const table = await client.query<{ exists: boolean }>(
    "select to_regclass('drizzle.__drizzle_migrations') is not null as exists",
  );
  let appliedMillis: number[] = [];
  if (table.rows[0]?.exists) {
    const rows = await client.query<{ created_at: string }>('select created_at from drizzle.__drizzle_migrations order by created_at');
    appliedMillis = rows.rows.map((row) => Number(row.created_at));
  }
  const newest = appliedMillis.at(-1);
  const current = newest === undefined ? null : (entries.filter((entry) => entry.when <= newest).at(-1)?.tag ?? null);
  const latest = entries.at(-1)?.tag ?? null;
  return {
    expected: entries.length,
    applied: appliedMillis.length,
    current,
    latest,
    upToDate: current === latest && appliedMillis.length >= entries.length,
  };
}
