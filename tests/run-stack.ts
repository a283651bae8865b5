// What the end-to-end tests of a run need: a real Temporal dev server, a fresh database with the
// migrations applied, a worker on the CPU queue, the scripted endpoint, a state folder, and the
// environment that points the CLI at them.
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createCpuActivities } from '../activities/index.js';
import { taskQueues } from '../core/queues.js';
import { applyMigrations } from '../db/migrate.js';
import { createDatabase, type Database } from '../db/pool.js';
import { startScriptedEndpoint, type ScriptedEndpoint } from '../worker/scripted-endpoint.js';
import { bundleWorkflows } from '../worker/worker.js';
import { createTestDatabase, temporalCli, tempDir, within, type TestDatabase } from './helpers.js';

export interface RunStack {
  env: TestWorkflowEnvironment;
  database: TestDatabase;
  db: Database;
  endpoint: ScriptedEndpoint;
  /** TEMPORAL_ADDRESS, DATABASE_URL and TENET_HOME for `runCli`. */
  cli: Record<string, string>;
  /** The state folder (TENET_HOME), for the test's files too. */
  dir: string;
  stop(): Promise<void>;
}

export async function startRunStack(databasePrefix: string): Promise<RunStack> {
  const [env, database, endpoint] = await Promise.all([
    TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path: temporalCli } } }),
    createTestDatabase(databasePrefix),
    startScriptedEndpoint({ latencyMs: 5 }),
  ]);
  await applyMigrations(database.url);
  const db = createDatabase(database.url);
  const worker = await Worker.create({ connection: env.nativeConnection, taskQueue: taskQueues.cpu, workflowBundle: await bundleWorkflows(), activities: createCpuActivities({ db }) });
  const running = worker.run();
  const dir = tempDir();
  return {
    env,
    database,
    db,
    endpoint,
    dir,
    cli: { TEMPORAL_ADDRESS: env.address, DATABASE_URL: database.url, TENET_HOME: dir },
    async stop() {
      // Each step bounded: a hang fails the file's after hook naming the step, not its 600 s timeout.
      worker.shutdown();
      await within(60_000, 'the test worker shutting down', running);
      await within(30_000, 'the scripted endpoint closing', endpoint.close());
      await within(30_000, 'the database pool closing', db.$client.end());
      await within(60_000, 'the Temporal dev server stopping', env.teardown());
      await within(60_000, 'dropping the test database', database.drop());
    },
  };
}
