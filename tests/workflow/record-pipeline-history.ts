// Records the histories of two small pipeline runs into tests/histories/ for the replay test: one of
// two shards (the parent and its first shard) and one of a single shard, which runs its batches in
// the parent. Run it after a deliberate, versioned workflow change:
//   node --import tsx tests/workflow/record-pipeline-history.ts
// pipeline.json and stage-shard.json are histories of a run begun before chained stages, kept as
// they are: they check that such runs still replay (patched()).
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createCpuActivities } from '../../activities/index.js';
import { startPipelineRun } from '../../cli/start-run.js';
import { taskQueues } from '../../core/queues.js';
import { runConfigSchema } from '../../core/run-config.js';
import { applyMigrations } from '../../db/migrate.js';
import { createDatabase } from '../../db/pool.js';
import { startScriptedEndpoint } from '../../worker/scripted-endpoint.js';
import { bundleWorkflows } from '../../worker/worker.js';
import { createTestDatabase, defaultConstitution, temporalCli } from '../helpers.js';

const env = await TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path: temporalCli } } });
const database = await createTestDatabase('tenet_record');
const endpoint = await startScriptedEndpoint();
try {
  await applyMigrations(database.url);
  const db = createDatabase(database.url);
  const { constitution, source } = defaultConstitution();
  const model = { base_url: endpoint.url, model: 'scripted' };
  const config = (shardSize: number) =>
    runConfigSchema.parse({ endpoints: { policy: model, rater: model }, sample: { n: 2, seed: 1 }, critique: { rounds: 1 }, scale: { batch_size: 2, shard_size: shardSize } });
  const prompts = ['one', 'two', 'three', 'four'].map((word) => ({ key: word, messages: [{ role: 'user' as const, content: `Tell me about the number ${word}.` }], split: 'train' as const, metadata: {} }));
  const worker = await Worker.create({ connection: env.nativeConnection, taskQueue: taskQueues.cpu, workflowBundle: await bundleWorkflows(), activities: createCpuActivities({ db }) });
  await worker.runUntil(async () => {
    for (const [workflowId, shardSize] of [['pipeline-chained-history', 3], ['pipeline-one-shard-history', 10]] as const) {
      const started = await startPipelineRun({ db, client: env.client, constitution: constitution, constitutionSource: source, config: config(shardSize), prompts, workflowId });
      await env.client.workflow.getHandle(started.workflowId).result();
    }
  });
  const show = (workflowId: string) => execFileSync(temporalCli, ['workflow', 'show', '--workflow-id', workflowId, '--address', env.address, '--output', 'json'], { encoding: 'utf8' });
  const files = {
    'pipeline-chained.json': 'pipeline-chained-history',
    'stage-shard-chained.json': 'pipeline-chained-history/sample+critique+label-0/0',
    'pipeline-one-shard.json': 'pipeline-one-shard-history',
  };
  for (const [file, workflowId] of Object.entries(files)) writeFileSync(`tests/histories/${file}`, show(workflowId));
  await db.$client.end();
  console.log(`wrote ${Object.keys(files).map((file) => `tests/histories/${file}`).join(', ')}`);
} finally {
  await endpoint.close();
  await env.teardown();
  await database.drop();
}
