// Keyset paging of the decisions listing (db/queries/audit.ts): walking the pages forward by `after`
// and back by `before` returns every matching decision exactly once, in the order SQL gives, although
// the confidence sort key has many ties; and the review queue's orders pick what they promise.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'drizzle-orm';
import { applyMigrations } from '../../db/migrate.js';
import { createDatabase, type Database } from '../../db/pool.js';
import { BadCursor, decisionCursor, decisionSorts, listDecisions, nextUnreviewed, type DecisionFilter, type DecisionSort } from '../../db/queries/audit.js';
import { generateDecisions } from '../decision-data.js';
import { createTestDatabase, type TestDatabase } from '../helpers.js';

const orderSql: Record<DecisionSort, string> = {
  id: 'id',
  '-id': 'id desc',
  confidence: 'confidence asc nulls last, id',
  '-confidence': 'confidence desc nulls last, id',
};

describe('decisions listing, keyset paging', () => {
  let database: TestDatabase;
  let db: Database;
  before(async () => {
    database = await createTestDatabase();
    await applyMigrations(database.url);
    db = createDatabase(database.url);
    await generateDecisions(db.$client, 2_000, 3);
  });
  after(async () => {
    await db?.$client.end();
    await database?.drop();
  });

  const ids = async (where: string, sort: DecisionSort) => (await db.execute<{ id: string }>(sql.raw(`select id from rater_decisions where ${where} order by ${orderSql[sort]}`))).rows.map((r) => Number(r.id));

  async function walk(filter: Omit<DecisionFilter, 'limit'>, size: number) {
    const sort = filter.sort ?? 'id';
    const pages: number[][] = [];
    let cursor: string | undefined;
    for (;;) {
      const rows = await listDecisions(db, { ...filter, limit: size, after: cursor });
      if (rows.length === 0) break;
      pages.push(rows.map((r) => r.id));
      cursor = decisionCursor(rows.at(-1)!, sort);
    }
    // And back from the last page by `before`: the same pages (all but the last are full).
    const back: number[][] = [];
    const last = pages.at(-1);
    if (last) {
      const byId = new Map<number, { id: number; confidence: number | null }>();
      const firstOf = async (id: number) => byId.get(id) ?? (await db.execute<{ confidence: number | null }>(sql`select confidence from rater_decisions where id = ${id}`)).rows.map((r) => ({ id, confidence: r.confidence }))[0]!;
      back.unshift(last);
      let first = decisionCursor(await firstOf(last[0]!), sort);
      for (let i = pages.length - 2; i >= 0; i--) {
        const rows = await listDecisions(db, { ...filter, limit: size, before: first });
        for (const row of rows) byId.set(row.id, row);
        back.unshift(rows.map((r) => r.id));
        first = decisionCursor(rows[0]!, sort);
      }
    }
    return { forward: pages, backward: back };
  }

  for (const sort of decisionSorts) {
    it(`returns every decision once across pages, sorted by ${sort}, with ties in the sort key`, async () => {
      const expected = await ids('true', sort);
      assert.equal(expected.length, 2_000);
      const ties = (await db.execute<{ n: string }>(sql`select count(*) - count(distinct confidence) as n from rater_decisions`)).rows[0]!.n;
      assert.ok(Number(ties) > 1_000, 'the data has ties in confidence');
      const { forward, backward } = await walk({ sort }, 37);
      assert.deepEqual(forward.flat(), expected);
      assert.equal(new Set(forward.flat()).size, expected.length);
      assert.ok(forward.slice(0, -1).every((page) => page.length === 37));
      assert.deepEqual(backward.slice(0, -1), forward.slice(0, -1));
    });
  }

  it('pages a filtered listing the same way (principle, low confidence, flagged, overridden, disagreeing orders)', async () => {
    const cases: [Omit<DecisionFilter, 'limit'>, string][] = [
      [{ principle: 'honest', lowConfidence: 0.8, sort: 'confidence' }, `principle_key = 'honest' and confidence < 0.8`],
      [{ run: 2, sort: '-confidence' }, `run_id = (select min(id) + 1 from runs)`],
      [{ lowConfidence: 0.75, sort: '-confidence' }, 'confidence < 0.75'],
      [{ flagged: true, sort: 'confidence' }, 'jsonb_array_length(flags) > 0'],
      [{ overridden: true, sort: '-id' }, `exists (select 1 from human_reviews h where h.run_id = rater_decisions.run_id and least(h.completion_a_id, h.completion_b_id) = least(rater_decisions.completion_a_id, rater_decisions.completion_b_id) and greatest(h.completion_a_id, h.completion_b_id) = greatest(rater_decisions.completion_a_id, rater_decisions.completion_b_id))`],
      [{ disagree: true, sort: 'confidence' }, `exists (select 1 from preferences p where p.run_id = rater_decisions.run_id and not p.orders_agree and p.completion_low_id = least(completion_a_id, completion_b_id) and p.completion_high_id = greatest(completion_a_id, completion_b_id))`],
    ];
    const runIds = (await db.execute<{ id: string }>(sql`select id from runs order by id`)).rows.map((r) => Number(r.id));
    for (const [filter, where] of cases) {
      const expected = await ids(where, filter.sort!);
      assert.ok(expected.length > 0, `${where} matches some decisions`);
      const { forward } = await walk(filter.run ? { ...filter, run: runIds[1] } : filter, 11);
      assert.deepEqual(forward.flat(), expected, JSON.stringify(filter));
    }
  });

  it('refuses a cursor that does not fit the sort', async () => {
    await assert.rejects(listDecisions(db, { sort: 'id', limit: 5, after: '0.5_12' }), BadCursor);
    await assert.rejects(listDecisions(db, { sort: 'confidence', limit: 5, after: '12' }), BadCursor);
    await assert.rejects(listDecisions(db, { sort: 'id', limit: 5, after: '12; drop table runs' }), BadCursor);
  });

  it('the review queue takes the lowest confidence, a disagreeing pair or a flagged decision first, never a reviewed pair', async () => {
    const unreviewed = `completion_b_id is not null and outcome = 'ok' and not exists (select 1 from human_reviews h where h.run_id = d.run_id and least(h.completion_a_id, h.completion_b_id) = least(d.completion_a_id, d.completion_b_id) and greatest(h.completion_a_id, h.completion_b_id) = greatest(d.completion_a_id, d.completion_b_id))`;
    const first = async (extra: string) => Number((await db.execute<{ id: string }>(sql.raw(`select id from rater_decisions d where ${unreviewed} ${extra} order by confidence, id limit 1`))).rows[0]!.id);
    assert.equal(await nextUnreviewed(db, { skip: [], order: 'confidence' }), await first(''));
    const lowest = await first('');
    assert.equal(await nextUnreviewed(db, { skip: [lowest] }), await first(`and id <> ${lowest}`));
    assert.equal(await nextUnreviewed(db, { skip: [], order: 'flagged' }), await first('and jsonb_array_length(flags) > 0'));
    assert.equal(
      await nextUnreviewed(db, { skip: [], order: 'disagreement' }),
      await first('and exists (select 1 from preferences p where p.run_id = d.run_id and not p.orders_agree and p.completion_low_id = least(d.completion_a_id, d.completion_b_id) and p.completion_high_id = greatest(d.completion_a_id, d.completion_b_id))'),
    );
    // One disagreeing pair left, among the most confident: far beyond the first candidates, so the
    // queue finds it from the disagreeing pairs; with none left, it falls back to confidence order.
    const disagreeing = 'and exists (select 1 from preferences p where p.run_id = d.run_id and not p.orders_agree and p.completion_low_id = least(d.completion_a_id, d.completion_b_id) and p.completion_high_id = greatest(d.completion_a_id, d.completion_b_id))';
    const [confident] = (await db.execute<{ id: string; run_id: string }>(sql.raw(`select id, run_id from rater_decisions d where ${unreviewed} ${disagreeing} order by confidence desc, id desc limit 1`))).rows;
    await db.execute(sql.raw(`update preferences set orders_agree = true where not orders_agree and not (run_id, completion_low_id, completion_high_id) in (select run_id, least(completion_a_id, completion_b_id), greatest(completion_a_id, completion_b_id) from rater_decisions where id = ${confident!.id})`));
    const expected = await first(disagreeing);
    const candidatesBefore = Number((await db.execute<{ n: string }>(sql.raw(`select count(*) as n from rater_decisions d where ${unreviewed} and coalesce(confidence, 2) < (select coalesce(confidence, 2) from rater_decisions where id = ${expected})`))).rows[0]!.n);
    assert.ok(candidatesBefore > 200, `the disagreeing decision comes after ${candidatesBefore} others`);
    assert.equal(await nextUnreviewed(db, { skip: [], order: 'disagreement' }), expected);
    assert.equal(await nextUnreviewed(db, { skip: [], order: 'disagreement', run: Number(confident!.run_id) }), expected);
    await db.execute(sql`update preferences set orders_agree = true`);
    assert.equal(await nextUnreviewed(db, { skip: [], order: 'disagreement' }), await first(''));
  });
});
