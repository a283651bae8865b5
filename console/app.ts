// The console's routes: runs, one run, decisions (filtered, paged), one decision with its override
// form, and the review queue. Pages read through db/queries, the same queries as the CLI.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import { Hono, type Context } from 'hono';
import { secureHeaders } from 'hono/secure-headers';
import { z } from 'zod';
import { BadCursor, decisionCursorPattern, decisionDetail, decisionSorts, listDecisions, nextUnreviewed, overrideDecision, principleStats, queueOrders } from '../db/queries/audit.js';
import { constitutionSource, listConstitutionVersions } from '../db/queries/constitutions.js';
import { labelPair, ReviewRefused, unlessReviewedSince } from '../db/queries/labels.js';
import { evaluationsForRun } from '../db/queries/rater-evaluations.js';
import { findRun, listRuns, runMetrics, runModels } from '../db/queries/runs.js';
import type { Database } from '../db/pool.js';
import { controlRun, runActions, RunWorkflowMissing } from '../worker/run-control.js';
import { sideBySide } from './diff.js';
import { liveRuns, liveStatuses } from './live.js';
import { csrfProtection, rememberToken, requireToken, tokenMatches, type ConsoleEnv } from './security.js';
import { constitutionDiffPage, constitutionSourcePage, constitutionsPage, decisionPage, decisionsPage, errorPage, loginPage, queueLink, queuePage, runPage, runsPage } from './views.js';

export interface ConsoleOptions {
  db: Database;
  /** The bearer token every request must carry (listening beyond loopback), or undefined. */
  token: string | undefined;
  /** The reviewer name forms start with. */
  reviewer: string;
  /**
   * Temporal, for the runs page's live progress, failure reasons and pause / resume / cancel; asked
   * for when first needed (a console can start while Temporal is down). Absent: those parts say so.
   */
  temporal?: () => Promise<Client>;
}

// The console's own static files, and uPlot's (the run page's plots), served from here: CSP script-src 'self'.
const require = createRequire(import.meta.url);
const js = 'text/javascript; charset=utf-8';
const css = 'text/css; charset=utf-8';
const staticSources: [name: string, path: string, type: string][] = [
  ['queue.js', fileURLToPath(new URL('static/queue.js', import.meta.url)), js],
  ['run-plots.js', fileURLToPath(new URL('static/run-plots.js', import.meta.url)), js],
  ['runs-live.js', fileURLToPath(new URL('static/runs-live.js', import.meta.url)), js],
  ['console.css', fileURLToPath(new URL('static/console.css', import.meta.url)), css],
  ['uPlot.js', require.resolve('uplot/dist/uPlot.iife.min.js'), js],
  ['uPlot.css', require.resolve('uplot/dist/uPlot.min.css'), css],
];
const staticFiles = new Map(staticSources.map(([name, path, type]) => [name, { type, body: readFileSync(path, 'utf8') }]));

const id = (what: string) => z.coerce.number({ error: `expected a ${what} id (a whole number)` }).int({ error: `expected a ${what} id (a whole number)` }).positive({ error: `expected a ${what} id (a whole number)` });
const flag = z.enum(['1', 'on', 'true']).optional().transform((v) => v !== undefined);
const text = z.string().trim().min(1).max(500);

const decisionsQuery = z.object({
  run: id('run').optional(),
  principle: text.optional(),
  stage: text.optional(),
  model: text.optional(),
  low: z.coerce.number({ error: 'expected a confidence between 0.5 and 1' }).gt(0.5, { error: 'expected a confidence between 0.5 and 1' }).max(1, { error: 'expected a confidence between 0.5 and 1' }).optional(),
  since: z.iso.date({ error: 'expected a date such as 2026-11-27' }).optional(),
  until: z.iso.date({ error: 'expected a date such as 2026-11-27' }).optional(),
  disagree: flag,
  flagged: flag,
  overridden: flag,
  unparseable: flag,
  sort: z.enum(decisionSorts, { error: `expected one of ${decisionSorts.join(', ')}` }).default('id'),
  page: z.coerce.number({ error: 'expected a page number' }).int().min(1).max(100_000).default(1),
  size: z.coerce.number({ error: 'expected a page size' }).int().min(1).max(200).default(50),
  after: z.string().regex(decisionCursorPattern, { error: 'expected a cursor from a next link' }).optional(),
  before: z.string().regex(decisionCursorPattern, { error: 'expected a cursor from a previous link' }).optional(),
});

const skipList = z
  .string()
  .regex(/^\d+(,\d+)*$/, { error: 'expected decision ids separated by commas' })
  .transform((s) => s.split(',').map(Number).slice(-500))
  .optional()
  .transform((v) => v ?? []);
const queueOrder = z.enum(queueOrders, { error: `expected one of ${queueOrders.join(', ')}` }).default('confidence');
const queueQuery = z.object({ run: id('run').optional(), skip: skipList, order: queueOrder });

const reviewForm = z.object({
  prefer: z.enum(['A', 'B', 'tie'], { error: 'expected A, B or tie' }),
  reviewer: text,
  key: z.uuid({ error: 'expected the form key' }),
});
const seenReview = z.coerce.number({ error: 'expected the review the form was shown with' }).int().min(0);
const overrideForm = reviewForm.extend({ reason: text, seen: seenReview.optional() });
const labelForm = reviewForm.extend({ reason: text, seen: seenReview });
const constitutionName = z.string().trim().min(1).max(200);
const version = (what: string) => z.coerce.number({ error: `expected the ${what} version (a whole number)` }).int({ error: `expected the ${what} version (a whole number)` }).positive({ error: `expected the ${what} version (a whole number)` });
const queueForm = reviewForm.extend({ decision: id('decision'), run: id('run').optional(), skip: skipList, order: queueOrder });

class BadRequest extends Error {}

/** Parses `input` (blank fields left out) or answers 400 naming the field. */
function parse<T extends z.ZodType>(schema: T, input: Record<string, string | undefined>): z.infer<T> {
  const present = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined && v.trim() !== ''));
  const result = schema.safeParse(present);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new BadRequest(`${issue.path.join('.') || 'input'}: ${issue.message}`);
  }
  return result.data;
}

const refuse = (c: Context<ConsoleEnv>, status: 400 | 403 | 404 | 409 | 503, message: string) => c.html(errorPage(status, message), status);

export function consoleApp(options: ConsoleOptions): Hono<ConsoleEnv> {
  const { db } = options;
  const app = new Hono<ConsoleEnv>();
  app.use(
    secureHeaders({
      contentSecurityPolicy: { defaultSrc: ["'none'"], scriptSrc: ["'self'"], connectSrc: ["'self'"], styleSrc: ["'self'"], imgSrc: ["'self'"], formAction: ["'self'"], frameAncestors: ["'none'"], baseUri: ["'none'"] },
      referrerPolicy: 'same-origin',
    }),
  );
  app.use(csrfProtection((c, message) => refuse(c, 403, message)));
  app.use(requireToken(options.token, (c) => c.html(loginPage(c.get('csrf'), 'This page needs the console\'s token.'), 401)));

  app.get('/static/:name', (c) => {
    const file = staticFiles.get(c.req.param('name'));
    return file ? c.body(file.body, 200, { 'Content-Type': file.type, 'Cache-Control': 'no-cache' }) : refuse(c, 404, 'no such file');
  });
  app.get('/', (c) => c.redirect('/runs'));
  app.get('/login', (c) => (options.token === undefined ? c.redirect('/runs') : c.html(loginPage(c.get('csrf')))));
  app.post('/login', (c) => {
    const { token } = options;
    const given = c.get('form').token ?? '';
    if (token === undefined) return c.redirect('/runs', 303);
    if (!tokenMatches(given, token)) return c.html(loginPage(c.get('csrf'), 'That is not the token.'), 401);
    rememberToken(c, token);
    return c.redirect('/runs', 303);
  });
  app.get('/runs', async (c) => {
    const rows = await listRuns(db, { limit: 200 });
    return c.html(runsPage(rows, await liveRuns(options.temporal, rows), c.get('csrf')));
  });
  // What static/runs-live.js polls: each listed run's status, and the unfinished ones' progress and waits.
  app.get('/runs/live.json', async (c) => {
    const rows = await listRuns(db, { limit: 200 });
    const live = await liveRuns(options.temporal, rows);
    const byId = new Map(rows.map((r) => [r.id, r]));
    return c.json({ runs: live.map((l) => ({ ...l, finishedAt: byId.get(l.id)?.finishedAt ?? null })) }, 200, { 'Cache-Control': 'no-store' });
  });
  app.post('/runs/:id/:action', async (c) => {
    const { id: runId, action } = parse(z.object({ id: id('run'), action: z.enum(runActions, { error: `expected one of ${runActions.join(', ')}` }) }), c.req.param());
    const run = await findRun(db, runId);
    if (!run) return refuse(c, 404, `no run ${runId}`);
    if (!liveStatuses.has(run.status)) return refuse(c, 409, `run ${run.id} is ${run.status}: there is nothing to ${action}`);
    if (!options.temporal) return refuse(c, 503, 'this console has no Temporal client');
    let client: Client;
    try {
      client = await options.temporal();
    } catch (error) {
      return refuse(c, 503, `cannot reach Temporal: ${(error as Error).message}`);
    }
    try {
      await controlRun(client, run, action);
    } catch (error) {
      if (error instanceof RunWorkflowMissing) return refuse(c, 409, error.message);
      throw error;
    }
    return c.redirect('/runs', 303);
  });
  app.get('/runs/:id', async (c) => {
    const runId = parse(z.object({ id: id('run') }), { id: c.req.param('id') }).id;
    const run = await findRun(db, runId);
    if (!run) return refuse(c, 404, `no run ${runId}`);
    const [metricRows, stats, evaluations, producedModels] = await Promise.all([runMetrics(db, run.id), principleStats(db, run.id), evaluationsForRun(db, run), runModels(db, run.id)]);
    return c.html(runPage(run, metricRows, stats ?? [], evaluations, producedModels));
  });

  app.get('/constitutions', async (c) => c.html(constitutionsPage(await listConstitutionVersions(db))));
  app.get('/constitutions/source', async (c) => {
    const query = parse(z.object({ name: constitutionName, version: version('') }), c.req.query());
    const found = await constitutionSource(db, query.name, query.version);
    if (!found) return refuse(c, 404, `no constitution ${query.name} v${query.version}`);
    return c.html(constitutionSourcePage(found));
  });
  app.get('/constitutions/diff', async (c) => {
    const query = parse(z.object({ name: constitutionName, from: version('from'), to: version('to') }), c.req.query());
    const [from, to] = await Promise.all([constitutionSource(db, query.name, query.from), constitutionSource(db, query.name, query.to)]);
    if (!from || !to) return refuse(c, 404, `no constitution ${query.name} v${!from ? query.from : query.to}`);
    return c.html(constitutionDiffPage({ name: query.name, from: query.from, to: query.to, rows: sideBySide(from.source, to.source) }));
  });

  app.get('/decisions', async (c) => {
    const filter = parse(decisionsQuery, c.req.query());
    // Keyset paging: next / previous links carry a cursor (after / before); a bare page number still works, by offset.
    const rows = await listDecisions(db, { ...filter, lowConfidence: filter.low, limit: filter.size + 1, offset: (filter.page - 1) * filter.size });
    const backwards = filter.before !== undefined && filter.after === undefined;
    return c.html(decisionsPage({ filter, rows: backwards ? rows.slice(-filter.size) : rows.slice(0, filter.size), more: backwards || rows.length > filter.size }));
  });
  app.get('/decisions/:id', async (c) => {
    const decisionId = parse(z.object({ id: id('decision') }), { id: c.req.param('id') }).id;
    const detail = await decisionDetail(db, decisionId);
    if (!detail) return refuse(c, 404, `no decision ${decisionId}`);
    return c.html(decisionPage(detail, { csrf: c.get('csrf'), key: randomUUID(), labelKey: randomUUID(), reviewer: options.reviewer }));
  });
  app.post('/decisions/:id/override', async (c) => {
    const decisionId = parse(z.object({ id: id('decision') }), { id: c.req.param('id') }).id;
    const { seen, ...form } = parse(overrideForm, c.get('form'));
    const override = () => overrideDecision(db, { decisionId, ...form });
    const detail = seen === undefined ? undefined : await decisionDetail(db, decisionId);
    // A form that says which review it was shown with is refused (409) when the pair was reviewed since.
    if (detail && detail.row.completion_b_id !== null) await unlessReviewedSince(db, { runId: detail.row.run_id, a: detail.row.completion_a_id, b: detail.row.completion_b_id, key: form.key }, seen!, override);
    else await override();
    return c.redirect(`/decisions/${decisionId}`, 303);
  });

  // A direct label of the decision's pair (as `tenet audit label`): refused (409) when the pair was reviewed since the form was shown.
  app.post('/decisions/:id/label', async (c) => {
    const decisionId = parse(z.object({ id: id('decision') }), { id: c.req.param('id') }).id;
    const form = parse(labelForm, c.get('form'));
    const detail = await decisionDetail(db, decisionId);
    if (!detail) return refuse(c, 404, `no decision ${decisionId}`);
    const { completion_a_id: a, completion_b_id: b } = detail.row;
    if (b === null) return refuse(c, 400, `decision ${decisionId} is pointwise (a score): it has no pair to label`);
    const [chosen, rejected] = form.prefer === 'B' ? [b, a] : [a, b];
    await labelPair(db, { chosen, rejected, tie: form.prefer === 'tie', reason: form.reason, reviewer: form.reviewer, key: form.key, expectLatestReview: form.seen });
    return c.redirect(`/decisions/${decisionId}`, 303);
  });

  app.get('/queue', async (c) => {
    const query = parse(queueQuery, c.req.query());
    const next = await nextUnreviewed(db, query);
    const detail = next === undefined ? undefined : await decisionDetail(db, next);
    return c.html(queuePage({ ...query, detail, csrf: c.get('csrf'), key: randomUUID(), reviewer: options.reviewer }));
  });
  app.post('/queue', async (c) => {
    const form = parse(queueForm, c.get('form'));
    await overrideDecision(db, { decisionId: form.decision, prefer: form.prefer, reviewer: form.reviewer, key: form.key, reason: 'review queue', onlyIfUnreviewed: true });
    return c.redirect(queueLink(form), 303);
  });

  app.notFound((c) => refuse(c, 404, 'no such page'));
  app.onError((error, c) => {
    if (error instanceof BadRequest || error instanceof BadCursor) return refuse(c, 400, error.message);
    if (error instanceof ReviewRefused) return refuse(c, error.reason === 'not-found' ? 404 : error.reason === 'stale' ? 409 : 400, error.message);
    console.error(`tenet ui: ${c.req.method} ${c.req.path}: ${error.stack ?? error.message}`);
    return c.html(errorPage(500, 'internal error (see the console log)'), 500);
  });
  return app;
}
