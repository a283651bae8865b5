// Tool-using rollouts end to end, up to a real update of the tiny model: Postgres, the scripted
// endpoint as the policy (the tiny random model cannot call tools by itself, so the scripted server
// plays a model that looks the price up, multiplies and answers, or guesses), the rollout stage running
// the task's calculator and lookup tools, and `trainer rl` on the exported traces: it parses the turns,
// renders them through the tiny model's chat template, trains on the assistant turns only and writes an
// adapter. What this does not cover: `trainer serve` generating the tool calls itself.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { eq } from 'drizzle-orm';
import { ModelEndpoints } from '../../activities/llm.js';
import { rolloutBatch } from '../../activities/rollouts.js';
import { RunContexts, type PromptRow } from '../../activities/run-context.js';
import { RewardScorers } from '../../activities/scorers.js';
import { createTrainerActivities, type TrainedModel, type TrainerJob } from '../../activities/trainer.js';
import { taskMetadata } from '../../activities/verifiers/dispatch.js';
import { runConfigSchema } from '../../core/run-config.js';
import { parseTasksJsonl } from '../../core/verifiers/tasks.js';
import { storeConstitution } from '../../db/constitutions.js';
import { applyMigrations } from '../../db/migrate.js';
import { createDatabase, type Database } from '../../db/pool.js';
import { upsertPrompts, upsertRun } from '../../db/runs.js';
import * as schema from '../../db/schema.js';
import { startScriptedEndpoint, type RecordedRequest, type ScriptedEndpoint, type ScriptedReply } from '../../worker/scripted-endpoint.js';
import { createTestDatabase, defaultConstitution, makeTinyModel, tempDir, type TestDatabase, venvPython } from '../helpers.js';

const tasks = [
  {
    id: 'coffee',
    prompt: 'How much do 3 coffees cost?',
    verifier: 'tool-call',
    environment: { tools: ['lookup', 'calculator'] },
    expected: { calls: [{ name: 'lookup', arguments: { key: 'price of coffee' } }, { name: 'calculator', arguments: { expression: '3 * 3.8' } }], answer: '11.4' },
    options: { answer_match: 'math' },
  },
  {
    id: 'capital',
    prompt: 'What is the capital of Kenya?',
    verifier: 'tool-call',
    environment: { tools: ['lookup'], max_turns: 2 },
    expected: { calls: [{ name: 'lookup', arguments: { key: 'capital of Kenya' } }], answer: 'Nairobi' },
  },
];

/** Even seeds use the tools and answer from their results; odd seeds guess at once. */
function toolUser(request: RecordedRequest): ScriptedReply | undefined {
  const body = request.body;
  if (!body.tools) return undefined;
  if ((body.seed ?? 0) % 2 === 1) return { content: 'I think about 10.' };
  const results = body.messages.filter((m) => m.role === 'tool').map((m) => m.content);
  if (body.messages[0]?.content.includes('Kenya')) return results.length === 0 ? { toolCalls: [{ name: 'lookup', arguments: { key: 'capital of Kenya' } }] } : { content: results[0]! };
  if (results.length === 0) return { toolCalls: [{ name: 'lookup', arguments: { key: 'price of coffee' } }] };
  if (results.length === 1) return { toolCalls: [{ name: 'calculator', arguments: { expression: `3 * ${results[0]}` } }] };
  return { content: `That is ${results[1]}.` };
}

describe('tool-using rollouts into a real RL update of the tiny model', { timeout: 900_000 }, () => {
  let database: TestDatabase;
  let db: Database;
  let policy: ScriptedEndpoint;
  let artifacts: string;
  let tiny: string;

  before(async () => {
    artifacts = tempDir('tenet-tool-rollouts-e2e-');
    tiny = path.join(artifacts, 'tiny');
    makeTinyModel(tiny);
    [database, policy] = await Promise.all([createTestDatabase('tenet_tool_rollouts_e2e'), startScriptedEndpoint({ script: toolUser })]);
    await applyMigrations(database.url);
    db = createDatabase(database.url, { max: 10 });
  });

  after(async () => {
    await db?.$client.end();
    await policy?.close();
    await database?.drop();
  });

  it('rolls out with tools, scores the traces and trains on them', async () => {
    const parsed = parseTasksJsonl(tasks.map((task) => JSON.stringify(task)).join('\n'), 'tasks.jsonl');
    assert.ok(parsed.ok, JSON.stringify(parsed));
    const { constitution, source } = defaultConstitution();
    const stored = await storeConstitution(db, { constitution, source });
    const config = runConfigSchema.parse({
      endpoints: { policy: { base_url: policy.url, model: 'scripted', max_retries: 0 }, rater: { base_url: policy.url, model: 'scripted' } },
      loop: { mode: 'online', base_model: tiny, rewards: { verifier: { weight: 1 } }, rollouts: { group_size: 4, max_tokens: 64 } },
    });
    const runId = await upsertRun(db, { workflowId: 'wf-tool-rollouts-e2e', kind: 'test', constitutionId: stored.id, config });
    const items = parsed.tasks.map((task) => ({ key: task.key, messages: task.messages, metadata: taskMetadata(task) }));
    const ids = await upsertPrompts(db, runId, items);
    const prompts: PromptRow[] = ids.map((id, i) => ({ id, ...items[i]! }));
    const context = await new RunContexts(db).get(runId);
    assert.deepEqual(await rolloutBatch(db, new ModelEndpoints(db), new RewardScorers(db), context, prompts, { runId, stage: 'rollout', iteration: 0, offset: 0, limit: prompts.length }), { done: 8, failed: 0 });

    // Half of each group solved its task with the tools (reward 1), half guessed (0): every group has signal.
    const rewards = await db.select().from(schema.rolloutRewards).where(eq(schema.rolloutRewards.runId, runId));
    assert.deepEqual(rewards.map((r) => r.total).sort(), [0, 0, 0, 0, 1, 1, 1, 1]);

    const trainer = createTrainerActivities({ db, python: venvPython, artifactsRoot: artifacts, gpus: [] });
    const job: TrainerJob = {
      runId,
      iteration: 0,
      command: 'rl',
      kind: 'policy',
      modelKey: `run-${runId}/it-0/policy`,
      baseModel: tiny,
      options: { batch_size: 8, ppo_epochs: 1, lr: 0.02, checkpoint_every: 0, max_length: 1024 },
      data: { source: 'rollouts', iteration: 0 },
    };
    const model: TrainedModel = await new MockActivityEnvironment().run(() => trainer.runTrainerJob(job));
    assert.ok(existsSync(path.join(model.artifactPath, 'adapter_model.safetensors')), 'the update wrote an adapter');

    const lines = readFileSync(path.join(artifacts, `run-${runId}`, 'it-0', 'policy', 'data.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { reward: number; messages?: { role: string }[]; tools?: unknown[] });
    assert.equal(lines.length, 8);
    assert.ok(lines.every((line) => line.messages && line.tools && line.tools.length > 0));
    assert.deepEqual(lines.filter((line) => line.reward === 1).map((line) => line.messages!.map((m) => m.role).join(',')).sort(), [
      'assistant,tool,assistant',
      'assistant,tool,assistant',
      'assistant,tool,assistant,tool,assistant',
      'assistant,tool,assistant,tool,assistant',
    ]);
    const [row] = await db.select().from(schema.models).where(eq(schema.models.id, model.modelId));
    const metrics = row!.metrics as Record<string, number>;
    // Scored tokens per rollout: the assistant turns only. A guess is one short turn; a solution a few turns of tool-call JSON.
    assert.ok(metrics.completion_tokens_mean! > 5 && metrics.completion_tokens_mean! < 200, JSON.stringify(metrics));
    assert.equal(metrics.reward_mean, 0.5);
  });
});
