// The console's pages as server-rendered HTML. Every value goes through hono's `html` template,
// which escapes it (& < > " '); nothing untrusted is ever passed to `raw`. Scripts are static files
// (CSP: script-src 'self'), so no page carries inline script or event-handler attributes.
import { html } from 'hono/html';
import { decisionCursor, queueOrders, type DecisionDetail, type DecisionSort, type PrincipleStats, type QueueOrder, type Review } from '../db/queries/audit.js';
import type { RaterEvaluation } from '../core/rater/evaluation.js';
import type { RaterEvaluationRow } from '../db/rater-evaluations.js';
import type { ConstitutionVersion } from '../db/queries/constitutions.js';
import type { RunModel } from '../db/queries/runs.js';
import type { RunAction } from '../worker/run-control.js';
import type { DiffRow } from './diff.js';
import { liveStatuses, stageText, type LiveRun } from './live.js';
import { alertMarks, plotSpecs, type AlertMark, type MetricRow } from './plots.js';
import { csrfField } from './security.js';

type Html = ReturnType<typeof html>;

export function layout(title: string, body: Html, head: Html | '' = ''): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${title} · tenet</title>
<link rel="stylesheet" href="/static/console.css">
${head}
</head>
<body>
<nav><strong>tenet</strong> <a href="/runs">Runs</a> <a href="/decisions">Decisions</a> <a href="/queue">Review queue</a> <a href="/constitutions">Constitutions</a></nav>
<main>
<h1>${title}</h1>
${body}
</main>
</body>
</html>`;
}

export const errorPage = (status: number, message: string) =>
  layout(status === 404 ? 'Not found' : status === 409 ? 'Conflict' : status === 503 ? 'Unavailable' : status >= 500 ? 'Error' : status === 403 ? 'Forbidden' : 'Bad request', html`<p class="error">${message}</p>`);

export const csrfInput = (token: string) => html`<input type="hidden" name="${csrfField}" value="${token}">`;

const fmt = (value: unknown) => (value === null || value === undefined ? '-' : typeof value === 'number' ? (Number.isInteger(value) ? String(value) : value.toFixed(3)) : typeof value === 'object' ? JSON.stringify(value) : `${value as string}`);
const when = (value: unknown) => (value instanceof Date ? value.toISOString() : fmt(value));

export interface RunListRow {
  id: number;
  workflowId: string;
  kind: string;
  status: string;
  createdAt: Date;
  finishedAt: Date | null;
  error: string | null;
}

/** A run's live cells: stage progress and why it waits (static/runs-live.js refreshes them from /runs/live.json). */
const progressCell = (live: LiveRun | undefined) => html`<td class="progress">${(live?.stages ?? []).map((s) => html`<span class="stage">${stageText(s)}</span> `)}</td>`;
const pendingCell = (live: LiveRun | undefined) => html`<td class="pending">${(live?.pending ?? []).map((line) => html`<div class="waiting">${line}</div>`)}${live?.note ? html`<div class="note">${live.note}</div>` : ''}</td>`;

/** Pause / resume / cancel, each a POST with the CSRF token; shown for unfinished runs. */
function controls(run: RunListRow, csrf: string): Html | '' {
  if (!liveStatuses.has(run.status)) return '';
  const button = (action: RunAction, label: string) => html`<form method="post" action="/runs/${run.id}/${action}" class="control">${csrfInput(csrf)}<button type="submit" name="action" value="${action}">${label}</button></form>`;
  return html`${run.status === 'paused' ? button('resume', 'Resume') : button('pause', 'Pause')}${button('cancel', 'Cancel')}`;
}

export function runsPage(rows: RunListRow[], live: LiveRun[], csrf: string): Html {
  if (rows.length === 0) return layout('Runs', html`<p>No runs yet.</p>`);
  const byId = new Map(live.map((l) => [l.id, l]));
  return layout(
    'Runs',
    html`<table class="runs">
<thead><tr><th>id</th><th>status</th><th>kind</th><th>progress</th><th>waiting on</th><th>created</th><th>finished</th><th>workflow</th><th>error</th><th>control</th></tr></thead>
<tbody>${rows.map(
      (r) =>
        html`<tr data-run="${r.id}"><td><a href="/runs/${r.id}">${r.id}</a></td><td class="status status-${r.status}">${r.status}</td><td>${r.kind}</td>${progressCell(byId.get(r.id))}${pendingCell(byId.get(r.id))}<td>${when(r.createdAt)}</td><td class="finished">${when(r.finishedAt)}</td><td>${r.workflowId}</td><td>${r.error ?? ''}</td><td class="controls">${controls(r, csrf)}</td></tr>`,
    )}</tbody>
</table>
<p class="live-note">Status, progress and waits refresh every 2 s.</p>`,
    html`<script src="/static/runs-live.js" defer></script>`,
  );
}

export function runPage(
  run: RunListRow & { startedAt: Date | null; config?: unknown },
  metricRows: MetricRow[],
  stats: PrincipleStats[],
  evaluations: RaterEvaluationRow[] = [],
  producedModels: RunModel[] = [],
): Html {
  const names = [...new Set(metricRows.map((m) => m.name))].sort();
  const iterations = [...new Set(metricRows.map((m) => m.iteration))].sort((a, b) => a - b);
  const value = (iteration: number, name: string) => metricRows.find((m) => m.iteration === iteration && m.name === name)?.value;
  const table =
    metricRows.length === 0
      ? html`<p>No metrics recorded yet.</p>`
      : html`<table class="metrics">
<thead><tr><th>iteration</th>${names.map((n) => html`<th>${n}</th>`)}</tr></thead>
<tbody>${iterations.map((i) => html`<tr><td>${i}</td>${names.map((n) => html`<td>${fmt(value(i, n))}</td>`)}</tr>`)}</tbody>
</table>`;
  return layout(
    `Run ${run.id}`,
    html`<dl>
<dt>status</dt><dd class="status-${run.status}">${run.status}</dd>
<dt>kind</dt><dd>${run.kind}</dd>
<dt>workflow</dt><dd>${run.workflowId}</dd>
<dt>created</dt><dd>${when(run.createdAt)}</dd>
<dt>started</dt><dd>${when(run.startedAt)}</dd>
<dt>finished</dt><dd>${when(run.finishedAt)}</dd>
${run.error ? html`<dt>error</dt><dd>${run.error}</dd>` : ''}
</dl>
<p><a href="/decisions?run=${run.id}">Decisions of this run</a> · <a href="/queue?run=${run.id}">Review its pairs</a></p>
<h2>Principles</h2>
${principleTable(run.id, stats)}
<h2>Rater evaluation</h2>
${evaluationTable(evaluations)}
<h2>Metrics per iteration</h2>
${plots(metricRows, alertMarks(metricRows, run.config))}
${table}
<h2>Models</h2>
${modelTable(producedModels)}`,
    metricRows.length === 0 ? '' : html`<link rel="stylesheet" href="/static/uPlot.css"><script src="/static/uPlot.js" defer></script><script src="/static/run-plots.js" defer></script>`,
  );
}

function principleTable(runId: number, stats: PrincipleStats[]): Html {
  if (stats.length === 0) return html`<p>No label decisions yet.</p>`;
  return html`<table class="principles">
<thead><tr><th>principle</th><th>decisions</th><th>A</th><th>B</th><th>unparseable</th><th>order agreement</th><th>confidence</th><th>tokens in/out</th><th>cost</th><th>from cache</th><th>flagged</th></tr></thead>
<tbody>${stats.map(
    (s) => html`<tr><td><a href="/decisions?run=${runId}&amp;principle=${encodeURIComponent(s.principle)}">${s.principle}</a></td><td>${s.decisions}</td><td>${s.chose_a}</td><td>${s.chose_b}</td><td>${s.unparseable}</td><td>${fmt(s.order_agreement)}</td><td>${fmt(s.mean_confidence)}</td><td>${s.prompt_tokens}/${s.completion_tokens}</td><td>${s.cost === null ? '-' : s.cost.toFixed(4)}</td><td>${s.from_cache}</td><td>${s.flagged}</td></tr>`,
  )}</tbody>
</table>`;
}

/** The gold-set evaluations of the run's rater configuration (endpoint, model, label settings): how far its labels can be trusted. */
function evaluationTable(evaluations: RaterEvaluationRow[]): Html {
  if (evaluations.length === 0) return html`<p class="no-evaluation">No rater evaluation of this run's rater configuration yet (<code>tenet rater eval</code> measures one on a gold set).</p>`;
  return html`<table class="evaluations">
<thead><tr><th>evaluation</th><th>gold set</th><th>pairs</th><th>rater</th><th>accuracy (AB / BA / combined)</th><th>position bias</th><th>order agreement</th><th>tie rate</th><th>abstain rate</th><th>ECE</th><th>Brier</th><th>completed</th></tr></thead>
<tbody>${evaluations.map((e) => {
    const m = (e.metrics as RaterEvaluation | null)?.overall;
    return html`<tr><td><a href="/runs/${e.runId}">${e.id}</a></td><td>${e.goldName} <code>${e.goldHash.slice(0, 12)}</code></td><td>${e.goldPairs}</td><td>${e.raterModel} at ${e.raterEndpoint}</td>${
      m
        ? html`<td>${fmt(m.accuracy.ab.accuracy)} / ${fmt(m.accuracy.ba.accuracy)} / ${fmt(m.accuracy.combined.accuracy)}</td><td>${fmt(m.position_bias)}</td><td>${fmt(m.order_agreement)}</td><td>${fmt(m.tie_rate)}</td><td>${fmt(m.abstain_rate)}</td><td>${fmt(m.ece)}</td><td>${fmt(m.brier)}</td>`
        : html`<td colspan="7">not finished</td>`
    }<td>${when(e.completedAt)}</td></tr>`;
  })}</tbody>
</table>`;
}

/**
 * The run's plots, drawn by static/run-plots.js from each one's data attribute (escaped JSON, no
 * inline script), and the monitor alerts they mark, listed with why.
 */
function plots(metricRows: MetricRow[], marks: AlertMark[]): Html {
  const specs = plotSpecs(metricRows, marks);
  const list =
    marks.length === 0
      ? ''
      : html`<ul class="alerts">${marks.map(
          (m) =>
            html`<li data-iteration="${m.iteration}">iteration ${m.iteration}: ${m.alerts.length === 0 ? html`${m.label} (which monitors is not recoverable from the run's config)` : m.alerts.map((a) => html`<strong>${a.monitor}</strong>: ${a.message}`).reduce((all, one) => html`${all}; ${one}`)}</li>`,
        )}</ul>`;
  return html`${list}<div class="plots">${specs.map((spec) => html`<div class="plot" id="plot-${spec.id}" data-name="${spec.id}" data-plot="${JSON.stringify(spec)}"></div>`)}</div>`;
}

/** The models the run produced, each linked to its parent (on this page, or on the parent's run page). */
function modelTable(rows: RunModel[]): Html {
  if (rows.length === 0) return html`<p class="no-models">This run produced no models.</p>`;
  const metricText = (value: unknown) =>
    Object.entries((value ?? {}) as Record<string, unknown>)
      .filter(([, v]) => typeof v === 'number' && Number.isFinite(v))
      .map(([k, v]) => `${k} ${fmt(v)}`)
      .join(' · ');
  const here = new Set(rows.map((r) => r.id));
  const parent = (m: RunModel) => {
    if (m.parentId === null) return html`-`;
    const text = html`${m.parentId}${m.parentKey ? html` (${m.parentKey})` : ''}`;
    if (here.has(m.parentId)) return html`<a class="parent" href="#model-${m.parentId}">${text}</a>`;
    // A parent another run produced is on that run's page; one no run produced has no page to link.
    return m.parentRunId === null ? html`<span class="parent">${text}</span>` : html`<a class="parent" href="/runs/${m.parentRunId}#model-${m.parentId}">${text}</a>`;
  };
  return html`<table class="models">
<thead><tr><th>model</th><th>key</th><th>kind</th><th>iteration</th><th>parent</th><th>base model</th><th>artifact</th><th>metrics</th><th>created</th></tr></thead>
<tbody>${rows.map(
    (m) =>
      html`<tr id="model-${m.id}" data-model="${m.id}"><td>${m.id}</td><td>${m.modelKey}</td><td>${m.kind}</td><td>${fmt(m.iteration)}</td><td>${parent(m)}</td><td>${fmt(m.baseModel)}</td><td><code>${m.artifactPath}</code></td><td class="model-metrics">${metricText(m.metrics)}</td><td>${when(m.createdAt)}</td></tr>`,
  )}</tbody>
</table>`;
}

export interface DecisionsView {
  filter: { run?: number; principle?: string; stage?: string; model?: string; low?: number; since?: string; until?: string; disagree: boolean; flagged: boolean; overridden: boolean; unparseable: boolean; sort: DecisionSort; page: number; size: number; after?: string; before?: string };
  rows: { id: number; run_id: number; stage: string; principle_key: string; order: string | null; outcome: string; parsed_choice: string | null; confidence: number | null; flags: string[]; human_prefer_a_b: string | null }[];
  more: boolean;
}

function pageLink(filter: DecisionsView['filter'], page: number, sort = filter.sort, cursor: { after?: string; before?: string } = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries({ ...filter, page, sort, after: cursor.after, before: cursor.before })) if (value !== undefined && value !== false) params.set(key, value === true ? '1' : String(value));
  return `/decisions?${params.toString()}`;
}

/** A column header that sorts by its column, ascending first, then the other way. */
const sortHeader = (filter: DecisionsView['filter'], column: 'id' | 'confidence') => {
  const next: DecisionSort = filter.sort === column ? `-${column}` : column;
  const mark = filter.sort === column ? ' ▲' : filter.sort === `-${column}` ? ' ▼' : '';
  return html`<th><a class="sort" href="${pageLink(filter, 1, next)}">${column}${mark}</a></th>`;
};

const checkbox = (name: string, label: string, checked: boolean) => html`<label><input type="checkbox" name="${name}" value="1" ${checked ? 'checked' : ''}> ${label}</label>`;

export function decisionsPage({ filter, rows, more }: DecisionsView): Html {
  const form = html`<form method="get" action="/decisions" class="filters">
<label>run <input name="run" size="5" value="${filter.run ?? ''}"></label>
<label>principle <input name="principle" value="${filter.principle ?? ''}"></label>
<label>stage <input name="stage" size="8" value="${filter.stage ?? ''}"></label>
<label>rater model <input name="model" size="12" value="${filter.model ?? ''}"></label>
<label>confidence below <input name="low" size="4" value="${filter.low ?? ''}"></label>
<label>from <input type="date" name="since" value="${filter.since ?? ''}"></label>
<label>before <input type="date" name="until" value="${filter.until ?? ''}"></label>
${checkbox('disagree', 'orders disagree', filter.disagree)} ${checkbox('flagged', 'flagged', filter.flagged)} ${checkbox('overridden', 'overridden', filter.overridden)} ${checkbox('unparseable', 'unparseable', filter.unparseable)}
<button type="submit">Filter</button>
</form>`;
  const table =
    rows.length === 0
      ? html`<p class="empty">No decisions match.</p>`
      : html`<table class="decisions">
<thead><tr>${sortHeader(filter, 'id')}<th>run</th><th>stage</th><th>principle</th><th>order</th><th>outcome</th><th>choice</th>${sortHeader(filter, 'confidence')}<th>human</th><th>flags</th></tr></thead>
<tbody>${rows.map(
          (r) => html`<tr><td><a href="/decisions/${r.id}">${r.id}</a></td><td>${r.run_id}</td><td>${r.stage}</td><td>${r.principle_key}</td><td>${r.order ?? ''}</td><td>${r.outcome}</td><td>${r.parsed_choice ?? '-'}</td><td>${fmt(r.confidence)}</td><td>${r.human_prefer_a_b ?? ''}</td><td>${r.flags.join(', ')}</td></tr>`,
        )}</tbody>
</table>`;
  // Keyset cursors: the next page starts after this page's last row, the previous one ends before its first.
  const previous = filter.page <= 2 || rows.length === 0 ? pageLink(filter, filter.page - 1) : pageLink(filter, filter.page - 1, filter.sort, { before: decisionCursor(rows[0]!, filter.sort) });
  const paging = html`<p class="paging">page ${filter.page} ${filter.page > 1 ? html`<a rel="prev" href="${previous}">previous</a>` : ''} ${more && rows.length > 0 ? html`<a rel="next" href="${pageLink(filter, filter.page + 1, filter.sort, { after: decisionCursor(rows.at(-1)!, filter.sort) })}">next</a>` : ''}</p>`;
  return layout('Decisions', html`${form}${table}${paging}`);
}

const messages = (list: unknown) => html`${(Array.isArray(list) ? (list as { role: string; content: string }[]) : []).map((m) => html`<div class="message"><span class="role">${m.role}</span><pre>${m.content}</pre></div>`)}`;

/** The pair side by side, as the rater saw it (A first). */
export function pairView(row: DecisionDetail['row']): Html {
  return html`<section class="prompt"><h2>Prompt</h2>${messages(row.prompt)}</section>
<section class="principle"><h2>Principle <code>${fmt(row.principle_key)}</code></h2><p>${fmt(row.principle_text)}</p></section>
<div class="pair">
<section class="completion" id="completion-a"><h2>A · completion ${row.completion_a_id}</h2><pre>${fmt(row.completion_a)}</pre></section>
<section class="completion" id="completion-b"><h2>B · completion ${fmt(row.completion_b_id)}</h2><pre>${fmt(row.completion_b)}</pre></section>
</div>`;
}

const reviewsView = (reviews: Review[]) =>
  reviews.length === 0
    ? html`<p>No human review.</p>`
    : html`<table class="reviews"><thead><tr><th>review</th><th>reviewer</th><th>prefers</th><th>reason</th><th>when</th></tr></thead>
<tbody>${reviews.map((r) => html`<tr><td>${r.id}</td><td>${r.reviewer}</td><td>${r.prefer === 'tie' ? 'tie' : `completion ${r.prefer === 'A' ? r.completionAId : r.completionBId}`}</td><td>${r.reason}</td><td>${when(r.createdAt)}</td></tr>`)}</tbody></table>`;

export function decisionPage(detail: DecisionDetail, form: { csrf: string; key: string; labelKey: string; reviewer: string }): Html {
  const { row } = detail;
  const raw = (detail.rawResponse as { choices?: unknown[] } | null)?.choices?.[0] ?? detail.rawResponse;
  const sent = (detail.request as { messages?: unknown } | null)?.messages;
  const flags = row.flags as string[];
  // The pair's newest review when shown: an override or label sent after someone else reviewed the pair is refused (409).
  const seen = detail.reviews.reduce((latest, r) => Math.max(latest, r.id), 0);
  const override =
    row.completion_b_id === null
      ? html`<p>A pointwise decision (a score): nothing to override.</p>`
      : html`<form method="post" action="/decisions/${row.id}/override" class="override">
${csrfInput(form.csrf)}<input type="hidden" name="key" value="${form.key}"><input type="hidden" name="seen" value="${seen}">
<fieldset><legend>Prefer</legend>
<label><input type="radio" name="prefer" value="A" required> A</label>
<label><input type="radio" name="prefer" value="B"> B</label>
<label><input type="radio" name="prefer" value="tie"> tie</label></fieldset>
<label>reason <input name="reason" required size="60"></label>
<label>reviewer <input name="reviewer" required value="${form.reviewer}"></label>
<button type="submit">Override</button>
</form>`;
  const label =
    row.completion_b_id === null
      ? ''
      : html`<section><h2>Direct label</h2><p>Label the pair yourself, as <code>tenet audit label</code> does: a review of the two completions, not tied to this decision.</p>
<form method="post" action="/decisions/${row.id}/label" class="direct-label">
${csrfInput(form.csrf)}<input type="hidden" name="key" value="${form.labelKey}"><input type="hidden" name="seen" value="${seen}">
<fieldset><legend>Better</legend>
<label><input type="radio" name="prefer" value="A" required> A (completion ${row.completion_a_id})</label>
<label><input type="radio" name="prefer" value="B"> B (completion ${row.completion_b_id})</label>
<label><input type="radio" name="prefer" value="tie"> tie</label></fieldset>
<label>reason <input name="reason" required size="60"></label>
<label>reviewer <input name="reviewer" required value="${form.reviewer}"></label>
<button type="submit">Label</button>
</form></section>`;
  return layout(
    `Decision ${row.id}`,
    html`<p>run <a href="/runs/${row.run_id}">${row.run_id}</a> · ${fmt(row.stage)} · iteration ${fmt(row.iteration)} · order ${fmt(row.order)} · attempt ${fmt(row.attempt)} · ${fmt(row.outcome)} · rater ${fmt(row.rater_model)} ${row.from_cache ? '(from cache)' : ''} · ${fmt(row.latency_ms)} ms · tokens ${fmt(row.prompt_tokens)}/${fmt(row.completion_tokens)}</p>
${flags.length > 0 ? html`<p class="flagged">Flagged: ${flags.join(', ')}</p>` : ''}
${pairView(row)}
<section class="answer"><h2>Answer</h2><p>choice <strong>${fmt(row.parsed_choice)}</strong>; probabilities <code>${JSON.stringify(detail.probabilities)}</code></p>
<h3>Raw answer</h3><pre>${JSON.stringify(raw, null, 2)}</pre></section>
<section class="sent"><h2>Prompt as sent</h2>${messages(sent)}</section>
<section><h2>Human reviews</h2>${reviewsView(detail.reviews)}</section>
<section><h2>Override</h2><p>A and B as shown above. The rater's rows stay as they are; the preferences training reads follow the latest review.</p>${override}</section>
${label}`,
  );
}

const orderLabels: Record<QueueOrder, string> = { confidence: 'lowest confidence first', disagreement: 'order disagreement first', flagged: 'flagged first' };

/** The queue's address for a run, skip list and order. */
export function queueLink(view: { run?: number; skip: number[]; order: QueueOrder }): string {
  const params = new URLSearchParams();
  if (view.run) params.set('run', String(view.run));
  if (view.skip.length > 0) params.set('skip', view.skip.join(','));
  if (view.order !== 'confidence') params.set('order', view.order);
  return `/queue?${params.toString()}`;
}

export interface QueueView {
  detail?: DecisionDetail;
  run?: number;
  skip: number[];
  order: QueueOrder;
  csrf: string;
  key: string;
  reviewer: string;
}

export function queuePage(view: QueueView): Html {
  const query = (skip: number[]) => queueLink({ ...view, skip });
  const orders = html`<form method="get" action="/queue" class="order"><input type="hidden" name="run" value="${view.run ?? ''}">
<label>order <select name="order">${queueOrders.map((o) => html`<option value="${o}" ${o === view.order ? 'selected' : ''}>${orderLabels[o]}</option>`)}</select></label>
<button type="submit">Go</button></form>`;
  if (!view.detail) return layout('Review queue', html`${orders}<p class="empty">Nothing left to review${view.run ? html` in run ${view.run}` : ''}.</p>${view.skip.length > 0 ? html`<p><a href="${query([])}">Start again with the skipped ones</a></p>` : ''}`);
  const { row } = view.detail;
  return layout(
    'Review queue',
    html`${orders}<p>Decision <a href="/decisions/${row.id}">${row.id}</a> · run ${row.run_id} · rater chose <strong>${fmt(row.parsed_choice)}</strong> with confidence ${fmt(row.confidence)}. Keys: <kbd>A</kbd> <kbd>B</kbd> <kbd>T</kbd> (tie) <kbd>S</kbd> (skip).</p>
${pairView(row)}
<form method="post" action="/queue" class="label" id="label-form">
${csrfInput(view.csrf)}<input type="hidden" name="key" value="${view.key}"><input type="hidden" name="decision" value="${row.id}">
<input type="hidden" name="run" value="${view.run ?? ''}"><input type="hidden" name="skip" value="${view.skip.join(',')}"><input type="hidden" name="order" value="${view.order}">
<label>reviewer <input name="reviewer" required value="${view.reviewer}"></label>
<button type="submit" name="prefer" value="A" data-key="a">A is better</button>
<button type="submit" name="prefer" value="B" data-key="b">B is better</button>
<button type="submit" name="prefer" value="tie" data-key="t">Tie</button>
<a id="skip" data-key="s" href="${query([...view.skip, row.id])}">Skip</a>
</form>
<script src="/static/queue.js"></script>`,
  );
}

export function loginPage(csrf: string, message?: string): Html {
  return layout(
    'Log in',
    html`${message ? html`<p class="error">${message}</p>` : ''}
<p>This console listens beyond 127.0.0.1, so it needs the token it was started with (TENET_UI_TOKEN).</p>
<form method="post" action="/login" class="login">${csrfInput(csrf)}
<label>token <input type="password" name="token" required autocomplete="current-password"></label>
<button type="submit">Log in</button>
</form>`,
  );
}

export function constitutionsPage(versions: ConstitutionVersion[]): Html {
  if (versions.length === 0) return layout('Constitutions', html`<p>No constitution stored yet.</p>`);
  const names = [...new Set(versions.map((v) => v.name))];
  return layout(
    'Constitutions',
    html`${names.map((name) => {
      const mine = versions.filter((v) => v.name === name);
      const newest = mine[0]!.version;
      const compare =
        mine.length < 2
          ? html`<p>One version: nothing to compare.</p>`
          : html`<form method="get" action="/constitutions/diff" class="compare"><input type="hidden" name="name" value="${name}">
<label>from <select name="from">${mine.map((v) => html`<option value="${v.version}" ${v.version === newest - 1 ? 'selected' : ''}>v${v.version}</option>`)}</select></label>
<label>to <select name="to">${mine.map((v) => html`<option value="${v.version}" ${v.version === newest ? 'selected' : ''}>v${v.version}</option>`)}</select></label>
<button type="submit">Compare</button></form>`;
      return html`<section class="constitution" data-name="${name}"><h2>${name}</h2>${compare}
<table class="versions"><thead><tr><th>version</th><th>hash</th><th>stored</th><th>file</th><th>runs</th></tr></thead>
<tbody>${mine.map(
        (v) =>
          html`<tr data-version="${v.version}"><td><a href="/constitutions/source?name=${encodeURIComponent(name)}&amp;version=${v.version}">v${v.version}</a></td><td><code>${v.contentHash.slice(0, 12)}</code></td><td>${when(v.createdAt)}</td><td>${v.sourcePath ?? ''}</td><td class="runs">${
            v.runs.length === 0 ? html`<span class="empty">none</span>` : v.runs.map((r) => html`<a href="/runs/${r.id}" class="status-${r.status}" title="${r.kind}, ${r.status}">${r.id}</a> `)
          }</td></tr>`,
      )}</tbody></table></section>`;
    })}`,
  );
}

export function constitutionSourcePage(c: { name: string; version: number; contentHash: string; source: string }): Html {
  return layout(`${c.name} v${c.version}`, html`<p>sha256 <code>${c.contentHash}</code> · <a href="/constitutions">all versions</a></p><pre class="source">${c.source}</pre>`);
}

export function constitutionDiffPage(view: { name: string; from: number; to: number; rows: DiffRow[] }): Html {
  const changed = view.rows.filter((r) => r.kind !== 'same').length;
  const cell = (side: DiffRow['left'], kind: string) => (side ? html`<td class="n">${side.n}</td><td class="text ${kind}"><pre>${side.text}</pre></td>` : html`<td class="n"></td><td class="text blank"></td>`);
  return layout(
    `${view.name}: v${view.from} → v${view.to}`,
    html`<p><a href="/constitutions">all versions</a> · ${changed === 0 ? 'the two versions have the same text' : `${changed} line(s) differ`}</p>
<table class="diff"><thead><tr><th colspan="2">v${view.from}</th><th colspan="2">v${view.to}</th></tr></thead>
<tbody>${view.rows.map((r) => html`<tr class="${r.kind}">${cell(r.left, r.kind === 'same' ? 'same' : 'removed')}${cell(r.right, r.kind === 'same' ? 'same' : 'added')}</tr>`)}</tbody></table>`,
  );
}
