// `tenet rater eval|show|list|agreement` as a user runs them, against a real Temporal dev server, a
// worker, the machine's Postgres and the scripted endpoint acting as a rater whose every answer is
// known in advance: right but position-biased on most pairs, wrong on `trap-*`, unreadable on `mute-*`;
// as `biased-rater`, mostly position prior (logit P(A) = logit 0.86 ± 0.4 of content), which the
// configured debiasing must take out.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { sql } from 'drizzle-orm';
import { createCpuActivities } from '../../activities/index.js';
import { taskQueues } from '../../core/queues.js';
import type { RaterEvaluation } from '../../core/rater/evaluation.js';
import { applyMigrations } from '../../db/migrate.js';
import { createDatabase, type Database } from '../../db/pool.js';
import { fencedBlock, startScriptedEndpoint, type RecordedRequest, type ScriptedEndpoint, type ScriptedReply } from '../../worker/scripted-endpoint.js';
import { bundleWorkflows } from '../../worker/worker.js';
import { projectRoot } from '../../worker/settings.js';
import { createTestDatabase, runCli, temporalCli, tempDir, type TestDatabase } from '../helpers.js';

const goldFile = path.join(projectRoot, 'tests', 'fixtures', 'gold', 'small.jsonl');
const gold = readFileSync(goldFile, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { id: string; chosen: string; rejected: string });
const secret = 'sk-rater-eval-secret-123';

/** P(A) as the scripted rater gives it, from which side the gold-chosen response is on. */
function raterScript(request: RecordedRequest): ScriptedReply | undefined {
  const prompt = request.body.messages[0]?.content ?? '';
  const a = fencedBlock(prompt, 'response_a');
  const b = fencedBlock(prompt, 'response_b');
  const pair = gold.find((g) => (g.chosen === a && g.rejected === b) || (g.chosen === b && g.rejected === a));
  if (!pair) return undefined;
  if (pair.id.startsWith('mute')) return { content: 'I would rather not say.' };
  const chosenIsA = pair.chosen === a;
  if (request.body.model === 'biased-rater') return biasedAnswer(pair.id, chosenIsA);
  // Right with a lean towards A (0.9 / 0.4); on traps, wrong (P(chosen) = 0.1 in both orders).
  const pA = pair.id.startsWith('trap') ? (chosenIsA ? 0.1 : 0.9) : chosenIsA ? 0.9 : 0.4;
  return letter(pA);
}

const letter = (pA: number): ScriptedReply => ({ content: pA >= 0.5 ? 'A' : 'B', topLogprobs: [{ token: 'A', logprob: Math.log(pA) }, { token: 'B', logprob: Math.log(1 - pA) }] });
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const priorLogit = Math.log(0.86 / 0.14);

/**
 * Says "A" whatever the order: logit P(A) = logit 0.86 + 0.4 when the better response is A, − 0.4
 * when it is B (reversed on traps); style-001 is unreadable when its better response is A, so only
 * its BA order is decided (P(A) = 0.80: wrong as it stands, right once the prior is out).
 */
function biasedAnswer(id: string, chosenIsA: boolean): ScriptedReply {
  if (id === 'style-001' && chosenIsA) return { content: 'Both have merit.' };
  const content = (chosenIsA ? 0.4 : -0.4) * (id.startsWith('trap') ? -1 : 1);
  return letter(sigmoid(priorLogit + content));
}

const close = (actual: number | null | undefined, expected: number) => assert.ok(typeof actual === 'number' && Math.abs(actual - expected) < 1e-9, `${actual} != ${expected}`);

describe('tenet rater', () => {
  let env: TestWorkflowEnvironment;
  let database: TestDatabase;
  let db: Database;
  let endpoint: ScriptedEndpoint;
  let worker: Worker;
  let running: Promise<void>;
  let cli: Record<string, string>;
  let dir: string;
  let config: string;

  before(async () => {
    [env, database, endpoint] = await Promise.all([
      TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path: temporalCli } } }),
      createTestDatabase('tenet_rater_eval'),
      startScriptedEndpoint({ script: raterScript }),
    ]);
    await applyMigrations(database.url);
    db = createDatabase(database.url);
    worker = await Worker.create({ connection: env.nativeConnection, taskQueue: taskQueues.cpu, workflowBundle: await bundleWorkflows(), activities: createCpuActivities({ db }) });
    running = worker.run();
    // The worker reads the rater's key from its environment; the CLI only names the variable.
    process.env.RATER_KEY = secret;
    dir = tempDir();
    cli = { TEMPORAL_ADDRESS: env.address, DATABASE_URL: database.url, TENET_HOME: dir };
    config = path.join(dir, 'run.yaml');
    writeFileSync(
      config,
      `endpoints:\n  policy: { base_url: "${endpoint.url}", model: scripted }\n  rater: { base_url: "${endpoint.url}", model: scripted-rater, api_key_env: RATER_KEY }\nlabel: { repair_limit: 1 }\nscale: { batch_size: 2, max_batches_in_flight: 2 }\n`,
    );
  });

  after(async () => {
    worker?.shutdown();
    await running;
    await endpoint?.close();
    await db?.$client.end();
    await env?.teardown();
    await database?.drop();
    delete process.env.RATER_KEY;
  });

  const count = async (table: string) => Number((await db.execute<{ n: string }>(sql.raw(`select count(*) as n from ${table}`))).rows[0]!.n);

  it('refuses a gold set with a malformed line, a missing label or identical responses, before any call or write', async () => {
    const result = await runCli(['rater', 'eval', '--gold', 'tests/fixtures/gold/bad.jsonl', '--config', config], cli);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /bad\.jsonl has bad lines; nothing was written or called/);
    assert.match(result.stderr, /tests\/fixtures\/gold\/bad\.jsonl:2:\d+: not valid JSON/);
    assert.match(result.stderr, /bad\.jsonl:3:1: rejected: missing required key: expected rejected \(a text: the worse response\)/);
    assert.match(result.stderr, /bad\.jsonl:4:\d+: rejected: expected two different responses \(chosen and rejected are identical\)/);
    assert.doesNotMatch(result.stderr, /bad\.jsonl:1:\d+:/);
    const unknown = path.join(dir, 'unknown.jsonl');
    writeFileSync(unknown, `${JSON.stringify({ id: 'x', category: 'c', principle: 'helpful-consise', prompt: 'p', chosen: 'a', rejected: 'b' })}\n`);
    const named = await runCli(['rater', 'eval', '--gold', unknown, '--config', config], cli);
    assert.equal(named.code, 1);
    assert.match(named.stderr, /unknown\.jsonl:1:\d+: principle: unknown principle 'helpful-consise' \(not in tenet-default; did you mean 'helpful-concise'\?\)/);
    assert.equal(endpoint.requests.length, 0);
    for (const table of ['runs', 'prompts', 'completions', 'rater_decisions', 'rater_evaluations', 'constitutions']) assert.equal(await count(table), 0, table);
  });

  it('measures the rater through the label stage and stores every call and the figures', async () => {
    const result = await runCli(['rater', 'eval', '--gold', goldFile, '--config', config, '--json'], cli);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const view = JSON.parse(result.stdout) as { id: number; run_id: number; status: string; gold: { name: string; pairs: number }; rater: { endpoint: Record<string, unknown> }; metrics: RaterEvaluation };
    assert.equal(view.status, 'completed');
    assert.deepEqual(view.gold.name, 'small.jsonl');
    assert.equal(view.gold.pairs, 6);
    assert.deepEqual(view.rater.endpoint, { base_url: endpoint.url, model: 'scripted-rater', api_key_env: 'RATER_KEY' });
    const o = view.metrics.overall;
    // 6 pairs × 2 orders; mute-001's two comparisons are asked twice (repair_limit 1) and abstain.
    assert.equal(o.pairs, 6);
    assert.equal(o.comparisons, 12);
    assert.equal(o.calls, 14);
    close(o.abstain_rate, 2 / 12);
    // Five pairs decided: four right (P(chosen) 0.9 and 0.6 → 0.75), the trap wrong (0.1 in both orders).
    assert.deepEqual(o.accuracy.ab, { accuracy: 0.8, decided: 5 });
    assert.deepEqual(o.accuracy.ba, { accuracy: 0.8, decided: 5 });
    assert.deepEqual(o.accuracy.combined, { accuracy: 0.8, correct: 4, wrong: 1, ties: 0, decided: 5 });
    close(o.position_bias, (4 * (0.9 + 0.4) + 0.1 + 0.9) / 10 - 0.5);
    assert.equal(o.order_agreement, 1);
    close(o.ece, (4 / 5) * 0.25 + (1 / 5) * 0.9);
    close(o.brier, (4 * 0.25 ** 2 + 0.9 ** 2) / 5);
    assert.ok(o.tokens.prompt > 0 && o.tokens.completion > 0);
    // The default settings take nothing out and drop nothing: the labels training gets score as the raw figures.
    assert.deepEqual(o.debiased!.settings, { mode: 'pairwise', position_prior: 'none', disagreement: 'keep', margin: 0 });
    assert.equal(o.debiased!.prior_a, null);
    assert.deepEqual(o.debiased!.accuracy, { accuracy: 0.8, correct: 4, wrong: 1, ties: 0 });
    close(o.debiased!.brier, o.brier!);
    // Pinned principles judge their own pairs; the two unpinned pairs take the usual draw.
    close(view.metrics.principles['honest-no-fabrication']!.accuracy.combined.accuracy, 2 / 3);
    assert.equal(view.metrics.principles['honest-no-fabrication']!.pairs, 3);
    assert.equal(view.metrics.principles['helpful-concise']!.accuracy.combined.accuracy, 1);
    assert.equal(view.metrics.categories.arithmetic!.pairs, 3);
    close(view.metrics.categories.arithmetic!.accuracy.combined.accuracy, 2 / 3);
    assert.equal(view.metrics.categories.concise!.accuracy.combined.accuracy, 1);
    close(view.metrics.categories.concise!.abstain_rate, 2 / 6);

    // Every call is an auditable decision row of stage rater-eval; the key is sent, never stored.
    const decisions = await db.execute<{ stage: string; principle_key: string; key: string }>(
      sql`select d.stage, d.principle_key, p.key from rater_decisions d join prompts p on p.id = d.prompt_id where d.run_id = ${view.run_id}`,
    );
    assert.equal(decisions.rows.length, 14);
    assert.ok(decisions.rows.every((r) => r.stage === 'rater-eval'));
    assert.ok(decisions.rows.filter((r) => r.key.startsWith('arith') || r.key.startsWith('trap')).every((r) => r.principle_key === 'honest-no-fabrication'));
    assert.equal(endpoint.requests.length, 14);
    assert.ok(endpoint.requests.every((r) => r.authorization === `Bearer ${secret}`));
    const dump = (await db.execute<{ t: string }>(sql`select (select json_agg(e)::text from rater_evaluations e) || (select json_agg(r)::text from runs r) || (select json_agg(d)::text from rater_decisions d) as t`)).rows[0]!.t;
    assert.ok(!dump.includes(secret));

    // Shown again as text; the same evaluation a second time calls nothing and writes nothing new.
    const again = await runCli(['rater', 'eval', '--gold', goldFile, '--config', config], cli);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /evaluated before \(evaluation \d+\)/);
    assert.match(again.stdout, /^overall\s+6\s+0\.80\s+0\.80\s+0\.80\s+0\.00\s+\+0\.12\s+1\.00\s+0\.17\s+0\.380\s+0\.212 /m);
    assert.match(again.stdout, /^principle honest-no-fabrication\s+3\s+0\.67/m);
    assert.match(again.stdout, /^category concise\s+3\s+1\.00/m);
    assert.equal(endpoint.requests.length, 14);
    assert.equal(await count('rater_evaluations'), 1);
    assert.equal(await count('rater_decisions'), 14);

    const shown = JSON.parse((await runCli(['rater', 'show', String(view.id), '--json'], cli)).stdout) as typeof view;
    assert.deepEqual(shown.metrics, view.metrics);
    const list = await runCli(['rater', 'list'], cli);
    assert.match(list.stdout, new RegExp(`^\\s+${view.id}\\s+completed\\s+scripted-rater\\s+small\\.jsonl\\s+6 pairs\\s+acc 0\\.80\\s+agree 1\\.00\\s+bias 0\\.12`, 'm'));
    const missing = await runCli(['rater', 'show', '999'], cli);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no rater evaluation 999/);

    // A different label setting is a different evaluation.
    const cot = path.join(dir, 'cot.yaml');
    writeFileSync(cot, readFileSync(config, 'utf8').replace('label: { repair_limit: 1 }', 'label: { repair_limit: 1, logprobs: false }'));
    const other = JSON.parse((await runCli(['rater', 'eval', '--gold', goldFile, '--config', cot, '--json'], cli)).stdout) as typeof view;
    assert.notEqual(other.id, view.id);
    // Without logprobs the letters alone: the same picks, held with certainty (P 1 or 0): no lean left, and overconfident.
    assert.deepEqual(other.metrics.overall.accuracy.combined, { accuracy: 0.8, correct: 4, wrong: 1, ties: 0, decided: 5 });
    assert.equal(other.metrics.overall.position_bias, 0);
    close(other.metrics.overall.ece, 0.2);
    close(other.metrics.overall.brier, 0.2);
  });

  it('reports the figures after the configured debiasing beside the raw ones: a batch prior takes a position-biased rater from 0.6 to 0.8', async () => {
    const biased = path.join(dir, 'biased.yaml');
    writeFileSync(
      biased,
      `endpoints:\n  policy: { base_url: "${endpoint.url}", model: scripted }\n  rater: { base_url: "${endpoint.url}", model: biased-rater }\nlabel: { repair_limit: 1, position_prior: batch }\nscale: { batch_size: 10 }\n`,
    );
    const result = await runCli(['rater', 'eval', '--gold', goldFile, '--config', biased, '--json'], cli);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const view = JSON.parse(result.stdout) as { id: number; metrics: RaterEvaluation };
    const o = view.metrics.overall;
    // Raw: arith-001, arith-002, style-002 right ((σ(1.815 + 0.4) + 1 − σ(1.815 − 0.4)) / 2 = 0.55), trap-001 wrong,
    // style-001 (BA only, P(A) 0.80) wrong; mute-001 abstains.
    assert.deepEqual(o.accuracy.combined, { accuracy: 0.6, correct: 3, wrong: 2, ties: 0, decided: 5 });
    assert.deepEqual([o.accuracy.ab, o.accuracy.ba], [{ accuracy: 1, decided: 4 }, { accuracy: 0, decided: 5 }]);
    // One batch: the median logit of its eight both-order answers (four at ±0.4 each) is the prior, 0.86; with it out
    // every pair's label is σ(±0.4): style-001 turns right, the trap stays wrong.
    const d = o.debiased!;
    assert.deepEqual(d.settings, { mode: 'pairwise', position_prior: 'batch', disagreement: 'keep', margin: 0 });
    close(d.prior_a!.min, 0.86);
    close(d.prior_a!.max, 0.86);
    assert.deepEqual([d.labelled, d.kept, d.dropped], [5, 5, { orders_disagree: 0, below_margin: 0 }]);
    assert.deepEqual(d.accuracy, { accuracy: 0.8, correct: 4, wrong: 1, ties: 0 });
    assert.equal(d.order_agreement, 1);
    close(d.brier, (4 * (1 - sigmoid(0.4)) ** 2 + (1 - sigmoid(-0.4)) ** 2) / 5);
    // Nine answers with the prior out: four at +0.4, five at −0.4 (style-001's one order among them).
    close(d.position_bias, (4 * sigmoid(0.4) + 5 * sigmoid(-0.4)) / 9 - 0.5);
    close(view.metrics.categories.concise!.debiased!.accuracy.accuracy, 1);
    assert.equal(view.metrics.categories.concise!.accuracy.combined.accuracy, 0.5);
    // What is measured is what the label stage wrote: the evaluation's preferences carry the same prior.
    const priors = await db.execute<{ prior_a: number }>(sql`select (f.debias ->> 'prior_a')::float8 as prior_a from preferences f join rater_evaluations e on e.run_id = f.run_id where e.id = ${view.id}`);
    assert.equal(priors.rows.length, 5);
    for (const row of priors.rows) close(row.prior_a, d.prior_a!.min);

    const text = await runCli(['rater', 'show', String(view.id)], cli);
    assert.match(text.stdout, /after debiasing \(mode pairwise, position_prior batch, disagreement keep, margin 0; prior P\(A\) 0\.860 taken out\)/);
    assert.match(text.stdout, /^overall\s+6\s+1\.00\s+0\.00\s+0\.60\s/m);
    assert.match(text.stdout, /^overall\s+5\s+5\s+0\s+0\s+0\.80\s+0\.80\s+0\.00\s/m);
    const list = await runCli(['rater', 'list'], cli);
    assert.match(list.stdout, new RegExp(`^\\s+${view.id}\\s+completed\\s+biased-rater .* acc 0\\.60 .* debiased acc 0\\.80`, 'm'));
  });

  it('reports AI–human agreement per principle on the pairs humans reviewed', async () => {
    const [evaluation] = (await db.execute<{ run_id: string }>(sql`select run_id from rater_evaluations order by id limit 1`)).rows;
    const runId = String(evaluation!.run_id);
    const none = JSON.parse((await runCli(['rater', 'agreement', runId, '--json'], cli)).stdout) as { reviewed_pairs: number; overall: { pairs: number; agreement: number | null } };
    assert.equal(none.reviewed_pairs, 0);
    assert.deepEqual([none.overall.pairs, none.overall.agreement], [0, null]);
    const ids = async (goldId: string) => {
      const rows = (await db.execute<{ id: string; side: string }>(sql`select c.id, c.generation_params ->> 'gold' as side from completions c join prompts p on p.id = c.prompt_id where p.run_id = ${runId} and p.key = ${goldId}`)).rows;
      return { chosen: rows.find((r) => r.side === 'chosen')!.id, rejected: rows.find((r) => r.side === 'rejected')!.id };
    };
    // Humans side with the gold set on arith-001 (the AI agrees) and trap-001 (the AI does not); a tie on style-001.
    for (const goldId of ['arith-001', 'trap-001']) {
      const pair = await ids(goldId);
      const labelled = await runCli(['audit', 'label', '--chosen', pair.chosen, '--rejected', pair.rejected, '--reviewer', 'tester', '--key', `agree-${goldId}`], cli);
      assert.equal(labelled.code, 0, labelled.stderr);
    }
    const [decision] = (await db.execute<{ id: string }>(sql`select d.id from rater_decisions d join prompts p on p.id = d.prompt_id where d.run_id = ${runId} and p.key = 'style-001' limit 1`)).rows;
    assert.equal((await runCli(['audit', 'override', decision!.id, '--prefer', 'tie', '--reason', 'both fine', '--reviewer', 'tester'], cli)).code, 0);
    const result = await runCli(['rater', 'agreement', runId, '--json'], cli);
    assert.equal(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout) as { reviewed_pairs: number; human_ties: number; overall: { agreement: number; pairs: number; agree: number; disagree: number }; principles: Record<string, { agreement: number; pairs: number }> };
    assert.equal(report.reviewed_pairs, 3);
    assert.equal(report.human_ties, 1);
    assert.deepEqual(report.overall, { agreement: 0.5, pairs: 2, agree: 1, disagree: 1, ai_ties: 0 });
    assert.deepEqual(report.principles['honest-no-fabrication'], { agreement: 0.5, pairs: 2, agree: 1, disagree: 1, ai_ties: 0 });
    const text = await runCli(['rater', 'agreement', runId], cli);
    assert.match(text.stdout, /3 pairs reviewed by humans \(1 ties, left out\)/);
    assert.match(text.stdout, /AI–human agreement 0\.500 \(1 agree, 1 disagree, 0 AI ties\)/);
  });
});
