// The run page's rater evaluations: those measured on the run's own rater configuration (the same
// endpoint, model and label settings, by the hash db/rater-evaluations.ts keys them with), and the
// run's own when it is an evaluation.
import { createHash } from 'node:crypto';
import { desc, eq, or } from 'drizzle-orm';
import { canonicalJson } from '../../core/constitution/hash.js';
import type { RunConfig } from '../../core/run-config.js';
import type { Database } from '../pool.js';
import { raterConfigOf, type RaterEvaluationRow } from '../rater-evaluations.js';
import { raterEvaluations } from '../schema.js';

/** The hash an evaluation of this run config's rater is stored under; undefined for a config with no rater. */
export function raterConfigHashOf(config: unknown): string | undefined {
  try {
    return createHash('sha256').update(canonicalJson(raterConfigOf(config as RunConfig))).digest('hex');
  } catch {
    return undefined;
  }
}

/** Evaluations of the run's rater configuration, newest first. */
export async function evaluationsForRun(db: Database, run: { id: number; config: unknown }, limit = 20): Promise<RaterEvaluationRow[]> {
  const hash = raterConfigHashOf(run.config);
  return db
    .select()
    .from(raterEvaluations)
    .where(hash ? or(eq(raterEvaluations.raterConfigHash, hash), eq(raterEvaluations.runId, run.id)) : eq(raterEvaluations.runId, run.id))
    .orderBy(desc(raterEvaluations.id))
    .limit(limit);
}
