// The one way commands use the database: open it (migrated), run the command's work, close it.
import type { Database } from '../db/pool.js';
import { closeAll, openDatabase } from './context.js';

/** Runs `work` with the migrated database, closing the process's connections afterwards, also on error. */
export async function withDatabase<T>(work: (db: Database) => Promise<T>): Promise<T> {
  const db = await openDatabase();
  try {
    return await work(db);
  } finally {
    await closeAll();
  }
}
