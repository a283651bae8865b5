// One shard of a stage: its prompts in batches, a bounded number of batches in flight, each finished
// batch reported to the parent pipeline. With a chain of stages (sample → critique → label → score),
// each batch goes through every stage of the chain in turn, so a batch is labelled as soon as it is
// sampled and no stage waits for the whole shard. Pauses with the parent.
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
  const chain = input.chain;
  // Progress reports of chained batches: sent alongside the batch's next step, awaited before the shard ends.
  const reports: Promise<void>[] = [];

  const runChain = async (stages: NonNullable<ShardInput['chain']>, offset: number, limit: number) => {
    for (const stage of stages) {
      // A pause lets the step in flight finish and starts no new one; that includes a batch's next stage.
      if (paused) await condition(() => !paused);
      const counts = await stageBatches.runStageBatch({ runId: input.runId, stage, iteration: input.iteration, offset, limit, policyModel: input.policyModel, rewardModelId: input.rewardModelId });
      const report = parent.signal(batchDoneSignal, { stage, ...counts });
      void report.catch(() => undefined); // rejections surface where the reports are awaited
      reports.push(report);
    }
  };

  while (next < batches || inflight.size > 0) {
    const wantsNewRun = workflowInfo().continueAsNewSuggested;
    while (!paused && !wantsNewRun && inflight.size < input.maxBatchesInFlight && next < batches) {
      const batch = next++;
      const offset = input.offset + batch * input.batchSize;
      const limit = Math.min(input.batchSize, input.offset + input.limit - offset);
      inflight.set(
        batch,
        (chain
          ? runChain(chain, offset, limit)
          : stageBatches
              .runStageBatch({ runId: input.runId, stage: input.stage, iteration: input.iteration, offset, limit, policyModel: input.policyModel, rewardModelId: input.rewardModelId })
              .then((counts) => parent.signal(batchDoneSignal, { stage: input.stage, ...counts }))
        ).finally(() => inflight.delete(batch)),
      );
    }
    if (inflight.size > 0) {
      await Promise.race(inflight.values());
    } else if (wantsNewRun) {
      await Promise.all(reports);
      await continueAsNew<typeof stageShard>({ ...input, paused, nextBatch: next });
    } else if (paused) {
      await condition(() => !paused);
    }
  }
  await Promise.all(reports);
}
