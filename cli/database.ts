// The one way commands use the database (and Temporal): open it, run the command's work, close it.
import type { Client } from '@temporalio/client';
import type { Database } from '../db/pool.js';
import { closeAll, openDatabase, openTemporal } from './context.js';

/** Runs `work` with the migrated database, closing the process's connections afterwards, also on error. */
export async function withDatabase<T>(work: (db: Database) => Promise<T>): Promise<T> {
  const db = await openDatabase();
  try {
    return await work(db);
  } finally {
    await closeAll();
  }
}

/** Runs `work` with a Temporal client, closing its connection afterwards, also on error. */
export async function withTemporal<T>(work: (client: Client) => Promise<T>): Promise<T> {
  const client = await openTemporal();
  try {
    return await work(client);
  } finally {
    await client.connection.close();
  }
}
