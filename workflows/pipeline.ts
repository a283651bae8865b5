// The pipeline: stages in order (sample → critique/revise → label), each fanned out into child
// workflows per shard of prompts with a bounded number in flight. Row ids and counts travel in
// payloads, never text. Progress is a query; pause/resume are signals; the workflow continues as
// new when Temporal suggests it, so a run of any size keeps a short history.
import {
  CancellationScope,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  isCancellation,
  ParentClosePolicy,
  setHandler,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import { rootCauseMessage } from '../core/failure.js';
import { db, stageBatches } from './presets.js';
import { stageShard } from './shard.js';
import { batchDoneSignal, pauseSignal, progressQuery, resumeSignal, type PipelineInput, type PipelineResult, type PipelineState, type StageName } from './types.js';

export async function pipeline(input: PipelineInput): Promise<PipelineResult> {
  const { runId, stages, scale } = input;
  const state: PipelineState = input.resume ?? {
    promptCount: -1,
    stageIndex: 0,
    nextShard: 0,
    paused: false,
    progress: stages.map((stage) => ({ stage, done: 0, total: 0, failed: 0 })),
  };
  const inflight = new Map<string, Promise<void>>();
  const tellChildren = async (signal: typeof pauseSignal | typeof resumeSignal) => {
    await Promise.all([...inflight.keys()].map((id) => getExternalWorkflowHandle(id).signal(signal).catch(() => undefined)));
  };
  setHandler(progressQuery, () => state.progress);
  setHandler(pauseSignal, async () => {
    if (state.paused) return;
    state.paused = true;
    await tellChildren(pauseSignal);
    await db.setRunStatus({ runId, status: 'paused' });
  });
  setHandler(resumeSignal, async () => {
    if (!state.paused) return;
    state.paused = false;
    await tellChildren(resumeSignal);
    await db.setRunStatus({ runId, status: 'running' });
  });
  setHandler(batchDoneSignal, (report) => {
    const progress = state.progress.find((p) => p.stage === report.stage);
    if (!progress) return;
    progress.done += report.done;
    progress.failed += report.failed;
  });

  try {
    if (!input.resume) {
      await db.setRunStatus({ runId, status: 'running' });
      state.promptCount = await stageBatches.countPrompts({ runId });
      for (const progress of state.progress) progress.total = state.promptCount * (input.unitsPerPrompt[progress.stage as StageName] ?? 1);
    }
    const { workflowId } = workflowInfo();
    for (; state.stageIndex < stages.length; state.stageIndex++, state.nextShard = 0) {
      const stage = stages[state.stageIndex]!;
      const shards = Math.ceil(state.promptCount / scale.shardSize);
      while (state.nextShard < shards || inflight.size > 0) {
        const wantsNewRun = workflowInfo().continueAsNewSuggested;
        while (!state.paused && !wantsNewRun && inflight.size < scale.maxShardsInFlight && state.nextShard < shards) {
          const shard = state.nextShard++;
          const childId = `${workflowId}/${stage}-${input.iteration}/${shard}`;
          const offset = shard * scale.shardSize;
          const started = startChild(stageShard, {
            workflowId: childId,
            parentClosePolicy: ParentClosePolicy.TERMINATE,
            args: [
              {
                runId,
                stage,
                iteration: input.iteration,
                offset,
                limit: Math.min(scale.shardSize, state.promptCount - offset),
                batchSize: scale.batchSize,
                maxBatchesInFlight: scale.maxBatchesInFlight,
                heartbeatTimeoutS: scale.heartbeatTimeoutS,
                parentWorkflowId: workflowId,
                paused: state.paused,
              },
            ],
          });
          inflight.set(
            childId,
            started.then((child) => child.result()).finally(() => inflight.delete(childId)),
          );
        }
        if (inflight.size > 0) {
          await Promise.race(inflight.values());
        } else if (wantsNewRun) {
          // Nothing in flight: hand the state to a fresh run of this workflow.
          await continueAsNew<typeof pipeline>({ ...input, resume: state });
        } else if (state.paused) {
          await condition(() => !state.paused);
        }
      }
      const progress = state.progress.find((p) => p.stage === stage)!;
      await db.recordMetrics({ runId, iteration: input.iteration, values: { [`${stage}.done`]: progress.done, [`${stage}.failed`]: progress.failed } });
    }
    await db.setRunStatus({ runId, status: 'completed' });
    return { runId, progress: state.progress };
  } catch (error) {
    const status = isCancellation(error) ? 'cancelled' : 'failed';
    await CancellationScope.nonCancellable(() => db.setRunStatus({ runId, status, error: rootCauseMessage(error) }));
    throw error;
  }
}
