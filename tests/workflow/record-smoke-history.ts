// Records the history of one smoke run into tests/histories/smoke.json for the replay test.
// Run it after a deliberate, versioned change to the smoke workflow:
//   node --import tsx tests/workflow/record-smoke-history.ts
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createCpuActivities, createGpuActivities } from '../../activities/index.js';
import { taskQueues } from '../../core/queues.js';
import { storeConstitution } from '../../db/constitutions.js';
import { applyMigrations } from '../../db/migrate.js';
import { createDatabase } from '../../db/pool.js';
import { bundleWorkflows } from '../../worker/worker.js';
import { createTestDatabase, defaultConstitution, temporalCli, venvPython } from '../helpers.js';

const env = await TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path: temporalCli } } });
const database = await createTestDatabase('tenet_record');
try {
  await applyMigrations(database.url);
  const db = createDatabase(database.url);
  const { constitution, source } = defaultConstitution();
  const stored = await storeConstitution(db, { constitution: constitution, source });
  const cpu = await Worker.create({ connection: env.nativeConnection, taskQueue: taskQueues.cpu, workflowBundle: await bundleWorkflows(), activities: createCpuActivities({ db }) });
  const gpu = await Worker.create({ connection: env.nativeConnection, taskQueue: taskQueues.gpu, activities: createGpuActivities({ python: venvPython }) });
  const handle = await env.client.workflow.start('smoke', {
    taskQueue: taskQueues.cpu,
    workflowId: 'smoke-history',
    args: [{ constitutionId: stored.id, constitutionHash: stored.contentHash, promptCount: 3 }],
  });
  await cpu.runUntil(gpu.runUntil(handle.result()));
  // The CLI writes the same JSON the Temporal UI exports, which historyFromJSON reads back.
  const history = execFileSync(temporalCli, ['workflow', 'show', '--workflow-id', 'smoke-history', '--address', env.address, '--output', 'json'], { encoding: 'utf8' });
  writeFileSync('tests/histories/smoke.json', history);
  await db.$client.end();
  console.log('wrote tests/histories/smoke.json');
} finally {
  await env.teardown();
  await database.drop();
}
