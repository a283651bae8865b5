// Rater evaluation: the gold pairs of an evaluation run are rated batch by batch (a bounded number
// in flight), then the metrics are computed from the decision rows and stored. Row ids and counts
// travel in payloads, never text. Progress is a query; the run's status follows the workflow.
import { CancellationScope, isCancellation, setHandler } from '@temporalio/workflow';
import { rootCauseMessage } from '../core/failure.js';
import { db, stageBatches } from './presets.js';
import { progressQuery, type StageProgress } from './types.js';

export interface RaterEvalInput {
  runId: number;
  /** Gold pairs (prompts of the run). */
  pairs: number;
  /** Comparisons planned (pairs × principles × 2 orders), for the progress total. */
  comparisons: number;
  batchSize: number;
  maxBatchesInFlight: number;
}

export interface RaterEvalResult {
  runId: number;
  evaluationId: number;
  progress: StageProgress[];
}

export async function raterEvaluation(input: RaterEvalInput): Promise<RaterEvalResult> {
  const { runId } = input;
  const progress: StageProgress = { stage: 'rater-eval', done: 0, total: input.comparisons, failed: 0 };
  setHandler(progressQuery, () => [progress]);
  await db.setRunStatus({ runId, status: 'running' });
  try {
    const batches = Math.ceil(input.pairs / input.batchSize);
    let next = 0;
    const lane = async () => {
      while (next < batches) {
        const offset = next++ * input.batchSize;
        const counts = await stageBatches.raterEvalBatch({ runId, offset, limit: Math.min(input.batchSize, input.pairs - offset) });
        progress.done += counts.done;
        progress.failed += counts.failed;
      }
    };
    await Promise.all(Array.from({ length: Math.min(input.maxBatchesInFlight, batches) }, lane));
    const evaluationId = await db.finishRaterEvaluation({ runId });
    await db.recordMetrics({ runId, iteration: 0, values: { 'rater-eval.done': progress.done, 'rater-eval.failed': progress.failed } });
    await db.setRunStatus({ runId, status: 'completed' });
    return { runId, evaluationId, progress: [progress] };
  } catch (error) {
    const status = isCancellation(error) ? 'cancelled' : 'failed';
    await CancellationScope.nonCancellable(() => db.setRunStatus({ runId, status, error: rootCauseMessage(error) }));
    throw error;
  }
}
