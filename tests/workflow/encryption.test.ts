// Payloads encrypted at rest: a pipeline runs on a real Temporal dev server with the codec on client
// and worker, while the scripted endpoint answers one call with a malformed body that quotes the
// prompt (so the prompt's and the "completion's" markers reach an activity failure message, the
// one place model text enters a history). The exported histories then hold neither marker in any
// byte, every payload is sealed, and decoding the payloads gives both markers back.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { historyFromJSON, historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import proto from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, type WorkflowBundle } from '@temporalio/worker';
import { createCpuActivities } from '../../activities/index.js';
import { startPipelineRun } from '../../cli/start-run.js';
import { parsePromptsJsonl } from '../../core/prompts-file.js';
import { taskQueues } from '../../core/queues.js';
import { runConfigSchema } from '../../core/run-config.js';
import { applyMigrations } from '../../db/migrate.js';
import { createDatabase, type Database } from '../../db/pool.js';
import { EncryptionCodec, parseKeyList } from '../../worker/codec.js';
import { startCodecServer } from '../../worker/codec-server.js';
import { dataConverterFor } from '../../worker/data-converter.js';
import { startScriptedEndpoint, type ScriptedEndpoint } from '../../worker/scripted-endpoint.js';
import { bundleWorkflows } from '../../worker/worker.js';
import type { pipeline } from '../../workflows/pipeline.js';
import { createTestDatabase, defaultConstitution, temporalCli, type TestDatabase } from '../helpers.js';

const execFileAsync = promisify(execFile);
const promptMarker = `PROMPT-MARKER-${randomBytes(4).toString('hex')}`;
const completionMarker = `COMPLETION-MARKER-${randomBytes(4).toString('hex')}`;
const keys = parseKeyList(`test-key:${randomBytes(32).toString('base64')}`, 'test');
const codec = new EncryptionCodec(keys);
const dataConverter = dataConverterFor(keys);

type PayloadJson = { metadata?: Record<string, string>; data?: string; path: string };
/** Every payload in a history with where it is, as the JSON export writes it (metadata values and data in base64). */
function payloadsIn(node: unknown, path = '', found: PayloadJson[] = []): PayloadJson[] {
  if (Array.isArray(node)) node.forEach((item) => payloadsIn(item, path, found));
  else if (node && typeof node === 'object') {
    const record = node as Record<string, unknown>;
    if (record.metadata && typeof record.metadata === 'object' && 'encoding' in record.metadata) found.push({ ...(record as PayloadJson), path });
    else Object.entries(record).forEach(([key, value]) => payloadsIn(value, `${path}.${key}`, found));
  }
  return found;
}
const toPayload = (json: PayloadJson): Payload => ({
  metadata: Object.fromEntries(Object.entries(json.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
  data: Buffer.from(json.data ?? '', 'base64'),
});
const encoding = (json: PayloadJson) => Buffer.from(json.metadata!.encoding!, 'base64').toString('utf8');

describe('payloads encrypted at rest in Temporal', () => {
  let env: TestWorkflowEnvironment;
  let database: TestDatabase;
  let db: Database;
  let bundle: WorkflowBundle;
  let endpoint: ScriptedEndpoint;
  const { constitution, source } = defaultConstitution();

  before(async () => {
    [env, database, bundle, endpoint] = await Promise.all([
      TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path: temporalCli } }, client: { dataConverter } }),
      createTestDatabase('tenet_codec'),
      bundleWorkflows(),
      startScriptedEndpoint(),
    ]);
    await applyMigrations(database.url);
    db = createDatabase(database.url, { max: 10 });
  });

  after(async () => {
    await endpoint?.close();
    await db?.$client.end();
    await env?.teardown();
    await database?.drop();
  });

  it('a pipeline run leaves no prompt or completion text in its exported histories; decoding brings it back', async () => {
    // The first call for the marked prompt gets a body that is not a chat completion; the activity fails once, quoting it, then succeeds.
    endpoint.setScript((request) => {
      const text = request.body.messages.at(-1)!.content;
      if (request.seen === 1 && text.includes(promptMarker) && !text.includes('⟦BEGIN')) return { rawBody: JSON.stringify({ note: `${completionMarker} / ${promptMarker}` }) };
      return undefined;
    });
    const prompts = parsePromptsJsonl(`{"id": "p1", "prompt": "Tell me about ${promptMarker}."}\n{"id": "p2", "prompt": "Write a haiku about rain."}`, 'prompts.jsonl');
    assert.ok(prompts.ok);
    const endpointConfig = { base_url: endpoint.url, model: 'scripted', max_retries: 0, timeout_s: 10 };
    const config = runConfigSchema.parse({ endpoints: { policy: endpointConfig, rater: endpointConfig }, sample: { n: 2, seed: 5 }, critique: { enabled: false }, scale: { batch_size: 2, shard_size: 100 } });
    const worker = await Worker.create({ connection: env.nativeConnection, taskQueue: taskQueues.cpu, workflowBundle: bundle, activities: createCpuActivities({ db }), dataConverter });
    const workflowId = await worker.runUntil(async () => {
      const started = await startPipelineRun({ db, client: env.client, constitution, constitutionSource: source, config, prompts: prompts.prompts, workflowId: 'encrypted-pipeline' });
      const result = await env.client.workflow.getHandle<typeof pipeline>(started.workflowId).result();
      assert.deepEqual(result.progress.find((p) => p.stage === 'sample'), { stage: 'sample', done: 4, total: 4, failed: 0 });
      return started.workflowId;
    });
    endpoint.setScript(undefined);
    assert.ok(endpoint.requests.some((r) => r.seen === 2 && r.body.messages.at(-1)!.content.includes(promptMarker)), 'the marked call was retried');

    const histories: proto.temporal.api.history.v1.IHistory[] = [];
    for await (const execution of env.client.workflow.list({ query: `WorkflowId STARTS_WITH "${workflowId}"` })) {
      histories.push(await env.client.workflow.getHandle(execution.workflowId, execution.runId).fetchHistory());
    }
    assert.ok(histories.length >= 1);
    const decodedTexts: string[] = [];
    const sealedPaths: string[] = [];
    const sdkBookkeeping = /^\.events\.(markerRecordedEventAttributes\.details\.(patch-data|data)\.payloads|upsertWorkflowSearchAttributesEventAttributes\.searchAttributes\.indexedFields\.TemporalChangeVersion)$/;
    for (const history of histories) {
      const bytes = Buffer.from(proto.temporal.api.history.v1.History.encode(history).finish());
      const exported = historyToJSON(history);
      for (const marker of [promptMarker, completionMarker]) {
        assert.equal(bytes.includes(marker), false, `${marker} in the raw history`);
        assert.equal(exported.includes(marker), false, `${marker} in the exported JSON`);
      }
      const payloads = payloadsIn(JSON.parse(exported));
      // Plain only: the SDK's own bookkeeping (patch ids, local-activity marker metadata, the change-version search attribute).
      const plainPaths = new Set(payloads.filter((p) => encoding(p) !== 'binary/encrypted').map((p) => p.path));
      for (const path of plainPaths) assert.match(path, sdkBookkeeping);
      sealedPaths.push(...payloads.filter((p) => encoding(p) === 'binary/encrypted').map((p) => p.path));
      const decoded = await codec.decode(payloads.map(toPayload));
      decodedTexts.push(...decoded.map((p) => JSON.stringify(defaultPayloadConverter.fromPayload(p))));
    }
    for (const sealed of ['workflowExecutionStartedEventAttributes.input', 'activityTaskScheduledEventAttributes.input', 'activityTaskCompletedEventAttributes.result', 'activityTaskStartedEventAttributes.lastFailure.encodedAttributes', 'workflowExecutionCompletedEventAttributes.result']) {
      assert.ok(sealedPaths.some((path) => path.includes(sealed)), `${sealed} is sealed`);
    }
    const joined = decodedTexts.join('\n');
    assert.ok(joined.includes(promptMarker), 'the prompt marker is in the decoded history');
    assert.ok(joined.includes(completionMarker), 'the completion marker is in the decoded history');
    assert.match(joined, /not a chat completion/, 'it arrived as the failure message, whose attributes are encoded');

    // What the Temporal UI and CLI see through the codec server: every payload opened, the markers readable.
    const server = await startCodecServer({ host: '127.0.0.1', port: 0, token: undefined, codec, origins: [] });
    try {
      const shown = await execFileAsync(temporalCli, ['workflow', 'show', '--address', env.address, '--workflow-id', workflowId, '--output', 'json', '--codec-endpoint', server.url]);
      const opened = payloadsIn(JSON.parse(shown.stdout));
      assert.ok(opened.length > 0);
      assert.equal(opened.filter((p) => encoding(p) === 'binary/encrypted').length, 0);
      const openedText = opened.map((p) => Buffer.from(p.data ?? '', 'base64').toString('utf8')).join('\n');
      assert.ok(openedText.includes(promptMarker) && openedText.includes(completionMarker), 'temporal workflow show --codec-endpoint decodes the markers');
    } finally {
      await server.close();
    }
  });

  it('histories committed before encryption still replay with the codec on', async () => {
    const recorded = historyFromJSON(JSON.parse(readFileSync('tests/histories/pipeline-chained.json', 'utf8')));
    await Worker.runReplayHistory({ workflowBundle: bundle, dataConverter }, recorded, 'pipeline-chained-history');
  });
});
