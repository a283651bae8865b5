// The embedded dev stack: Temporal dev server + embedded Postgres + one worker on both queues,
// as children of one `tenet dev` process. .tenet/dev.json is both the lock and the record of the
// children, so a stack killed with SIGKILL is cleaned up by the next start instead of blocking it.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { applyMigrations, type MigrationState } from '../db/migrate.js';
import { codecKeysFromEnv, ensureDevKey } from './codec.js';
import { clearStalePostgres, startEmbeddedPostgres, type EmbeddedPostgresHandle } from './postgres.js';
import { commandLine, isAlive, isOurProcess, stopProcess, waitFor } from './processes.js';
import type { Settings } from './settings.js';
import { startTemporalDevServer, temporalMarker, type TemporalServerHandle } from './temporal.js';

const cliEntry = fileURLToPath(new URL('../cli/bin.mjs', import.meta.url));
const workerMarker = '--exit-with-parent';

const stateSchema = z.object({
  pid: z.number().int(),
  cmdline: z.string().optional(),
  startedAt: z.string(),
  ready: z.boolean(),
  temporal: z.object({ address: z.string(), uiUrl: z.string().optional(), pid: z.number().int().optional() }),
  postgres: z.object({ port: z.number().int().optional(), pid: z.number().int().optional(), embedded: z.boolean() }),
  worker: z.object({ pid: z.number().int().optional() }),
});
export type StackState = z.infer<typeof stateSchema>;

export class StackRunningError extends Error {
  override name = 'StackRunningError';
  constructor(readonly state: StackState) {
    super(`a tenet dev stack is already running (pid ${state.pid}, Temporal at ${state.temporal.address}); use it, or stop it with Ctrl-C in its terminal`);
  }
}

export interface DevStack {
  temporalAddress: string;
  uiUrl: string | undefined;
  databaseUrl: string;
  migrations: MigrationState;
  startupMs: number;
  /** Resolves when a child of the stack dies unexpectedly, with what died. */
  failed: Promise<string>;
  stop(): Promise<void>;
}

function stateFile(home: string): string {
  return path.join(home, 'dev.json');
}

/** The running stack's record, or undefined when none runs (a stale record does not count). */
export function readRunningStack(home: string): StackState | undefined {
  const state = readState(home);
  if (!state) return undefined;
  return stackProcessAlive(state) ? state : undefined;
}

function readState(home: string): StackState | undefined {
  try {
    const parsed = stateSchema.safeParse(JSON.parse(readFileSync(stateFile(home), 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

function stackProcessAlive(state: StackState): boolean {
  if (!isAlive(state.pid)) return false;
  const now = commandLine(state.pid);
  return now === undefined || state.cmdline === undefined || now === state.cmdline;
}

/** Takes the lock; on a stale one, stops what the dead stack left running and takes it over. */
async function acquireLock(home: string, log: (line: string) => void, initial: StackState): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(stateFile(home), JSON.stringify(initial, null, 2), { flag: 'wx' });
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const state = readState(home);
    if (state && stackProcessAlive(state)) throw new StackRunningError(state);
    log('found a stale lock from a stack that is gone; cleaning up after it');
    await cleanUpStale(home, state);
    rmSync(stateFile(home), { force: true });
  }
  throw new Error(`could not take the dev stack lock ${stateFile(home)}`);
}

/**
 * Stops what a start of this process has spawned so far and releases the lock: for a Ctrl-C that
 * arrives while the stack is still coming up.
 */
export async function abortStart(home: string): Promise<void> {
  const state = readState(home);
  if (state?.pid !== process.pid) return;
  await cleanUpStale(home, state);
  rmSync(stateFile(home), { force: true });
}

async function cleanUpStale(home: string, state: StackState | undefined): Promise<void> {
  if (state?.worker.pid && isOurProcess(state.worker.pid, workerMarker)) await stopProcess(state.worker.pid);
  if (state?.temporal.pid && isOurProcess(state.temporal.pid, temporalMarker)) await stopProcess(state.temporal.pid);
  if (state?.postgres.pid && isOurProcess(state.postgres.pid, 'postgres')) await stopProcess(state.postgres.pid, { signal: 'SIGINT', graceMs: 15_000 });
  await clearStalePostgres(home);
}

export async function startDevStack(settings: Settings, options: { log: (line: string) => void }): Promise<DevStack> {
  const { log } = options;
  const began = Date.now();
  const home = settings.home;
  mkdirSync(path.join(home, 'logs'), { recursive: true });
  const state: StackState = {
    pid: process.pid,
    cmdline: commandLine(process.pid),
    startedAt: new Date().toISOString(),
    ready: false,
    temporal: { address: settings.temporalAddress ?? `127.0.0.1:${settings.ports.temporal}` },
    postgres: { embedded: settings.databaseUrl === undefined },
    worker: {},
  };
  await acquireLock(home, log, state);
  const save = () => writeFileSync(stateFile(home), JSON.stringify(state, null, 2));

  let postgres: EmbeddedPostgresHandle | undefined;
  let temporal: TemporalServerHandle | undefined;
  let worker: ChildProcess | undefined;
  let stopping = false;
  let reportFailure: (what: string) => void = () => undefined;
  const failed = new Promise<string>((resolve) => (reportFailure = resolve));

  const stop = async () => {
    stopping = true;
    if (worker?.pid) await stopProcess(worker.pid, { graceMs: 15_000 });
    await temporal?.stop();
    await postgres?.stop();
    const current = readState(home);
    if (current?.pid === process.pid) rmSync(stateFile(home), { force: true });
  };

  try {
    prepareCodecKey(home, log);
    const [startedPostgres, startedTemporal] = await Promise.all([
      settings.databaseUrl
        ? Promise.resolve(undefined)
        : startEmbeddedPostgres({
            home,
            port: settings.ports.postgres,
            log,
            onSpawn: (pid) => {
              state.postgres = { embedded: true, port: settings.ports.postgres, pid };
              save();
            },
          }).then((handle) => {
            postgres = handle;
            return handle;
          }),
      settings.temporalAddress
        ? Promise.resolve(undefined)
        : startTemporalDevServer({
            cli: settings.temporalCli,
            home,
            port: settings.ports.temporal,
            uiPort: settings.ports.temporalUi,
            namespace: settings.namespace,
            onSpawn: (pid) => {
              state.temporal = { ...state.temporal, pid };
              save();
            },
          }).then((handle) => {
            temporal = handle;
            return handle;
          }),
    ]);
    if (startedPostgres) state.postgres = { embedded: true, port: settings.ports.postgres, pid: startedPostgres.pid };
    if (startedTemporal) state.temporal = { address: startedTemporal.address, uiUrl: startedTemporal.uiUrl, pid: startedTemporal.pid };
    save();

    const databaseUrl = settings.databaseUrl ?? startedPostgres!.url;
    const migrations = await applyMigrations(databaseUrl);

    worker = spawnWorker(settings, home, state.temporal.address, databaseUrl);
    state.worker = { pid: worker.pid };
    save();
    worker.once('exit', (code, signal) => {
      if (!stopping) reportFailure(`the worker exited (${signal ?? `code ${code}`}); see ${path.join(home, 'logs', 'worker.log')}`);
    });
    await waitForWorker(worker, path.join(home, 'logs', 'worker.log'));

    state.ready = true;
    save();
    return {
      temporalAddress: state.temporal.address,
      uiUrl: state.temporal.uiUrl,
      databaseUrl,
      migrations,
      startupMs: Date.now() - began,
      failed,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Without keys in the environment, the stack's worker and CLI clients share a key kept in the state folder. */
function prepareCodecKey(home: string, log: (line: string) => void): void {
  if (codecKeysFromEnv()) return;
  const { keys, file, created } = ensureDevKey(home);
  log(`${created ? 'no TENET_CODEC_KEYS set: generated' : 'no TENET_CODEC_KEYS set: using'} the payload encryption key "${keys.current.id}" in ${file} (mode 600)`);
}

function spawnWorker(settings: Settings, home: string, temporalAddress: string, databaseUrl: string): ChildProcess {
  const log = createWriteStream(path.join(home, 'logs', 'worker.log'), { flags: 'a' });
  const child = spawn(process.execPath, [cliEntry, 'worker', '--queue', 'all', workerMarker], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TEMPORAL_ADDRESS: temporalAddress, TEMPORAL_NAMESPACE: settings.namespace, DATABASE_URL: databaseUrl },
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  return child;
}

async function waitForWorker(worker: ChildProcess, logFile: string): Promise<void> {
  let output = '';
  let exited = false;
  worker.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  worker.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  worker.once('exit', () => (exited = true));
  await waitFor('the worker to poll its task queues', 90_000, () => {
    if (exited) {
      const tail = output.trim().split('\n').slice(-8).join('\n');
      throw new Error(`the worker exited during start-up (log: ${logFile}):\n${tail}`);
    }
    return Promise.resolve(output.includes('worker ready') ? true : undefined);
  });
}

/** The database URL of the local embedded Postgres, when it was ever initialised here. */
export function embeddedDatabaseUrl(settings: Settings): string | undefined {
  const file = path.join(settings.home, 'pg-credentials.json');
  if (!existsSync(file)) return undefined;
  const credentials = z.object({ user: z.string(), password: z.string(), database: z.string() }).parse(JSON.parse(readFileSync(file, 'utf8')));
  const port = readRunningStack(settings.home)?.postgres.port ?? settings.ports.postgres;
  return `postgres://${credentials.user}:${encodeURIComponent(credentials.password)}@127.0.0.1:${port}/${credentials.database}`;
}

/** Where commands find Temporal and Postgres: the environment first, then the local dev stack. */
export function resolveEndpoints(settings: Settings): { temporalAddress: string; databaseUrl: string | undefined; stack: StackState | undefined } {
  const stack = readRunningStack(settings.home);
  return {
    temporalAddress: settings.temporalAddress ?? stack?.temporal.address ?? `127.0.0.1:${settings.ports.temporal}`,
    databaseUrl: settings.databaseUrl ?? embeddedDatabaseUrl(settings),
    stack,
  };
}
