// Crashes mid-run: the worker killed with SIGKILL during the label stage, and Postgres restarted
// under a running pipeline. Real worker processes, a real Temporal dev server, real Postgres.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { count, eq } from 'drizzle-orm';
import { startPipelineRun } from '../../cli/start-run.js';
import { runConfigSchema } from '../../core/run-config.js';
import { applyMigrations } from '../../db/migrate.js';
import { createDatabase, type Database } from '../../db/pool.js';
import * as schema from '../../db/schema.js';
import { startEmbeddedPostgres } from '../../worker/postgres.js';
import { stopProcess } from '../../worker/processes.js';
import { startScriptedEndpoint, type ScriptedEndpoint } from '../../worker/scripted-endpoint.js';
import type { pipeline } from '../../workflows/pipeline.js';
import { progressQuery } from '../../workflows/types.js';
import { cliEntry, cliEnv, createTestDatabase, defaultConstitution, freePort, temporalCli, tempDir, type TestDatabase } from '../helpers.js';

const { constitution, source } = defaultConstitution();

function prompts(count: number) {
  return Array.from({ length: count }, (_, i) => ({ key: `p${i}`, messages: [{ role: 'user' as const, content: `Question number ${i}: what should I know about topic ${i}?` }], split: 'train' as const, metadata: {} }));
}

function startWorker(env: Record<string, string>): { child: ChildProcess; ready: Promise<void> } {
  const child = spawn(process.execPath, [cliEntry, 'worker', '--queue', 'cpu'], { env: cliEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      if (output.includes('worker ready')) {
        clearInterval(timer);
        resolve();
      }
    }, 100);
    child.once('exit', (code) => {
      clearInterval(timer);
      reject(new Error(`worker exited with ${code}:\n${output}`));
    });
  });
  ready.catch(() => undefined);
  return { child, ready };
}

async function waitForLabelProgress(env: TestWorkflowEnvironment, workflowId: string, atLeast: number) {
  const handle = env.client.workflow.getHandle<typeof pipeline>(workflowId);
  for (let i = 0; i < 600; i++) {
    const progress = await handle.query(progressQuery).catch(() => []);
    const label = progress.find((p) => p.stage === 'label');
    if (label && label.done >= atLeast) return label.done;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('the label stage made no progress');
}

describe('crash recovery', () => {
  let env: TestWorkflowEnvironment;
  let endpoint: ScriptedEndpoint;
  const workers: ChildProcess[] = [];

  before(async () => {
    [env, endpoint] = await Promise.all([
      TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path: temporalCli } } }),
      startScriptedEndpoint({ latencyMs: 40 }),
    ]);
  });
  const stopWorkers = async () => {
    await Promise.all(workers.splice(0).map((w) => (w.pid ? stopProcess(w.pid, { signal: 'SIGTERM', graceMs: 10_000 }) : Promise.resolve())));
  };
  after(async () => {
    await stopWorkers();
    await endpoint?.close();
    await env?.teardown();
  });

  const config = () =>
    runConfigSchema.parse({
      endpoints: { policy: { base_url: endpoint.url, model: 'scripted', max_concurrency: 8 }, rater: { base_url: endpoint.url, model: 'scripted', max_concurrency: 8 } },
      sample: { n: 2, seed: 3 },
      critique: { enabled: false },
      label: { ensemble: 2 },
      scale: { batch_size: 4, shard_size: 20, max_batches_in_flight: 2, heartbeat_timeout_s: 3 },
    });

  it('SIGKILL of the worker in the label stage: one preference per pair, no duplicate decision, no cached request paid again', async () => {
    const database: TestDatabase = await createTestDatabase('tenet_sigkill');
    const db: Database = createDatabase(database.url);
    try {
      await applyMigrations(database.url);
      const workerEnv = { TEMPORAL_ADDRESS: env.address, DATABASE_URL: database.url, TENET_HOME: tempDir() };
      const first = startWorker(workerEnv);
      workers.push(first.child);
      await first.ready;
      const n = 40;
      const started = await startPipelineRun({ db, client: env.client, constitution, constitutionSource: source, config: config(), prompts: prompts(n), workflowId: 'crash-sigkill' });
      const doneAtKill = await waitForLabelProgress(env, started.workflowId, 30);
      first.child.kill('SIGKILL');
      const [{ n: decisionsAtKill }] = (await db.select({ n: count() }).from(schema.raterDecisions).where(eq(schema.raterDecisions.runId, started.runId))) as [{ n: number }];
      const sentBeforeRestart = endpoint.requests.length;

      const second = startWorker(workerEnv);
      workers.push(second.child);
      await second.ready;
      const result = await env.client.workflow.getHandle<typeof pipeline>(started.workflowId).result();

      const label = result.progress.find((p) => p.stage === 'label')!;
      assert.equal(label.failed, 0);
      const prefs = await db.select().from(schema.preferences).where(eq(schema.preferences.runId, started.runId));
      assert.equal(prefs.length, n, 'one preference per pair');
      assert.equal(new Set(prefs.map((p) => `${p.completionLowId}:${p.completionHighId}`)).size, n);
      const decisions = await db.select().from(schema.raterDecisions).where(eq(schema.raterDecisions.runId, started.runId));
      assert.equal(decisions.length, n * 2 * 2, 'two principles × two orders per pair, each once');
      assert.equal(new Set(decisions.map((d) => d.decisionKey)).size, decisions.length);

      // Each request body the endpoint answered: sent again only if it was in flight when the worker died.
      const sends = new Map<string, number>();
      for (const r of endpoint.requests) sends.set(JSON.stringify(r.body), (sends.get(JSON.stringify(r.body)) ?? 0) + 1);
      const paidTwice = [...sends.values()].filter((c) => c > 1).length;
      const cacheHits = decisions.filter((d) => d.fromCache).length;
      console.log(
        `sigkill: label done at kill ${doneAtKill}, decisions at kill ${decisionsAtKill}, requests before restart ${sentBeforeRestart}, after ${endpoint.requests.length - sentBeforeRestart}, bodies sent twice ${paidTwice}, decisions from cache ${cacheHits}`,
      );
      assert.ok(paidTwice <= 16, `${paidTwice} requests were sent twice; at most the 8 in flight at the kill and the answers in the 10 ms cache buffer may be`);
      const [runRow] = await db.select().from(schema.runs).where(eq(schema.runs.id, started.runId));
      assert.equal(runRow!.status, 'completed');
    } finally {
      // This test's workers must not pick up the next test's tasks against a dropped database.
      await stopWorkers();
      await db.$client.end();
      await database.drop();
    }
  });

  it('Postgres restarted under a running pipeline: the run completes', async () => {
    const home = tempDir('tenet-pgrestart-');
    const port = await freePort();
    const log = () => undefined;
    let postgres = await startEmbeddedPostgres({ home, port, log });
    const db = createDatabase(postgres.url);
    try {
      await applyMigrations(postgres.url);
      const worker = startWorker({ TEMPORAL_ADDRESS: env.address, DATABASE_URL: postgres.url, TENET_HOME: home });
      workers.push(worker.child);
      await worker.ready;
      const started = await startPipelineRun({ db, client: env.client, constitution, constitutionSource: source, config: config(), prompts: prompts(30), workflowId: 'crash-pg-restart' });
      await waitForLabelProgress(env, started.workflowId, 10);
      await postgres.stop();
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      postgres = await startEmbeddedPostgres({ home, port, log });
      const result = await env.client.workflow.getHandle<typeof pipeline>(started.workflowId).result();
      assert.equal(result.progress.find((p) => p.stage === 'label')!.done, 30 * 4);
      const prefs = await db.select().from(schema.preferences).where(eq(schema.preferences.runId, started.runId));
      assert.equal(prefs.length, 30);
      const [runRow] = await db.select().from(schema.runs).where(eq(schema.runs.id, started.runId));
      assert.equal(runRow!.status, 'completed');
    } finally {
      await stopWorkers();
      await db.$client.end();
      await postgres.stop();
    }
  });
});
