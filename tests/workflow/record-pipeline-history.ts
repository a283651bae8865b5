// Records the histories of one small pipeline run (the parent and its first shard) into
// tests/histories/ for the replay test. Run it after a deliberate, versioned workflow change:
//   node --import tsx tests/workflow/record-pipeline-history.ts
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
  const config = runConfigSchema.parse({ endpoints: { policy: model, rater: model }, sample: { n: 2, seed: 1 }, critique: { rounds: 1 }, scale: { batch_size: 2, shard_size: 3 } });
  const prompts = ['one', 'two', 'three', 'four'].map((word) => ({ key: word, messages: [{ role: 'user' as const, content: `Tell me about the number ${word}.` }], split: 'train' as const, metadata: {} }));
  const worker = await Worker.create({ connection: env.nativeConnection, taskQueue: taskQueues.cpu, workflowBundle: await bundleWorkflows(), activities: createCpuActivities({ db }) });
  await worker.runUntil(async () => {
    const started = await startPipelineRun({ db, client: env.client, constitution: constitution, constitutionSource: source, config, prompts, workflowId: 'pipeline-history' });
    await env.client.workflow.getHandle(started.workflowId).result();
  });
  const show = (workflowId: string) => execFileSync(temporalCli, ['workflow', 'show', '--workflow-id', workflowId, '--address', env.address, '--output', 'json'], { encoding: 'utf8' });
  writeFileSync('tests/histories/pipeline.json', show('pipeline-history'));
  writeFileSync('tests/histories/stage-shard.json', show('pipeline-history/label-0/0'));
  await db.$client.end();
  console.log('wrote tests/histories/pipeline.json and tests/histories/stage-shard.json');
} finally {
  await endpoint.close();
  await env.teardown();
  await database.drop();
}
