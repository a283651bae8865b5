// The fault matrix's trainer jobs: a reward model trained on the tiny model from a pipeline run's
// preferences, as the `trainerJob` workflow on a worker child process that serves both queues. The
// worker SIGKILLed while the trainer is mid-step, and Postgres SIGKILLed as the trainer finishes and
// the job registers its model: each job completes, registers its model exactly once, and ends with
// the metrics of an uninterrupted job.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TrainerJob } from '../../activities/trainer.js';
import { trainerJobMetrics } from '../../core/trainer-jobs.js';
import { taskQueues } from '../../core/queues.js';
import { waitFor } from '../../worker/processes.js';
import type { trainerJob } from '../../workflows/train.js';
import { makeTinyModel } from '../helpers.js';
import { ChaosStack, printTable, recordRow } from './harness.js';

interface TrainerEvent {
  event: string;
  step?: number;
}

describe('fault matrix: trainer jobs', () => {
  const stack = new ChaosStack({ queue: 'all' });
  let runId: number;
  let tiny: string;

  const job = (iteration: number): TrainerJob => ({
    runId,
    iteration,
    command: 'reward-model',
    kind: 'reward',
    modelKey: `chaos/reward-${iteration}`,
    baseModel: tiny,
    options: { batch_size: 4, eval_fraction: 0, seed: 1, checkpoint_every: 5, max_steps: 40 },
    data: { source: 'preferences', iterations: [0] },
  });
  const events = (iteration: number): TrainerEvent[] => {
    const file = path.join(stack.home, 'artifacts', `run-${runId}`, `it-${iteration}`, 'reward', 'trainer.log.jsonl');
    if (!existsSync(file)) return [];
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as TrainerEvent);
  };
  const start = (iteration: number) =>
    stack.client.workflow.start<typeof trainerJob>('trainerJob', { taskQueue: taskQueues.cpu, workflowId: `chaos-job-${iteration}`, args: [{ ...job(iteration), heartbeatTimeoutS: 5 }] });
  const modelMetrics = async (iteration: number) => (await stack.db.$client.query<{ metrics: Record<string, unknown> }>('select metrics from models where model_key = $1', [job(iteration).modelKey])).rows[0]!.metrics;
  const runMetrics = async (iteration: number) =>
    Object.fromEntries((await stack.db.$client.query<{ name: string; value: number }>("select name, value from metrics where run_id = $1 and iteration = $2 and name like 'reward.%'", [runId, iteration])).rows.map((r) => [r.name, r.value]));
  const modelRows = async (iteration: number) => (await stack.db.$client.query<{ id: string }>('select id from models where model_key = $1', [job(iteration).modelKey])).rows.length;

  before(async () => {
    await stack.start();
    tiny = path.join(stack.home, 'tiny');
    makeTinyModel(tiny);
    const started = await stack.startRun('jobs');
    assert.equal(await stack.outcome(started.workflowId), 'completed');
    runId = started.runId;
    await (await start(0)).result(); // the uninterrupted job
  });

  after(async () => {
    printTable();
    await stack.stop();
  });

  async function finish(iteration: number, name: string, repeated: string, back: number, recoveredAt: () => number | undefined) {
    const result = await stack.client.workflow.getHandle<typeof trainerJob>(`chaos-job-${iteration}`).result();
    const rows = await modelRows(iteration);
    const recovered = recoveredAt();
    recordRow({ case: name, rowsLost: Math.max(0, 1 - rows), rowsDuplicated: Math.max(0, rows - 1), repeated, outcome: 'completed', recoverS: recovered === undefined ? undefined : (recovered - back) / 1000 });
    assert.equal(rows, 1, 'the model is registered exactly once');
    // The job writes its metrics with its model row, once: the model's equal the uninterrupted job's,
    // and the run's reward.* metrics of the iteration are exactly those.
    const metrics = await modelMetrics(iteration);
    assert.deepEqual(metrics, await modelMetrics(0), 'the metrics of the uninterrupted job');
    assert.deepEqual(await runMetrics(iteration), trainerJobMetrics('reward', metrics));
    assert.ok(existsSync(result.artifactPath));
  }

  it('the worker SIGKILLed while the trainer job is mid-step', async () => {
    await start(1);
    const killedAt = await waitFor('step 12 of the trainer', 240_000, () => Promise.resolve(events(1).find((e) => e.event === 'step' && e.step! >= 12)?.step));
    stack.worker.kill();
    await stack.worker.start();
    const back = Date.now();
    const resumed = await waitFor('the retried job to resume', 120_000, () => Promise.resolve(events(1).find((e) => e.event === 'resumed')));
    const resumedAt = Date.now();
    // The trainer outlives the SIGKILLed worker and goes on until the retry stops it (stopLeftover),
    // so the retry resumes from the newest checkpoint of that run: at or after the kill, never past
    // the last step the first trainer logged.
    const logged = events(1);
    const lastStep = Math.max(...logged.slice(0, logged.findIndex((e) => e.event === 'resumed')).flatMap((e) => (e.event === 'step' ? [e.step!] : [])));
    assert.ok(resumed.step! >= 5 && resumed.step! <= lastStep, `resumed at step ${resumed.step}, killed after step ${killedAt}, last step logged before ${lastStep}`);
    await finish(1, `worker SIGKILL in a trainer job (step ${killedAt})`, `${Math.max(0, lastStep - resumed.step!)} trainer steps`, back, () => resumedAt);
  });

  it('Postgres SIGKILLed as the trainer job registers its model', async () => {
    await start(2);
    await waitFor('the trainer to finish', 240_000, () => Promise.resolve(events(2).some((e) => e.event === 'done') ? true : undefined));
    await stack.killPostgres();
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    stack.postgres = await stack.startPostgres();
    const back = Date.now();
    await finish(2, 'Postgres SIGKILL as a trainer job registers its model', `${events(2).filter((e) => e.event === 'start').length - 1} trainer reruns`, back, () => Date.now());
  });
});
