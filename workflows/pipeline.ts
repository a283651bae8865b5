// The pipeline: stages in order (sample → critique/revise → label), fanned out into child workflows
// per shard of prompts with a bounded number in flight. Stages that need only their own prompts'
// samples run as one chain, batch by batch, without a barrier between them; a chain over a single
// shard runs in this workflow itself. Row ids and counts travel in payloads, never text. Progress is
// a query; pause/resume are signals; the workflow continues as new when Temporal suggests it, so a
// run of any size keeps a short history.
//
// With a training loop, each iteration then trains a reward model (a trainerJob child on the GPU
// queue), updates the policy (DPO from the iteration's preferences, or online RL from rollouts
// scored in Node), puts the new adapter into service and evaluates it; the next iteration starts
// as a new run of this workflow (continue-as-new) sampling from the new policy.
import {
  CancellationScope,
  condition,
  continueAsNew,
  executeChild,
  getExternalWorkflowHandle,
  isCancellation,
  ParentClosePolicy,
  patched,
  proxyActivities,
  setHandler,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import { rootCauseMessage } from '../core/failure.js';
import { iterationNames, trainerJobMetrics } from '../core/trainer-jobs.js';
import type { CpuActivities } from '../activities/index.js';
import { db, localDb, loopStepOptions, loopSteps, measure, stageBatches } from './presets.js';
import { runChainedBatches, stageShard } from './shard.js';
import { trainerJob } from './train.js';
import {
  batchDoneSignal,
  type BatchReport,
  pauseSignal,
  progressQuery,
  resumeSignal,
  type PipelineInput,
  type PipelineResult,
  type PipelineState,
  type PolicyRef,
  type ShardInput,
  type StageName,
} from './types.js';

export async function pipeline(input: PipelineInput): Promise<PipelineResult> {
  const { runId, stages, scale } = input;
  const state: PipelineState = input.resume ?? {
    promptCount: -1,
    stageIndex: 0,
    nextShard: 0,
    paused: false,
    progress: [...stages, ...loopStages(input)].map((stage) => ({ stage, done: 0, total: 0, failed: 0 })),
  };
  const inflight = new Map<string, Promise<void>>();
  const tellChildren = async (signal: typeof pauseSignal | typeof resumeSignal) => {
    await Promise.all([...inflight.keys()].map((id) => getExternalWorkflowHandle(id).signal(signal).catch(() => undefined)));
  };
  // The run's own bookkeeping (status, prompt count, stage metrics) runs as local activities; runs
  // begun before that use task-queue activities to the end.
  const bookkeeping = patched(localBookkeepingPatch) ? localDb : undefined;
  // Status writes go out one after another, in the order they were made: a resume's `running` can
  // never land after the `completed` that follows it.
  let statusWrites: Promise<unknown> = Promise.resolve();
  const setStatus: StatusWriter = (status, error) => {
    const write = statusWrites.then(() => (bookkeeping ?? db).setRunStatus({ runId, status, ...(error ? { error } : {}) }));
    statusWrites = write.catch(() => undefined);
    return write;
  };
  setHandler(progressQuery, () => state.progress);
  setHandler(pauseSignal, async () => {
    if (state.paused) return;
    state.paused = true;
    await tellChildren(pauseSignal);
    await setStatus('paused');
  });
  setHandler(resumeSignal, async () => {
    if (!state.paused) return;
    state.paused = false;
    await tellChildren(resumeSignal);
    await setStatus('running');
  });
  const applyReport = (report: BatchReport) => {
    const progress = state.progress.find((p) => p.stage === report.stage);
    if (!progress) return;
    progress.done += report.done;
    progress.failed += report.failed;
  };
  setHandler(batchDoneSignal, applyReport);

  try {
    if (!input.resume) {
      if (bookkeeping) {
        [, state.promptCount] = await Promise.all([setStatus('running'), bookkeeping.countPrompts({ runId })]);
      } else {
        await setStatus('running');
        state.promptCount = await stageBatches.countPrompts({ runId });
      }
      for (const progress of state.progress) {
        progress.total = loopStages(input).includes(progress.stage) ? 1 : state.promptCount * (input.unitsPerPrompt[progress.stage as StageName] ?? 1);
      }
    }
    const { workflowId } = workflowInfo();
    while (state.stageIndex < stages.length) {
      const stage = stages[state.stageIndex]!;
      if (stage === 'rollout' && state.rewardModelId === undefined) state.rewardModelId = await trainRewardModel(input, state);
      // Stages that need only the samples of their own prompts run as one chain: each batch goes
      // through all of them in turn, so labelling starts with the first sampled batch instead of
      // after the last. A run begun before chains existed finishes the stage it is in on its own.
      if (!state.chain && state.nextShard === 0 && patched(chainedStagesPatch)) state.chain = chainAt(stages, state.stageIndex);
      const pass = state.chain ?? [stage];
      const shards = Math.ceil(state.promptCount / scale.shardSize);
      const shardInput = (shard: number): ShardInput => {
        const offset = shard * scale.shardSize;
        return {
          runId,
          stage,
          ...(state.chain ? { chain: state.chain } : {}),
          iteration: input.iteration,
          offset,
          limit: Math.min(scale.shardSize, state.promptCount - offset),
          batchSize: scale.batchSize,
          maxBatchesInFlight: scale.maxBatchesInFlight,
          heartbeatTimeoutS: scale.heartbeatTimeoutS,
          parentWorkflowId: workflowId,
          paused: state.paused,
          ...(input.policy ? { policyModel: input.policy.name } : {}),
          ...(pass.includes('rollout') ? { rewardModelId: state.rewardModelId } : {}),
        };
      };
      // A chain over a single shard runs its batches right here rather than in a child workflow:
      // nothing to start, and no progress signal per batch. Runs begun before always use a child.
      if (state.chain && shards === 1 && state.nextShard === 0 && patched(inlineShardPatch)) {
        const continueFrom = await runChainedBatches(
          { ...shardInput(0), chain: state.chain, ...(state.nextBatch !== undefined ? { nextBatch: state.nextBatch } : {}) },
          { paused: () => state.paused, report: applyReport },
        );
        if (continueFrom !== undefined) {
          // Nothing in flight: hand the state to a fresh run of this workflow.
          state.nextBatch = continueFrom;
          await continueAsNew<typeof pipeline>({ ...input, resume: state });
        }
      } else {
        while (state.nextShard < shards || inflight.size > 0) {
          const wantsNewRun = workflowInfo().continueAsNewSuggested;
          while (!state.paused && !wantsNewRun && inflight.size < scale.maxShardsInFlight && state.nextShard < shards) {
            const shard = state.nextShard++;
            const childId = `${workflowId}/${pass.join('+')}-${input.iteration}/${shard}`;
            const started = startChild(stageShard, { workflowId: childId, parentClosePolicy: ParentClosePolicy.TERMINATE, args: [shardInput(shard)] });
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
      }
      const values: Record<string, number> = {};
      for (const done of pass) {
        const progress = state.progress.find((p) => p.stage === done)!;
        values[`${done}.done`] = progress.done;
        values[`${done}.failed`] = progress.failed;
      }
      await (bookkeeping ?? db).recordMetrics({ runId, iteration: input.iteration, values });
      state.stageIndex += pass.length;
      state.nextShard = 0;
      state.nextBatch = undefined;
      state.chain = undefined;
    }
    if (input.loop) {
      const policy = await trainAndEvaluate(input, state);
      await watchMonitors(input, state, setStatus);
      if (input.iteration + 1 < input.loop.iterations) {
        return await continueAsNew<typeof pipeline>({ ...input, iteration: input.iteration + 1, policy, resume: undefined });
      }
      await setStatus('completed');
      return { runId, progress: state.progress, policy, iterations: input.iteration + 1 };
    }
    await setStatus('completed');
    return { runId, progress: state.progress };
  } catch (error) {
    const status = isCancellation(error) ? 'cancelled' : 'failed';
    await CancellationScope.nonCancellable(async () => {
      await statusWrites;
      await (bookkeeping ?? db).setRunStatus({ runId, status, error: rootCauseMessage(error) });
    });
    throw error;
  }
}

type StatusWriter = (status: 'running' | 'paused' | 'completed', error?: string) => Promise<unknown>;

/** Marks runs whose prompt-local stages run as chains (see `chainAt`); runs begun before go stage by stage. */
const chainedStagesPatch = 'chained-stages';
/** Marks runs whose status, prompt count and stage metrics are written by local activities. */
const localBookkeepingPatch = 'local-bookkeeping';
/** Marks runs that run a chain over a single shard in the pipeline workflow itself (see `runChainedBatches`). */
const inlineShardPatch = 'inline-single-shard';
/** Marks runs whose trainer jobs write their own metrics, in the transaction that registers their model (activities/trainer.ts). */
const trainerJobWritesMetrics = 'trainer-job-writes-metrics';

/** Stages that read only the samples of their own prompts, so a batch can go on to them as soon as it is sampled. */
const chainable: readonly StageName[] = ['sample', 'critique', 'label', 'score'];

/** The stages from `index` on that run as one chain: the consecutive chainable ones, or the stage alone. */
function chainAt(stages: readonly StageName[], index: number): StageName[] {
  let end = index + 1;
  if (chainable.includes(stages[index]!)) while (end < stages.length && chainable.includes(stages[end]!)) end++;
  return stages.slice(index, end);
}

function loopStages(input: PipelineInput): string[] {
  return input.loop ? ['reward', 'policy', 'evaluate'] : [];
}

function markDone(state: PipelineState, stage: string): void {
  const progress = state.progress.find((p) => p.stage === stage);
  if (progress) progress.done = progress.total;
}

async function trainRewardModel(input: PipelineInput, state: PipelineState): Promise<number> {
  const job = await loopSteps.planTrainerJob({ runId: input.runId, iteration: input.iteration, step: 'reward' });
  const model = await executeChild(trainerJob, { workflowId: iterationNames(input.runId, input.iteration).childWorkflowId(workflowInfo().workflowId, 'reward'), args: [job] });
  markDone(state, 'reward');
  // Since trainer jobs write their metrics with their model row, only runs started before that
  // change record them here, from the child's result in their history.
  if (!patched(trainerJobWritesMetrics)) await db.recordMetrics({ runId: input.runId, iteration: input.iteration, values: trainerJobMetrics('reward', model.metrics ?? {}) });
  return model.modelId;
}

/** Reward model (if the rollouts did not need it yet) → policy update → adapter into service → evaluation. */
async function trainAndEvaluate(input: PipelineInput, state: PipelineState): Promise<PolicyRef> {
  const { runId, iteration } = input;
  state.rewardModelId ??= await trainRewardModel(input, state);
  if (!state.newPolicy) {
    const job = await loopSteps.planTrainerJob({ runId, iteration, step: 'policy', ...(input.policy ? { policyModelId: input.policy.modelId } : {}) });
    const names = iterationNames(runId, iteration);
    const model = await executeChild(trainerJob, { workflowId: names.childWorkflowId(workflowInfo().workflowId, 'policy'), args: [job] });
    if (!patched(trainerJobWritesMetrics)) await db.recordMetrics({ runId, iteration, values: trainerJobMetrics('policy', model.metrics ?? {}) });
    const name = names.adapterAfterUpdate;
    // The load heartbeats; a worker lost mid-load is noticed after the run's heartbeat timeout, not loopSteps' 5 minutes.
    const adapterLoad = input.scale.heartbeatTimeoutS ? proxyActivities<CpuActivities>({ ...loopStepOptions, heartbeatTimeout: input.scale.heartbeatTimeoutS * 1000 }) : loopSteps;
    await adapterLoad.activatePolicy({ runId, modelId: model.modelId, name });
    state.newPolicy = { modelId: model.modelId, name };
    markDone(state, 'policy');
  }
  await loopSteps.evaluatePolicy({
    runId,
    iteration,
    previousPolicy: input.policy?.name ?? (await loopSteps.basePolicyName({ runId })),
    newPolicy: state.newPolicy.name,
    rewardModelId: state.rewardModelId,
  });
  const kl = await measure.measurePolicy({ runId, iteration, modelId: state.newPolicy.modelId, policyName: state.newPolicy.name });
  // KL only: the evaluation's own mean length (served tokens) stays eval.mean_length. (Recorded by the job itself since trainerJobWritesMetrics.)
  if (!patched(trainerJobWritesMetrics)) await db.recordMetrics({ runId, iteration, values: Object.fromEntries(Object.entries(kl).flatMap(([name, value]) => (name.startsWith('kl_') ? [[`eval.${name}`, value]] : []))) });
  markDone(state, 'evaluate');
  return state.newPolicy;
}

/**
 * The monitors after an iteration: an alert pauses the run, with why, until `tenet runs resume`
 * (the pause/resume signals); then the loop goes on.
 */
async function watchMonitors(input: PipelineInput, state: PipelineState, setStatus: StatusWriter): Promise<void> {
  const check = await loopSteps.checkMonitors({ runId: input.runId, iteration: input.iteration });
  if (check.alerts.length === 0 || !check.reason) return;
  if (!state.paused) {
    state.paused = true;
    await setStatus('paused', check.reason);
  }
  await condition(() => !state.paused);
}
