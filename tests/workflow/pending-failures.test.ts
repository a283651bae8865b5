// A run's pending failures as `tenet run` and `tenet runs show` read them, with payloads encrypted:
// the failure converter moves each message into an encoded attribute that the codec seals, so
// Temporal itself only holds "Encoded failure". A run whose model endpoint is unreachable, fanned
// out into shard child workflows, is read by a client with the workers' key (the message), by one
// without any key and by one with another key (a reason saying why the message cannot be read):
// never "Encoded failure", never an error that leaves the reason blank.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Client } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createCpuActivities } from '../../activities/index.js';
import { startPipelineRun } from '../../cli/start-run.js';
import { taskQueues } from '../../core/queues.js';
import { runConfigSchema } from '../../core/run-config.js';
import { applyMigrations } from '../../db/migrate.js';
import { createDatabase, type Database } from '../../db/pool.js';
import { parseKeyList } from '../../worker/codec.js';
import { dataConverterFor } from '../../worker/data-converter.js';
import { pendingFailures, type PendingFailure } from '../../worker/pending.js';
import { waitFor } from '../../worker/processes.js';
import { bundleWorkflows } from '../../worker/worker.js';
import { createTestDatabase, defaultConstitution, freePort, temporalCli, type TestDatabase } from '../helpers.js';

const keys = parseKeyList(`workers-key:${randomBytes(32).toString('base64')}`, 'test');
const otherKeys = parseKeyList(`other-key:${randomBytes(32).toString('base64')}`, 'test');

describe('pending failures of a run with encrypted payloads', () => {
  let env: TestWorkflowEnvironment;
  let database: TestDatabase;
  let db: Database;
  let worker: Worker;
  let running: Promise<void>;
  let workflowId: string;
  let deadUrl: string;
  const { constitution, source } = defaultConstitution();

  before(async () => {
    let bundle;
    [env, database, bundle] = await Promise.all([
      TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path: temporalCli } }, client: { dataConverter: dataConverterFor(keys) } }),
      createTestDatabase('tenet_pending'),
      bundleWorkflows(),
    ]);
    await applyMigrations(database.url);
    db = createDatabase(database.url, { max: 5 });
    worker = await Worker.create({ connection: env.nativeConnection, taskQueue: taskQueues.cpu, workflowBundle: bundle, activities: createCpuActivities({ db }), dataConverter: dataConverterFor(keys) });
    running = worker.run();
    deadUrl = `http://127.0.0.1:${await freePort()}/v1`;
    const endpoint = { base_url: deadUrl, model: 'gone', max_retries: 0, timeout_s: 2 };
    // Two shards of one prompt each: the batches retry inside shard child workflows.
    const config = runConfigSchema.parse({ endpoints: { policy: endpoint, rater: endpoint }, sample: { n: 1 }, critique: { enabled: false }, scale: { batch_size: 1, shard_size: 1 } });
    const prompts = ['Name a prime number.', 'Name a colour.'].map((content, i) => ({ key: `p${i}`, messages: [{ role: 'user' as const, content }], split: 'train' as const, metadata: {} }));
    ({ workflowId } = await startPipelineRun({ db, client: env.client, constitution, constitutionSource: source, config, prompts, workflowId: 'pending-encrypted' }));
  });

  after(async () => {
    await env?.client.workflow.getHandle(workflowId).terminate().catch(() => undefined);
    worker?.shutdown();
    await running?.catch(() => undefined);
    await db?.$client.end();
    await env?.teardown();
    await database?.drop();
  });

  const retried = (pending: PendingFailure[]) => pending.filter((p) => p.attempt >= 2 && p.workflowId !== workflowId);

  it('reads the message with the key; says why without one; never "Encoded failure"', async () => {
    const withKey = await waitFor('a shard batch on its second attempt', 60_000, async () => {
      const pending = retried(await pendingFailures(env.client.workflow, workflowId));
      return pending.length > 0 ? pending : undefined;
    });
    assert.match(withKey[0]!.workflowId, /^pending-encrypted\//, 'the failure is a shard child workflow\'s');
    assert.equal(withKey[0]!.activity, 'runStageBatch');
    assert.match(withKey[0]!.reason, new RegExp(`${deadUrl.replace(/[.]/g, '\\.')} \\(model gone\\) is unreachable`));

    const noKey = new Client({ connection: env.connection, dataConverter: dataConverterFor(undefined) });
    const keyless = retried(await pendingFailures(noKey.workflow, workflowId));
    assert.ok(keyless.length > 0, 'a client without the key still lists the failing batches');
    assert.match(keyless[0]!.reason, /encrypted \(key id "workers-key"\) and this client has no codec key: set TENET_CODEC_KEYS/);

    const wrongKey = new Client({ connection: env.connection, dataConverter: dataConverterFor(otherKeys) });
    const wrong = retried(await pendingFailures(wrongKey.workflow, workflowId));
    assert.ok(wrong.length > 0);
    assert.match(wrong[0]!.reason, /cannot be read: a payload is encrypted with key id "workers-key", which is not among the configured keys \(other-key\)/);

    for (const p of [...withKey, ...keyless, ...wrong]) assert.doesNotMatch(p.reason, /Encoded failure/);
  });
});
