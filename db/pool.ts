// One pg pool per process, and the drizzle handle over it.
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import * as schema from './schema.js';

export type Database = NodePgDatabase<typeof schema> & { $client: pg.Pool };

let shared: { url: string; db: Database } | undefined;

export function createDatabase(url: string, options: { max?: number } = {}): Database {
  const pool = new pg.Pool({ connectionString: url, max: options.max ?? 10, application_name: 'tenet' });
  // An idle client that loses its server must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  return drizzle(pool, { schema });
}

/** The process's pool for `url`; a second call with another url is a programming error. */
export function getDatabase(url: string): Database {
  if (!shared) shared = { url, db: createDatabase(url) };
  else if (shared.url !== url) throw new Error('getDatabase: this process already has a pool for another database');
  return shared.db;
}

export async function closeDatabase(): Promise<void> {
  const current = shared;
  shared = undefined;
  await current?.db.$client.end();
}

/** Postgres URL with the password masked, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '<unparseable database url>';
  }
}
