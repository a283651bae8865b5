// Generated rater decisions for the keyset-paging test and `npm run bench -- console`: made inside
// Postgres with generate_series, so a million rows load in a minute or two. Per pair of completions
// (one prompt, one run), 4 principles × 2 orders = 8 decisions; confidence in steps of 0.05 (many ties),
// about 2% pointwise (no confidence), 1% unparseable, 0.5% flagged; 20% of pairs disagree across
// orders; 0.2% of pairs have a human review.
import type pg from 'pg';

export interface GeneratedDecisions {
  decisions: number;
  runs: number;
  seconds: number;
}

const principleKeys = ['harmless', 'honest', 'helpful', 'concise'];

export async function generateDecisions(client: pg.ClientBase | pg.Pool, decisions: number, runs = 10, options: { rebuildIndexes?: boolean } = {}): Promise<GeneratedDecisions> {
  const started = performance.now();
  const pairs = Math.ceil(decisions / 8);
  await client.query('set maintenance_work_mem = \'256MB\'');
  await client.query(`insert into constitutions (name, version, content_hash, source, parsed) values ('generated', 1, 'generated', '', '{}') on conflict do nothing`);
  const { rows: [constitution] } = await client.query<{ id: string }>(`select id from constitutions where content_hash = 'generated'`);
  const cid = Number(constitution!.id);
  for (const [i, key] of principleKeys.entries()) {
    await client.query('insert into principles (constitution_id, key, position, weight) values ($1, $2, $3, 1) on conflict do nothing', [cid, key, i]);
  }
  const { rows: principleRows } = await client.query<{ id: string; key: string }>('select id, key from principles where constitution_id = $1 order by position', [cid]);
  const principleIds = principleRows.map((r) => Number(r.id));
  const { rows: [base] } = await client.query<{ run: string; prompt: string; completion: string; decision: string }>(
    `select coalesce((select max(id) from runs), 0) as run, coalesce((select max(id) from prompts), 0) as prompt,
            coalesce((select max(id) from completions), 0) as completion, coalesce((select max(id) from rater_decisions), 0) as decision`,
  );
  const run0 = Number(base!.run);
  const prompt0 = Number(base!.prompt);
  const completion0 = Number(base!.completion);
  const decision0 = Number(base!.decision);
  await client.query(
    `insert into runs (id, workflow_id, kind, constitution_id, config, status)
     select $1::bigint + r, 'generated-' || ($1::bigint + r), 'generated', $2, '{}', 'completed' from generate_series(1, $3::int) r`,
    [run0, cid, runs],
  );
  // Pair p (0-based) belongs to run p % runs; its prompt is prompt0 + p + 1, its completions completion0 + 2p + 1 and + 2.
  await client.query(
    `insert into prompts (id, run_id, key, messages)
     select $1::bigint + p + 1, $2::bigint + p % $3 + 1, 'p' || p, jsonb_build_array(jsonb_build_object('role', 'user', 'content', 'generated prompt ' || p))
     from generate_series(0, $4::int - 1) p`,
    [prompt0, run0, runs, pairs],
  );
  await client.query(
    `insert into completions (id, run_id, prompt_id, stage, sample_index, policy_model, policy_version, text, generation_params)
     select $1::bigint + 2 * p + s, $2::bigint + p % $3 + 1, $4::bigint + p + 1, 'sample', s - 1, 'generated', 'v0', 'completion ' || s || ' of prompt ' || p, '{}'
     from generate_series(0, $5::int - 1) p, generate_series(1, 2) s`,
    [completion0, run0, runs, prompt0, pairs],
  );
  const dropped: string[] = [];
  if (options.rebuildIndexes) {
    // Building the indexes once after the load is much faster than keeping them up to date row by row.
    const { rows } = await client.query<{ name: string; definition: string }>(
      `select indexname as name, indexdef as definition from pg_indexes where schemaname = 'public' and tablename = 'rater_decisions' and indexname <> 'rater_decisions_pkey'`,
    );
    for (const row of rows) {
      await client.query(`drop index ${row.name}`);
      dropped.push(row.definition);
    }
  }
  // Decision g: pair g / 8, principle (g / 2) % 4, order AB when g is even. u and v are per-decision
  // pseudo-random numbers in [0, 1) from a hash of g, so a run is reproducible.
  await client.query(
    `insert into rater_decisions (id, run_id, decision_key, stage, constitution_id, constitution_hash, principle_id, principle_key, principle_text,
        prompt_id, completion_a_id, completion_b_id, "order", rater_endpoint, rater_model, request, raw_response, parsed_choice, probabilities,
        score, from_cache, outcome, flags, latency_ms, prompt_tokens, completion_tokens, created_at)
     select $1::bigint + g + 1, $2::bigint + pair % $3 + 1, 'generated-' || g,
            case when pointwise then 'score' else 'label' end, $4, 'generated', ($5::bigint[])[principle + 1], ($6::text[])[principle + 1], 'principle ' || principle,
            $7::bigint + pair + 1,
            $8::bigint + 2 * pair + case when ab then 1 else 2 end,
            case when pointwise then null else $8::bigint + 2 * pair + case when ab then 2 else 1 end end,
            case when pointwise then null when ab then 'AB' else 'BA' end,
            'http://127.0.0.1:8000/v1', case when g % 3 = 0 then 'rater-large' else 'rater-small' end,
            '{"messages": []}', '{"choices": []}',
            case when pointwise then '0.5' when unparseable then null when pa >= 0.5 then 'A' else 'B' end,
            case when pointwise then jsonb_build_object('score', 0.5) when unparseable then null else jsonb_build_object('A', pa, 'B', 1 - pa) end,
            case when pointwise then 0.5 end,
            false, case when unparseable then 'unparseable' else 'ok' end,
            case when v < 0.005 then '["instruction-injection"]'::jsonb else '[]'::jsonb end,
            100, 200, 20, now() - (g % 43200) * interval '1 minute'
     from (
       select g, g / 8 as pair, (g / 2) % 4 as principle, g % 2 = 0 as ab, u, v,
              u < 0.02 as pointwise, v between 0.01 and 0.02 as unparseable,
              -- P(A) in steps of 0.05 from 0 to 1: confidence max(pa, 1 - pa) ties everywhere.
              round(w * 20) / 20.0 as pa
       from (select g, (hashint8extended(g, 1) & 1048575) / 1048576.0 as u, (hashint8extended(g, 2) & 1048575) / 1048576.0 as v,
                    (hashint8extended(g, 3) & 1048575) / 1048576.0 as w
             from generate_series(0::bigint, $9::bigint - 1) g) seeds
     ) d`,
    [decision0, run0, runs, cid, principleIds, principleKeys, prompt0, completion0, decisions],
  );
  for (const definition of dropped) await client.query(definition);
  // One AI preference per pair; a fifth of the pairs disagree across orders.
  await client.query(
    `insert into preferences (run_id, prompt_id, completion_low_id, completion_high_id, chosen_id, rejected_id, soft_label, orders_agree, source)
     select $1::bigint + p % $2 + 1, $3::bigint + p + 1, $4::bigint + 2 * p + 1, $4::bigint + 2 * p + 2, $4::bigint + 2 * p + 1, $4::bigint + 2 * p + 2, 0.7, p % 5 <> 0, 'ai'
     from generate_series(0, $5::int - 1) p`,
    [run0, runs, prompt0, completion0, pairs],
  );
  await client.query(
    `insert into human_reviews (review_key, run_id, prompt_id, completion_a_id, completion_b_id, prefer, reason, reviewer)
     select 'generated-' || p, $1::bigint + p % $2 + 1, $3::bigint + p + 1, $4::bigint + 2 * p + 1, $4::bigint + 2 * p + 2, case when p % 3 = 0 then 'B' else 'A' end, 'generated', 'bench'
     from generate_series(0, $5::int - 1) p where p % 500 = 7`,
    [run0, runs, prompt0, completion0, pairs],
  );
  for (const table of ['runs', 'prompts', 'completions', 'rater_decisions']) {
    await client.query(`select setval(pg_get_serial_sequence('${table}', 'id'), (select max(id) from ${table}))`);
  }
  await client.query('analyze runs, prompts, completions, rater_decisions, preferences, human_reviews');
  return { decisions, runs, seconds: (performance.now() - started) / 1000 };
}
