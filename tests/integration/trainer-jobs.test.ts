// GPU-queue supervision of the real trainer (on CPU, a tiny model): a trainer killed mid-run is
// retried and resumes from the checkpoint of its last heartbeat; cancellation stops the child with
// SIGTERM; a user error fails at once; the model is registered once, with its lineage.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, type WorkflowBundle } from '@temporalio/worker';
import { eq } from 'drizzle-orm';
import { createCpuActivities, createGpuActivities } from '../../activities/index.js';
import type { TrainerJob } from '../../activities/trainer.js';
import { taskQueues } from '../../core/queues.js';
import { runConfigSchema } from '../../core/run-config.js';
import { storeConstitution } from '../../db/constitutions.js';
import { applyMigrations } from '../../db/migrate.js';
import { createDatabase, type Database } from '../../db/pool.js';
import { upsertPrompts, upsertRun } from '../../db/runs.js';
import * as schema from '../../db/schema.js';
import { bundleWorkflows } from '../../worker/worker.js';
import type { trainerJob } from '../../workflows/train.js';
import { createTestDatabase, defaultConstitution, makeTinyModel, tempDir, temporalCli, type TestDatabase, venvPython } from '../helpers.js';

const topics = ['tea', 'rivers', 'chess', 'bread', 'stars', 'maps', 'clocks', 'gardens'];

/** A run with preference pairs: the chosen answers are polite and on topic, the rejected ones rude. */
async function seedRun(db: Database, workflowId: string): Promise<number> {
  const { constitution, source } = defaultConstitution();
  const stored = await storeConstitution(db, { constitution, source });
  const config = runConfigSchema.parse({ endpoints: { policy: { base_url: 'http://127.0.0.1:9/v1', model: 'p' }, rater: { base_url: 'http://127.0.0.1:9/v1', model: 'r' } } });
  const runId = await upsertRun(db, { workflowId, kind: 'pipeline', constitutionId: stored.id, config });
  const promptIds = await upsertPrompts(db, runId, topics.map((topic, i) => ({ key: `p${i}`, messages: [{ role: 'user', content: `Tell me about ${topic}.` }] })));
  for (const [i, promptId] of promptIds.entries()) {
    const rows = await db
      .insert(schema.completions)
      .values(
        [`Happy to help: ${topics[i]} are wonderful, here is a kind answer.`, `No. ${topics[i]} are stupid, go away.`].map((text, sampleIndex) => ({
          runId,
          promptId,
          stage: 'sample',
          sampleIndex,
          policyModel: 'p',
          policyVersion: 'p',
          text,
          generationParams: {},
        })),
      )
      .returning({ id: schema.completions.id });
    const [good, bad] = [rows[0]!.id, rows[1]!.id];
    await db.insert(schema.preferences).values({ runId, promptId, completionLowId: Math.min(good, bad), completionHighId: Math.max(good, bad), chosenId: good, rejectedId: bad, softLabel: 0.9, source: 'ai' });
  }
  return runId;
}

function progressEvents(jobDir: string): { event: string; step?: number; checkpoint?: string }[] {
  const file = path.join(jobDir, 'trainer.log.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { event: string; step?: number; checkpoint?: string });
}

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 240_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('trainer jobs on the GPU queue', { timeout: 900_000 }, () => {
  let env: TestWorkflowEnvironment;
  let database: TestDatabase;
  let db: Database;
  let bundle: WorkflowBundle;
  let artifacts: string;
  let tiny: string;

  before(async () => {
    [env, database, bundle] = await Promise.all([
      TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path: temporalCli } } }),
      createTestDatabase('tenet_trainer_jobs'),
      bundleWorkflows(),
    ]);
    await applyMigrations(database.url);
    db = createDatabase(database.url, { max: 10 });
    artifacts = tempDir('tenet-artifacts-');
    tiny = path.join(artifacts, 'tiny');
    makeTinyModel(tiny);
  });

  after(async () => {
    await db?.$client.end();
    await env?.teardown();
    await database?.drop();
  });

  function workers(gpuOptions: { python?: string; preimport?: boolean } = {}) {
    return Promise.all([
      Worker.create({ connection: env.nativeConnection, taskQueue: taskQueues.cpu, workflowBundle: bundle, activities: createCpuActivities({ db }) }),
      Worker.create({
        connection: env.nativeConnection,
        taskQueue: taskQueues.gpu,
        activities: createGpuActivities({ python: venvPython, db, artifactsRoot: artifacts, gpus: [], ...gpuOptions }),
      }),
    ]);
  }

  async function withWorkers<T>(fn: () => Promise<T>, gpuOptions: { python?: string; preimport?: boolean } = {}): Promise<T> {
    const [cpu, gpu] = await workers(gpuOptions);
    return cpu.runUntil(gpu.runUntil(fn));
  }

  function failureText(error: unknown): string {
    const chain: string[] = [];
    for (let e: unknown = error; e instanceof Error; e = e.cause) chain.push(`${(e as { type?: string }).type ?? e.name}: ${e.message}`);
    return chain.join('\n');
  }

  function rewardJob(runId: number, options: TrainerJob['options']): TrainerJob {
    return {
      runId,
      iteration: 0,
      command: 'reward-model',
      kind: 'reward',
      modelKey: `run-${runId}/it-0/reward`,
      baseModel: tiny,
      options: { batch_size: 4, eval_fraction: 0, seed: 1, checkpoint_every: 5, ...options },
      data: { source: 'preferences' },
    };
  }

  it('a trainer killed mid-run is retried and resumes from the checkpoint of its last heartbeat', async () => {
    const runId = await seedRun(db, 'trainer-jobs-kill');
    const jobDir = path.join(artifacts, `run-${runId}`, 'it-0', 'reward');
    const model = await withWorkers(async () => {
      const handle = await env.client.workflow.start<typeof trainerJob>('trainerJob', {
        taskQueue: taskQueues.cpu,
        workflowId: 'trainer-jobs-kill',
        args: [{ ...rewardJob(runId, { max_steps: 400 }), heartbeatTimeoutS: 30 }],
      });
      const checkpoint = await waitFor('a checkpoint', () => progressEvents(jobDir).find((e) => e.event === 'checkpoint'));
      const pid = Number(readFileSync(path.join(jobDir, 'trainer.pid'), 'utf8'));
      // A CPU-only worker forks its trainers from the pre-imported interpreter (TrainerDeps.preimport).
      assert.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /tenet_trainer\.forkserver/);
      process.kill(pid, 'SIGKILL');
      const result = await handle.result();
      const events = progressEvents(jobDir);
      const resumed = events.find((e) => e.event === 'resumed');
      assert.ok(resumed, 'the retry resumed from a checkpoint');
      assert.ok(resumed.step! >= checkpoint.step!, `resumed at ${resumed.step}, after the checkpoint of step ${checkpoint.step}`);
      assert.ok(events.filter((e) => e.event === 'start').length >= 2, 'the trainer ran twice');
      assert.equal(events.at(-1)!.event, 'done');
      return result;
    });
    const rows = await db.select().from(schema.models).where(eq(schema.models.runId, runId));
    assert.equal(rows.length, 1, 'registered exactly once');
    assert.equal(rows[0]!.id, model.modelId);
    assert.equal(rows[0]!.kind, 'reward');
    assert.ok(existsSync(path.join(rows[0]!.artifactPath, 'reward.onnx')));
    const lineage = rows[0]!.lineage as { baseModel: string; data: { runIds: number[]; counts: { rows: number; ai: number } } };
    assert.equal(lineage.baseModel, tiny);
    assert.deepEqual(lineage.data.runIds, [runId]);
    assert.equal(lineage.data.counts.rows, topics.length);
    assert.ok(rows[0]!.constitutionHash);
    assert.equal((rows[0]!.hyperparameters as { max_steps: number }).max_steps, 400);
  });

  it('cancellation stops the trainer with SIGTERM: it checkpoints and exits, and no model is registered', async () => {
    const runId = await seedRun(db, 'trainer-jobs-cancel');
    const jobDir = path.join(artifacts, `run-${runId}`, 'it-0', 'reward');
    await withWorkers(async () => {
      const handle = await env.client.workflow.start<typeof trainerJob>('trainerJob', {
        taskQueue: taskQueues.cpu,
        workflowId: 'trainer-jobs-cancel',
        args: [{ ...rewardJob(runId, { max_steps: 100_000, checkpoint_every: 0 }), heartbeatTimeoutS: 30 }],
      });
      await waitFor('a training step', () => progressEvents(jobDir).find((e) => e.event === 'step'));
      const pid = Number(readFileSync(path.join(jobDir, 'trainer.pid'), 'utf8'));
      assert.ok(alive(pid));
      await handle.cancel();
      await assert.rejects(handle.result(), WorkflowFailedError);
      await waitFor('the trainer to exit', () => (alive(pid) ? undefined : true), 60_000);
      assert.ok(progressEvents(jobDir).some((e) => e.event === 'preempted' && e.checkpoint), 'SIGTERM made it write a checkpoint');
    });
    assert.equal((await db.select().from(schema.models).where(eq(schema.models.runId, runId))).length, 0);
  });

  it('a bad trainer option fails at once, naming the problem, without retries', async () => {
    const runId = await seedRun(db, 'trainer-jobs-bad');
    await withWorkers(async () => {
      const error = await env.client.workflow
        .execute<typeof trainerJob>('trainerJob', { taskQueue: taskQueues.cpu, workflowId: 'trainer-jobs-bad', args: [rewardJob(runId, { lr: -1 })] })
        .then(() => undefined, (e: unknown) => e);
      assert.ok(error instanceof WorkflowFailedError);
      const text = failureText(error);
      assert.match(text, /--lr: must be positive/);
      assert.match(text, /TrainerUserError/);
    });
    assert.equal((await db.select().from(schema.models).where(eq(schema.models.runId, runId))).length, 0);
  });

  it('a trainer Python that does not exist fails the job at once, naming it, forked or started afresh', async () => {
    const missing = path.join(artifacts, 'no-such-venv', 'bin', 'python');
    for (const preimport of [true, false]) {
      const runId = await seedRun(db, `trainer-jobs-no-python-${preimport}`);
      const error = await withWorkers(
        () => env.client.workflow
          .execute<typeof trainerJob>('trainerJob', { taskQueue: taskQueues.cpu, workflowId: `trainer-jobs-no-python-${preimport}`, args: [rewardJob(runId, {})] })
          .then(() => undefined, (e: unknown) => e),
        { python: missing, preimport },
      );
      assert.ok(error instanceof WorkflowFailedError, `preimport ${preimport}`);
      const text = failureText(error);
      assert.ok(text.includes(`trainer Python not found at ${missing}`), text);
      assert.match(text, /TrainerMissing/);
    }
  });
});
