// What idempotency costs: writing prompts with the upsert every activity uses (insert … on conflict
// do nothing, then read the ids back) against a plain insert … returning, on the machine's Postgres.
// Also times the retry case, where every row already exists.
import { performance } from 'node:perf_hooks';
import { prompts } from '../db/schema.js';
import { applyMigrations } from '../db/migrate.js';
import { createDatabase } from '../db/pool.js';
import { upsertPrompts, upsertRun } from '../db/runs.js';
import { createTestDatabase } from '../tests/helpers.js';

const rows = Number(process.env.BENCH_ROWS ?? 20_000);
const batch = 500;
const database = await createTestDatabase('tenet_bench');
const db = createDatabase(database.url);
try {
  await applyMigrations(database.url);
  const make = (run: number) => Array.from({ length: rows }, (_, i) => ({ key: `p${i}`, messages: [{ role: 'user', content: `prompt ${i} of run ${run}` }] }));

  async function timed(label: string, write: (runId: number, chunk: ReturnType<typeof make>) => Promise<unknown>, runId: number, input: ReturnType<typeof make>) {
    const start = performance.now();
    for (let i = 0; i < input.length; i += batch) await write(runId, input.slice(i, i + batch));
    const seconds = (performance.now() - start) / 1000;
    console.log(`${label.padEnd(34)} ${input.length} rows in ${seconds.toFixed(2)} s  (${Math.round(input.length / seconds)} rows/s)`);
    return seconds;
  }

  const plainRun = await upsertRun(db, { workflowId: 'bench-plain', kind: 'bench', constitutionId: null, config: {} });
  const upsertRunId = await upsertRun(db, { workflowId: 'bench-upsert', kind: 'bench', constitutionId: null, config: {} });
  // Warm up connections and plans.
  await timed('warm-up', (runId, chunk) => upsertPrompts(db, runId, chunk), await upsertRun(db, { workflowId: 'bench-warm', kind: 'bench', constitutionId: null, config: {} }), make(0).slice(0, 2_000));

  const plain = await timed('baseline: plain insert … returning', (runId, chunk) => db.insert(prompts).values(chunk.map((p) => ({ runId, ...p }))).returning({ id: prompts.id }), plainRun, make(1));
  const upsert = await timed('upsertPrompts, new rows', (runId, chunk) => upsertPrompts(db, runId, chunk), upsertRunId, make(1));
  const retry = await timed('upsertPrompts, retried (all exist)', (runId, chunk) => upsertPrompts(db, runId, chunk), upsertRunId, make(1));
  console.log(`retry/plain=${(retry / plain).toFixed(2)}`);
  console.log(`ratio=${(upsert / plain).toFixed(2)}`);
} finally {
  await db.$client.end();
  await database.drop();
}
