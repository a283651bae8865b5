// Rater evaluation (`tenet rater eval`): the gold pairs of an evaluation run go through the label
// stage itself (labelBatch, both orders, repairs, decision rows of stage `rater-eval`), so what is
// measured is what runs use; then the metrics are computed from the decision rows (raw) and the
// preference rows the label stage wrote (debiased as the run config says) and stored.
import { Context } from '@temporalio/activity';
import { evaluateRater } from '../core/rater/evaluation.js';
import type { Database } from '../db/pool.js';
import { goldDecisions, goldLabels, goldStage, raterEvalStage, storeEvaluationMetrics } from '../db/rater-evaluations.js';
import { labelBatch, type LabelMode, type StageCounts } from './label.js';
import type { ModelEndpoints } from './llm.js';
import { promptsAt, type RunContext, type RunContexts } from './run-context.js';

/** Gold pairs are judged by the principle their line names; a line without one takes the usual draw. */
export function goldLabelMode(context: RunContext): LabelMode {
  return {
    completionStage: goldStage,
    decisionStage: raterEvalStage,
    principlesFor: (pair) => {
      const key = (pair.prompt.metadata as { principle?: unknown } | null)?.principle;
      const principle = typeof key === 'string' ? context.principles.find((p) => p.key === key) : undefined;
      return principle ? [principle] : undefined;
    },
  };
}

export function createRaterEvalActivities(deps: { db: Database; llm: ModelEndpoints; contexts: RunContexts }) {
  const { db, llm, contexts } = deps;
  return {
    /** Rates the gold pairs at positions [offset, offset + limit) of an evaluation run. */
    async raterEvalBatch(input: { runId: number; offset: number; limit: number }): Promise<StageCounts> {
      const [context, slice] = await Promise.all([contexts.get(input.runId), promptsAt(db, input.runId, input.offset, input.limit)]);
      // Heartbeats while a slow endpoint answers a round, so only a dead worker loses its batch.
      const activity = Context.current();
      const pulse = setInterval(() => activity.heartbeat(), Math.max(200, Math.min(5_000, (activity.info.heartbeatTimeoutMs ?? 15_000) / 3)));
      try {
        return await labelBatch(db, llm, context, slice, 0, goldLabelMode(context));
      } finally {
        clearInterval(pulse);
      }
    },

    /** Computes the evaluation's metrics, raw and debiased, from its decision and preference rows and stores them; returns the evaluation id. */
    async finishRaterEvaluation(input: { runId: number }): Promise<number> {
      const [context, decisions, labels] = await Promise.all([contexts.get(input.runId), goldDecisions(db, input.runId), goldLabels(db, input.runId)]);
      const { mode, position_prior, disagreement, margin } = context.config.label;
      return storeEvaluationMetrics(db, input.runId, evaluateRater(decisions, { labels, settings: { mode, position_prior, disagreement, margin } }));
    },
  };
}
