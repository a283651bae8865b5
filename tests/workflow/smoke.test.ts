// The smoke workflow through a real Temporal dev server and the machine's PostgreSQL.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, type WorkflowBundle } from '@temporalio/worker';
import { eq } from 'drizzle-orm';
import { createCpuActivities, createGpuActivities } from '../../activities/index.js';
import { parseConstitution } from '../../core/constitution/parse.js';
import { taskQueues } from '../../core/queues.js';
import { storeConstitution, type StoredConstitution } from '../../db/constitutions.js';
import { applyMigrations } from '../../db/migrate.js';
import { createDatabase, type Database } from '../../db/pool.js';
import * as schema from '../../db/schema.js';
import { bundleWorkflows } from '../../worker/worker.js';
import type { smoke } from '../../workflows/smoke.js';
import { progressQuery } from '../../workflows/types.js';
import { createTestDatabase, defaultConstitution, temporalCli, venvPython, type TestDatabase } from '../helpers.js';

describe('smoke workflow (real Temporal dev server, real Postgres at DATABASE_URL)', () => {
  let env: TestWorkflowEnvironment;
  let database: TestDatabase;
  let db: Database;
  let bundle: WorkflowBundle;
  let constitution: StoredConstitution;

  before(async () => {
    [env, database, bundle] = await Promise.all([
      TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path: temporalCli } } }),
      createTestDatabase('tenet_smoke'),
      bundleWorkflows(),
    ]);
    await applyMigrations(database.url);
    db = createDatabase(database.url);
    constitution = await storeConstitution(db, defaultConstitution());
  });

  after(async () => {
    await db?.$client.end();
    await env?.teardown();
    await database?.drop();
  });

  async function workers(options: { gpu: boolean }) {
    const cpu = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: taskQueues.cpu,
      workflowBundle: bundle,
      activities: createCpuActivities({ db }),
    });
    const gpu = options.gpu
      ? await Worker.create({ connection: env.nativeConnection, taskQueue: taskQueues.gpu, activities: createGpuActivities({ python: venvPython }) })
      : undefined;
    return {
      runUntil: async <T>(promise: Promise<T>): Promise<T> => {
        if (!gpu) return cpu.runUntil(promise);
        return cpu.runUntil(gpu.runUntil(promise));
      },
    };
  }

  it('stores the run, its prompts and metrics, and reaches the GPU queue', async () => {
    const w = await workers({ gpu: true });
    const workflowId = 'smoke-test-ok';
    const result = await w.runUntil(
      env.client.workflow.execute<typeof smoke>('smoke', {
        taskQueue: taskQueues.cpu,
        workflowId,
        args: [{ constitutionId: constitution.id, constitutionHash: constitution.contentHash, promptCount: 5 }],
      }),
    );
    assert.equal(result.promptIds.length, 5);
    assert.match(result.trainer.torch, /^2\.13\.0/);

    const [run] = await db.select().from(schema.runs).where(eq(schema.runs.workflowId, workflowId));
    assert.equal(run!.status, 'completed');
    assert.equal(run!.id, result.runId);
    assert.equal(run!.constitutionId, constitution.id);
    assert.deepEqual(run!.config, { constitutionHash: constitution.contentHash, promptCount: 5 });
    assert.ok(run!.startedAt && run!.finishedAt && run!.finishedAt >= run!.startedAt);

    const prompts = await db.select().from(schema.prompts).where(eq(schema.prompts.runId, run!.id));
    assert.deepEqual(prompts.map((p) => p.id).sort(), [...result.promptIds].sort());
    const metrics = await db.select().from(schema.metrics).where(eq(schema.metrics.runId, run!.id));
    assert.deepEqual(Object.fromEntries(metrics.map((m) => [m.name, m.value])), { 'smoke.prompts': 5, 'smoke.gpu_devices': result.trainer.devices });
  });

  it('marks the run failed, with the reason, when the constitution has no principles', async () => {
    const source = `name: hollow\ndescription: d\nprinciples:\n  - id: only\n    comparisons: ["Which?"]\n`;
    const parsed = parseConstitution(source, 'hollow.yaml');
    assert.ok(parsed.ok);
    const hollow = await storeConstitution(db, { constitution: parsed.constitution, source });
    await db.delete(schema.principles).where(eq(schema.principles.constitutionId, hollow.id));

    const w = await workers({ gpu: false });
    await assert.rejects(
      w.runUntil(
        env.client.workflow.execute<typeof smoke>('smoke', {
          taskQueue: taskQueues.cpu,
          workflowId: 'smoke-test-hollow',
          args: [{ constitutionId: hollow.id, constitutionHash: hollow.contentHash, promptCount: 2 }],
        }),
      ),
      WorkflowFailedError,
    );
    const [run] = await db.select().from(schema.runs).where(eq(schema.runs.workflowId, 'smoke-test-hollow'));
    assert.equal(run!.status, 'failed');
    assert.match(run!.error ?? '', /no principles/);
  });

  it('answers the progress query and records a cancelled run', async () => {
    // No GPU worker: the workflow waits at the trainer stage until it is cancelled.
    const w = await workers({ gpu: false });
    const workflowId = 'smoke-test-cancel';
    await w.runUntil((async () => {
      const handle = await env.client.workflow.start<typeof smoke>('smoke', {
        taskQueue: taskQueues.cpu,
        workflowId,
        args: [{ constitutionId: constitution.id, constitutionHash: constitution.contentHash, promptCount: 3 }],
      });
      let progress = await handle.query(progressQuery);
      // A bound to end a hang, not a speed check: a busy 2-core machine may take many seconds.
      for (const deadline = Date.now() + 60_000; progress[0]!.done < 3 && Date.now() < deadline; ) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        progress = await handle.query(progressQuery);
      }
      assert.deepEqual(progress, [
        { stage: 'prompts', done: 3, total: 3, failed: 0 },
        { stage: 'trainer', done: 0, total: 1, failed: 0 },
      ]);
      await handle.cancel();
      await assert.rejects(handle.result(), WorkflowFailedError);
    })());
    const [run] = await db.select().from(schema.runs).where(eq(schema.runs.workflowId, workflowId));
    assert.equal(run!.status, 'cancelled');
    assert.ok(run!.finishedAt);
  });
});
