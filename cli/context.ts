// What commands share: settings read once, and the database / Temporal client they connect to.
import { Client, Connection } from '@temporalio/client';
import { applyMigrations } from '../db/migrate.js';
import { closeDatabase, getDatabase, redactUrl, type Database } from '../db/pool.js';
import { temporalDataConverter } from '../worker/data-converter.js';
import { resolveEndpoints } from '../worker/dev-stack.js';
import { readSettings, type Settings } from '../worker/settings.js';
import { connectHint, describeTemporal, temporalConnectOptions } from '../worker/temporal-connection.js';
import { exitCodes, UserError } from './errors.js';

let settings: Settings | undefined;

export function getSettings(): Settings {
  settings ??= readSettings();
  return settings;
}

/** The database, migrated; fails with a hint when there is none to reach. */
export async function openDatabase(): Promise<Database> {
  const { databaseUrl } = resolveEndpoints(getSettings());
  if (!databaseUrl) {
    throw new UserError('no database: set DATABASE_URL, or start the embedded stack with `tenet dev`', exitCodes.unavailable);
  }
  try {
    await applyMigrations(databaseUrl);
  } catch (error) {
    throw new UserError(`cannot reach Postgres at ${redactUrl(databaseUrl)}: ${(error as Error).message}`, exitCodes.unavailable);
  }
  return getDatabase(databaseUrl);
}

export async function openTemporal(): Promise<Client> {
  const s = getSettings();
  const { temporalAddress } = resolveEndpoints(s);
  const { dataConverter } = temporalDataConverter(s, temporalAddress);
  const connect = temporalConnectOptions(s, temporalAddress);
  try {
    const connection = await Connection.connect({ ...connect, connectTimeout: 5_000 });
    return new Client({ connection, namespace: s.namespace, dataConverter });
  } catch (error) {
    throw new UserError(`cannot reach Temporal at ${describeTemporal(connect)}: ${(error as Error).message}${connectHint(connect)}`, exitCodes.unavailable);
  }
}

export async function closeAll(client?: Client): Promise<void> {
  await client?.connection.close();
  await closeDatabase();
}
