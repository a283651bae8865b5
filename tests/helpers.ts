// Shared by the tests: real services only. Databases are made fresh on the machine's Postgres
// (TEST_DATABASE_URL, default 127.0.0.1:5432) and dropped after; the CLI runs as a child process.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { parseConstitution } from '../core/constitution/parse.js';
import type { Constitution } from '../core/constitution/schema.js';
import { projectRoot } from '../worker/settings.js';

export const adminUrl = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const temporalCli = process.env.TEMPORAL_CLI ?? path.join(projectRoot, '.venv', 'bin', 'temporal');
export const venvPython = path.join(projectRoot, '.venv', 'bin', 'python');
export const cliEntry = path.join(projectRoot, 'cli', 'bin.mjs');

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(prefix = 'tenet_test'): Promise<TestDatabase> {
  const name = `${prefix}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create database ${admin.escapeIdentifier(name)}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: async () => {
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      await client.query(`drop database if exists ${client.escapeIdentifier(name)} with (force)`);
      await client.end();
    },
  };
}

/** A fresh folder, open to other users (mkdtemp makes 0700) so the embedded Postgres, run as `postgres` under root, keeps its data inside it. */
/**
 * The tiny random-initialised model (`trainer make-tiny`, seed 0) at `output`, a folder of its own.
 * It is built once per version of its source and of the trainer's requirements, into
 * node_modules/.cache/tenet-tiny-model/, and copied from there: each build costs ~10 CPU-seconds, mostly
 * the interpreter's imports, and seven test files need one.
 */
export function makeTinyModel(output: string): void {
  const hash = createHash('sha256');
  for (const file of ['trainer/tenet_trainer/make_tiny.py', 'trainer/requirements.txt']) hash.update(readFileSync(path.join(projectRoot, file)));
  const cached = path.join(projectRoot, 'node_modules', '.cache', 'tenet-tiny-model', hash.digest('hex').slice(0, 16));
  if (!existsSync(path.join(cached, 'config.json'))) {
    const building = `${cached}.building-${process.pid}`;
    rmSync(building, { recursive: true, force: true });
    execFileSync(venvPython, ['-m', 'tenet_trainer', 'make-tiny', '--output', building], { stdio: 'pipe' });
    try {
      renameSync(building, cached);
    } catch (error) {
      rmSync(building, { recursive: true, force: true });
      if (!existsSync(path.join(cached, 'config.json'))) throw error; // not another lane's build that won the race
    }
  }
  cpSync(cached, output, { recursive: true });
}

export function tempDir(prefix = 'tenet-test-'): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return dir;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `tenet ARGS` to completion. The environment is the test's, without the stack's variables, plus `env`. */
export function runCli(args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 180_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliEntry, ...args], { cwd: projectRoot, env: cliEnv(env) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export function cliEnv(env: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = { ...process.env };
  for (const key of ['TEMPORAL_ADDRESS', 'DATABASE_URL', 'TENET_HOME', 'TENET_TEMPORAL_PORT', 'TENET_TEMPORAL_UI_PORT', 'TENET_PG_PORT', 'TENET_CODEC_KEYS', 'TENET_CODEC_KEY', 'TENET_CODEC_KEY_ID', 'TENET_UI_TOKEN', 'TEMPORAL_TLS', 'TEMPORAL_TLS_CA', 'TEMPORAL_TLS_CERT', 'TEMPORAL_TLS_KEY', 'TEMPORAL_TLS_SERVER_NAME', 'TEMPORAL_API_KEY']) delete base[key];
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined) delete base[key];
    else base[key] = value;
  }
  return base;
}

/** constitutions/default.yaml, parsed, with its source text. */
export function defaultConstitution(): { constitution: Constitution; source: string } {
  const source = readFileSync(path.join(projectRoot, 'constitutions', 'default.yaml'), 'utf8');
  const parsed = parseConstitution(source, 'constitutions/default.yaml');
  if (!parsed.ok) throw new Error('constitutions/default.yaml is not valid');
  return { constitution: parsed.constitution, source };
}

/** `promise`, or a failure naming `what` after `ms`: a step that hangs fails the test in time, saying which. */
export async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: still not done after ${ms / 1000} s`)), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A stand-in for `python -m tenet_trainer` in `dir` that publishes an empty artifact at once: for tests of what a trainer job is handed, not of training. */
export function fakeTrainerScript(dir: string): string {
  const file = path.join(dir, 'fake-trainer.sh');
  writeFileSync(file, `#!/bin/sh\nmkdir -p out && echo '{"event":"done","output":"'"$PWD"'/out","metrics":{}}'\n`);
  chmodSync(file, 0o755);
  return file;
}
