// The audit console on a million decisions: how long the decisions page and the review queue's "next"
// take when rater_decisions holds 1,000,000 rows, against a plain `select * from rater_decisions limit 50`.
//
// How it is measured: a fresh database (tenet_bench_console_*, dropped at the end) gets the committed
// migrations, then 1,000,000 generated decisions (tests/decision-data.ts: 10 runs, 125,000 pairs, 4
// principles × 2 orders, confidence in steps of 0.05, 2% pointwise, 1% unparseable, 0.5% flagged, a
// fifth of pairs disagreeing, all in 2 of the 10 runs, 250 reviewed) with their runs, prompts, completions, preferences and human
// reviews, then ANALYZE. The console runs in this process (console/server.ts on 127.0.0.1, the same
// pool) and is asked over real HTTP with fetch: the decisions page for nine filter combinations in
// every sort, each walked five pages deep by its `next` links (keyset cursors) and entered at 20%, 50%
// and 80% of the table by a cursor; and the review queue (`/queue`, which finds the next unreviewed
// decision and renders it) in each order, for all runs and for one, with and without a skip list.
// Requests go one at a time, round-robin with the baseline query through the same pool, after a
// warm-up round. p50 / p95 are over all timed requests of a kind. Each request's SQL is also timed at
// the pool (requests go one at a time, so the pool's time during a request is its queries). The last
// line is ratio = p95 of the console requests' SQL (the filtered, paged queries) / p95 of the
// baseline query; the whole requests' p95 (HTTP, rendering and queries) is printed beside it, with
// its own multiple of the baseline. Targets: console p95 ≤ 200 ms, ratio ≤ 3.
//
//   BENCH_DECISIONS (default 1000000)  BENCH_ROUNDS (default 3: rounds over every request kind)
import { performance } from 'node:perf_hooks';
import { applyMigrations } from '../db/migrate.js';
import { createDatabase } from '../db/pool.js';
import { startConsole } from '../console/server.js';
import { generateDecisions } from '../tests/decision-data.js';
import { createTestDatabase } from '../tests/helpers.js';

const decisions = Number(process.env.BENCH_DECISIONS ?? 1_000_000);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);

const database = await createTestDatabase('tenet_bench_console');
const db = createDatabase(database.url, { max: 4 });
try {
  await applyMigrations(database.url);
  const load = await generateDecisions(db.$client, decisions, 10, { rebuildIndexes: true });
  const size = (await db.$client.query<{ size: string }>(`select pg_size_pretty(pg_total_relation_size('rater_decisions')) as size`)).rows[0]!.size;
  console.log(`loaded ${load.decisions} decisions in ${load.runs} runs in ${load.seconds.toFixed(1)} s (rater_decisions with indexes: ${size})`);

  const server = await startConsole({ db, token: undefined, reviewer: 'bench', host: '127.0.0.1', port: 0 });
  try {
    const runIds = (await db.$client.query<{ id: string }>('select id from runs order by id')).rows.map((r) => Number(r.id));
    const day = (daysAgo: number) => new Date(Date.now() - daysAgo * 86_400_000).toISOString().slice(0, 10);
    const filters = [
      '',
      `principle=honest`,
      `run=${runIds[3]}`,
      `low=0.7&model=rater-large`,
      `stage=label&since=${day(12)}&until=${day(10)}`,
      'flagged=1',
      'disagree=1',
      'overridden=1',
      `run=${runIds[5]}&principle=helpful&low=0.8`,
    ];
    const sorts = ['id', '-id', 'confidence', '-confidence'] as const;
    // Cursors deep into each order (found with SQL here, not timed).
    const keys: Record<(typeof sorts)[number], string> = {
      id: `id::text`,
      '-id': `id::text`,
      confidence: `coalesce(confidence, 2) || '_' || id`,
      '-confidence': `coalesce(-confidence, 1) || '_' || id`,
    };
    const orders: Record<(typeof sorts)[number], string> = { id: 'id', '-id': 'id desc', confidence: 'coalesce(confidence, 2), id', '-confidence': 'coalesce(-confidence, 1), id' };
    const deep: Record<string, string[]> = {};
    for (const sort of sorts) {
      deep[sort] = [];
      for (const share of [0.2, 0.5, 0.8]) {
        const { rows } = await db.$client.query<{ cursor: string }>(`select ${keys[sort]} as cursor from rater_decisions order by ${orders[sort]} offset $1 limit 1`, [Math.floor(decisions * share)]);
        deep[sort].push(rows[0]!.cursor);
      }
    }

    const timings = new Map<string, number[]>();
    const record = (kind: string, ms: number) => timings.set(kind, [...(timings.get(kind) ?? []), ms]);
    let emptyPages = 0;
    let slowest: [number, string][] = [];
    // The SQL each console request runs, timed at the pool: requests go one at a time, so what the
    // pool spends between a request's start and its answer is that request's queries.
    const sqlTimings = new Map<string, number[]>();
    let sqlMs = 0;
    const pool = db.$client;
    const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
    (pool as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      const began = performance.now();
      const result = query(...args);
      return result instanceof Promise ? result.finally(() => void (sqlMs += performance.now() - began)) : result;
    };
    async function get(kind: string, path: string): Promise<string> {
      const started = performance.now();
      sqlMs = 0;
      const response = await fetch(`${server.url}${path}`);
      const body = await response.text();
      const ms = performance.now() - started;
      record(kind, ms);
      sqlTimings.set(kind, [...(sqlTimings.get(kind) ?? []), sqlMs]);
      slowest.push([ms, path]);
      if (response.status !== 200) throw new Error(`GET ${path}: ${response.status} ${body.slice(0, 300)}`);
      return body;
    }
    async function baseline() {
      const started = performance.now();
      const { rows } = await db.$client.query('select * from rater_decisions limit 50');
      record('baseline: select * from rater_decisions limit 50', performance.now() - started);
      if (rows.length !== 50) throw new Error('baseline returned fewer than 50 rows');
    }
    const nextLink = (body: string) => /rel="next" href="([^"]+)"/.exec(body)?.[1]?.replaceAll('&amp;', '&');

    async function round() {
      for (const filter of filters) {
        for (const sort of sorts) {
          const query = `${filter ? `${filter}&` : ''}sort=${sort}`;
          let body = await get('decisions page (first, next ×5, deep cursor ×3)', `/decisions?${query}`);
          await baseline();
          if (!body.includes('<table class="decisions">')) emptyPages++;
          for (let page = 0; page < 5; page++) {
            const next = nextLink(body);
            if (!next) break;
            body = await get('decisions page (first, next ×5, deep cursor ×3)', next);
            await baseline();
          }
          for (const cursor of deep[sort]!) {
            await get('decisions page (first, next ×5, deep cursor ×3)', `/decisions?${query}&page=1000&after=${encodeURIComponent(cursor)}`);
            await baseline();
          }
        }
      }
      const skip = (await db.$client.query<{ id: string }>('select id from rater_decisions where completion_b_id is not null order by coalesce(confidence, 2), id limit 40')).rows.map((r) => r.id).join(',');
      for (const order of ['confidence', 'disagreement', 'flagged']) {
        for (const scope of ['', `&run=${runIds[7]}`, `&skip=${skip}`]) {
          for (let i = 0; i < 4; i++) {
            const body = await get('review queue next (/queue)', `/queue?order=${order}${scope}`);
            await baseline();
            if (!body.includes('/decisions/')) throw new Error(`queue ${order}${scope}: no decision shown`);
          }
        }
      }
    }

    await round(); // warm-up: caches, plans, connections
    timings.clear();
    sqlTimings.clear();
    slowest = [];
    for (let i = 0; i < rounds; i++) await round();

    const quantile = (values: number[], q: number) => {
      const sorted = [...values].sort((a, b) => a - b);
      return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
    };
    for (const [kind, values] of timings) {
      console.log(`${kind.padEnd(52)} n=${String(values.length).padStart(4)}  p50 ${quantile(values, 0.5).toFixed(1).padStart(6)} ms  p95 ${quantile(values, 0.95).toFixed(1).padStart(6)} ms  max ${Math.max(...values).toFixed(1).padStart(6)} ms`);
    }
    for (const [ms, path] of slowest.sort((a, b) => b[0] - a[0]).slice(0, 5)) console.log(`  slowest: ${ms.toFixed(1)} ms  ${decodeURIComponent(path).slice(0, 140)}`);
    if (emptyPages > 0) console.log(`(${emptyPages} first pages matched no decision)`);
    const consoleTimes = [...timings].filter(([kind]) => !kind.startsWith('baseline')).flatMap(([, values]) => values);
    const baselineTimes = [...timings].filter(([kind]) => kind.startsWith('baseline')).flatMap(([, values]) => values);
    const p95 = quantile(consoleTimes, 0.95);
    const baselineP95 = quantile(baselineTimes, 0.95);
    console.log(`console requests (all)                               n=${String(consoleTimes.length).padStart(4)}  p95 ${p95.toFixed(1)} ms (target ≤ 200 ms), ${(p95 / baselineP95).toFixed(2)}× the baseline's p95 (HTTP, rendering and the page's queries against one bare query)`);
    for (const [kind, values] of sqlTimings) {
      console.log(`  its SQL: ${kind.padEnd(43)} n=${String(values.length).padStart(4)}  p50 ${quantile(values, 0.5).toFixed(1).padStart(6)} ms  p95 ${quantile(values, 0.95).toFixed(1).padStart(6)} ms  max ${Math.max(...values).toFixed(1).padStart(6)} ms`);
    }
    const sqlP95 = quantile([...sqlTimings.values()].flat(), 0.95);
    console.log(`the console's filtered, paged queries (all requests) p95 ${sqlP95.toFixed(1)} ms against the baseline's ${baselineP95.toFixed(1)} ms (target ratio ≤ 3)`);
    console.log(`ratio=${(sqlP95 / baselineP95).toFixed(2)}`);
  } finally {
    await server.close();
  }
} finally {
  await db.$client.end();
  await database.drop();
}
