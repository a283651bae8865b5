// One shard of a stage: its prompts in batches, a bounded number of batch activities in flight,
// each finished batch reported to the parent pipeline. Pauses with the parent.
import { condition, continueAsNew, getExternalWorkflowHandle, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { CpuActivities } from '../activities/index.js';
import { stageBatchOptions } from './presets.js';
import { batchDoneSignal, pauseSignal, resumeSignal, type ShardInput } from './types.js';

export async function stageShard(input: ShardInput): Promise<void> {
  let paused = input.paused;
  setHandler(pauseSignal, () => void (paused = true));
  setHandler(resumeSignal, () => void (paused = false));
  const stageBatches = proxyActivities<CpuActivities>(
    input.heartbeatTimeoutS ? { ...stageBatchOptions, heartbeatTimeout: input.heartbeatTimeoutS * 1000 } : stageBatchOptions,
  );
  const parent = getExternalWorkflowHandle(input.parentWorkflowId);
  const batches = Math.ceil(input.limit / input.batchSize);
  let next = input.nextBatch ?? 0;
  const inflight = new Map<number, Promise<void>>();

  while (next < batches || inflight.size > 0) {
    const wantsNewRun = workflowInfo().continueAsNewSuggested;
    while (!paused && !wantsNewRun && inflight.size < input.maxBatchesInFlight && next < batches) {
      const batch = next++;
      const offset = input.offset + batch * input.batchSize;
      const limit = Math.min(input.batchSize, input.offset + input.limit - offset);
      inflight.set(
        batch,
        stageBatches
          .runStageBatch({ runId: input.runId, stage: input.stage, iteration: input.iteration, offset, limit, policyModel: input.policyModel, rewardModelId: input.rewardModelId })
          .then((counts) => parent.signal(batchDoneSignal, { stage: input.stage, ...counts }))
          .finally(() => inflight.delete(batch)),
      );
    }
    if (inflight.size > 0) {
      await Promise.race(inflight.values());
    } else if (wantsNewRun) {
      await continueAsNew<typeof stageShard>({ ...input, paused, nextBatch: next });
    } else if (paused) {
      await condition(() => !paused);
    }
  }
}
