// Rollouts keep the server's log-probs of their sampled tokens: against Postgres and the scripted
// OpenAI-compatible endpoint, the rollout stage asks for them (with token ids where the server gives
// them), stores them per completion, writes them into the trainer's JSONL, and stores nothing twice on
// a retry; an endpoint that returns none, or names its tokens by text, still works; an endpoint that
// rejects the token-id field fails once, naming the setting.
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
import { runConfigSchema } from '../../core/run-config.js';
import { storeConstitution } from '../../db/constitutions.js';
import { applyMigrations } from '../../db/migrate.js';
import { createDatabase, type Database } from '../../db/pool.js';
import { upsertPrompts, upsertRun } from '../../db/runs.js';
import * as schema from '../../db/schema.js';
import { scriptedTokens, startScriptedEndpoint, type ScriptedEndpoint } from '../../worker/scripted-endpoint.js';
import { createTestDatabase, defaultConstitution, fakeTrainerScript, tempDir, type TestDatabase } from '../helpers.js';

const questions = ['Why is the sky blue?', 'How do tides work?'];

interface ExportedRollout {
  completion: string;
  group: string;
  reward: number;
  sampled_logprobs?: number[];
  sampled_token_ids?: number[];
}

describe('rollouts with the server’s log-probs of the sampled tokens', () => {
  let database: TestDatabase;
  let db: Database;
  // Returns per-token log-probs (token ids on return_tokens_as_token_ids, as vLLM and `trainer serve`).
  let vllmLike: ScriptedEndpoint;
  // Returns per-token log-probs with tokens named by text only.
  let textTokens: ScriptedEndpoint;
  // Returns no log-probs at all.
  let plain: ScriptedEndpoint;
  let artifacts: string;
  let fakeTrainer: string;

  before(async () => {
    [database, vllmLike, textTokens, plain] = await Promise.all([
      createTestDatabase('tenet_rollout_logprobs'),
      startScriptedEndpoint({ logprobs: true }),
      startScriptedEndpoint({ logprobs: true, tokenIds: false }),
      startScriptedEndpoint(),
    ]);
    await applyMigrations(database.url);
    db = createDatabase(database.url, { max: 10 });
    artifacts = tempDir('tenet-rollout-logprobs-');
    // Stands in for `python -m tenet_trainer rl`: what is under test is the training file it is handed.
    fakeTrainer = fakeTrainerScript(artifacts);
  });

  after(async () => {
    await db?.$client.end();
    await Promise.all([vllmLike?.close(), textTokens?.close(), plain?.close()]);
    await database?.drop();
  });

  async function setUp(workflowId: string, endpoint: ScriptedEndpoint, rollouts: Record<string, unknown> = {}) {
    const { constitution, source } = defaultConstitution();
    const stored = await storeConstitution(db, { constitution, source });
    const config = runConfigSchema.parse({
      endpoints: { policy: { base_url: endpoint.url, model: 'scripted', max_retries: 0 }, rater: { base_url: endpoint.url, model: 'scripted' } },
      loop: { mode: 'online', base_model: 'tiny', rewards: { length_penalty: { weight: 0.1 } }, rollouts: { group_size: 2, max_tokens: 64, ...rollouts } },
    });
    const runId = await upsertRun(db, { workflowId, kind: 'test', constitutionId: stored.id, config });
    const ids = await upsertPrompts(db, runId, questions.map((content, i) => ({ key: `p${i}`, messages: [{ role: 'user', content }] })));
    const prompts: PromptRow[] = ids.map((id, i) => ({ id, key: `p${i}`, messages: [{ role: 'user', content: questions[i]! }], metadata: {} }));
    const context = await new RunContexts(db).get(runId);
    const rollOut = () => rolloutBatch(db, new ModelEndpoints(db), new RewardScorers(db), context, prompts, { runId, stage: 'rollout', iteration: 0, offset: 0, limit: prompts.length });
    return { runId, rollOut };
  }

  const rolloutsOf = (runId: number) =>
    db
      .select()
      .from(schema.completions)
      .where(and(eq(schema.completions.runId, runId), eq(schema.completions.stage, 'rollout')))
      .orderBy(asc(schema.completions.promptId), asc(schema.completions.sampleIndex));

  /** The JSONL the RL update is handed, through the trainer activity. */
  async function exported(runId: number): Promise<ExportedRollout[]> {
    const trainer = createTrainerActivities({ db, python: fakeTrainer, artifactsRoot: artifacts, gpus: [] });
    const job: TrainerJob = { runId, iteration: 0, command: 'rl', kind: 'policy', modelKey: `run-${runId}/it-0/policy`, baseModel: 'tiny', options: {}, data: { source: 'rollouts', iteration: 0 } };
    await new MockActivityEnvironment().run(() => trainer.runTrainerJob(job));
    const file = path.join(artifacts, `run-${runId}`, 'it-0', 'policy', 'data.jsonl');
    return readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as ExportedRollout);
  }

  it('asks for the sampled tokens’ log-probs and ids, stores them per completion, and exports them to the trainer', async () => {
    const { runId, rollOut } = await setUp('wf-logprobs-ids', vllmLike);
    const sentBefore = vllmLike.requests.length;
    assert.deepEqual(await rollOut(), { done: 4, failed: 0 });
    const sent = vllmLike.requests.slice(sentBefore);
    assert.equal(sent.length, 4);
    for (const request of sent) {
      assert.equal(request.body.logprobs, true);
      assert.equal(request.body.top_logprobs, 0);
      assert.equal(request.body.return_tokens_as_token_ids, true);
    }

    const rows = await rolloutsOf(runId);
    assert.equal(rows.length, 4);
    for (const row of rows) {
      // The scripted server's tokens of this text and seed: exactly what it sent, in order.
      const tokens = scriptedTokens(row.text, (row.generationParams as { seed: number }).seed);
      assert.ok(tokens.length > 3);
      assert.deepEqual(row.sampledTokenIds, tokens.map((t) => t.id));
      assert.deepEqual(row.sampledLogprobs, tokens.map((t) => t.logprob));
      assert.equal(row.completionTokens, tokens.length);
    }
    // Two samples of one prompt differ in seed, so in their log-probs.
    assert.notDeepEqual(rows[0]!.sampledLogprobs, rows[1]!.sampledLogprobs);

    // A retried batch sends nothing and stores nothing twice.
    const sentAfter = vllmLike.requests.length;
    await rollOut();
    assert.equal(vllmLike.requests.length, sentAfter);
    assert.deepEqual(await rolloutsOf(runId), rows);

    const lines = await exported(runId);
    assert.equal(lines.length, 4);
    assert.deepEqual(
      lines.map((line) => [line.completion, line.sampled_token_ids, line.sampled_logprobs]),
      rows.map((row) => [row.text, row.sampledTokenIds, row.sampledLogprobs]),
    );
    assert.deepEqual(
      lines.map((line) => line.group),
      rows.map((row) => String(row.promptId)),
    );
  });

  it('an endpoint that returns no log-probs still works: the columns stay null and the export leaves the fields out', async () => {
    const { runId, rollOut } = await setUp('wf-logprobs-none', plain);
    assert.deepEqual(await rollOut(), { done: 4, failed: 0 });
    const rows = await rolloutsOf(runId);
    assert.equal(rows.length, 4);
    for (const row of rows) {
      assert.equal(row.sampledLogprobs, null);
      assert.equal(row.sampledTokenIds, null);
    }
    const rewards = await db.select().from(schema.rolloutRewards).where(eq(schema.rolloutRewards.runId, runId));
    assert.equal(rewards.length, 4, 'every rollout scored');
    const lines = await exported(runId);
    assert.equal(lines.length, 4);
    for (const line of lines) {
      assert.equal('sampled_logprobs' in line, false);
      assert.equal('sampled_token_ids' in line, false);
      assert.equal(typeof line.reward, 'number');
    }
  });

  it('tokens named by text: the log-probs are kept, the ids are not', async () => {
    const { runId, rollOut } = await setUp('wf-logprobs-text', textTokens, { logprobs: 'without-ids' });
    const sentBefore = textTokens.requests.length;
    await rollOut();
    for (const request of textTokens.requests.slice(sentBefore)) {
      assert.equal(request.body.logprobs, true);
      assert.equal('return_tokens_as_token_ids' in request.body, false);
    }
    const rows = await rolloutsOf(runId);
    for (const row of rows) {
      assert.deepEqual(row.sampledLogprobs, scriptedTokens(row.text, (row.generationParams as { seed: number }).seed).map((t) => t.logprob));
      assert.equal(row.sampledTokenIds, null);
    }
    const lines = await exported(runId);
    assert.deepEqual(
      lines.map((line) => line.sampled_logprobs),
      rows.map((row) => row.sampledLogprobs),
    );
    assert.equal(lines.some((line) => 'sampled_token_ids' in line), false);
  });

  it('logprobs: off asks for none', async () => {
    const { runId, rollOut } = await setUp('wf-logprobs-off', vllmLike, { logprobs: 'off' });
    const sentBefore = vllmLike.requests.length;
    await rollOut();
    for (const request of vllmLike.requests.slice(sentBefore)) {
      assert.equal('logprobs' in request.body, false);
      assert.equal('return_tokens_as_token_ids' in request.body, false);
    }
    assert.deepEqual(
      (await rolloutsOf(runId)).map((row) => [row.sampledLogprobs, row.sampledTokenIds]),
      [
        [null, null],
        [null, null],
        [null, null],
        [null, null],
      ],
    );
  });

  it('an endpoint that rejects return_tokens_as_token_ids fails at once, naming the setting to change', async () => {
    const { runId, rollOut } = await setUp('wf-logprobs-rejected', textTokens);
    // As OpenAI's API answers an unknown field.
    textTokens.setScript((request) =>
      request.body.return_tokens_as_token_ids === undefined ? undefined : { status: 400, content: 'Unrecognized request argument supplied: return_tokens_as_token_ids' },
    );
    try {
      await assert.rejects(rollOut(), (error: Error & { nonRetryable?: boolean }) => {
        assert.equal(error.nonRetryable, true);
        assert.match(error.message, /rejected the request with 400: .*return_tokens_as_token_ids.* — set loop\.rollouts\.logprobs: without-ids \(or off\) for this endpoint/);
        return true;
      });
    } finally {
      textTokens.setScript(undefined);
    }
    assert.deepEqual(await rolloutsOf(runId), []);
  });
});
