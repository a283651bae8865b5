// `tenet dev` end to end: the real Temporal dev server, the embedded Postgres and the worker as
// child processes; start, status, demo, a second start, Ctrl-C, restart, SIGKILL and stale locks.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import pg from 'pg';
import { committedMigrations } from '../../db/migrate.js';
import { isAlive, portInUse, stopProcess } from '../../worker/processes.js';
import { cliEntry, cliEnv, createTestDatabase, freePort, runCli, tempDir, type TestDatabase } from '../helpers.js';

interface Stack {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

async function stackEnv(home: string): Promise<Record<string, string>> {
  return {
    TENET_HOME: home,
    TENET_TEMPORAL_PORT: String(await freePort()),
    TENET_TEMPORAL_UI_PORT: String(await freePort()),
    TENET_PG_PORT: String(await freePort()),
  };
}

function startDev(env: Record<string, string>): Promise<Stack> {
  // Its own process group, like a command started in a terminal, so a test can "press Ctrl-C".
  const child = spawn(process.execPath, [cliEntry, 'dev'], { env: cliEnv(env), detached: true });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tenet dev not ready after 120 s:\n${output}`)), 120_000);
    const check = setInterval(() => {
      if (output.includes('Press Ctrl-C')) {
        clearInterval(check);
        clearTimeout(timer);
        resolve({ child, output: () => output, exited });
      }
    }, 100);
    void exited.then((code) => {
      clearInterval(check);
      clearTimeout(timer);
      reject(new Error(`tenet dev exited with ${code} before it was ready:\n${output}`));
    });
  });
}

interface StackRecord {
  pid: number;
  temporal: { address: string; pid?: number };
  postgres: { pid?: number; port?: number };
  worker: { pid?: number };
}

function readRecord(home: string): StackRecord {
  return JSON.parse(readFileSync(path.join(home, 'dev.json'), 'utf8')) as StackRecord;
}

function childPids(record: StackRecord): number[] {
  return [record.temporal.pid, record.postgres.pid, record.worker.pid].filter((pid): pid is number => pid !== undefined);
}

async function killAll(pids: number[]) {
  await Promise.all(pids.map((pid) => stopProcess(pid, { graceMs: 5_000 })));
}

describe('tenet dev: the embedded stack', () => {
  let home: string;
  let env: Record<string, string>;
  let stack: Stack | undefined;
  const spawned = new Set<number>();

  before(async () => {
    home = tempDir('tenet-dev-');
    env = await stackEnv(home);
  });

  after(async () => {
    if (stack) stack.child.kill('SIGKILL');
    await killAll([...spawned]);
    rmSync(home, { recursive: true, force: true });
  });

  // How long the start takes is printed ("stack ready in N s"), not asserted: a timed assertion fails on a busy
  // machine; startDev's 120 s bound only ends a hang.
  it('comes up and says how long it took; status reports every part healthy; the demo runs on it; a second start is refused', async () => {
    stack = await startDev(env);
    const record = readRecord(home);
    childPids(record).forEach((pid) => spawned.add(pid));
    assert.match(stack.output(), /stack ready in \d+\.\d s/);
    assert.match(stack.output(), new RegExp(`UI http://127\\.0\\.0\\.1:${env.TENET_TEMPORAL_UI_PORT}`));
    assert.equal(childPids(record).length, 3);
    assert.match(stack.output(), /no TENET_CODEC_KEYS set: generated the payload encryption key "dev-[0-9a-f]{8}" in \S+codec-key \(mode 600\)/);
    assert.equal(statSync(path.join(home, 'codec-key')).mode & 0o777, 0o600);

    const status = await runCli(['status', '--json'], env);
    assert.equal(status.code, 0, status.stdout + status.stderr);
    const report = JSON.parse(status.stdout) as { healthy: boolean; parts: { part: string; ok: boolean; detail: string }[] };
    assert.equal(report.healthy, true);
    assert.deepEqual(report.parts.map((p) => p.part), ['temporal', 'postgres', 'workers tenet-cpu', 'workers tenet-gpu']);
    assert.ok(report.parts[1]!.detail.includes(`migration ${committedMigrations().at(-1)!.tag}`), report.parts[1]!.detail);

    const demo = await runCli(['demo', '--tiny', '--prompts', '3', '--mode', 'none'], env);
    assert.equal(demo.code, 0, demo.stdout + demo.stderr);
    assert.match(demo.stdout, /using the dev stack already running/);
    assert.match(demo.stdout, /run \d+ completed: sample 6 done \/ 0 failed, critique 6 done \/ 0 failed, label 6 done \/ 0 failed/);
    // After the run, the rater's accuracy on 2 pairs of each of the gold set's 10 categories, measured and stored.
    assert.match(demo.stdout, /rater on the gold set: accuracy (\d\.\d{3}|-) raw, .* on 20 pairs .*order agreement/);

    const second = await runCli(['dev'], env);
    assert.equal(second.code, 4);
    assert.match(second.stderr, /already running \(pid \d+/);
  });

  it('Ctrl-C stops every child, frees the ports and removes the lock', async () => {
    const record = readRecord(home);
    // What a terminal does on Ctrl-C: SIGINT to the foreground process group.
    process.kill(-stack!.child.pid!, 'SIGINT');
    assert.equal(await stack!.exited, 0);
    stack = undefined;
    for (const pid of childPids(record)) assert.equal(isAlive(pid), false, `pid ${pid} still alive`);
    for (const port of [env.TENET_TEMPORAL_PORT, env.TENET_PG_PORT]) assert.equal(await portInUse(Number(port)), false, `port ${port} still taken`);
    assert.equal(existsSync(path.join(home, 'dev.json')), false);

    const status = await runCli(['status'], env);
    assert.equal(status.code, 3);
    assert.match(status.stdout, /DOWN\s+temporal/);
  });

  it('a restart keeps the data: the earlier run and its workflow are still there', async () => {
    stack = await startDev(env);
    const record = readRecord(home);
    childPids(record).forEach((pid) => spawned.add(pid));
    const credentials = JSON.parse(readFileSync(path.join(home, 'pg-credentials.json'), 'utf8')) as { user: string; password: string; database: string };
    const client = new pg.Client({ host: '127.0.0.1', port: Number(env.TENET_PG_PORT), ...credentials });
    await client.connect();
    const runs = await client.query<{ workflow_id: string; status: string }>("select workflow_id, status from runs where kind = 'pipeline'");
    await client.end();
    assert.equal(runs.rowCount, 1);
    assert.equal(runs.rows[0]!.status, 'completed');

    const connection = await Connection.connect({ address: record.temporal.address });
    const handle = new Client({ connection }).workflow.getHandle(runs.rows[0]!.workflow_id);
    const described = await handle.describe();
    // The demo's client and the stack's worker sealed the payloads with the dev key, which the restart reused.
    const input = (await handle.fetchHistory()).events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!;
    await connection.close();
    assert.equal(described.status.name, 'COMPLETED');
    assert.equal(Buffer.from(input.metadata!.encoding!).toString(), 'binary/encrypted');
    assert.match(stack.output(), /no TENET_CODEC_KEYS set: using the payload encryption key "dev-/);
  });

  it('after SIGKILL the stale lock and orphaned children do not block the next start', async () => {
    const killed = readRecord(home);
    stack!.child.kill('SIGKILL');
    await stack!.exited;
    stack = undefined;
    assert.equal(existsSync(path.join(home, 'dev.json')), true, 'the lock stays behind');

    stack = await startDev(env);
    assert.match(stack.output(), /stale lock/);
    const record = readRecord(home);
    childPids(record).forEach((pid) => spawned.add(pid));
    for (const pid of [killed.temporal.pid!, killed.postgres.pid!, killed.worker.pid!]) assert.equal(isAlive(pid), false, `orphan ${pid} still alive`);
    const status = await runCli(['status'], env);
    assert.equal(status.code, 0, status.stdout);

    stack.child.kill('SIGINT');
    assert.equal(await stack.exited, 0);
    stack = undefined;
  });
});

describe('tenet dev interrupted during start-up', () => {
  it('a Ctrl-C before the stack is ready stops what was started and releases the lock', async () => {
    const home = tempDir('tenet-devint-');
    const env = await stackEnv(home);
    const child = spawn(process.execPath, [cliEntry, 'dev'], { env: cliEnv(env), detached: true });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    let done = false;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => ((done = true), resolve(code))));
    const lock = path.join(home, 'dev.json');
    // The lock is taken after the interrupt handler is installed and before any part is ready. Loading the CLI
    // itself takes seconds on a busy 2-core machine (CI ran 6 s without a lock), so wait for the lock, not a clock:
    // the bound is only there to end a hung start.
    const deadline = Date.now() + 120_000;
    while (!existsSync(lock) && !done && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.ok(existsSync(lock), `no lock appeared (exited: ${done}):\n${output}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const record = readRecord(home);
    process.kill(-child.pid!, 'SIGINT');
    assert.equal(await exited, 130, output);
    assert.match(output, /interrupted during start-up/);
    assert.equal(existsSync(lock), false);
    await new Promise((resolve) => setTimeout(resolve, 500));
    for (const pid of childPids(record)) assert.equal(isAlive(pid), false, `pid ${pid} still alive`);
    for (const port of [env.TENET_TEMPORAL_PORT, env.TENET_PG_PORT]) assert.equal(await portInUse(Number(port)), false, `port ${port} still taken`);
    rmSync(home, { recursive: true, force: true });
  });
});

describe('tenet dev with DATABASE_URL: your own Postgres, no embedded one', () => {
  let database: TestDatabase;
  let stack: Stack | undefined;

  before(async () => (database = await createTestDatabase('tenet_devurl')));
  after(async () => {
    if (stack) stack.child.kill('SIGKILL');
    await database.drop();
  });

  it('migrates and uses the given database, runs the demo there, and starts no Postgres', async () => {
    const home = tempDir('tenet-devurl-');
    const env = { ...(await stackEnv(home)), DATABASE_URL: database.url };
    stack = await startDev(env);
    const record = readRecord(home);
    assert.equal(record.postgres.pid, undefined);
    assert.equal(existsSync(path.join(home, 'pg')), false);

    const demo = await runCli(['demo', '--tiny', '--prompts', '2', '--mode', 'none'], env);
    assert.equal(demo.code, 0, demo.stdout + demo.stderr);
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    const prompts = await client.query("select p.id from prompts p join runs r on r.id = p.run_id where r.status = $1 and r.kind = 'pipeline'", ['completed']);
    await client.end();
    assert.equal(prompts.rowCount, 2);
    // The audit console came up with the stack, on 127.0.0.1, over the same database.
    const consoleUrl = /console {4}(http:\/\/127\.0\.0\.1:\d+)\//.exec(stack.output())?.[1];
    assert.ok(consoleUrl, stack.output());
    const runsPage = await fetch(`${consoleUrl}/runs`);
    assert.equal(runsPage.status, 200);
    assert.match(await runsPage.text(), /<td class="status status-completed">completed<\/td><td>pipeline<\/td>/);
    assert.match(demo.stdout, /npx tenet ui, then http:\/\/127\.0\.0\.1:8777\/runs\/\d+/);

    stack.child.kill('SIGINT');
    assert.equal(await stack.exited, 0);
    stack = undefined;
  });
});
