// Process rewards with check_arithmetic, against Postgres and the scripted endpoint as the rater:
// steps that state arithmetic are judged by evaluating it (no rater call, a step_checks row), the
// others by the rater; a retry pays for nothing and stores nothing twice; `audit show` lists both.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { and, eq } from 'drizzle-orm';
import { ModelEndpoints } from '../../activities/llm.js';
import { processRewards, type ProcessSettings } from '../../activities/process.js';
import { RunContexts, type PromptRow } from '../../activities/run-context.js';
import { runConfigSchema } from '../../core/run-config.js';
import { storeConstitution } from '../../db/constitutions.js';
import { applyMigrations } from '../../db/migrate.js';
import { createDatabase, type Database } from '../../db/pool.js';
import { upsertPrompts, upsertRun } from '../../db/runs.js';
import * as schema from '../../db/schema.js';
import { startScriptedEndpoint, type ScriptedEndpoint } from '../../worker/scripted-endpoint.js';
import { createTestDatabase, defaultConstitution, runCli, type TestDatabase } from '../helpers.js';

const worked = '1. 17 × 20 = 340\n2. 17 × 3 = 51\n3. So 17 × 23 = 340 + 51 = 391.';
const slipped = '1. 17 × 23 = 381\n2. That is the product, stated plainly.';

describe('process rewards with arithmetic checks', () => {
  let database: TestDatabase;
  let db: Database;
  let rater: ScriptedEndpoint;

  before(async () => {
    [database, rater] = await Promise.all([createTestDatabase('tenet_steps'), startScriptedEndpoint()]);
    await applyMigrations(database.url);
    db = createDatabase(database.url, { max: 10 });
    // Every score request: 7 of 10.
    rater.setScript(() => ({ content: '7' }));
  });

  after(async () => {
    await db?.$client.end();
    await rater?.close();
    await database?.drop();
  });

  async function setUp(workflowId: string) {
    const { constitution, source } = defaultConstitution();
    const stored = await storeConstitution(db, { constitution, source });
    const config = runConfigSchema.parse({ endpoints: { policy: { base_url: rater.url, model: 'scripted' }, rater: { base_url: rater.url, model: 'scripted' } } });
    const runId = await upsertRun(db, { workflowId, kind: 'test', constitutionId: stored.id, config });
    const [promptId] = await upsertPrompts(db, runId, [{ key: 'p0', messages: [{ role: 'user', content: 'What is 17 * 23?' }] }]);
    const rows = await db
      .insert(schema.completions)
      .values([worked, slipped].map((text, sampleIndex) => ({ runId, promptId: promptId!, stage: 'rollout', sampleIndex, policyModel: 'm', policyVersion: 'v0', text, generationParams: {} })))
      .returning({ id: schema.completions.id, text: schema.completions.text });
    const prompt: PromptRow = { id: promptId!, key: 'p0', messages: [{ role: 'user', content: 'What is 17 * 23?' }], metadata: {} };
    return { runId, context: await new RunContexts(db).get(runId), items: rows.map((completion) => ({ prompt, completion })) };
  }

  const settings = (check: boolean): ProcessSettings => ({ split: 'numbered', aggregate: 'min', max_steps: 16, check_arithmetic: check });

  it('judges the steps that state arithmetic by evaluating it, and asks the rater about the rest', async () => {
    const { runId, context, items } = await setUp('wf-steps-checked');
    const llm = new ModelEndpoints(db);
    const sentBefore = rater.requests.length;
    const values = await processRewards(db, llm, context, items, 0, settings(true));
    // Worked: three steps, every claim true → min 1. Slipped: a false claim (-1), then a rated step (7 → 1/3).
    assert.deepEqual(values, [1, -1]);
    assert.equal(rater.requests.length - sentBefore, 1, 'only the step without arithmetic went to the rater');
    assert.match(rater.requests.at(-1)!.body.messages[0]!.content, /That is the product, stated plainly/);

    const checked = await db.select().from(schema.stepChecks).where(eq(schema.stepChecks.runId, runId)).orderBy(schema.stepChecks.completionId, schema.stepChecks.stepIndex);
    assert.deepEqual(
      checked.map((c) => [c.completionId, c.stepIndex, c.stepCount, c.checker, c.score, (c.checks as { holds: boolean }[]).map((k) => k.holds)]),
      [
        [items[0]!.completion.id, 0, 3, 'arithmetic', 1, [true]],
        [items[0]!.completion.id, 1, 3, 'arithmetic', 1, [true]],
        [items[0]!.completion.id, 2, 3, 'arithmetic', 1, [true, true]],
        [items[1]!.completion.id, 0, 2, 'arithmetic', -1, [false]],
      ],
    );
    const rated = await db.select().from(schema.raterDecisions).where(and(eq(schema.raterDecisions.runId, runId), eq(schema.raterDecisions.stage, 'process')));
    assert.deepEqual(
      rated.map((d) => [d.completionAId, (d.probabilities as { step: number }).step, d.score]),
      [[items[1]!.completion.id, 1, (7 - 5.5) / 4.5]],
    );

    // A retried batch: the same values, nothing sent, nothing stored twice.
    const sentAfter = rater.requests.length;
    assert.deepEqual(await processRewards(db, new ModelEndpoints(db), context, items, 0, settings(true)), [1, -1]);
    assert.equal(rater.requests.length, sentAfter);
    assert.equal((await db.select().from(schema.stepChecks).where(eq(schema.stepChecks.runId, runId))).length, 4);
    assert.equal((await db.select().from(schema.raterDecisions).where(eq(schema.raterDecisions.runId, runId))).length, 1);

    // The audit shows each step of the completion with its judge: the checker's claims, or the rater's decision.
    const shown = await runCli(['audit', 'show', String(rated[0]!.id)], { DATABASE_URL: database.url });
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /process: completion \d+ step 1\/2 {2}score -1\.000 {2}\(arithmetic: 17 \* 23 = 381 fails \(391 ≠ 381\)\)/);
    assert.match(shown.stdout, /process: completion \d+ step 2\/2 {2}score 0\.333 {2}\(\S+, decision \d+\)/);
    const json = JSON.parse((await runCli(['audit', 'show', String(rated[0]!.id), '--json'], { DATABASE_URL: database.url })).stdout) as { process_steps: { step: number; checker?: string; decision?: number }[] };
    assert.deepEqual(
      json.process_steps.map((s) => [s.step, s.checker ?? null, s.decision ?? null]),
      [
        [1, 'arithmetic', null],
        [2, null, rated[0]!.id],
      ],
    );
  });

  it('without check_arithmetic, every step goes to the rater', async () => {
    const { runId, context, items } = await setUp('wf-steps-rated');
    const sentBefore = rater.requests.length;
    assert.deepEqual(await processRewards(db, new ModelEndpoints(db), context, items, 0, settings(false)), [(7 - 5.5) / 4.5, (7 - 5.5) / 4.5]);
    // Five steps, five decisions; each was sent, or answered from the cache where the other test asked the same.
    const decisions = await db.select().from(schema.raterDecisions).where(and(eq(schema.raterDecisions.runId, runId), eq(schema.raterDecisions.stage, 'process')));
    assert.equal(decisions.length, 5);
    assert.equal(rater.requests.length - sentBefore, decisions.filter((d) => !d.fromCache).length);
    assert.equal((await db.select().from(schema.stepChecks).where(eq(schema.stepChecks.runId, runId))).length, 0);
  });
});
