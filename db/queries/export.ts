// What training and `tenet export` read from a run: its preference pairs as effective_preferences has
// them (human reviews win; a human tie drops the pair), and the final revision of each critique chain.
import { and, desc, eq, inArray } from 'drizzle-orm';
import { alias } from 'drizzle-orm/pg-core';
import type { Database } from '../pool.js';
import { completions, critiques, effectivePreferences, prompts } from '../schema.js';

export type Message = { role: string; content: string };

export interface PreferencePair {
  prompt: Message[];
  chosen: string;
  rejected: string;
  softLabel: number;
  decisionIds: number[];
  source: 'ai' | 'human';
  promptId: number;
  chosenId: number;
  rejectedId: number;
  reviewId: number | null;
}

/** A run's preference pairs (optionally only train-split prompts and some iterations), by prompt, chosen, rejected. */
export async function preferencePairs(db: Database, runId: number, options: { trainOnly?: boolean; iterations?: number[] } = {}): Promise<PreferencePair[]> {
  const e = effectivePreferences;
  const chosen = alias(completions, 'chosen');
  const rejected = alias(completions, 'rejected');
  return db
    .select({
      prompt: prompts.messages,
      chosen: chosen.text,
      rejected: rejected.text,
      softLabel: e.softLabel,
      decisionIds: e.decisionIds,
      source: e.source,
      promptId: e.promptId,
      chosenId: e.chosenId,
      rejectedId: e.rejectedId,
      reviewId: e.reviewId,
    })
    .from(e)
    .innerJoin(prompts, eq(prompts.id, e.promptId))
    .innerJoin(chosen, eq(chosen.id, e.chosenId))
    .innerJoin(rejected, eq(rejected.id, e.rejectedId))
    .where(and(eq(e.runId, runId), options.trainOnly ? eq(prompts.split, 'train') : undefined, options.iterations ? inArray(e.iteration, options.iterations) : undefined))
    .orderBy(e.promptId, e.chosenId, e.rejectedId) as Promise<PreferencePair[]>;
}

export interface FinalRevision {
  prompt: Message[];
  revision: string;
  sourceCompletionId: number;
  rounds: number;
}

/** The last revision of each critique→revision chain of a run, by the response it revises. */
export async function finalRevisions(db: Database, runId: number): Promise<FinalRevision[]> {
  const rows = await db
    .selectDistinctOn([critiques.sourceCompletionId], { prompt: prompts.messages, revision: completions.text, sourceCompletionId: critiques.sourceCompletionId, round: critiques.round })
    .from(critiques)
    .innerJoin(completions, eq(completions.id, critiques.revisionCompletionId))
    .innerJoin(prompts, eq(prompts.id, completions.promptId))
    .where(eq(critiques.runId, runId))
    .orderBy(critiques.sourceCompletionId, desc(critiques.round));
  return rows.map((r) => ({ prompt: r.prompt as Message[], revision: r.revision, sourceCompletionId: r.sourceCompletionId, rounds: r.round + 1 }));
}
