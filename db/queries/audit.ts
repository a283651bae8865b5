// The audit queries the CLI (`tenet audit`) and the console share: decisions filtered and paged, one
// decision with its reviews, the review queue's next pair, and the human review a person writes.
// A review goes to human_reviews only; the AI's rows are never touched (effective_preferences follows).
import { randomUUID } from 'node:crypto';
import { and, eq, sql, type SQL } from 'drizzle-orm';
import type { Database } from '../pool.js';
import { runConfigSchema } from '../../core/run-config.js';
import { humanReviews, raterDecisions, runs } from '../schema.js';

/** The filters of `tenet audit list` and the console's decisions page. */
export interface DecisionFilter {
  run?: number;
  principle?: string;
  stage?: string;
  model?: string;
  disagree?: boolean;
  /** Only decisions whose confidence is below this. */
  lowConfidence?: number;
  overridden?: boolean;
  flagged?: boolean;
  unparseable?: boolean;
  since?: string;
  until?: string;
  /** Order of the page (default id); '-' in front for descending. */
  sort?: DecisionSort;
  limit: number;
  offset: number;
}

export const decisionSorts = ['id', '-id', 'confidence', '-confidence'] as const;
export type DecisionSort = (typeof decisionSorts)[number];
const sortBy: Record<DecisionSort, SQL> = {
  id: sql`id`,
  '-id': sql`id desc`,
  confidence: sql`confidence asc nulls last, id`,
  '-confidence': sql`confidence desc nulls last, id`,
};

export interface AuditRow extends Record<string, unknown> {
  id: number;
  run_id: number;
  stage: string;
  principle_key: string;
  order: string | null;
  outcome: string;
  parsed_choice: string | null;
  confidence: number | null;
  rater_model: string;
  flags: string[];
  from_cache: boolean;
  human_prefer_a_b: string | null;
  created_at: string;
}

/** Postgres returns bigint columns as strings; ids are numbers. */
export function numericIds<T extends Record<string, unknown>>(row: T): T {
  const out: Record<string, unknown> = { ...row };
  for (const [key, value] of Object.entries(out)) if ((key === 'id' || key.endsWith('_id')) && typeof value === 'string' && /^\d+$/.test(value)) out[key] = Number(value);
  return out as T;
}

/** The decision's pair got different answers in its two orders (position bias). */
const ordersDisagree = sql`exists (select 1 from preferences p where p.run_id = audit_decisions.run_id and p.orders_agree = false
      and p.completion_low_id = least(audit_decisions.completion_a_id, audit_decisions.completion_b_id)
      and p.completion_high_id = greatest(audit_decisions.completion_a_id, audit_decisions.completion_b_id))`;

function filterConditions(filter: Omit<DecisionFilter, 'limit' | 'offset' | 'sort'>): SQL {
  const where: SQL[] = [sql`true`];
  if (filter.run) where.push(sql`run_id = ${filter.run}`);
  if (filter.principle) where.push(sql`principle_key = ${filter.principle}`);
  if (filter.stage) where.push(sql`stage = ${filter.stage}`);
  if (filter.model) where.push(sql`rater_model = ${filter.model}`);
  if (filter.overridden) where.push(sql`human_prefer_a_b is not null`);
  if (filter.flagged) where.push(sql`jsonb_array_length(flags) > 0`);
  if (filter.unparseable) where.push(sql`outcome = 'unparseable'`);
  if (filter.lowConfidence !== undefined) where.push(sql`confidence < ${filter.lowConfidence}`);
  if (filter.since) where.push(sql`created_at >= ${filter.since}::timestamptz`);
  if (filter.until) where.push(sql`created_at < ${filter.until}::timestamptz`);
  if (filter.disagree) where.push(ordersDisagree);
  return sql.join(where, sql` and `);
}

/** Decisions matching `filter`, one page in the chosen order. */
export async function listDecisions(db: Database, filter: DecisionFilter): Promise<AuditRow[]> {
  const query = sql`select id, run_id, stage, principle_key, "order", attempt, outcome, parsed_choice, confidence, rater_model, flags, from_cache,
      human_prefer_a_b, created_at from audit_decisions where ${filterConditions(filter)}
      order by ${sortBy[filter.sort ?? 'id']} limit ${filter.limit} offset ${filter.offset}`;
  return (await db.execute<AuditRow>(query)).rows.map(numericIds);
}

export type Review = typeof humanReviews.$inferSelect;

/** The human reviews of the pair (a, b) in a run, oldest first (the last one counts). */
export async function pairReviews(db: Database, runId: number, a: number, b: number | null): Promise<Review[]> {
  const low = Math.min(a, b ?? 0);
  const high = Math.max(a, b ?? 0);
  return db
    .select()
    .from(humanReviews)
    .where(
      and(
        eq(humanReviews.runId, runId),
        sql`least(${humanReviews.completionAId}, ${humanReviews.completionBId}) = ${low}::bigint`,
        sql`greatest(${humanReviews.completionAId}, ${humanReviews.completionBId}) = ${high}::bigint`,
      ),
    )
    .orderBy(humanReviews.createdAt);
}

export interface DecisionDetail {
  /** The audit_decisions row: prompt, both completions, principle text, flags, tokens, the latest human verdict. */
  row: Record<string, unknown> & { id: number; run_id: number; completion_a_id: number; completion_b_id: number | null };
  request: unknown;
  rawResponse: unknown;
  probabilities: unknown;
  reviews: Review[];
}

/** What `tenet audit show` and the console's decision page show, or undefined for an unknown id. */
export async function decisionDetail(db: Database, decisionId: number): Promise<DecisionDetail | undefined> {
  const [row] = (await db.execute<DecisionDetail['row']>(sql`select * from audit_decisions where id = ${decisionId}`)).rows.map(numericIds);
  if (!row) return undefined;
  const [decision] = await db.select({ request: raterDecisions.request, rawResponse: raterDecisions.rawResponse, probabilities: raterDecisions.probabilities }).from(raterDecisions).where(eq(raterDecisions.id, decisionId));
  const reviews = await pairReviews(db, row.run_id, row.completion_a_id, row.completion_b_id);
  return { row, request: decision?.request, rawResponse: decision?.rawResponse, probabilities: decision?.probabilities, reviews };
}

/** Writes a review once per key; the same key again returns the first one's id. */
export async function writeReview(db: Database, review: typeof humanReviews.$inferInsert): Promise<number> {
  const [row] = await db.insert(humanReviews).values(review).onConflictDoNothing().returning({ id: humanReviews.id });
  if (row) return row.id;
  const [existing] = await db.select({ id: humanReviews.id }).from(humanReviews).where(eq(humanReviews.reviewKey, review.reviewKey));
  return existing!.id;
}

/** Why an override was not written: unknown decision, a pointwise one, or (when asked) a pair reviewed meanwhile. */
export class ReviewRefused extends Error {
  override name = 'ReviewRefused';
  constructor(
    message: string,
    readonly reason: 'not-found' | 'pointwise' | 'already-reviewed',
  ) {
    super(message);
  }
}

export interface Override {
  decisionId: number;
  prefer: 'A' | 'B' | 'tie';
  reason: string;
  reviewer: string;
  /** Idempotency key (default: a new one). */
  key?: string;
  /** Refuse when the pair already has a human review (a stale review-queue form). */
  onlyIfUnreviewed?: boolean;
}

/** Overrules a pairwise decision: one human_reviews row, A and B as the decision showed them. */
export async function overrideDecision(db: Database, override: Override): Promise<number> {
  const { decisionId } = override;
  const [decision] = await db.select().from(raterDecisions).where(eq(raterDecisions.id, decisionId));
  if (!decision) throw new ReviewRefused(`no decision ${decisionId}`, 'not-found');
  if (decision.completionBId === null) throw new ReviewRefused(`decision ${decisionId} is pointwise (a score); only pairwise decisions can be overridden`, 'pointwise');
  if (override.onlyIfUnreviewed && (await pairReviews(db, decision.runId, decision.completionAId, decision.completionBId)).length > 0) {
    throw new ReviewRefused(`decision ${decisionId}: its pair was reviewed meanwhile`, 'already-reviewed');
  }
  return writeReview(db, {
    reviewKey: override.key ?? randomUUID(),
    decisionId,
    runId: decision.runId,
    promptId: decision.promptId,
    completionAId: decision.completionAId,
    completionBId: decision.completionBId,
    prefer: override.prefer,
    reason: override.reason,
    reviewer: override.reviewer,
  });
}

/** The review queue's orders: lowest confidence first, order disagreement first, flagged first (then by confidence). */
export const queueOrders = ['confidence', 'disagreement', 'flagged'] as const;
export type QueueOrder = (typeof queueOrders)[number];
const queueOrderBy: Record<QueueOrder, SQL> = {
  confidence: sql`confidence asc nulls last, id`,
  disagreement: sql`${ordersDisagree} desc, confidence asc nulls last, id`,
  flagged: sql`jsonb_array_length(flags) > 0 desc, confidence asc nulls last, id`,
};

/**
 * The review queue's next decision: a readable pairwise one whose pair no human has reviewed, in the
 * chosen order, leaving out the ids in `skip`.
 */
export async function nextUnreviewed(db: Database, options: { run?: number; skip: number[]; order?: QueueOrder }): Promise<number | undefined> {
  const where: SQL[] = [sql`human_prefer_a_b is null`, sql`completion_b_id is not null`, sql`outcome = 'ok'`];
  if (options.run) where.push(sql`run_id = ${options.run}`);
  if (options.skip.length > 0) where.push(sql`id not in (${sql.join(options.skip.map((id) => sql`${id}`), sql`, `)})`);
  const orderBy = queueOrderBy[options.order ?? 'confidence'];
  const [row] = (await db.execute<{ id: string }>(sql`select id from audit_decisions where ${sql.join(where, sql` and `)} order by ${orderBy} limit 1`)).rows;
  return row ? Number(row.id) : undefined;
}

interface StatsRow extends Record<string, unknown> {
  principle_key: string;
  decisions: string;
  chose_a: string;
  chose_b: string;
  unparseable: string;
  mean_confidence: number | null;
  order_agreement: string | null;
  prompt_tokens: string | null;
  completion_tokens: string | null;
  from_cache: string;
  flagged: string;
}

export interface PrincipleStats {
  principle: string;
  decisions: number;
  chose_a: number;
  chose_b: number;
  unparseable: number;
  order_agreement: number | null;
  mean_confidence: number | null;
  prompt_tokens: number;
  completion_tokens: number;
  /** From the run config's rater price per million tokens; null without one. */
  cost: number | null;
  from_cache: number;
  flagged: number;
}

/** Per principle of a run (the principle_stats view): label split, order agreement, confidence, tokens, cost, flags; undefined for an unknown run. */
export async function principleStats(db: Database, runId: number): Promise<PrincipleStats[] | undefined> {
  const [run] = await db.select({ config: runs.config }).from(runs).where(eq(runs.id, runId));
  if (!run) return undefined;
  const price = runConfigSchema.safeParse(run.config).data?.endpoints.rater.price_per_mtok;
  const rows = (await db.execute<StatsRow>(sql`select * from principle_stats where run_id = ${runId} order by principle_key`)).rows;
  const count = (value: string | null) => (value === null ? null : Number(value));
  return rows.map((r) => {
    const promptTokens = Number(r.prompt_tokens ?? 0);
    const completionTokens = Number(r.completion_tokens ?? 0);
    return {
      principle: r.principle_key,
      decisions: Number(r.decisions),
      chose_a: Number(r.chose_a),
      chose_b: Number(r.chose_b),
      unparseable: Number(r.unparseable),
      order_agreement: count(r.order_agreement),
      mean_confidence: r.mean_confidence === null ? null : Number(r.mean_confidence),
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      cost: price ? (promptTokens * price.input + completionTokens * price.output) / 1e6 : null,
      from_cache: Number(r.from_cache),
      flagged: Number(r.flagged),
    };
  });
}
