// Migrations and idempotent writes against the machine's real PostgreSQL.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eq, sql } from 'drizzle-orm';
import { storeConstitution } from '../../db/constitutions.js';
import { applyMigrations, committedMigrations } from '../../db/migrate.js';
import { createDatabase, type Database } from '../../db/pool.js';
import { recordMetrics, setRunStatus, upsertPrompts, upsertRun } from '../../db/runs.js';
import * as schema from '../../db/schema.js';
import { createTestDatabase, defaultConstitution, type TestDatabase } from '../helpers.js';

const expectedTables = ['completions', 'constitutions', 'critiques', 'human_reviews', 'metrics', 'models', 'preference_drops', 'preferences', 'principles', 'prompts', 'rater_decisions', 'rater_evaluations', 'request_cache', 'rollout_rewards', 'runs', 'step_checks'];

describe('migrations', () => {
  let database: TestDatabase;
  before(async () => (database = await createTestDatabase('tenet_migrate')));
  after(async () => database.drop());

  it('apply to an empty database, create every table, and are a no-op the second time', async () => {
    const first = await applyMigrations(database.url);
    assert.equal(first.applied, committedMigrations().length);
    assert.equal(first.upToDate, true);
    assert.equal(first.current, committedMigrations().at(-1)!.tag);

    const db = createDatabase(database.url);
    try {
      const tables = await db.execute<{ table_name: string }>(sql`select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' order by table_name`);
      assert.deepEqual(tables.rows.map((r) => r.table_name), expectedTables);
      const fks = await db.execute<{ n: string }>(sql`select count(*) as n from information_schema.table_constraints where constraint_type = 'FOREIGN KEY' and table_schema = 'public'`);
      assert.ok(Number(fks.rows[0]!.n) >= 20, `only ${fks.rows[0]!.n} foreign keys`);
    } finally {
      await db.$client.end();
    }

    const second = await applyMigrations(database.url);
    assert.deepEqual(second, first);
  });

  it('survive several processes migrating one fresh database at once', async () => {
    const fresh = await createTestDatabase('tenet_migrate_race');
    try {
      const states = await Promise.all(Array.from({ length: 5 }, () => applyMigrations(fresh.url)));
      for (const state of states) assert.equal(state.upToDate, true);
      const db = createDatabase(fresh.url);
      const rows = await db.execute<{ n: string }>(sql`select count(*) as n from drizzle.__drizzle_migrations`);
      await db.$client.end();
      assert.equal(Number(rows.rows[0]!.n), committedMigrations().length);
    } finally {
      await fresh.drop();
    }
  });
});

describe('idempotent writes under concurrent retries', () => {
  let database: TestDatabase;
  let db: Database;
  before(async () => {
    database = await createTestDatabase('tenet_idem');
    await applyMigrations(database.url);
    db = createDatabase(database.url, { max: 20 });
  });
  after(async () => {
    await db.$client.end();
    await database.drop();
  });

  it('storing one constitution ten times at once makes one version with its principles', async () => {
    const { constitution, source } = defaultConstitution();
    const results = await Promise.all(Array.from({ length: 10 }, () => storeConstitution(db, { constitution, source })));
    assert.equal(new Set(results.map((r) => r.id)).size, 1);
    assert.equal(results.filter((r) => r.created).length, 1);
    assert.equal(results[0]!.version, 1);
    const rows = await db.select().from(schema.constitutions);
    assert.equal(rows.length, 1);
    const principles = await db.select().from(schema.principles).where(eq(schema.principles.constitutionId, results[0]!.id));
    assert.equal(principles.length, constitution.principles.length);
  });

  it('an edited constitution is a new version; decisions made under the old one keep its text', async () => {
    const { constitution, source } = defaultConstitution();
    const v1 = await storeConstitution(db, { constitution, source });
    const [v1Principle] = await db.select().from(schema.principles).where(eq(schema.principles.constitutionId, v1.id)).limit(1);
    assert.ok(v1Principle);

    // A decision recorded under v1.
    const runId = await upsertRun(db, { workflowId: 'wf-history', kind: 'test', constitutionId: v1.id, config: {} });
    const [promptId] = await upsertPrompts(db, runId, [{ key: 'p0', messages: [{ role: 'user', content: 'hi' }] }]);
    const [completion] = await db
      .insert(schema.completions)
      .values({ runId, promptId: promptId!, stage: 'sample', sampleIndex: 0, policyModel: 'm', policyVersion: 'v0', text: 'hello', generationParams: {} })
      .returning();
    const [decision] = await db
      .insert(schema.raterDecisions)
      .values({
        runId,
        decisionKey: 'k1',
        stage: 'score',
        constitutionId: v1.id,
        constitutionHash: v1.contentHash,
        principleId: v1Principle.id,
        principleKey: v1Principle.key,
        principleText: v1Principle.comparisons[0]!,
        promptId: promptId!,
        completionAId: completion!.id,
        raterEndpoint: 'http://127.0.0.1:1/v1',
        raterModel: 'rater',
        request: {},
        rawResponse: {},
        fromCache: false,
        latencyMs: 1,
      })
      .returning();

    const edited = structuredClone(constitution);
    edited.principles[0]!.comparisons = ['Which response is the most careful?'];
    const v2 = await storeConstitution(db, { constitution: edited, source: `${source}\n# edited` });
    assert.equal(v2.version, 2);
    assert.notEqual(v2.id, v1.id);
    assert.notEqual(v2.contentHash, v1.contentHash);

    const [kept] = await db
      .select({ text: schema.raterDecisions.principleText, constitution: schema.constitutions.version, principle: schema.principles.comparisons })
      .from(schema.raterDecisions)
      .innerJoin(schema.constitutions, eq(schema.constitutions.id, schema.raterDecisions.constitutionId))
      .innerJoin(schema.principles, eq(schema.principles.id, schema.raterDecisions.principleId))
      .where(eq(schema.raterDecisions.id, decision!.id));
    assert.equal(kept!.constitution, 1);
    assert.equal(kept!.text, v1Principle.comparisons[0]);
    assert.deepEqual(kept!.principle, v1Principle.comparisons);
  });

  it('a decision key is written once however often it is retried', async () => {
    const runId = await upsertRun(db, { workflowId: 'wf-history', kind: 'test', constitutionId: null, config: {} });
    const [first] = await db.select().from(schema.raterDecisions).where(eq(schema.raterDecisions.decisionKey, 'k1'));
    const retried = await db
      .insert(schema.raterDecisions)
      .values({ ...first!, id: undefined, createdAt: undefined })
      .onConflictDoNothing({ target: [schema.raterDecisions.runId, schema.raterDecisions.decisionKey] })
      .returning();
    assert.equal(retried.length, 0);
    const all = await db.select().from(schema.raterDecisions).where(eq(schema.raterDecisions.runId, runId));
    assert.equal(all.length, 1);
  });

  it('runs, prompts and metrics upsert without doubling', async () => {
    const runIds = await Promise.all(Array.from({ length: 8 }, () => upsertRun(db, { workflowId: 'wf-race', kind: 'test', constitutionId: null, config: { a: 1 } })));
    assert.equal(new Set(runIds).size, 1);
    const runId = runIds[0]!;

    const prompts = Array.from({ length: 50 }, (_, i) => ({ key: `p${i}`, messages: [{ role: 'user', content: `prompt ${i}` }] }));
    const idLists = await Promise.all(Array.from({ length: 6 }, () => upsertPrompts(db, runId, prompts)));
    for (const ids of idLists) assert.deepEqual(ids, idLists[0]);
    const stored = await db.select().from(schema.prompts).where(eq(schema.prompts.runId, runId));
    assert.equal(stored.length, 50);

    await Promise.all(Array.from({ length: 6 }, () => recordMetrics(db, runId, 0, { 'reward.mean': 0.5, 'kl': 0.1 })));
    await recordMetrics(db, runId, 0, { 'reward.mean': 0.75 });
    const metricRows = await db.select().from(schema.metrics).where(eq(schema.metrics.runId, runId));
    assert.equal(metricRows.length, 2);
    assert.equal(metricRows.find((m) => m.name === 'reward.mean')!.value, 0.75);

    await setRunStatus(db, runId, 'running');
    await setRunStatus(db, runId, 'running');
    const [running] = await db.select().from(schema.runs).where(eq(schema.runs.id, runId));
    assert.ok(running!.startedAt);
    await setRunStatus(db, runId, 'completed');
    const [done] = await db.select().from(schema.runs).where(eq(schema.runs.id, runId));
    assert.equal(done!.status, 'completed');
    assert.equal(done!.startedAt!.getTime(), running!.startedAt.getTime());
    assert.ok(done!.finishedAt);
  });

  it('constraints reject rows that break the data model', async () => {
    const runId = await upsertRun(db, { workflowId: 'wf-constraints', kind: 'test', constitutionId: null, config: {} });
    // drizzle wraps the driver's error; the constraint that fired is on its cause.
    const violates = (pattern: RegExp) => (error: unknown) => pattern.test(String((error as { cause?: Error }).cause?.message));
    await assert.rejects(db.update(schema.runs).set({ status: 'exploded' as never }).where(eq(schema.runs.id, runId)), violates(/runs_status_known/));
    await assert.rejects(db.insert(schema.metrics).values({ runId: 999_999, iteration: 0, name: 'x', value: 1 }), violates(/foreign key/));
  });
});
