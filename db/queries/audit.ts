// The audit queries the CLI (`tenet audit`) and the console share: decisions filtered and paged, one
// decision with its reviews, the review queue's next pair, and the human review a person writes.
// A review goes to human_reviews only; the AI's rows are never touched (effective_preferences follows).
import { randomUUID } from 'node:crypto';
import { and, asc, desc, eq, inArray, isNotNull, notInArray, sql, type SQL } from 'drizzle-orm';
import type { ArithmeticCheck } from '../../core/verifiers/arithmetic.js';
import type { Database } from '../pool.js';
import { runConfigSchema } from '../../core/run-config.js';
import { ReviewRefused } from './labels.js';
import { auditDecisions, humanReviews, preferenceDrops, preferences, principleStatsView, raterDecisions, runs, stepChecks } from '../schema.js';

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
  /** Keyset paging: the page after this cursor (decisionCursor of the previous page's last row)… */
  after?: string;
  /** …or the page before this one (decisionCursor of the next page's first row), still in the chosen order. */
  before?: string;
  /** Rows to skip when no cursor is given (slow on deep pages; cursors are not). */
  offset?: number;
}

export const decisionSorts = ['id', '-id', 'confidence', '-confidence'] as const;
export type DecisionSort = (typeof decisionSorts)[number];

const d = raterDecisions;
const h = humanReviews;
/**
 * The confidence orders are ascending on (key, id), so that one row comparison pages them and one index serves each
 * (db/schema.ts). Confidence is null for pointwise decisions: ascending it counts as 2 and descending
 * as 1 after negating, so nulls come last both ways; these expressions must match the indexes'.
 */
const confidenceKeys = {
  confidence: sql`coalesce(${d.confidence}, 2)`,
  '-confidence': sql`coalesce(-${d.confidence}, 1)`,
};

/** The keyset cursor of a row in the order `sort`: its sort key and id. */
export function decisionCursor(row: { id: number; confidence: number | null }, sort: DecisionSort = 'id'): string {
  if (sort === 'id' || sort === '-id') return String(row.id);
  const key = sort === 'confidence' ? (row.confidence ?? 2) : row.confidence === null ? 1 : -row.confidence;
  return `${key}_${row.id}`;
}

/** A cursor as decisionCursor writes it (for validating request parameters). */
export const decisionCursorPattern = /^(?:-?\d+(?:\.\d+)?(?:e-?\d+)?_)?\d+$/;

/** Why a listing was refused: a cursor that no listing wrote. */
export class BadCursor extends Error {
  override name = 'BadCursor';
}

function cursorBound(cursor: string, sort: DecisionSort, direction: 'after' | 'before'): SQL {
  if (!decisionCursorPattern.test(cursor)) throw new BadCursor(`${direction}: expected a cursor such as 1234 or 0.75_1234`);
  const parts = cursor.split('_');
  const idPart = Number(parts.at(-1));
  const compare = direction === 'after' ? sql`>` : sql`<`;
  if (sort === 'id' || sort === '-id') {
    if (parts.length !== 1) throw new BadCursor(`${direction}: expected a decision id for sort ${sort}`);
    return sort === 'id' ? sql`${d.id} ${compare} ${idPart}` : sql`${d.id} ${direction === 'after' ? sql`<` : sql`>`} ${idPart}`;
  }
  if (parts.length !== 2) throw new BadCursor(`${direction}: expected a cursor such as 0.75_1234 for sort ${sort}`);
  return sql`(${confidenceKeys[sort]}, ${d.id}) ${compare} (${Number(parts[0])}::float8, ${idPart}::bigint)`;
}

export interface AuditRow extends Record<string, unknown> {
  id: number;
  run_id: number;
  stage: string;
  principle_key: string;
  order: string | null;
  attempt: number;
  outcome: string;
  parsed_choice: string | null;
  confidence: number | null;
  rater_model: string;
  flags: string[];
  from_cache: boolean;
  human_prefer_a_b: string | null;
  created_at: Date;
}

/** Postgres returns bigint columns as strings; ids are numbers. */
export function numericIds<T extends Record<string, unknown>>(row: T): T {
  const out: Record<string, unknown> = { ...row };
  for (const [key, value] of Object.entries(out)) if ((key === 'id' || key.endsWith('_id')) && typeof value === 'string' && /^\d+$/.test(value)) out[key] = Number(value);
  return out as T;
}

// The pair of a decision in either order, as human_reviews and preferences name it (indexed both sides).
const pairLow = sql`least(${d.completionAId}, ${d.completionBId})`;
const pairHigh = sql`greatest(${d.completionAId}, ${d.completionBId})`;
const reviewOfPair = sql`${h.runId} = ${d.runId} and least(${h.completionAId}, ${h.completionBId}) = ${pairLow} and greatest(${h.completionAId}, ${h.completionBId}) = ${pairHigh}`;
/** The latest human verdict on the decision's pair (A/B as that review showed them), or null. */
const latestVerdict = sql<string | null>`(select ${h.prefer} from ${h} where ${reviewOfPair} order by ${h.createdAt} desc, ${h.id} desc limit 1)`;
const reviewed = sql`exists (select 1 from ${h} where ${reviewOfPair})`;
/** The decision's pair got different answers in its two orders (position bias). */
const ordersDisagree = sql`exists (select 1 from ${preferences} where ${preferences.runId} = ${d.runId} and ${preferences.ordersAgree} = false
      and ${preferences.completionLowId} = ${pairLow} and ${preferences.completionHighId} = ${pairHigh})`;
/** Must read as the flagged index's predicate. */
const isFlagged = sql`jsonb_array_length(${d.flags}) > 0`;

function filterConditions(filter: Omit<DecisionFilter, 'limit' | 'offset' | 'sort' | 'after' | 'before'>): SQL[] {
  const where: SQL[] = [];
  if (filter.run) where.push(eq(d.runId, filter.run));
  if (filter.principle) where.push(eq(d.principleKey, filter.principle));
  if (filter.stage) where.push(eq(d.stage, filter.stage));
  if (filter.model) where.push(eq(d.raterModel, filter.model));
  if (filter.overridden) where.push(reviewed);
  if (filter.flagged) where.push(isFlagged);
  if (filter.unparseable) where.push(eq(d.outcome, 'unparseable'));
  if (filter.lowConfidence !== undefined) where.push(sql`${d.confidence} < ${filter.lowConfidence}`);
  if (filter.since) where.push(sql`${d.createdAt} >= ${filter.since}::timestamptz`);
  if (filter.until) where.push(sql`${d.createdAt} < ${filter.until}::timestamptz`);
  if (filter.disagree) where.push(ordersDisagree);
  return where;
}

/**
 * Decisions matching `filter`, one page in the chosen order. Paged by keyset (`after` / `before` a
 * cursor): each page is an index range whatever its depth; `offset` remains for page numbers without one.
 */
export async function listDecisions(db: Database, filter: DecisionFilter): Promise<AuditRow[]> {
  const sort = filter.sort ?? 'id';
  const where = filterConditions(filter);
  // "Confidence below" bounds the confidence orders' index range too (the same rows: a null confidence
  // is below nothing), so a page never reads through the decisions above it.
  if (filter.lowConfidence !== undefined && sort === 'confidence') where.push(sql`${confidenceKeys.confidence} < ${filter.lowConfidence}`);
  if (filter.lowConfidence !== undefined && sort === '-confidence') where.push(sql`${confidenceKeys['-confidence']} > ${-filter.lowConfidence}`);
  if (filter.after !== undefined) where.push(cursorBound(filter.after, sort, 'after'));
  if (filter.before !== undefined) where.push(cursorBound(filter.before, sort, 'before'));
  // A page before a cursor is read in the reverse order, then turned round.
  const backwards = filter.before !== undefined && filter.after === undefined;
  const direction = backwards ? sql`desc` : sql`asc`;
  const orderBy =
    sort === 'id' || sort === '-id'
      ? [(sort === '-id') !== backwards ? desc(d.id) : asc(d.id)]
      : [sql`${confidenceKeys[sort]} ${direction}`, sql`${d.id} ${direction}`];
  const query = db
    .select({
      id: d.id,
      run_id: d.runId,
      stage: d.stage,
      principle_key: d.principleKey,
      order: d.order,
      attempt: d.attempt,
      outcome: d.outcome,
      parsed_choice: d.parsedChoice,
      confidence: d.confidence,
      rater_model: d.raterModel,
      flags: d.flags,
      from_cache: d.fromCache,
      human_prefer_a_b: latestVerdict,
      created_at: d.createdAt,
    })
    .from(d)
    .where(and(...where))
    .orderBy(...orderBy)
    .limit(filter.limit);
  const rows = filter.after === undefined && filter.before === undefined && filter.offset ? await query.offset(filter.offset) : await query;
  return backwards ? rows.reverse() : rows;
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
  const v = auditDecisions;
  const [row] = await db
    .select({
      id: v.id,
      run_id: v.runId,
      stage: v.stage,
      iteration: v.iteration,
      created_at: v.createdAt,
      principle_key: v.principleKey,
      principle_text: v.principleText,
      constitution_hash: v.constitutionHash,
      rater_endpoint: v.raterEndpoint,
      rater_model: v.raterModel,
      order: v.order,
      attempt: v.attempt,
      outcome: v.outcome,
      parsed_choice: v.parsedChoice,
      p_a: v.pA,
      p_b: v.pB,
      confidence: v.confidence,
      flags: v.flags,
      from_cache: v.fromCache,
      latency_ms: v.latencyMs,
      prompt_tokens: v.promptTokens,
      completion_tokens: v.completionTokens,
      prompt: v.prompt,
      completion_a_id: v.completionAId,
      completion_a: v.completionA,
      completion_b_id: v.completionBId,
      completion_b: v.completionB,
      human_prefer_a_b: v.humanPreferAB,
      human_reason: v.humanReason,
      human_reviewer: v.humanReviewer,
      human_completion_a_id: v.humanCompletionAId,
    })
    .from(v)
    .where(eq(v.id, decisionId));
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
  if (decision.completionBId === null) throw new ReviewRefused(`decision ${decisionId} is pointwise (a score); only pairwise decisions can be overridden`, 'invalid');
  if (override.onlyIfUnreviewed && (await pairReviews(db, decision.runId, decision.completionAId, decision.completionBId)).length > 0) {
    throw new ReviewRefused(`decision ${decisionId}: its pair was reviewed meanwhile`, 'stale');
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

/** How many candidates, in confidence order, "disagreement first" reads before it asks the disagreeing pairs instead. */
const disagreementWindow = 200;

/**
 * The review queue's next decision: a readable pairwise one whose pair no human has reviewed, in the
 * chosen order, leaving out the ids in `skip`. Every order reads the confidence index (lowest first,
 * then id). "Flagged first" looks among the flagged decisions (their own small index) and then among
 * all. "Disagreement first" looks for a disagreeing pair among the first candidates; when there is
 * none there, it starts from the disagreeing pairs themselves (their own index), so a run with few or
 * none never scans the whole table; and then among all.
 */
export async function nextUnreviewed(db: Database, options: { run?: number; skip: number[]; order?: QueueOrder }): Promise<number | undefined> {
  const where: SQL[] = [isNotNull(d.completionBId), eq(d.outcome, 'ok'), sql`not ${reviewed}`];
  if (options.run) where.push(eq(d.runId, options.run));
  if (options.skip.length > 0) where.push(notInArray(d.id, options.skip));
  const byConfidence = [sql`${confidenceKeys.confidence}`, asc(d.id)];
  const first = async (extra: SQL[]) => {
    const [row] = await db
      .select({ id: d.id })
      .from(d)
      .where(and(...where, ...extra))
      .orderBy(...byConfidence)
      .limit(1);
    return row?.id;
  };
  const order = options.order ?? 'confidence';
  if (order === 'flagged') return (await first([isFlagged])) ?? first([]);
  if (order === 'disagreement') {
    const { rows: [inWindow] } = await db.execute<{ id: string }>(
      sql`select w.id from (select ${d.id} as id, ${d.runId} as run_id, ${pairLow} as low, ${pairHigh} as high, ${confidenceKeys.confidence} as key
            from ${d} where ${and(...where)} order by ${confidenceKeys.confidence}, ${d.id} limit ${disagreementWindow}) w
          where exists (select 1 from ${preferences} p where p.run_id = w.run_id and p.orders_agree = false and p.completion_low_id = w.low and p.completion_high_id = w.high)
          order by w.key, w.id limit 1`,
    );
    if (inWindow) return Number(inWindow.id);
    // Rarer than one in the window: from the disagreeing pairs (materialized, so the plan starts there).
    const { rows } = await db.execute<{ id: string }>(
      sql`with disagreeing_pairs as materialized (select distinct run_id, completion_low_id, completion_high_id from ${preferences}
            where ${preferences.ordersAgree} = false${options.run ? sql` and ${preferences.runId} = ${options.run}` : sql``})
          select ${d.id} from disagreeing_pairs p join ${d} on ${d.runId} = p.run_id and ${pairLow} = p.completion_low_id and ${pairHigh} = p.completion_high_id
          where ${and(...where)} order by ${confidenceKeys.confidence}, ${d.id} limit 1`,
    );
    return rows[0] ? Number(rows[0].id) : first([]);
  }
  return first([]);
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
  const rows = await db.select().from(principleStatsView).where(eq(principleStatsView.runId, runId)).orderBy(principleStatsView.principleKey);
  return rows.map((r) => {
    const promptTokens = r.promptTokens ?? 0;
    const completionTokens = r.completionTokens ?? 0;
    return {
      principle: r.principleKey,
      decisions: r.decisions,
      chose_a: r.choseA,
      chose_b: r.choseB,
      unparseable: r.unparseable,
      order_agreement: r.orderAgreement,
      mean_confidence: r.meanConfidence,
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      cost: price ? (promptTokens * price.input + completionTokens * price.output) / 1e6 : null,
      from_cache: r.fromCache,
      flagged: r.flagged,
    };
  });
}

/** Pairs of a run the label stage kept out of training, per reason (orders-disagree, below-margin). */
export async function preferenceDropCounts(db: Database, runId: number): Promise<{ reason: string; pairs: number }[]> {
  return db
    .select({ reason: preferenceDrops.reason, pairs: sql<number>`count(*)::int` })
    .from(preferenceDrops)
    .where(eq(preferenceDrops.runId, runId))
    .groupBy(preferenceDrops.reason)
    .orderBy(preferenceDrops.reason);
}

/** A step's score of a completion: from a rater decision (stage `process`), or from a checker (step_checks). */
export interface ProcessStep {
  completion: number;
  /** 1-based. */
  step: number;
  steps: number;
  score: number | null;
  decision?: number;
  principle?: string;
  checker?: string;
  checks?: ArithmeticCheck[];
}

/** The per-step (process) scores of these completions, by completion and step. */
export async function processSteps(db: Database, completionIds: number[]): Promise<ProcessStep[]> {
  if (completionIds.length === 0) return [];
  const steps = await db
    .select({ id: d.id, completionId: d.completionAId, score: d.score, probabilities: d.probabilities, principleKey: d.principleKey })
    .from(d)
    .where(and(eq(d.stage, 'process'), eq(d.outcome, 'ok'), inArray(d.completionAId, completionIds)))
    .orderBy(d.completionAId, sql`(${d.probabilities} ->> 'step')::int`);
  // Steps a checker judged instead of the rater (process.check_arithmetic).
  const checked = await db.select().from(stepChecks).where(inArray(stepChecks.completionId, completionIds));
  return [
    ...steps.map((s) => ({ decision: s.id, completion: s.completionId, step: (s.probabilities as { step: number }).step + 1, steps: (s.probabilities as { steps: number }).steps, score: s.score, principle: s.principleKey })),
    ...checked.map((c) => ({ completion: c.completionId, step: c.stepIndex + 1, steps: c.stepCount, score: c.score, checker: c.checker, checks: c.checks as ArithmeticCheck[] })),
  ].sort((a, b) => a.completion - b.completion || a.step - b.step);
}
