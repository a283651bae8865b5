// Stage activities of the pipeline: each takes a run id and a slice of its prompts (row ids are read
// here, never carried in workflow payloads) and returns counts.
import { Context } from '@temporalio/activity';
import { and, count, eq } from 'drizzle-orm';
import type { PipelineStage } from '../core/stages.js';
import type { Database } from '../db/pool.js';
import { prompts } from '../db/schema.js';
import { critiquePrompt } from './critique.js';
import { labelBatch, type StageCounts } from './label.js';
import type { ModelEndpoints } from './llm.js';
import type { RunContexts} from './run-context.js';
import { promptsAt, type PromptRow, type RunContext } from './run-context.js';
import { rolloutBatch } from './rollouts.js';
import { sampleBatch } from './sample.js';
import type { RewardScorers } from './scorers.js';
import { scorePrompt } from './score.js';

export interface StageBatch {
  runId: number;
  stage: PipelineStage;
  iteration: number;
  offset: number;
  limit: number;
  /** The policy this iteration samples from (an adapter name after the first update); defaults to the endpoint's model. */
  policyModel?: string;
  /** The reward model that scores rollouts. */
  rewardModelId?: number;
}

export function createPipelineActivities(deps: { db: Database; llm: ModelEndpoints; contexts: RunContexts; scorers: RewardScorers }) {
  const { db, llm, contexts, scorers } = deps;
  return {
    async countPrompts(input: { runId: number }): Promise<number> {
      const [row] = await db.select({ n: count() }).from(prompts).where(and(eq(prompts.runId, input.runId), eq(prompts.split, 'train')));
      return row?.n ?? 0;
    },

    async runStageBatch(batch: StageBatch): Promise<StageCounts> {
      const [context, slice] = await Promise.all([contexts.get(batch.runId), promptsAt(db, batch.runId, batch.offset, batch.limit)]);
      // A heartbeat every few seconds while this worker lives, however slow the endpoint's answers:
      // only a dead worker misses the heartbeat timeout and has its batch retried elsewhere.
      const activity = Context.current();
      const every = Math.max(200, Math.min(5_000, (activity.info.heartbeatTimeoutMs ?? 15_000) / 3));
      const pulse = setInterval(() => activity.heartbeat(), every);
      try {
        return await runStage(batch, context, slice, activity);
      } finally {
        clearInterval(pulse);
      }
    },
  };

  async function runStage(batch: StageBatch, context: RunContext, slice: PromptRow[], activity: Context): Promise<StageCounts> {
    // Sampling and labelling move a whole batch at once; critique chains and scores go prompt by prompt.
    if (batch.stage === 'sample') return sampleBatch(db, llm, context, slice, batch.iteration, { policyModel: batch.policyModel });
    if (batch.stage === 'rollout') return rolloutBatch(db, llm, scorers, context, slice, batch);
    if (batch.stage === 'label') return labelBatch(db, llm, context, slice, batch.iteration);
    const perPrompt = batch.stage === 'critique' ? critiquePrompt : scorePrompt;
    const totals: StageCounts = { done: 0, failed: 0 };
    let finished = 0;
    await Promise.all(
      slice.map(async (prompt) => {
        const counts = await perPrompt(db, llm, context, prompt, batch.iteration);
        totals.done += counts.done;
        totals.failed += counts.failed;
        finished++;
        activity.heartbeat({ finished });
      }),
    );
    return totals;
  }
}
