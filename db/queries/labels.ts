// A human labelling a pair directly (`tenet audit label` and the console's direct-label form): one
// human_reviews row with no decision, the chosen completion as A. It joins the same preference store
// (effective_preferences follows the pair's latest review); the AI's rows are never touched.
import { randomUUID } from 'node:crypto';
import { and, desc, eq, inArray, sql } from 'drizzle-orm';
import type { Database } from '../pool.js';
import { completions, humanReviews } from '../schema.js';

/**
 * Why a human review (a direct label or an override) was not written: something unknown
 * (`not-found`), a request that cannot be one (`invalid`: not a pair, a pointwise decision), or a
 * pair reviewed since the form was shown (`stale`). The CLI prints the message; the console maps
 * the reason to 404, 400 and 409.
 */
export class ReviewRefused extends Error {
  override name = 'ReviewRefused';
  constructor(
    message: string,
    readonly reason: 'not-found' | 'invalid' | 'stale',
  ) {
    super(message);
  }
}

export interface PairLabel {
  /** The better completion (with `tie`, simply the first of the two). */
  chosen: number;
  rejected: number;
  /** Neither is better: written as `tie`, which takes the pair out of training. */
  tie?: boolean;
  reason: string;
  reviewer: string;
  /** Idempotency key: the same key again returns the first review's id (default: a new one). */
  key?: string;
  /**
   * The id of the pair's latest review when the form was shown (0: none). When given, a pair
   * reviewed since is refused as stale instead of being written over.
   */
  expectLatestReview?: number;
}

/** The id of the pair (a, b)'s newest human review in a run (the highest id, as the console's forms record it), or 0 when none. */
export async function latestPairReview(db: Pick<Database, 'select'>, runId: number, a: number, b: number): Promise<number> {
  const [row] = await db
    .select({ id: humanReviews.id })
    .from(humanReviews)
    .where(and(eq(humanReviews.runId, runId), sql`least(${humanReviews.completionAId}, ${humanReviews.completionBId}) = ${Math.min(a, b)}::bigint`, sql`greatest(${humanReviews.completionAId}, ${humanReviews.completionBId}) = ${Math.max(a, b)}::bigint`))
    .orderBy(desc(humanReviews.id))
    .limit(1);
  return row?.id ?? 0;
}

type Tx = Parameters<Parameters<Database['transaction']>[0]>[0];

/** Takes the pair's lock (until the transaction ends) and refuses (stale) when its newest review is not `expected`. */
async function checkUnreviewedSince(tx: Tx, pair: { runId: number; a: number; b: number }, expected: number): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`tenet.pair:${pair.runId}:${Math.min(pair.a, pair.b)}:${Math.max(pair.a, pair.b)}`}))`);
  const latest = await latestPairReview(tx, pair.runId, pair.a, pair.b);
  if (latest !== expected) throw new ReviewRefused(`completions ${pair.a} and ${pair.b}: the pair was reviewed meanwhile (review ${latest}); reload the page to see it`, 'stale');
}

/**
 * Runs `write` (a review of the pair, e.g. an override) unless the pair was reviewed since the form
 * showed review `expected` (0: none): then LabelRefused (stale) and nothing is written. The pair's
 * lock is held until `write` has committed, so two forms shown together cannot both pass. A `key`
 * already written skips the check (the same form sent twice).
 */
export async function unlessReviewedSince<T>(db: Database, pair: { runId: number; a: number; b: number; key?: string }, expected: number, write: () => Promise<T>): Promise<T> {
  return db.transaction(async (tx) => {
    // The same form sent twice: its first write stands, and the write (keyed) returns it.
    const again = pair.key === undefined ? [] : await tx.select({ id: humanReviews.id }).from(humanReviews).where(eq(humanReviews.reviewKey, pair.key));
    if (again.length === 0) await checkUnreviewedSince(tx, pair, expected);
    return write();
  });
}

/** Writes the label as one row, in one transaction (checks and write together); its review id. */
export async function labelPair(db: Database, label: PairLabel): Promise<number> {
  if (label.chosen === label.rejected) throw new ReviewRefused('chosen and rejected must be two different completions', 'invalid');
  const reviewKey = label.key ?? randomUUID();
  return db.transaction(async (tx) => {
    // The same form sent twice: the first write stands.
    const [again] = await tx.select({ id: humanReviews.id }).from(humanReviews).where(eq(humanReviews.reviewKey, reviewKey));
    if (again) return again.id;
    const rows = await tx.select({ id: completions.id, runId: completions.runId, promptId: completions.promptId }).from(completions).where(inArray(completions.id, [label.chosen, label.rejected]));
    const chosen = rows.find((r) => r.id === label.chosen);
    const rejected = rows.find((r) => r.id === label.rejected);
    if (!chosen || !rejected) throw new ReviewRefused(`no completion ${!chosen ? label.chosen : label.rejected}`, 'not-found');
    if (chosen.promptId !== rejected.promptId) throw new ReviewRefused(`completions ${chosen.id} and ${rejected.id} answer different prompts`, 'invalid');
    if (label.expectLatestReview !== undefined) {
      // One labeller of this pair at a time, so two forms shown together cannot both pass the check.
      await checkUnreviewedSince(tx, { runId: chosen.runId, a: chosen.id, b: rejected.id }, label.expectLatestReview);
    }
    const [row] = await tx
      .insert(humanReviews)
      .values({ reviewKey, decisionId: null, runId: chosen.runId, promptId: chosen.promptId, completionAId: chosen.id, completionBId: rejected.id, prefer: label.tie ? 'tie' : 'A', reason: label.reason, reviewer: label.reviewer })
      .onConflictDoNothing()
      .returning({ id: humanReviews.id });
    if (row) return row.id;
    const [existing] = await tx.select({ id: humanReviews.id }).from(humanReviews).where(eq(humanReviews.reviewKey, reviewKey));
    return existing!.id;
  });
}
