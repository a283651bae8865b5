// Tool-using rollouts, against Postgres and the scripted OpenAI-compatible endpoint: a tool-call task's
// tools go with the request; the model's calls run in the task's environment (calculator, lookup) and
// their results go back until it answers or reaches max_turns; the trace is stored with the completion,
// scored by the tool-call verifier, exported to the trainer as `messages` with the tools offered, and a
// retried batch sends nothing and stores nothing twice.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { and, asc, eq } from 'drizzle-orm';
import { ModelEndpoints } from '../../activities/llm.js';
import { rolloutBatch } from '../../activities/rollouts.js';
import { RunContexts, type PromptRow } from '../../activities/run-context.js';
import { RewardScorers } from '../../activities/scorers.js';
import { createTrainerActivities, type TrainerJob } from '../../activities/trainer.js';
import { taskMetadata } from '../../activities/verifiers/dispatch.js';
import { runConfigSchema } from '../../core/run-config.js';
import { parseTasksJsonl } from '../../core/verifiers/tasks.js';
import { storeConstitution } from '../../db/constitutions.js';
import { applyMigrations } from '../../db/migrate.js';
import { createDatabase, type Database } from '../../db/pool.js';
import { upsertPrompts, upsertRun } from '../../db/runs.js';
import * as schema from '../../db/schema.js';
import { startScriptedEndpoint, type RecordedRequest, type ScriptedEndpoint, type ScriptedReply } from '../../worker/scripted-endpoint.js';
import { createTestDatabase, defaultConstitution, fakeTrainerScript, tempDir, type TestDatabase } from '../helpers.js';

const tasksFile = [
  {
    id: 'coffee',
    prompt: 'How much do 3 coffees cost?',
    verifier: 'tool-call',
    environment: { tools: ['lookup', 'calculator'], max_turns: 4 },
    expected: { calls: [{ name: 'lookup', arguments: { key: 'price of coffee' } }, { name: 'calculator', arguments: { expression: '3 * 3.8' } }], answer: '11.4' },
    options: { answer_match: 'math' },
  },
  { id: 'plain', prompt: 'Why is the sky blue?', verifier: 'math', reference: '1' },
  {
    id: 'weather',
    prompt: 'Weather in Paris?',
    verifier: 'tool-call',
    tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
    expected: { calls: [{ name: 'get_weather', arguments: { city: 'Paris' } }] },
  },
];

/** The model: even seeds look the price up, multiply and answer; odd seeds guess without tools. */
function toolScript(request: RecordedRequest): ScriptedReply | undefined {
  const body = request.body;
  if (!body.tools) return undefined;
  if (body.tools.some((tool) => tool.function.name === 'get_weather')) return { toolCalls: [{ name: 'get_weather', arguments: { city: 'Paris' } }] };
  if ((body.seed ?? 0) % 2 === 1) return { content: 'About 10.' };
  const results = body.messages.filter((m) => m.role === 'tool');
  if (results.length === 0) return { toolCalls: [{ name: 'lookup', arguments: { key: 'price of coffee' } }] };
  if (results.length === 1) return { content: 'Now the total.', toolCalls: [{ name: 'calculator', arguments: `{"expression": "3 * ${results[0]!.content}"}` }] };
  return { content: `3 coffees cost ${results[1]!.content}.` };
}

interface ExportedRollout {
  completion: string;
  reward: number;
  messages?: unknown[];
  tools?: { function: { name: string } }[];
  sampled_logprobs?: number[];
}

describe('tool-using rollouts', () => {
  let database: TestDatabase;
  let db: Database;
  let endpoint: ScriptedEndpoint;
  let artifacts: string;
  let fakeTrainer: string;

  before(async () => {
    [database, endpoint] = await Promise.all([createTestDatabase('tenet_rollout_tools'), startScriptedEndpoint({ script: toolScript, logprobs: true })]);
    await applyMigrations(database.url);
    db = createDatabase(database.url, { max: 10 });
    artifacts = tempDir('tenet-rollout-tools-');
    fakeTrainer = fakeTrainerScript(artifacts);
  });

  after(async () => {
    await db?.$client.end();
    await endpoint?.close();
    await database?.drop();
  });

  async function setUp(workflowId: string, lines: unknown[]) {
    const parsed = parseTasksJsonl(lines.map((line) => JSON.stringify(line)).join('\n'), 'tasks.jsonl');
    assert.ok(parsed.ok, JSON.stringify(parsed));
    const { constitution, source } = defaultConstitution();
    const stored = await storeConstitution(db, { constitution, source });
    const config = runConfigSchema.parse({
      endpoints: { policy: { base_url: endpoint.url, model: 'scripted', max_retries: 0 }, rater: { base_url: endpoint.url, model: 'scripted' } },
      loop: { mode: 'online', base_model: 'tiny', rewards: { verifier: { weight: 1 } }, rollouts: { group_size: 2, max_tokens: 64 } },
    });
    const runId = await upsertRun(db, { workflowId, kind: 'test', constitutionId: stored.id, config });
    const items = parsed.tasks.map((task) => ({ key: task.key, messages: task.messages, metadata: taskMetadata(task) }));
    const ids = await upsertPrompts(db, runId, items);
    const prompts: PromptRow[] = ids.map((id, i) => ({ id, ...items[i]! }));
    const context = await new RunContexts(db).get(runId);
    const rollOut = () => rolloutBatch(db, new ModelEndpoints(db), new RewardScorers(db), context, prompts, { runId, stage: 'rollout', iteration: 0, offset: 0, limit: prompts.length });
    return { runId, rollOut, prompts };
  }

  const rolloutsOf = (runId: number) =>
    db
      .select()
      .from(schema.completions)
      .where(and(eq(schema.completions.runId, runId), eq(schema.completions.stage, 'rollout')))
      .orderBy(asc(schema.completions.promptId), asc(schema.completions.sampleIndex));
  const verdictsOf = async (runId: number) =>
    new Map((await db.select().from(schema.rolloutRewards).where(eq(schema.rolloutRewards.runId, runId))).map((r) => [r.completionId, r.verdict as { reward: number; reason: { code: string } }]));

  async function exported(runId: number): Promise<ExportedRollout[]> {
    const trainer = createTrainerActivities({ db, python: fakeTrainer, artifactsRoot: artifacts, gpus: [] });
    const job: TrainerJob = { runId, iteration: 0, command: 'rl', kind: 'policy', modelKey: `run-${runId}/it-0/policy`, baseModel: 'tiny', options: {}, data: { source: 'rollouts', iteration: 0 } };
    await new MockActivityEnvironment().run(() => trainer.runTrainerJob(job));
    return readFileSync(path.join(artifacts, `run-${runId}`, 'it-0', 'policy', 'data.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as ExportedRollout);
  }

  it('run the tools until the model answers, store and score the trace, export it, and replay nothing on a retry', async () => {
    const { runId, rollOut, prompts } = await setUp('wf-tools', tasksFile);
    const sentBefore = endpoint.requests.length;
    assert.deepEqual(await rollOut(), { done: 6, failed: 0 });
    const sent = endpoint.requests.slice(sentBefore);
    // coffee: one sample takes 3 turns and the other 1 (seeds differ in parity); plain: 2 requests without tools; weather: 2, one turn each.
    assert.equal(sent.length, 3 + 1 + 2 + 2);
    const coffeeRequests = sent.filter((r) => r.body.messages[0]?.content === 'How much do 3 coffees cost?');
    for (const request of coffeeRequests) assert.deepEqual(request.body.tools?.map((tool) => tool.function.name), ['lookup', 'calculator']);
    assert.equal(sent.filter((r) => r.body.messages[0]?.content === 'Why is the sky blue?' && r.body.tools === undefined).length, 2);
    // The third request carries both tool results back, with the calls they answer.
    const third = coffeeRequests.find((r) => r.body.messages.length === 5)!;
    assert.deepEqual(
      third.body.messages.slice(1).map((m) => [m.role, m.content, m.tool_call_id ?? m.tool_calls?.map((c) => c.id).join()]),
      [
        ['assistant', null, 'call_0_0'],
        ['tool', '3.8', 'call_0_0'],
        ['assistant', 'Now the total.', 'call_1_0'],
        ['tool', '11.4', 'call_1_0'],
      ],
    );

    const rows = await rolloutsOf(runId);
    const verdicts = await verdictsOf(runId);
    const byPrompt = (key: string) => rows.filter((row) => row.promptId === prompts.find((p) => p.key === key)!.id);
    const coffee = byPrompt('coffee');
    const solved = coffee.find((row) => Array.isArray(row.trace) && row.trace.length === 5)!;
    assert.ok(solved, 'one coffee sample used both tools');
    assert.equal(solved.text, '3 coffees cost 11.4.');
    assert.deepEqual(solved.trace, [
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_0_0', type: 'function', function: { name: 'lookup', arguments: '{"key":"price of coffee"}' } }] },
      { role: 'tool', tool_call_id: 'call_0_0', name: 'lookup', content: '3.8' },
      { role: 'assistant', content: 'Now the total.', tool_calls: [{ id: 'call_1_0', type: 'function', function: { name: 'calculator', arguments: '{"expression": "3 * 3.8"}' } }] },
      { role: 'tool', tool_call_id: 'call_1_0', name: 'calculator', content: '11.4' },
      { role: 'assistant', content: '3 coffees cost 11.4.' },
    ]);
    assert.equal((solved.generationParams as { turns: number }).turns, 3);
    assert.equal(solved.sampledLogprobs, null, 'several turns: no log-probs of one completion');
    assert.deepEqual([verdicts.get(solved.id)?.reward, verdicts.get(solved.id)?.reason.code], [1, 'match']);
    const guessed = coffee.find((row) => row !== solved)!;
    assert.deepEqual(guessed.trace, [{ role: 'assistant', content: 'About 10.' }]);
    assert.ok(guessed.sampledLogprobs && guessed.sampledLogprobs.length > 0, 'one turn keeps its log-probs');
    assert.deepEqual([verdicts.get(guessed.id)?.reward, verdicts.get(guessed.id)?.reason.code], [0, 'no-calls']);

    // Tools offered as definitions only: the call is stored unanswered and scored.
    for (const row of byPrompt('weather')) {
      assert.deepEqual(row.trace, [{ role: 'assistant', content: null, tool_calls: [{ id: 'call_0_0', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] }]);
      assert.equal(row.finishReason, 'tool_calls');
      assert.deepEqual([verdicts.get(row.id)?.reward, verdicts.get(row.id)?.reason.code], [1, 'match']);
    }
    for (const row of byPrompt('plain')) assert.equal(row.trace, null);

    // A retried batch sends nothing and stores nothing twice.
    const sentAfter = endpoint.requests.length;
    await rollOut();
    assert.equal(endpoint.requests.length, sentAfter);
    assert.deepEqual(await rolloutsOf(runId), rows);

    const lines = await exported(runId);
    assert.equal(lines.length, 6);
    lines.forEach((line, i) => {
      const row = rows[i]!;
      if (row.trace === null) {
        assert.equal('messages' in line, false);
        assert.equal('tools' in line, false);
      } else assert.deepEqual(line.messages, row.trace);
    });
    const solvedLine = lines[rows.indexOf(solved)]!;
    assert.deepEqual([solvedLine.completion, solvedLine.reward, solvedLine.tools?.map((tool) => tool.function.name)], ['3 coffees cost 11.4.', 1, ['lookup', 'calculator']]);
    assert.equal('sampled_logprobs' in solvedLine, false);
  });

  it('stop at max_turns with the last calls unanswered', async () => {
    const looping = { ...tasksFile[0], id: 'loop', prompt: 'Keep looking things up.', environment: { tools: ['lookup'], max_turns: 2 } };
    const { runId, rollOut } = await setUp('wf-tools-max-turns', [looping]);
    endpoint.setScript((request) => (request.body.tools ? { toolCalls: [{ name: 'lookup', arguments: { key: 'capital of Kenya' } }] } : undefined));
    try {
      const sentBefore = endpoint.requests.length;
      await rollOut();
      assert.equal(endpoint.requests.length - sentBefore, 4, 'two samples, two turns each');
    } finally {
      endpoint.setScript(toolScript);
    }
    const verdicts = await verdictsOf(runId);
    for (const row of await rolloutsOf(runId)) {
      const trace = row.trace as { role: string; content: string | null; tool_calls?: unknown[] }[];
      assert.deepEqual(
        trace.map((m) => [m.role, m.content]),
        [
          ['assistant', null],
          ['tool', 'Nairobi'],
          ['assistant', null],
        ],
      );
      assert.equal(trace.at(-1)!.tool_calls?.length, 1);
      assert.equal(row.text, '');
      assert.equal(verdicts.get(row.id)?.reward, 0);
    }
  });
});
