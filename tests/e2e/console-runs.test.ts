// The audit console's run controls, direct labels, constitutions and rater evaluations in a real
// browser (Debian's Chromium through playwright-core) over a real stack: Temporal dev server, worker,
// Postgres and the scripted endpoint. One run finishes (its pairs are labelled); another waits on an
// endpoint nothing listens on, so the runs page has live failure reasons and buttons to press.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { lazyTemporal } from '../../cli/commands/ui.js';
import { startConsole, type ConsoleServer } from '../../console/server.js';
import { parseConstitution } from '../../core/constitution/parse.js';
import type { RaterEvaluation } from '../../core/rater/evaluation.js';
import type { RunConfig } from '../../core/run-config.js';
import { storeConstitution } from '../../db/constitutions.js';
import type { Database } from '../../db/pool.js';
import { setUpRaterEvaluation, storeEvaluationMetrics } from '../../db/rater-evaluations.js';
import { freePort, runCli, tempDir, within } from '../helpers.js';
import { startRunStack, type RunStack } from '../run-stack.js';

const chromiumPath = '/usr/bin/chromium';
const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const xss = '<script>window.__xss=4</script> <img src=x onerror=window.__xss=5>';

describe('tenet ui: run controls, direct labels, constitutions', () => {
  let stack: RunStack;
  let db: Database;
  let server: ConsoleServer;
  let browser: BrowserContext;
  let page: Page;
  let doneRun: number;
  let deadRun: number;
  let deadUrl: string;
  const temporal = lazyTemporal(() => Promise.resolve(stack.env.client));

  const rows = async <T>(text: string, values: unknown[] = []) => (await db.$client.query(text, values)).rows as T[];
  const startRun = async (config: string, workflowId: string, detach: boolean) => {
    const file = path.join(stack.dir, `${workflowId}.yaml`);
    writeFileSync(file, config);
    const result = await runCli(['run', '--constitution', 'constitutions/default.yaml', '--prompts', path.join(stack.dir, 'prompts.jsonl'), '--config', file, '--workflow-id', workflowId, ...(detach ? ['--detach'] : [])], stack.cli);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    return Number(/run (\d+) started/.exec(result.stdout)![1]);
  };
  const status = async (runId: number) => (await rows<{ status: string }>('select status from runs where id = $1', [runId]))[0]!.status;
  const until = async (what: string, check: () => Promise<boolean>, ms = 30_000) => {
    for (const start = Date.now(); !(await check()); ) {
      if (Date.now() - start > ms) assert.fail(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  };
  const history = async (workflowId: string) => (await stack.env.client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
  const signals = async (workflowId: string) => (await history(workflowId)).flatMap((e) => (e.workflowExecutionSignaledEventAttributes?.signalName ? [e.workflowExecutionSignaledEventAttributes.signalName] : []));
  const press = async (selector: string) => {
    const [response] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.click(selector)]);
    await page.waitForLoadState();
    return response.status();
  };

  before(async () => {
    assert.ok(existsSync(chromiumPath), `Chromium is missing at ${chromiumPath}: run \`make setup\` or \`apt-get install chromium\``);
    stack = await startRunStack('tenet_console_runs');
    ({ db } = stack);
    writeFileSync(path.join(stack.dir, 'prompts.jsonl'), '{"id": "moon", "prompt": "How far is the moon?"}\n{"id": "sea", "prompt": "Why is the sea salty?"}\n');
    const endpoint = stack.endpoint.url;
    doneRun = await startRun(`endpoints:\n  policy: { base_url: "${endpoint}", model: scripted }\n  rater: { base_url: "${endpoint}", model: scripted }\nsample: { n: 3, seed: 1 }\ncritique: { enabled: false }\n`, 'console-done', false);
    deadUrl = `http://127.0.0.1:${await freePort()}/v1`;
    deadRun = await startRun(`endpoints:\n  policy: { base_url: "${deadUrl}", model: gone, max_retries: 0, timeout_s: 2 }\n  rater: { base_url: "${deadUrl}", model: gone }\nsample: { n: 2 }\n`, 'console-dead', true);
    server = await startConsole({ db, token: undefined, reviewer: 'tester', host: '127.0.0.1', port: 0, temporal: temporal.get });
    browser = await chromium.launchPersistentContext(tempDir('tenet-chromium-'), { executablePath: chromiumPath, headless: true, args: chromiumArgs });
    page = browser.pages()[0] ?? (await browser.newPage());
  });

  after(async () => {
    await within(60_000, 'Chromium closing', browser?.close() ?? Promise.resolve());
    await within(30_000, 'the console server closing', server?.close() ?? Promise.resolve());
    await stack?.stop();
  });

  it('the runs page refreshes a waiting run live: its stage progress and why it waits, read from Temporal', async () => {
    await page.goto(`${server.url}/runs`);
    const dead = page.locator(`tr[data-run="${deadRun}"]`);
    assert.match(await page.locator(`tr[data-run="${doneRun}"] .status`).innerText(), /completed/);
    assert.equal(await page.locator(`tr[data-run="${doneRun}"] .controls button`).count(), 0, 'a finished run has no buttons');
    const reason = new RegExp(`runStageBatch retrying \\(attempt [2-9]\\): ${deadUrl.replace(/[.]/g, '\\.')} \\(model gone\\) is unreachable`);
    // No reload: static/runs-live.js fills the cells from /runs/live.json. Emptied here, they fill again.
    type Doc = { document: { querySelector(s: string): { textContent: string } | null; body: { dataset: { refreshed?: string } } } };
    await dead.locator('.pending').evaluate((cell: { textContent: string }) => (cell.textContent = ''));
    await dead.locator('.progress').evaluate((cell: { textContent: string }) => (cell.textContent = ''));
    await page.waitForFunction(([row, pattern]) => new RegExp(pattern).test((globalThis as unknown as Doc).document.querySelector(`tr[data-run="${row}"] .pending`)?.textContent ?? ''), [deadRun, reason.source] as const, { timeout: 45_000 });
    assert.ok(Number(await page.evaluate(() => (globalThis as unknown as Doc).document.body.dataset.refreshed)) >= 1, 'the script refreshed the page');
    assert.match(await dead.locator('.progress').innerText(), /sample 0\/4/);
    const live = (await (await fetch(`${server.url}/runs/live.json`, { signal: AbortSignal.timeout(30_000) })).json()) as { runs: { id: number; pending: string[] }[] };
    assert.match(live.runs.find((r) => r.id === deadRun)!.pending.join('\n'), reason);
  });

  it('pause, resume and cancel reach the run\'s workflow in Temporal', async () => {
    await page.goto(`${server.url}/runs`);
    const dead = `tr[data-run="${deadRun}"]`;
    assert.equal(await press(`${dead} button[value="pause"]`), 303);
    assert.ok((await signals('console-dead')).includes('pause'), 'the pause signal is in the workflow history');
    await until('the workflow to mark the run paused', async () => (await status(deadRun)) === 'paused');
    // The open page follows the status by itself (the script reloads it), and then offers Resume.
    await page.locator(`${dead} .status:text-is("paused")`).waitFor({ timeout: 15_000 });
    await page.locator(`${dead} button[value="resume"]`).waitFor();
    assert.equal(await press(`${dead} button[value="resume"]`), 303);
    assert.deepEqual((await signals('console-dead')).filter((s) => s === 'pause' || s === 'resume'), ['pause', 'resume']);
    await until('the workflow to mark the run running', async () => (await status(deadRun)) === 'running');
    await page.goto(`${server.url}/runs`);
    assert.equal(await press(`${dead} button[value="cancel"]`), 303);
    await until('Temporal to cancel the workflow', async () => (await stack.env.client.workflow.getHandle('console-dead').describe()).status.name === 'CANCELLED');
    assert.ok((await history('console-dead')).some((e) => e.workflowExecutionCancelRequestedEventAttributes), 'the cancellation came from the button');
    // A finished run has nothing to pause: 409 and no signal; a forged POST without the CSRF token: 403.
    const before = (await signals('console-done')).length;
    await page.goto(`${server.url}/runs`);
    const csrf = await page.locator(`tr[data-run="${deadRun}"] input[name="csrf"]`).count();
    assert.equal(csrf, 0, 'the cancelled run lost its buttons');
    const forged = await fetch(`${server.url}/runs/${doneRun}/pause`, { method: 'POST', body: new URLSearchParams({ action: 'pause' }), redirect: 'manual', signal: AbortSignal.timeout(30_000) });
    assert.equal(forged.status, 403);
    const cookies = await browser.cookies(server.url);
    const token = cookies.find((c) => c.name === 'tenet_csrf')!.value;
    const finished = await fetch(`${server.url}/runs/${doneRun}/pause`, { method: 'POST', body: new URLSearchParams({ csrf: token }), headers: { cookie: `tenet_csrf=${token}` }, redirect: 'manual', signal: AbortSignal.timeout(30_000) });
    assert.equal(finished.status, 409);
    assert.match(await finished.text(), /is completed: there is nothing to pause/);
    assert.equal((await signals('console-done')).length, before);
    const unknown = await fetch(`${server.url}/runs/${doneRun}/explode`, { method: 'POST', body: new URLSearchParams({ csrf: token }), headers: { cookie: `tenet_csrf=${token}` }, redirect: 'manual', signal: AbortSignal.timeout(30_000) });
    assert.equal(unknown.status, 400);
  });

  it('a direct label writes human_reviews as `tenet audit label` does and flips effective_preferences', async () => {
    const [decision] = await rows<{ id: string; a: string; b: string }>(
      `select d.id, d.completion_a_id as a, d.completion_b_id as b from audit_decisions d
       join effective_preferences e on e.run_id = d.run_id and e.chosen_id = d.completion_a_id and e.rejected_id = d.completion_b_id
       where d.run_id = $1 and d.completion_b_id is not null order by d.id limit 1`,
      [doneRun],
    );
    assert.ok(decision, 'a decision whose pair the AI decided for A as shown');
    const pair = [Number(decision.a), Number(decision.b)];
    const effective = () => rows<{ chosen_id: string; source: string }>('select chosen_id, source from effective_preferences where run_id = $1 and least(chosen_id, rejected_id) = $2 and greatest(chosen_id, rejected_id) = $3', [doneRun, Math.min(...pair), Math.max(...pair)]);
    assert.deepEqual(await effective(), [{ chosen_id: decision.a, source: 'ai' }]);
    await page.goto(`${server.url}/decisions/${decision.id}`);
    await page.check('form.direct-label input[name="prefer"][value="B"]');
    await page.fill('form.direct-label input[name="reason"]', 'B <em>answers</em> it');
    await page.fill('form.direct-label input[name="reviewer"]', 'labeller');
    assert.equal(await press('form.direct-label button[type="submit"]'), 303);
    const written = await rows('select decision_id, completion_a_id, completion_b_id, prefer, reason, reviewer from human_reviews where run_id = $1 and least(completion_a_id, completion_b_id) = $2 and greatest(completion_a_id, completion_b_id) = $3', [doneRun, Math.min(...pair), Math.max(...pair)]);
    // The CLI's label of the same choice, for the shape: chosen as A, no decision.
    assert.deepEqual(written, [{ decision_id: null, completion_a_id: decision.b, completion_b_id: decision.a, prefer: 'A', reason: 'B <em>answers</em> it', reviewer: 'labeller' }]);
    assert.deepEqual(await effective(), [{ chosen_id: decision.b, source: 'human' }]);
    assert.match(await page.locator('table.reviews').innerText(), /labeller\s+completion \d+\s+B <em>answers<\/em> it/);
    // The same label through the CLI lands the same way (one code path: db/queries/labels.ts).
    const cli = await runCli(['audit', 'label', '--chosen', decision.a, '--rejected', decision.b, '--reviewer', 'cli', '--reason', 'A after all', '--json'], stack.cli);
    assert.equal(cli.code, 0, cli.stderr);
    const [fromCli] = await rows<Record<string, unknown>>('select decision_id, completion_a_id, completion_b_id, prefer from human_reviews where reviewer = $1', ['cli']);
    assert.deepEqual(fromCli, { decision_id: null, completion_a_id: decision.a, completion_b_id: decision.b, prefer: 'A' });
    assert.deepEqual(await effective(), [{ chosen_id: decision.a, source: 'human' }]);
  });

  it('a direct label or override on a pair reviewed since the form was shown gets 409 and writes nothing', async () => {
    const [decision] = await rows<{ id: string }>('select id from audit_decisions where run_id = $1 and completion_b_id is not null and human_prefer_a_b is null order by id limit 1', [doneRun]);
    await page.goto(`${server.url}/decisions/${decision!.id}`);
    const other = await browser.newPage();
    try {
      await other.goto(`${server.url}/decisions/${decision!.id}`);
      await other.check('form.direct-label input[name="prefer"][value="A"]');
      await other.fill('form.direct-label input[name="reason"]', 'first');
      const [first] = await Promise.all([other.waitForResponse((r) => r.request().method() === 'POST'), other.click('form.direct-label button[type="submit"]')]);
      assert.equal(first.status(), 303);
    } finally {
      await other.close();
    }
    const count = async () => Number((await rows<{ n: string }>('select count(*) as n from human_reviews'))[0]!.n);
    const before = await count();
    await page.check('form.direct-label input[name="prefer"][value="tie"]');
    await page.fill('form.direct-label input[name="reason"]', 'second');
    assert.equal(await press('form.direct-label button[type="submit"]'), 409);
    assert.match(await page.locator('.error').innerText(), /reviewed meanwhile/);
    assert.equal(await count(), before);
    // The page reloaded shows the first review and accepts a label on top of it.
    await page.goto(`${server.url}/decisions/${decision!.id}`);
    await page.check('form.direct-label input[name="prefer"][value="tie"]');
    await page.fill('form.direct-label input[name="reason"]', 'second, seen the first');
    assert.equal(await press('form.direct-label button[type="submit"]'), 303);
    assert.equal(await count(), before + 1);
    // The override form is held to the same rule.
    await page.goto(`${server.url}/decisions/${decision!.id}`);
    const other2 = await browser.newPage();
    try {
      await other2.goto(`${server.url}/decisions/${decision!.id}`);
      await other2.check('form.override input[name="prefer"][value="B"]');
      await other2.fill('form.override input[name="reason"]', 'third');
      const [third] = await Promise.all([other2.waitForResponse((r) => r.request().method() === 'POST'), other2.click('form.override button[type="submit"]')]);
      assert.equal(third.status(), 303);
    } finally {
      await other2.close();
    }
    await page.check('form.override input[name="prefer"][value="A"]');
    await page.fill('form.override input[name="reason"]', 'fourth');
    assert.equal(await press('form.override button[type="submit"]'), 409);
    assert.equal(await count(), before + 2);
    assert.deepEqual(await rows('select reason from human_reviews where decision_id = $1 order by id', [decision!.id]), [{ reason: 'third' }]);
    assert.equal((await page.goto(`${server.url}/decisions/abc`))!.status(), 400);
  });

  it('constitutions: versions per name, the runs of each, and a side-by-side diff shown as text', async () => {
    const source = readFileSync('constitutions/default.yaml', 'utf8');
    const changed = source.replace("tenet's default constitution: twelve principles", `tenet's default constitution ${xss} & co: twelve principles`);
    assert.notEqual(changed, source);
    const parsed = parseConstitution(changed, 'v2.yaml');
    assert.ok(parsed.ok);
    const stored = await storeConstitution(db, { constitution: parsed.constitution, source: changed });
    assert.equal(stored.version, 2);
    await page.goto(`${server.url}/constitutions`);
    const section = page.locator('section.constitution[data-name="tenet-default"]');
    assert.match(await section.locator('tr[data-version="1"] td.runs').innerText(), new RegExp(`\\b${doneRun}\\b`));
    assert.match(await section.locator('tr[data-version="2"] td.runs').innerText(), /none/);
    await Promise.all([page.waitForURL(/\/constitutions\/diff\?name=tenet-default&from=1&to=2/), page.click('form.compare button')]);
    const changedRows = page.locator('table.diff tr.changed');
    assert.equal(await changedRows.count(), 1);
    assert.match(await changedRows.locator('td.removed').innerText(), /tenet's default constitution: twelve principles/);
    assert.match(await changedRows.locator('td.added').innerText(), new RegExp(`^  tenet's default constitution ${xss.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} & co: twelve principles asking`));
    assert.ok((await page.locator('table.diff tr.same').count()) > 50, 'unchanged lines on both sides');
    assert.equal(await page.locator('main script, main img').count(), 0);
    assert.equal(await page.evaluate(() => (globalThis as { __xss?: number }).__xss), undefined);
    assert.equal((await page.goto(`${server.url}/constitutions/diff?name=tenet-default&from=1&to=9`))!.status(), 404);
    assert.equal((await page.goto(`${server.url}/constitutions/diff?name=tenet-default&from=x&to=2`))!.status(), 400);
  });

  it("the run page shows the rater evaluation of the run's rater configuration", async () => {
    await page.goto(`${server.url}/runs/${doneRun}`);
    assert.match(await page.locator('p.no-evaluation').innerText(), /No rater evaluation/);
    const [run] = await rows<{ config: RunConfig; constitution_id: string }>('select config, constitution_id from runs where id = $1', [doneRun]);
    const [constitution] = await rows<{ content_hash: string }>('select content_hash from constitutions where id = $1', [run!.constitution_id]);
    const setup = await setUpRaterEvaluation(db, { gold: { name: 'gold-<b>set</b>', hash: 'f'.repeat(64), pairs: [] }, constitution: { id: Number(run!.constitution_id), contentHash: constitution!.content_hash }, config: run!.config });
    const order = { accuracy: 0.75, correct: 3, wrong: 1, decided: 4 };
    const overall = { accuracy: { ab: order, ba: order, combined: { ...order, accuracy: 0.875, ties: 0 } }, position_bias: 0.0625, order_agreement: 0.5, tie_rate: 0, abstain_rate: 0.125, ece: 0.1, brier: 0.2 };
    await storeEvaluationMetrics(db, setup.runId, { overall, principles: {}, categories: {} } as unknown as RaterEvaluation);
    // Another rater configuration's evaluation is not this run's.
    const other = await setUpRaterEvaluation(db, { gold: { name: 'other', hash: 'e'.repeat(64), pairs: [] }, constitution: { id: Number(run!.constitution_id), contentHash: constitution!.content_hash }, config: { ...run!.config, endpoints: { ...run!.config.endpoints, rater: { ...run!.config.endpoints.rater, model: 'another' } } } });
    assert.notEqual(other.runId, setup.runId);
    await page.goto(`${server.url}/runs/${doneRun}`);
    const table = await page.locator('table.evaluations tbody').innerText();
    assert.match(table, /gold-<b>set<\/b>/);
    assert.match(table, /0\.750 \/ 0\.750 \/ 0\.875\s+0\.063\s+0\.500/);
    assert.doesNotMatch(table, /another|other/);
  });
});
