// Rater evaluations: an evaluation is a run of kind `rater-eval` whose prompts are a gold set's
// prompts and whose completions are each pair's chosen (sample 0) and rejected (sample 1) response,
// stage `gold`. Its rater calls are rater_decisions of stage `rater-eval`; the metrics computed from
// them (core/rater/evaluation.ts) are stored in rater_evaluations. Every write is keyed: setting up
// the same evaluation twice writes nothing new.
import { createHash } from 'node:crypto';
import { desc, eq, sql } from 'drizzle-orm';
import { canonicalJson } from '../core/constitution/hash.js';
import type { EvalDecision, EvalLabel, RaterEvaluation } from '../core/rater/evaluation.js';
import type { GoldPair } from '../core/rater/gold.js';
import { baseOfKey } from '../core/rater/pairwise.js';
import type { RunConfig } from '../core/run-config.js';
import { insertNewRows } from './bulk.js';
import type { Database } from './pool.js';
import { upsertPrompts, upsertRun } from './runs.js';
import { completions, raterEvaluations } from './schema.js';

export const goldStage = 'gold';
export const raterEvalStage = 'rater-eval';
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** What is measured: the rater endpoint (an API key by its variable's NAME only) and every label setting. */
export function raterConfigOf(config: RunConfig) {
  const { base_url, model, api_key_env } = config.endpoints.rater;
  const { enabled: _enabled, ...label } = config.label;
  return { endpoint: { base_url, model, ...(api_key_env ? { api_key_env } : {}) }, label };
}

export interface EvaluationSetup {
  evaluationId: number;
  evalKey: string;
  runId: number;
  workflowId: string;
  /** The evaluation's metrics are stored already (the same rater, gold set and constitution). */
  done: boolean;
}

/** The run, prompts, gold completions and evaluation row of an evaluation; what exists is left as it is. */
export async function setUpRaterEvaluation(
  db: Database,
  input: { gold: { name: string; hash: string; pairs: readonly GoldPair[] }; constitution: { id: number; contentHash: string }; config: RunConfig },
): Promise<EvaluationSetup> {
  const raterConfig = raterConfigOf(input.config);
  const raterConfigHash = sha256(canonicalJson(raterConfig));
  const evalKey = sha256(`${raterConfigHash}:${input.gold.hash}:${input.constitution.contentHash}`);
  const workflowId = `rater-eval-${evalKey.slice(0, 16)}`;
  const [existing] = await db.select({ id: raterEvaluations.id, runId: raterEvaluations.runId, metrics: raterEvaluations.metrics }).from(raterEvaluations).where(eq(raterEvaluations.evalKey, evalKey));
  if (existing?.metrics) return { evaluationId: existing.id, evalKey, runId: existing.runId, workflowId, done: true };

  const runId = await upsertRun(db, { workflowId, kind: 'rater-eval', constitutionId: input.constitution.id, config: input.config });
  const pairs = input.gold.pairs;
  const promptIds: number[] = [];
  for (let i = 0; i < pairs.length; i += 1_000) {
    const slice = pairs.slice(i, i + 1_000);
    promptIds.push(...(await upsertPrompts(db, runId, slice.map((p) => ({ key: p.id, messages: p.messages, metadata: { ...p.metadata, category: p.category, ...(p.principle ? { principle: p.principle } : {}) } })))));
  }
  const rows = pairs.flatMap((pair, i) =>
    (['chosen', 'rejected'] as const).map((side, sampleIndex) => ({
      runId,
      promptId: promptIds[i]!,
      stage: goldStage,
      iteration: 0,
      sampleIndex,
      policyModel: goldStage,
      policyVersion: input.gold.hash.slice(0, 16),
      text: pair[side],
      generationParams: { gold: side, gold_id: pair.id, gold_set: input.gold.name },
    })),
  );
  for (let i = 0; i < rows.length; i += 1_000) await insertNewRows(db, completions, rows.slice(i, i + 1_000));
  await insertNewRows(db, raterEvaluations, [
    {
      evalKey,
      runId,
      goldName: input.gold.name,
      goldHash: input.gold.hash,
      goldPairs: pairs.length,
      constitutionId: input.constitution.id,
      constitutionHash: input.constitution.contentHash,
      raterEndpoint: raterConfig.endpoint.base_url,
      raterModel: raterConfig.endpoint.model,
      raterConfig,
      raterConfigHash,
    },
  ]);
  const [row] = await db.select({ id: raterEvaluations.id }).from(raterEvaluations).where(eq(raterEvaluations.evalKey, evalKey));
  return { evaluationId: row!.id, evalKey, runId, workflowId, done: false };
}

interface DecisionRow extends Record<string, unknown> {
  decision_key: string;
  principle_key: string;
  attempt: number;
  outcome: string;
  p_a: number | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  from_cache: boolean;
  pair: string;
  category: string;
  better_shown_first: boolean;
}

function evalDecision(row: DecisionRow): EvalDecision {
  return {
    pair: row.pair,
    category: row.category,
    principle: row.principle_key,
    comparison: baseOfKey(row.decision_key),
    attempt: row.attempt,
    order: row.better_shown_first ? 'AB' : 'BA',
    probabilityA: row.outcome === 'ok' && row.p_a !== null ? Number(row.p_a) : undefined,
    promptTokens: row.prompt_tokens ?? 0,
    completionTokens: row.completion_tokens ?? 0,
    fromCache: row.from_cache,
  };
}

const decisionColumns = sql`d.decision_key, d.principle_key, d.attempt, d.outcome, (d.probabilities ->> 'A')::float8 as p_a, d.prompt_tokens, d.completion_tokens, d.from_cache`;

/** The evaluation run's rater calls, each with its gold pair, category and whether the chosen response was shown as A. */
export async function goldDecisions(db: Database, runId: number): Promise<EvalDecision[]> {
  const rows = await db.execute<DecisionRow>(sql`
    select ${decisionColumns}, p.key as pair, coalesce(p.metadata ->> 'category', '') as category, a.sample_index = 0 as better_shown_first
    from rater_decisions d join prompts p on p.id = d.prompt_id join completions a on a.id = d.completion_a_id
    where d.run_id = ${runId} and d.stage = ${raterEvalStage} and d.completion_b_id is not null order by d.id`);
  return rows.rows.map(evalDecision);
}

interface LabelRow extends Record<string, unknown> {
  pair: string;
  category: string;
  principles: string[];
  p_gold: number;
  orders_agree: boolean | null;
  debias: { mode: 'pairwise' | 'pointwise'; prior_a: number | null } | null;
}

/**
 * The labels the label stage made for the evaluation's pairs (its preference rows: the position prior
 * taken out, no pair dropped), each as P(the gold-chosen response is better) with its principles.
 */
export async function goldLabels(db: Database, runId: number): Promise<EvalLabel[]> {
  const rows = await db.execute<LabelRow>(sql`
    select p.key as pair, coalesce(p.metadata ->> 'category', '') as category, f.orders_agree, f.debias,
           case when c.sample_index = 0 then f.soft_label else 1 - f.soft_label end as p_gold,
           coalesce((select jsonb_agg(distinct d.principle_key) from rater_decisions d
                     where d.id in (select jsonb_array_elements_text(f.decision_ids)::bigint)), '[]'::jsonb) as principles
    from preferences f join prompts p on p.id = f.prompt_id join completions c on c.id = f.chosen_id
    where f.run_id = ${runId} and f.source = 'ai' order by p.key`);
  return rows.rows.map((row) => ({
    pair: row.pair,
    category: row.category,
    principles: row.principles,
    mode: row.debias?.mode ?? 'pairwise',
    combined: Number(row.p_gold),
    ordersAgree: row.orders_agree ?? undefined,
    priorA: row.debias?.prior_a ?? null,
  }));
}

/**
 * Pairwise rater calls of a run on pairs a human reviewed (the newest review of each pair, as
 * training reads them), with the human's choice as the known answer; the category is the stage.
 * Human ties are counted apart: they name no better response.
 */
export async function humanReviewedDecisions(db: Database, runId: number): Promise<{ decisions: EvalDecision[]; reviewedPairs: number; humanTies: number }> {
  const rows = await db.execute<DecisionRow>(sql`
    select ${decisionColumns}, least(d.completion_a_id, d.completion_b_id) || ':' || greatest(d.completion_a_id, d.completion_b_id) as pair, d.stage as category,
           d.completion_a_id = case h.prefer when 'A' then h.completion_a_id else h.completion_b_id end as better_shown_first
    from rater_decisions d
    join latest_human_reviews h on h.run_id = d.run_id
     and least(h.completion_a_id, h.completion_b_id) = least(d.completion_a_id, d.completion_b_id)
     and greatest(h.completion_a_id, h.completion_b_id) = greatest(d.completion_a_id, d.completion_b_id)
    where d.run_id = ${runId} and d.completion_b_id is not null and h.prefer <> 'tie' order by d.id`);
  const [counts] = (
    await db.execute<{ reviewed: string; ties: string }>(sql`select count(*) as reviewed, count(*) filter (where prefer = 'tie') as ties from latest_human_reviews where run_id = ${runId}`)
  ).rows;
  return { decisions: rows.rows.map(evalDecision), reviewedPairs: Number(counts?.reviewed ?? 0), humanTies: Number(counts?.ties ?? 0) };
}

export async function storeEvaluationMetrics(db: Database, runId: number, metrics: RaterEvaluation): Promise<number> {
  const [row] = await db
    .update(raterEvaluations)
    .set({ metrics, completedAt: sql`coalesce(${raterEvaluations.completedAt}, now())` })
    .where(eq(raterEvaluations.runId, runId))
    .returning({ id: raterEvaluations.id });
  if (!row) throw new Error(`run ${runId} is not a rater evaluation`);
  return row.id;
}

export type RaterEvaluationRow = typeof raterEvaluations.$inferSelect;

export async function findRaterEvaluation(db: Database, id: number): Promise<RaterEvaluationRow | undefined> {
  const [row] = await db.select().from(raterEvaluations).where(eq(raterEvaluations.id, id));
  return row;
}

export async function listRaterEvaluations(db: Database, limit: number): Promise<RaterEvaluationRow[]> {
  return db.select().from(raterEvaluations).orderBy(desc(raterEvaluations.id)).limit(limit);
}
