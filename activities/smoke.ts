// The smoke stage: writes a handful of prompts built from the run's constitution, proving that the
// worker reaches Postgres and that the constitution version is there.
import { asc, eq } from 'drizzle-orm';
import { ApplicationFailure } from '@temporalio/activity';
import type { Database } from '../db/pool.js';
import { upsertPrompts } from '../db/runs.js';
import { principles } from '../db/schema.js';

export function createSmokeActivities(db: Database) {
  return {
    async seedSmokePrompts(input: { runId: number; constitutionId: number; count: number }): Promise<{ promptIds: number[]; principleKeys: string[] }> {
      const rows = await db
        .select({ key: principles.key })
        .from(principles)
        .where(eq(principles.constitutionId, input.constitutionId))
        .orderBy(asc(principles.position));
      if (rows.length === 0) {
        throw ApplicationFailure.nonRetryable(`constitution ${input.constitutionId} has no principles in the database`, 'ConstitutionMissing');
      }
      const chosen = Array.from({ length: input.count }, (_, i) => rows[i % rows.length]!.key);
      const promptIds = await upsertPrompts(
        db,
        input.runId,
        chosen.map((key, i) => ({
          key: `smoke-${i}`,
          messages: [{ role: 'user', content: `Smoke check ${i}: explain the principle "${key}" in one sentence.` }],
          metadata: { principle: key },
        })),
      );
      return { promptIds, principleKeys: chosen };
    },
  };
}
