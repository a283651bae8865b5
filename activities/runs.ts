// Run bookkeeping activities: register the run, move its status, record metrics.
import type { Database } from '../db/pool.js';
import { recordMetrics, setRunStatus, upsertRun } from '../db/runs.js';
import type { RunStatus } from '../db/schema.js';

export function createRunActivities(db: Database) {
  return {
    async registerRun(input: { workflowId: string; kind: string; constitutionId: number | null; config: unknown }): Promise<number> {
      return upsertRun(db, input);
    },
    async setRunStatus(input: { runId: number; status: RunStatus; error?: string }): Promise<void> {
      await setRunStatus(db, input.runId, input.status, input.error);
    },
    async recordMetrics(input: { runId: number; iteration: number; values: Record<string, number> }): Promise<void> {
      await recordMetrics(db, input.runId, input.iteration, input.values);
    },
  };
}
