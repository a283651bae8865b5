// CPU-side activities of the training loop that decide: the trainer job of an iteration's step
// (planned by core/trainer-jobs.ts from the run config) and the monitors after an iteration.
// Putting a policy into service is activities/adapters.ts; evaluating it, activities/evaluation.ts.
import { ApplicationFailure } from '@temporalio/activity';
import { and, eq, lte } from 'drizzle-orm';
import { evaluateMonitors, pauseReason, raterVerifierDisagreement, rolloutFlagMetrics, type MonitorAlert } from '../core/monitors.js';
import { NoLoopError, planTrainerJob, type PlanInput, type TrainerJob } from '../core/trainer-jobs.js';
import type { Database } from '../db/pool.js';
import { recordMetrics } from '../db/runs.js';
import { metrics, rolloutRewards } from '../db/schema.js';
import type { RunContexts } from './run-context.js';

export function createLoopActivities(deps: { db: Database; contexts: RunContexts }) {
  const { db, contexts } = deps;
  return {
    async planTrainerJob(input: PlanInput): Promise<TrainerJob> {
      const { config } = await contexts.get(input.runId);
      try {
        return planTrainerJob(config, input);
      } catch (error) {
        if (error instanceof NoLoopError) throw ApplicationFailure.nonRetryable(error.message, 'NoLoop');
        throw error;
      }
    },

    checkMonitors,
  };

  /**
   * After an iteration: the rollouts' flag and rater–verifier metrics, then the monitors over the
   * run's metrics so far. Alerts (with why) go back to the workflow, which pauses the run.
   */
  async function checkMonitors(input: { runId: number; iteration: number }): Promise<{ alerts: MonitorAlert[]; reason?: string }> {
    const { config } = await contexts.get(input.runId);
    const rewards = await db
      .select({ raw: rolloutRewards.raw, flags: rolloutRewards.flags, verdict: rolloutRewards.verdict })
      .from(rolloutRewards)
      .where(and(eq(rolloutRewards.runId, input.runId), eq(rolloutRewards.iteration, input.iteration)));
    await recordMetrics(db, input.runId, input.iteration, {
      ...rolloutFlagMetrics(rewards.map((r) => (r.verdict === null ? undefined : r.flags))),
      ...raterVerifierDisagreement(rewards.map((r) => ({ rater: r.raw.rater_score, verifier: r.raw.verifier }))),
    });
    const rows = await db.select().from(metrics).where(and(eq(metrics.runId, input.runId), lte(metrics.iteration, input.iteration)));
    const byIteration = new Map<number, Record<string, number>>();
    for (const row of rows) byIteration.set(row.iteration, { ...byIteration.get(row.iteration), [row.name]: row.value });
    const report = evaluateMonitors([...byIteration].map(([iteration, values]) => ({ iteration, metrics: values })), config.loop.monitors);
    await recordMetrics(db, input.runId, input.iteration, report.values);
    return { alerts: report.alerts, ...(report.alerts.length > 0 ? { reason: pauseReason(report) } : {}) };
  }
}
