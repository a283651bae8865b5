// One shard of a stage: its prompts in batches, a bounded number of batches in flight, each finished
// batch reported to the parent pipeline. With a chain of stages (sample → critique → label → score),
// each batch goes through every stage of the chain in turn, so a batch is labelled as soon as it is
// sampled and no stage waits for the whole shard. Pauses with the parent.
import { condition, continueAsNew, getExternalWorkflowHandle, patched, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { CpuActivities } from '../activities/index.js';
import { stageBatchOptions } from './presets.js';
import { batchDoneSignal, pauseSignal, resumeSignal, type BatchReport, type ShardInput, type StageName } from './types.js';

export async function stageShard(input: ShardInput): Promise<void> {
  let paused = input.paused;
  setHandler(pauseSignal, () => void (paused = true));
  setHandler(resumeSignal, () => void (paused = false));
  const parent = getExternalWorkflowHandle(input.parentWorkflowId);
  if (input.chain) {
    // Progress goes to the parent as signals (each one history events and a workflow task on both
    // sides), so steps are reported together: once as many have finished as batches may be in flight,
    // before the shard waits out a pause, and at its end. All are delivered before the shard ends.
    // Shards begun before that report every step.
    const together = patched(reportsTogetherPatch) ? input.maxBatchesInFlight : 1;
    const reports: Promise<void>[] = [];
    const unsent = new Map<StageName, BatchReport>();
    let steps = 0;
    const send = () => {
      for (const report of unsent.values()) {
        const sent = parent.signal(batchDoneSignal, report);
        void sent.catch(() => undefined); // rejections surface where the reports are awaited
        reports.push(sent);
      }
      unsent.clear();
      steps = 0;
    };
    const continueFrom = await runChainedBatches(
      { ...input, chain: input.chain },
      {
        paused: () => paused,
        report: (report) => {
          const sum = unsent.get(report.stage);
          unsent.set(report.stage, sum ? { stage: report.stage, done: sum.done + report.done, failed: sum.failed + report.failed } : report);
          if (++steps >= together) send();
        },
        idle: send,
      },
    );
    send();
    await Promise.all(reports);
    if (continueFrom !== undefined) await continueAsNew<typeof stageShard>({ ...input, paused, nextBatch: continueFrom });
    return;
  }

  // Shards started before chains existed: one stage, reported batch by batch.
  const stageBatches = batchActivities(input);
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

/** What running a shard's batches needs from the workflow that runs them (the shard, or the pipeline itself). */
export interface BatchControl {
  paused(): boolean;
  report(report: BatchReport): void;
  /** Called when nothing is in flight and the batches wait for a resume. */
  idle?(): void;
}

/** Marks shards that send the progress of several steps together (see `stageShard`). */
const reportsTogetherPatch = 'reports-together';

/**
 * Runs the batches of a shard from `input.nextBatch` on, each through every stage of the chain, a
 * bounded number in flight. Resolves with the batch to continue from when Temporal suggests
 * continuing as new (nothing is in flight then), or undefined once every batch is through.
 */
export async function runChainedBatches(input: ShardInput & { chain: StageName[] }, control: BatchControl): Promise<number | undefined> {
  const stageBatches = batchActivities(input);
  const batches = Math.ceil(input.limit / input.batchSize);
  let next = input.nextBatch ?? 0;
  const inflight = new Map<number, Promise<void>>();
  const runChain = async (offset: number, limit: number) => {
    for (const stage of input.chain) {
      // A pause lets the step in flight finish and starts no new one; that includes a batch's next stage.
      if (control.paused()) await condition(() => !control.paused());
      const counts = await stageBatches.runStageBatch({ runId: input.runId, stage, iteration: input.iteration, offset, limit, policyModel: input.policyModel, rewardModelId: input.rewardModelId });
      control.report({ stage, ...counts });
    }
  };
  while (next < batches || inflight.size > 0) {
    const wantsNewRun = workflowInfo().continueAsNewSuggested;
    while (!control.paused() && !wantsNewRun && inflight.size < input.maxBatchesInFlight && next < batches) {
      const batch = next++;
      const offset = input.offset + batch * input.batchSize;
      inflight.set(
        batch,
        runChain(offset, Math.min(input.batchSize, input.offset + input.limit - offset)).finally(() => inflight.delete(batch)),
      );
    }
    if (inflight.size > 0) await Promise.race(inflight.values());
    else if (wantsNewRun) return next;
    else if (control.paused()) {
      control.idle?.();
      await condition(() => !control.paused());
    }
  }
  return undefined;
}

function batchActivities(input: ShardInput) {
  return proxyActivities<CpuActivities>(input.heartbeatTimeoutS ? { ...stageBatchOptions, heartbeatTimeout: input.heartbeatTimeoutS * 1000 } : stageBatchOptions);
}
