// The audit console (`tenet ui`) in a real browser: Debian's Chromium driven by playwright-core (no
// browser download), over a database filled by a real pipeline run (Temporal dev server, worker,
// scripted endpoint). The prompts carry an XSS corpus, which the sampled completions repeat.
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startConsole, type ConsoleServer } from '../../console/server.js';
import type { Database } from '../../db/pool.js';
import { recordMetrics } from '../../db/runs.js';
import { runCli, tempDir } from '../helpers.js';
import { startRunStack, type RunStack } from '../run-stack.js';

const chromiumPath = '/usr/bin/chromium';
const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
// Each would set window.__xss if it ever ran; the scripted policy repeats a prompt's first words.
const xssPrompt = '<script>window.__xss=1</script> <img src=x onerror=window.__xss=2> <a href=javascript:window.__xss=3>link</a> ⟦END response⟧ "quotes" & ampersands';

interface Pair {
  decision: number;
  a: number;
  b: number;
}

describe('tenet ui in a browser', () => {
  let stack: RunStack;
  let db: Database;
  let server: ConsoleServer;
  let browser: BrowserContext;
  let page: Page;
  let runId: number;

  const rows = async <T>(text: string, values: unknown[] = []) => (await db.$client.query(text, values)).rows as T[];
  const shownPairOn = async (on: Page): Promise<Pair> => ({
    decision: Number(await on.locator('input[name="decision"]').inputValue()),
    a: Number(/completion (\d+)/.exec(await on.locator('#completion-a h2').innerText())![1]),
    b: Number(/completion (\d+)/.exec(await on.locator('#completion-b h2').innerText())![1]),
  });
  const shownPair = () => shownPairOn(page);
  /** Presses a review-queue key and waits for the page it leads to; the status of the label's POST (none for S). */
  const press = async (key: string, on = page) => {
    const old = await on.locator('input[name="key"]').inputValue();
    const post = key === 's' ? undefined : on.waitForResponse((r) => r.request().method() === 'POST');
    await on.keyboard.press(key);
    const status = (await post)?.status();
    await on.locator(`input[name="key"]:not([value="${old}"]), p.empty, p.error`).first().waitFor({ state: 'attached' });
    return status;
  };
  const effective = (pair: Pair) => rows<{ chosen_id: string; source: string }>('select chosen_id, source from effective_preferences where run_id = $1 and least(chosen_id, rejected_id) = $2 and greatest(chosen_id, rejected_id) = $3', [runId, Math.min(pair.a, pair.b), Math.max(pair.a, pair.b)]);

  before(async () => {
    assert.ok(existsSync(chromiumPath), `Chromium is missing at ${chromiumPath}: run \`make setup\` (as root it installs Debian's chromium) or \`apt-get install chromium\``);
    stack = await startRunStack('tenet_console');
    ({ db } = stack);
    const { dir, cli, endpoint } = stack;
    writeFileSync(path.join(dir, 'run.yaml'), `endpoints:\n  policy: { base_url: "${endpoint.url}", model: scripted }\n  rater: { base_url: "${endpoint.url}", model: scripted }\nsample: { n: 3, seed: 1 }\ncritique: { rounds: 1 }\nscale: { batch_size: 2, shard_size: 4 }\n`);
    writeFileSync(path.join(dir, 'prompts.jsonl'), [JSON.stringify({ id: 'xss', prompt: xssPrompt }), '{"id": "moon", "prompt": "How far is the moon?"}'].join('\n'));
    const result = await runCli(['run', '--constitution', 'constitutions/default.yaml', '--prompts', path.join(dir, 'prompts.jsonl'), '--config', path.join(dir, 'run.yaml'), '--workflow-id', 'console-run'], cli);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    runId = Number(/run (\d+) started/.exec(result.stdout)![1]);
    server = await startConsole({ db, token: undefined, reviewer: 'tester', host: '127.0.0.1', port: 0 });
    browser = await chromium.launchPersistentContext(tempDir('tenet-chromium-'), { executablePath: chromiumPath, headless: true, args: chromiumArgs });
    page = browser.pages()[0] ?? (await browser.newPage());
  });

  after(async () => {
    await browser?.close();
    await server?.close();
    await stack?.stop();
  });

  it('lists the run and shows its page, with a plot per metric drawn from its values', async () => {
    for (const [iteration, winRate] of [0.5, 0.62, 0.71].entries()) await recordMetrics(db, runId, iteration, { 'eval.win_rate': winRate, 'kl.k3': iteration * 0.01 });
    await page.goto(`${server.url}/runs`);
    assert.match(await page.locator('table').innerText(), new RegExp(`${runId}\\s+completed\\s+pipeline`));
    await page.click(`a[href="/runs/${runId}"]`);
    assert.equal(await page.locator('h1').innerText(), `Run ${runId}`);
    assert.match(await page.locator('dl').innerText(), /console-run/);
    assert.match(await page.locator('table.metrics').innerText(), /\n2(\s+-)*\s+0\.710\s+0\.020(\s+-)*$/);
    // The principle table is `tenet audit stats` (one query for both).
    const stats = JSON.parse((await runCli(['audit', 'stats', String(runId), '--json'], { DATABASE_URL: stack.database.url })).stdout) as { principle: string; decisions: number }[];
    assert.ok(stats.length > 0);
    const principleRows = await page.locator('table.principles tbody tr').allInnerTexts();
    assert.deepEqual(principleRows.map((r) => r.split('\t').slice(0, 2)), stats.map((s) => [s.principle, String(s.decisions)]));
    const names = (await rows<{ name: string }>('select distinct name from metrics where run_id = $1 order by name', [runId])).map((r) => r.name);
    await page.locator('.plot[data-name="kl.k3"] canvas').waitFor();
    assert.deepEqual(await page.locator('.plot .u-title').allInnerTexts(), names);
    // The canvas has drawn pixels: axes, grid and the series line.
    const drawn = await page.locator('.plot[data-name="eval.win_rate"] canvas').evaluate((canvas: { width: number; height: number; getContext(kind: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } }) => {
      const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
      let blue = 0;
      for (let i = 0; i < data.length; i += 4) if (data[i + 2]! > 200 && data[i]! < 80 && data[i + 3]! > 0) blue++;
      return blue;
    });
    assert.ok(drawn > 50, `the series line is drawn (${drawn} blue pixels)`);
  });

  it('shows untrusted text as text under a CSP without inline script', async () => {
    const [decision] = await rows<{ id: string }>("select id from audit_decisions where run_id = $1 and completion_b_id is not null and completion_a like '%<script>%' order by id limit 1", [runId]);
    assert.ok(decision, 'a decision over the XSS completions');
    const response = await page.goto(`${server.url}/decisions/${decision.id}`);
    const csp = response!.headers()['content-security-policy'] ?? '';
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    assert.match(await page.locator('#completion-a pre').innerText(), /<script>window\.__xss=1<\/script> <img src=x onerror=window\.__xss=2> <a href=javascript:window\.__xss=3>link<\/a>/);
    assert.match(await page.locator('.prompt').innerText(), /⟦END response⟧ "quotes" & ampersands/);
    assert.equal(await page.locator('main script, main img, main a[href^="javascript"]').count(), 0);
    assert.equal(await page.evaluate(() => (globalThis as { __xss?: number }).__xss), undefined);
  });

  it('the review queue: S skips, B lands a human review that flips the pair in effective_preferences', async () => {
    await page.goto(`${server.url}/queue?run=${runId}`);
    const skipped: number[] = [];
    let pair = await shownPair();
    // Skip to a decision whose pair the AI decided for A as shown, so "B" overrules it.
    for (let i = 0; i < 40 && String((await effective(pair))[0]?.chosen_id) !== String(pair.a); i++) {
      skipped.push(pair.decision);
      await press('s');
      pair = await shownPair();
      assert.ok(!skipped.includes(pair.decision), 'a skipped decision does not come back');
    }
    assert.deepEqual(await effective(pair), [{ chosen_id: String(pair.a), source: 'ai' }]);
    assert.equal(await press('b'), 303);
    const reviews = await rows<{ prefer: string; reviewer: string; reason: string }>('select prefer, reviewer, reason from human_reviews where decision_id = $1', [pair.decision]);
    assert.deepEqual(reviews, [{ prefer: 'B', reviewer: 'tester', reason: 'review queue' }]);
    assert.deepEqual(await effective(pair), [{ chosen_id: String(pair.b), source: 'human' }]);
    const next = await shownPair().catch(() => undefined);
    assert.notEqual(next?.decision, pair.decision, 'the queue moved on');
  });

  it('a queue label for a pair reviewed meanwhile is refused with 409', async () => {
    await page.goto(`${server.url}/queue?run=${runId}`);
    const pair = await shownPair();
    const other = await browser.newPage();
    try {
      await other.goto(`${server.url}/queue?run=${runId}`);
      assert.equal((await shownPairOn(other)).decision, pair.decision, 'both tabs show the same next decision');
      assert.equal(await press('a', other), 303);
    } finally {
      await other.close();
    }
    assert.equal(await press('t'), 409);
    assert.match(await page.locator('.error').innerText(), /reviewed meanwhile/);
    assert.deepEqual(await rows('select prefer from human_reviews where decision_id = $1', [pair.decision]), [{ prefer: 'A' }]);
  });

  it('the queue orders: lowest confidence first by default, flagged first on request, kept across labels', async () => {
    const unreviewed = "from audit_decisions where run_id = $1 and human_prefer_a_b is null and completion_b_id is not null and outcome = 'ok'";
    const [lowest] = await rows<{ id: string }>(`select id ${unreviewed} order by confidence asc nulls last, id limit 1`, [runId]);
    await page.goto(`${server.url}/queue?run=${runId}`);
    assert.equal((await shownPair()).decision, Number(lowest!.id));
    const flaggedLeft = async () => Number((await rows<{ n: string }>(`select count(*) as n ${unreviewed} and jsonb_array_length(flags) > 0`, [runId]))[0]!.n);
    assert.ok((await flaggedLeft()) >= 2, 'the XSS prompt (it carries fence characters) gives flagged decisions');
    const isFlagged = async (decision: number) => (await rows<{ n: number }>('select jsonb_array_length(flags) as n from rater_decisions where id = $1', [decision]))[0]!.n > 0;
    await page.selectOption('form.order select', 'flagged');
    await Promise.all([page.waitForURL(/order=flagged/), page.click('form.order button')]);
    const first = await shownPair();
    assert.ok(await isFlagged(first.decision), 'the first decision in "flagged first" is flagged');
    assert.equal(await press('t'), 303);
    assert.match(page.url(), /order=flagged/);
    assert.deepEqual(await rows('select prefer from human_reviews where decision_id = $1', [first.decision]), [{ prefer: 'tie' }]);
    const second = await shownPair();
    assert.notEqual(second.decision, first.decision);
    assert.ok(await isFlagged(second.decision), 'the order holds after a label');
    assert.equal((await page.goto(`${server.url}/queue?order=loudest`))!.status(), 400);
  });

  it('overrides a decision with a reason; the AI row stays as it was', async () => {
    const [decision] = await rows<{ id: string }>('select id from audit_decisions where run_id = $1 and completion_b_id is not null and human_prefer_a_b is null order by id limit 1', [runId]);
    const before = await rows('select * from rater_decisions where id = $1', [decision!.id]);
    await page.goto(`${server.url}/decisions/${decision!.id}`);
    await page.check('input[name="prefer"][value="tie"]');
    await page.fill('input[name="reason"]', 'both <b>miss</b> the point');
    await page.fill('input[name="reviewer"]', 'auditor');
    await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.click('button[type="submit"]')]);
    await page.waitForLoadState();
    assert.match(await page.locator('table.reviews').innerText(), /auditor\s+tie\s+both <b>miss<\/b> the point/);
    assert.deepEqual(await rows('select prefer, reason, reviewer from human_reviews where decision_id = $1', [decision!.id]), [{ prefer: 'tie', reason: 'both <b>miss</b> the point', reviewer: 'auditor' }]);
    assert.deepEqual(await rows('select * from rater_decisions where id = $1', [decision!.id]), before);
  });

  it('filters decisions; bad filters and unknown ids get 400 and 404', async () => {
    await page.goto(`${server.url}/decisions?run=${runId}`);
    await page.check('input[name="overridden"]');
    await Promise.all([page.waitForURL(/overridden=1/), page.click('form.filters button')]);
    const shown = (await page.locator('table.decisions tbody tr td:first-child').allInnerTexts()).map(Number);
    const expected = (await rows<{ id: string }>('select id from audit_decisions where run_id = $1 and human_prefer_a_b is not null order by id', [runId])).map((r) => Number(r.id));
    assert.ok(expected.length >= 2, 'both reviews above are overrides');
    assert.deepEqual(shown, expected);
    // Confidence below a threshold, typed into the form; a threshold out of range is a 400 naming it.
    await page.goto(`${server.url}/decisions?run=${runId}`);
    await page.fill('input[name="low"]', '0.9');
    await Promise.all([page.waitForURL(/low=0\.9/), page.click('form.filters button')]);
    const low = (await rows<{ id: string }>('select id from audit_decisions where run_id = $1 and confidence < 0.9 order by id', [runId])).map((r) => Number(r.id));
    const total = Number((await rows<{ n: string }>('select count(*) as n from audit_decisions where run_id = $1', [runId]))[0]!.n);
    assert.ok(low.length > 0 && low.length < total, `the threshold splits the decisions (${low.length} of ${total})`);
    assert.deepEqual((await page.locator('table.decisions tbody tr td:first-child').allInnerTexts()).map(Number), low.slice(0, 50));
    const lowBad = await page.goto(`${server.url}/decisions?low=0.2`);
    assert.equal(lowBad!.status(), 400);
    assert.match(await page.locator('.error').innerText(), /low: expected a confidence between 0\.5 and 1/);
    // Sorting by a column header: confidence ascending, then descending.
    const byConfidence = (await rows<{ id: string }>('select id from audit_decisions where run_id = $1 order by confidence asc nulls last, id', [runId])).map((r) => Number(r.id));
    await page.goto(`${server.url}/decisions?run=${runId}`);
    await Promise.all([page.waitForURL(/sort=confidence/), page.click('a.sort:has-text("confidence")')]);
    assert.deepEqual((await page.locator('table.decisions tbody tr td:first-child').allInnerTexts()).map(Number), byConfidence.slice(0, 50));
    await Promise.all([page.waitForURL(/sort=-confidence/), page.click('a.sort:has-text("confidence")')]);
    const descending = (await rows<{ id: string }>('select id from audit_decisions where run_id = $1 order by confidence desc nulls last, id', [runId])).map((r) => Number(r.id));
    assert.deepEqual((await page.locator('table.decisions tbody tr td:first-child').allInnerTexts()).map(Number), descending.slice(0, 50));
    // Paging: page 2 of 5 is the database's rows 6 to 10, and links on.
    const all = (await rows<{ id: string }>('select id from audit_decisions where run_id = $1 order by id', [runId])).map((r) => Number(r.id));
    await page.goto(`${server.url}/decisions?run=${runId}&size=5&page=2`);
    assert.deepEqual((await page.locator('table.decisions tbody tr td:first-child').allInnerTexts()).map(Number), all.slice(5, 10));
    await page.click('a[rel="next"]');
    assert.deepEqual((await page.locator('table.decisions tbody tr td:first-child').allInnerTexts()).map(Number), all.slice(10, 15));
    const bad = await page.goto(`${server.url}/decisions?run=abc`);
    assert.equal(bad!.status(), 400);
    assert.match(await page.locator('.error').innerText(), /run: expected a run id/);
    assert.equal((await page.goto(`${server.url}/decisions/999999`))!.status(), 404);
  });

  it('refuses a POST without the CSRF token, and writes nothing', async () => {
    const [decision] = await rows<{ id: string }>('select id from audit_decisions where run_id = $1 and completion_b_id is not null order by id limit 1', [runId]);
    const count = async () => Number((await rows<{ n: string }>('select count(*) as n from human_reviews'))[0]!.n);
    const before = await count();
    const form = new URLSearchParams({ prefer: 'A', reason: 'forged', reviewer: 'mallory', key: '6f1c2b1e-6a8f-4a49-9d6e-0a1f2b3c4d5e' });
    const forged = await fetch(`${server.url}/decisions/${decision!.id}/override`, { method: 'POST', body: form, redirect: 'manual' });
    assert.equal(forged.status, 403);
    const wrong = await fetch(`${server.url}/decisions/${decision!.id}/override`, { method: 'POST', body: new URLSearchParams({ ...Object.fromEntries(form), csrf: 'x'.repeat(43) }), headers: { cookie: `tenet_csrf=${'y'.repeat(43)}` }, redirect: 'manual' });
    assert.equal(wrong.status, 403);
    assert.equal(await count(), before);
  });

  it('refuses to listen beyond 127.0.0.1 without a token; with one, requests must carry it', async () => {
    const refused = await runCli(['ui', '--host', '0.0.0.0', '--port', '0'], {}, 60_000);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /refusing to listen on 0\.0\.0\.0 without a token: set TENET_UI_TOKEN/);
    const token = 'a-long-enough-console-token';
    const guarded = await startConsole({ db, token, reviewer: 'tester', host: '127.0.0.1', port: 0 });
    const other = await browser.newPage();
    try {
      const denied = await fetch(`${guarded.url}/runs`);
      assert.equal(denied.status, 401);
      assert.match(denied.headers.get('content-security-policy') ?? '', /script-src 'self'/);
      const ok = await fetch(`${guarded.url}/runs`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(ok.status, 200);
      assert.doesNotMatch(await ok.text(), new RegExp(token));
      // In a browser: the login page keeps the token in an HttpOnly cookie.
      assert.equal((await other.goto(`${guarded.url}/runs`))!.status(), 401);
      await other.fill('input[name="token"]', 'not-the-console-token');
      const [wrong] = await Promise.all([other.waitForResponse((r) => r.request().method() === 'POST'), other.click('form.login button')]);
      assert.equal(wrong.status(), 401);
      await other.fill('input[name="token"]', token);
      await Promise.all([other.waitForURL(/\/runs$/), other.click('form.login button')]);
      assert.equal(await other.locator('h1').innerText(), 'Runs');
      assert.doesNotMatch(await other.content(), new RegExp(token));
      assert.equal(await other.evaluate(() => (globalThis as unknown as { document: { cookie: string } }).document.cookie), '', 'the cookies are HttpOnly');
    } finally {
      await other.close();
      await guarded.close();
    }
  });
});
