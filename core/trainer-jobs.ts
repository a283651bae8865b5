// The training loop's trainer jobs, planned from the run config alone (pure: the workflow, the CPU
// activity that plans and the GPU activity that runs them share it), and the one place that names
// what an iteration makes: model keys, child workflow ids, the served adapter name and the folders
// of its artifacts. Imported by workflow code: no I/O and no Node built-ins here.
import type { RunConfig } from './run-config.js';

export type TrainerCommand = 'reward-model' | 'sft' | 'dpo' | 'rl';
export type ModelKind = 'reward' | 'policy' | 'sft';
export type TrainerOptions = Record<string, string | number | boolean>;

export interface TrainerJob {
  runId: number;
  iteration: number;
  command: TrainerCommand;
  kind: ModelKind;
  /** Attempt-independent identity of the model this job makes, e.g. `run-7/it-1/policy`. */
  modelKey: string;
  /** The HF weights under everything: a local folder or a hub id. */
  baseModel: string;
  /** Continue from this model's adapter (the previous iteration's policy). */
  parentModelId?: number;
  /** Trainer flags (snake_case names of its config dataclass). */
  options: TrainerOptions;
  /** Which rows of the run become the training file. */
  data: { source: 'preferences'; iterations?: number[] } | { source: 'rollouts'; iteration: number } | { source: 'revisions' };
  /** GPUs (one trainer process each, FSDP2 over them: `trainer --nproc N`); 1 when absent. */
  gpus?: number;
}

export interface PlanInput {
  runId: number;
  iteration: number;
  step: 'reward' | 'policy';
  /** The current policy's model id (none in the first iteration: the base model). */
  policyModelId?: number;
}

/** Every name an iteration of a run gives what it makes. Changing one breaks replay and resumes: these strings are in workflow histories and in the database. */
export function iterationNames(runId: number, iteration: number) {
  return {
    /** The `models.model_key` of the iteration's reward model or policy. */
    modelKey: (kind: ModelKind) => `run-${runId}/it-${iteration}/${kind}`,
    /** The trainer-job child workflow of `parent` (the run's workflow id) for `kind`. */
    childWorkflowId: (parent: string, kind: ModelKind) => `${parent}/it-${iteration}/${kind}`,
    /** The name the policy endpoint serves the policy under after this iteration's update. */
    adapterAfterUpdate: adapterName(runId, iteration + 1),
    /** The folder of a job's files under the artifacts root, as path segments (`reward`, `policy`, `kl`). */
    artifactSegments: (job: ModelKind | 'kl') => [`run-${runId}`, `it-${iteration}`, job],
  };
}

/** The served name of a run's policy after `updates` policy updates. */
export function adapterName(runId: number, updates: number): string {
  return `run${runId}-it${updates}`;
}

/** Thrown for a run whose config has no training loop. */
export class NoLoopError extends Error {
  override name = 'NoLoopError';
}

/** The trainer job of an iteration's step, from the run's config. */
export function planTrainerJob(config: RunConfig, input: PlanInput): TrainerJob {
  const loop = config.loop;
  if (loop.mode === 'none' || !loop.base_model) throw new NoLoopError(`run ${input.runId} has no training loop (loop.mode is none)`);
  const names = iterationNames(input.runId, input.iteration);
  if (input.step === 'reward') {
    return {
      runId: input.runId,
      iteration: input.iteration,
      command: 'reward-model',
      kind: 'reward',
      modelKey: names.modelKey('reward'),
      baseModel: loop.reward_model.base ?? loop.base_model,
      options: loop.reward_model.options,
      ...(loop.reward_model.gpus !== undefined ? { gpus: loop.reward_model.gpus } : {}),
      // Every preference gathered so far: later iterations add to the reward model's data.
      data: { source: 'preferences', iterations: Array.from({ length: input.iteration + 1 }, (_, i) => i) },
    };
  }
  return {
    runId: input.runId,
    iteration: input.iteration,
    command: loop.mode === 'dpo' ? 'dpo' : 'rl',
    kind: 'policy',
    modelKey: names.modelKey('policy'),
    baseModel: loop.base_model,
    ...(input.policyModelId !== undefined ? { parentModelId: input.policyModelId } : {}),
    options: loop.policy.options,
    ...(loop.policy.gpus !== undefined ? { gpus: loop.policy.gpus } : {}),
    data: loop.mode === 'dpo' ? { source: 'preferences', iterations: [input.iteration] } : { source: 'rollouts', iteration: input.iteration },
  };
}

/** A trainer job's metrics as run metrics, `kind.name` (`reward.*`, `policy.*`): numbers, and booleans as 1 or 0; nested objects are left out. */
export function trainerJobMetrics(kind: ModelKind, metrics: Record<string, unknown>): Record<string, number> {
  const values: Record<string, number> = {};
  for (const [name, value] of Object.entries(metrics)) {
    if (typeof value === 'number' && Number.isFinite(value)) values[`${kind}.${name}`] = value;
    if (typeof value === 'boolean') values[`${kind}.${name}`] = value ? 1 : 0;
  }
  return values;
}
