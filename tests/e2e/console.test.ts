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
import { recordMetrics, upsertRun } from '../../db/runs.js';
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
    // Per iteration: the win rate with its interval, KL, length, reward, and an alert in iteration 2
    // (mean length +81.8%, above the run's max_length_growth of 50%).
    const lengths = [100, 110, 200];
    for (const [iteration, winRate] of [0.5, 0.62, 0.71].entries()) {
      await recordMetrics(db, runId, iteration, {
        'eval.win_rate': winRate,
        'eval.win_rate_low': winRate - 0.1,
        'eval.win_rate_high': winRate + 0.1,
        'eval.kl_k1': iteration * 0.02,
        'eval.kl_k3': iteration * 0.01,
        'eval.mean_length': lengths[iteration]!,
        'eval.mean_reward': 0.1 * iteration,
        'monitor.alerts': iteration === 2 ? 1 : 0,
        'kl.k3': iteration * 0.01,
      });
    }
    await db.$client.query(`update runs set config = config || jsonb_build_object('loop', coalesce(config->'loop', '{}'::jsonb) || '{"monitors": {"max_length_growth": 0.5}}'::jsonb) where id = $1`, [runId]);
    await page.goto(`${server.url}/runs`);
    assert.match(await page.locator('table').innerText(), new RegExp(`${runId}\\s+completed\\s+pipeline`));
    await page.click(`a[href="/runs/${runId}"]`);
    assert.equal(await page.locator('h1').innerText(), `Run ${runId}`);
    assert.match(await page.locator('dl').innerText(), /console-run/);
    const header = (await page.locator('table.metrics thead').innerText()).split('\t').map((h) => h.trim());
    const lastRow = (await page.locator('table.metrics tbody tr').last().innerText()).split('\t').map((c) => c.trim());
    assert.equal(lastRow[header.indexOf('eval.win_rate')], '0.710');
    assert.equal(lastRow[header.indexOf('kl.k3')], '0.020');
    // The principle table is `tenet audit stats` (one query for both).
    const stats = JSON.parse((await runCli(['audit', 'stats', String(runId), '--json'], { DATABASE_URL: stack.database.url })).stdout) as { principle: string; decisions: number }[];
    assert.ok(stats.length > 0);
    const principleRows = await page.locator('table.principles tbody tr').allInnerTexts();
    assert.deepEqual(principleRows.map((r) => r.split('\t').slice(0, 2)), stats.map((s) => [s.principle, String(s.decisions)]));
    // The grouped plots first, then one per other metric; monitor.alerts is drawn as marks, not a plot.
    const grouped = /^(eval\.(win_rate(_low|_high)?|kl_k[13]|mean_length|mean_reward(_previous)?)|policy\.(kl_k[13]|reward_mean|shaped_reward_mean)|monitor\.alerts)$/;
    const others = (await rows<{ name: string }>('select distinct name from metrics where run_id = $1 order by name', [runId])).map((r) => r.name).filter((n) => !grouped.test(n));
    await page.locator('.plot[data-name="metric-kl.k3"] canvas').waitFor();
    assert.deepEqual(await page.locator('.plot .u-title').allInnerTexts(), ['win rate vs previous policy (95% interval)', 'reward', 'KL to the reference', 'mean length (tokens)', ...others]);
    // uPlot's own chart: the win rate, both interval edges as a band, and the alert series, with the recorded values.
    type Chart = { series: { label: string }[]; data: (number | null)[][]; bands?: { series: number[] }[] };
    type Plots = { tenetPlots: { id: string; chart: Chart }[] };
    const winRate = await page.evaluate(() => {
      const { chart } = (globalThis as unknown as Plots).tenetPlots.find((p) => p.id === 'win-rate')!;
      return { labels: chart.series.map((s) => s.label), data: chart.data.map((d) => [...d]), bands: (chart.bands ?? []).map((b) => b.series) };
    });
    assert.deepEqual(winRate.labels, ['iteration', 'win rate', 'interval low', 'interval high', 'monitor alerts (iteration 2: max_length_growth)']);
    assert.deepEqual(winRate.data[0], [0, 1, 2]);
    assert.deepEqual(winRate.data[1], [0.5, 0.62, 0.71]);
    assert.deepEqual(winRate.data[2]!.map((v) => Number(v!.toFixed(3))), [0.4, 0.52, 0.61]);
    assert.deepEqual(winRate.data[3]!.map((v) => Number(v!.toFixed(3))), [0.6, 0.72, 0.81]);
    assert.deepEqual(winRate.data[4], [null, null, 1]);
    assert.deepEqual(winRate.bands, [[3, 2]]);
    const kl = await page.evaluate(() => (globalThis as unknown as Plots).tenetPlots.find((p) => p.id === 'kl')!.chart.series.map((s) => s.label));
    assert.deepEqual(kl, ['iteration', 'k1 (policy samples)', 'k3 (policy samples)', 'monitor alerts (iteration 2: max_length_growth)']);
    // The canvas has drawn pixels: the series line (blue), the interval band (pale blue) and the alert marker (red).
    const drawn = await page.locator('.plot[data-name="win-rate"] canvas').evaluate((canvas: { width: number; height: number; getContext(kind: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } }) => {
      const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
      const count = { blue: 0, band: 0, red: 0 };
      for (let i = 0; i < data.length; i += 4) {
        const [r, g, b, a] = [data[i]!, data[i + 1]!, data[i + 2]!, data[i + 3]!];
        if (a === 0) continue;
        // The canvas is transparent: the band's translucent fill reads as its own colour at low alpha.
        if (b > 200 && r < 80 && a >= 200) count.blue++;
        else if (b > 200 && r < 80 && a > 20 && a < 80) count.band++;
        else if (r > 180 && g < 80 && b < 90 && a >= 200) count.red++;
      }
      return count;
    });
    assert.ok(drawn.blue > 50, `the series line is drawn (${drawn.blue} blue pixels)`);
    assert.ok(drawn.band > 500, `the interval band is filled (${drawn.band} pale blue pixels)`);
    assert.ok(drawn.red > 50, `the alert marker is drawn (${drawn.red} red pixels)`);
    // Hovering the marked iteration names the monitor in the legend; the list under the plots says why.
    await page.locator('.plot[data-name="win-rate"] .u-over').scrollIntoViewIfNeeded();
    const at = await page.evaluate(() => {
      const { chart } = (globalThis as unknown as Plots).tenetPlots.find((p) => p.id === 'win-rate')! as unknown as { chart: { over: { getBoundingClientRect(): { left: number; top: number; height: number } }; valToPos(v: number, scale: string): number } };
      const box = chart.over.getBoundingClientRect();
      return { x: box.left + chart.valToPos(2, 'x') - 3, y: box.top + box.height / 2 };
    });
    await page.mouse.move(at.x - 40, at.y);
    await page.mouse.move(at.x, at.y, { steps: 5 });
    await page.locator('.plot[data-name="win-rate"] .u-legend .u-series:last-child .u-value:text-is("max_length_growth")').waitFor({ timeout: 5_000 });
    assert.match(await page.locator('ul.alerts li[data-iteration="2"]').innerText(), /^iteration 2: max_length_growth: held-out mean length grew 81\.8% in iteration 2 \(110 → 200 tokens since iteration 1\)/);
    assert.equal(await page.locator('ul.alerts li').count(), 1);
  });

  it('the run page lists the models the run produced, each linked to its parent', async () => {
    const other = await upsertRun(db, { workflowId: 'console-other-run', kind: 'pipeline', constitutionId: null, config: {} });
    const model = async (values: { key: string; kind: string; run: number; iteration: number; parent: number | null; path: string; metrics: Record<string, unknown> }) =>
      Number(
        (
          await rows<{ id: string }>(
            'insert into models (model_key, kind, parent_id, run_id, iteration, artifact_path, lineage, metrics) values ($1, $2, $3, $4, $5, $6, $7, $8) returning id',
            [values.key, values.kind, values.parent, values.run, values.iteration, values.path, { baseModel: 'tiny/<base>', parentModelId: values.parent }, values.metrics],
          )
        )[0]!.id,
      );
    const sft = await model({ key: `${other}/0/sft`, kind: 'sft', run: other, iteration: 0, parent: null, path: '/artifacts/sft', metrics: { loss: 1.5 } });
    const first = await model({ key: `${runId}/0/policy`, kind: 'policy', run: runId, iteration: 0, parent: sft, path: '/artifacts/<b>policy</b>-0', metrics: { kl_k3: 0.02, nested: { x: 1 } } });
    const second = await model({ key: `${runId}/1/policy`, kind: 'policy', run: runId, iteration: 1, parent: first, path: '/artifacts/policy-1', metrics: {} });
    await page.goto(`${server.url}/runs/${runId}`);
    const table = page.locator('table.models');
    assert.equal(await table.locator('tbody tr').count(), 2);
    assert.match(await table.locator(`tr[data-model="${first}"]`).innerText(), new RegExp(`^${first}\\s+${runId}/0/policy\\s+policy\\s+0\\s+${sft} \\(${other}/0/sft\\)\\s+tiny/<base>\\s+/artifacts/<b>policy</b>-0\\s+kl_k3 0\\.020\\s`));
    assert.equal(await table.locator('b').count(), 0, 'the artifact path is text');
    assert.equal(await table.locator(`tr[data-model="${second}"] a.parent`).getAttribute('href'), `#model-${first}`);
    assert.equal(await table.locator(`tr[data-model="${first}"] a.parent`).getAttribute('href'), `/runs/${other}#model-${sft}`);
    await Promise.all([page.waitForURL(`${server.url}/runs/${other}#model-${sft}`), page.click(`tr[data-model="${first}"] a.parent`)]);
    assert.match(await page.locator(`table.models tr#model-${sft}`).innerText(), /sft\s+0\s+-\s+tiny\/<base>\s+\/artifacts\/sft\s+loss 1\.500/);
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
