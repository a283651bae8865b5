// Trainer jobs on the GPU queue: the activity writes the job's data from Postgres, runs
// `python -m tenet_trainer <command>` on the GPUs of its slots (gpu-slots.ts) under supervision
// (trainer-process.ts: heartbeats, cancellation, resume from the last heartbeat's checkpoint on a
// retry, stderr in failures), then registers the model: only after the trainer published its
// artifact, in one insert keyed by `model_key` together with its metrics, so a failed job never
// leaves a half-registered model and a retried one never two.
import { existsSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { eq, sql } from 'drizzle-orm';
import { z } from 'zod';
import { stableHash } from '../core/rater/principles.js';
import { runConfigSchema } from '../core/run-config.js';
import { iterationNames, trainerJobMetrics, type TrainerJob } from '../core/trainer-jobs.js';
import { offeredTools, type ToolDefinition } from '../core/tools/environment.js';
import type { Database } from '../db/pool.js';
import { recordMetrics } from '../db/runs.js';
import { models, runs } from '../db/schema.js';
import { GpuSlots, gpuRequestError } from './gpu-slots.js';
import { TrainerForkServer } from './trainer-forkserver.js';
import { stopLeftover, superviseTrainer, type TrainerProgress } from './trainer-process.js';
import { taskOf } from './verifiers/dispatch.js';

export type { ModelKind, TrainerCommand, TrainerJob, TrainerOptions } from '../core/trainer-jobs.js';
export type { TrainerHeartbeat } from './trainer-process.js';
export { GpuSlots, gpuRequestError } from './gpu-slots.js';

export interface TrainedModel {
  modelId: number;
  modelKey: string;
  artifactPath: string;
  /**
   * The trainer's final metrics: only in the histories of runs from before trainer jobs wrote them
   * themselves (the `models` row and the run's `metrics` carry them, written with the model).
   */
  metrics?: Record<string, unknown>;
}

const heartbeatSchema = z.object({ step: z.number(), totalSteps: z.number().nullable(), checkpoint: z.string().nullable(), loss: z.number().nullable() });

export interface TrainerDeps {
  db: Database;
  python: string;
  /** Folder of job data, checkpoints and artifacts (TENET_ARTIFACTS). */
  artifactsRoot: string;
  /** GPU ids (as CUDA_VISIBLE_DEVICES names them) this worker hands out, one job each; empty on a CPU-only worker. */
  gpus: string[];
  /** Seconds between SIGTERM and SIGKILL when a job is cancelled. */
  stopGraceS?: number;
  /**
   * Fork the jobs of a CPU-only worker (`gpus` empty) from a pre-imported interpreter
   * (`tenet_trainer.forkserver`, started at the first job) instead of starting `python` afresh each
   * time: 4–8 CPU-seconds of imports saved per job. Needs `python` to be the trainer's own Python.
   */
  preimport?: boolean;
}

export function createTrainerActivities(options: TrainerDeps) {
  const deps = { ...options, forkServer: options.preimport && options.gpus.length === 0 ? TrainerForkServer.for(options.python) : undefined };
  const slots = new GpuSlots(deps.gpus);
  /** The job's GPUs, heartbeating (the last details, so a retry still resumes) while it waits: waiting is not a dead worker, and cancellation arrives with heartbeats. */
  const acquireGpus = async (count: number): Promise<string[]> => {
    const activity = Context.current();
    const details: unknown = activity.info.heartbeatDetails;
    const every = Math.max(200, Math.min(5_000, (activity.info.heartbeatTimeoutMs ?? 30_000) / 3));
    const pulse = setInterval(() => activity.heartbeat(details), every);
    try {
      return await slots.acquire(count, activity.cancellationSignal);
    } finally {
      clearInterval(pulse);
    }
  };
  return {
    async runTrainerJob(job: TrainerJob): Promise<TrainedModel> {
      const gpuCount = job.gpus ?? 1;
      const refused = gpuRequestError(gpuCount, deps.gpus.length);
      if (refused) throw ApplicationFailure.nonRetryable(refused, 'TrainerUserError');
      const registered = await findModel(deps.db, job.modelKey);
      if (registered) return registered;

      const jobDir = path.join(deps.artifactsRoot, ...iterationNames(job.runId, job.iteration).artifactSegments(job.kind));
      await mkdir(jobDir, { recursive: true });
      const dataFile = path.join(jobDir, 'data.jsonl');
      const rows = await writeTrainingData(deps.db, job, dataFile);
      let parent: { id: number; artifactPath: string } | undefined;
      if (job.parentModelId !== undefined) {
        const [row] = await deps.db.select({ id: models.id, artifactPath: models.artifactPath }).from(models).where(eq(models.id, job.parentModelId));
        if (!row) throw ApplicationFailure.nonRetryable(`parent model ${job.parentModelId} is not registered`, 'ModelMissing');
        parent = row;
      }
      const output = path.join(jobDir, 'out');
      const config = { ...job.options, model: job.baseModel, data: dataFile, output, ...(parent ? { adapter: parent.artifactPath } : {}) };
      const configFile = path.join(jobDir, 'config.json');
      await writeFile(configFile, JSON.stringify(config, null, 2));

      const activity = Context.current();
      const previous = heartbeatSchema.safeParse(activity.info.heartbeatDetails);
      const args = ['-m', 'tenet_trainer', job.command, '--config', configFile];
      if (previous.success && previous.data.checkpoint && existsSync(previous.data.checkpoint)) args.push('--resume-from', previous.data.checkpoint);
      if (gpuCount > 1) args.push('--nproc', String(gpuCount));

      await stopLeftover(jobDir);
      const gpus = await acquireGpus(gpuCount);
      let done: TrainerProgress;
      try {
        done = await superviseTrainer(deps, args, jobDir, gpus, previous.success ? previous.data : undefined);
      } finally {
        slots.release(gpus);
      }
      if (!done.output) throw ApplicationFailure.nonRetryable(`trainer ${job.command} finished without naming its output`, 'TrainerProtocol');
      return registerModel(deps.db, job, { artifactPath: done.output, metrics: done.metrics ?? {}, hyperparameters: config, rows, parent });
    },

    /**
     * KL(policy ‖ base) on the prompts the policy was evaluated on (`trainer kl`): the trainer samples
     * `loop.evaluate.kl_samples` completions per prompt from the policy at temperature 1 and measures
     * on those, since both estimators assume samples from the policy (the evaluation's own are greedy
     * by default). Seeded by run and iteration, so a retry reports the same numbers.
     */
    async measurePolicy(input: { runId: number; iteration: number; modelId: number; policyName: string }): Promise<Record<string, number>> {
      const [model] = await deps.db.select({ path: models.artifactPath, lineage: models.lineage }).from(models).where(eq(models.id, input.modelId));
      if (!model) throw ApplicationFailure.nonRetryable(`model ${input.modelId} is not registered`, 'ModelMissing');
      const baseModel = (model.lineage as { baseModel?: string }).baseModel;
      if (!baseModel) throw ApplicationFailure.nonRetryable(`model ${input.modelId} has no base model in its lineage`, 'ModelMissing');
      const [run] = await deps.db.select({ config: runs.config }).from(runs).where(eq(runs.id, input.runId));
      if (!run) throw ApplicationFailure.nonRetryable(`run ${input.runId} does not exist`, 'RunMissing');
      const settings = runConfigSchema.parse(run.config).loop.evaluate;
      const result = await deps.db.execute<{ prompt: unknown }>(sql`
        select distinct on (c.prompt_id) p.messages as prompt from completions c join prompts p on p.id = c.prompt_id
        where c.run_id = ${input.runId} and c.stage = 'eval' and c.iteration = ${input.iteration} and c.policy_version = ${input.policyName}
        order by c.prompt_id`);
      if (result.rows.length === 0) return {};
      const jobDir = path.join(deps.artifactsRoot, ...iterationNames(input.runId, input.iteration).artifactSegments('kl'));
      await mkdir(jobDir, { recursive: true });
      const dataFile = path.join(jobDir, 'data.jsonl');
      await writeFile(dataFile, result.rows.map((row) => JSON.stringify(row)).join('\n') + '\n');
      await stopLeftover(jobDir);
      const gpus = await acquireGpus(1);
      try {
        const sampling = ['--samples', settings.kl_samples, '--max-new-tokens', settings.max_tokens, '--max-length', settings.max_tokens + 1024, '--seed', stableHash(`${input.runId}:kl:${input.iteration}`) % 1_000_000];
        const done = await superviseTrainer(deps, ['-m', 'tenet_trainer', 'kl', '--model', baseModel, '--adapter', model.path, '--data', dataFile, ...sampling.map(String)], jobDir, gpus, undefined);
        const values = Object.fromEntries(Object.entries(done.metrics ?? {}).filter((entry): entry is [string, number] => typeof entry[1] === 'number'));
        // The KL estimates as the iteration's eval.kl_* metrics (the evaluation's own mean length stays eval.mean_length).
        await recordMetrics(deps.db, input.runId, input.iteration, Object.fromEntries(Object.entries(values).flatMap(([name, value]) => (name.startsWith('kl_') ? [[`eval.${name}`, value]] : []))));
        return values;
      } finally {
        slots.release(gpus);
      }
    },
  };
}

async function findModel(db: Database, modelKey: string): Promise<TrainedModel | undefined> {
  const [row] = await db.select({ id: models.id, key: models.modelKey, artifactPath: models.artifactPath }).from(models).where(eq(models.modelKey, modelKey));
  return row ? { modelId: row.id, modelKey: row.key, artifactPath: row.artifactPath } : undefined;
}

/** The job's training file, written whole (tmp + rename) from the run's rows. Returns its row count. */
async function writeTrainingData(db: Database, job: TrainerJob, file: string): Promise<Record<string, number>> {
  let lines: string[];
  let counts: Record<string, number>;
  if (job.data.source === 'preferences') {
    const iterations = job.data.iterations;
    const result = await db.execute<{ prompt: unknown; chosen: string; rejected: string; soft_label: number; source: string }>(sql`
      select p.messages as prompt, c.text as chosen, r.text as rejected, e.soft_label, e.source
      from effective_preferences e
      join prompts p on p.id = e.prompt_id
      join completions c on c.id = e.chosen_id
      join completions r on r.id = e.rejected_id
      where e.run_id = ${job.runId} and p.split = 'train'
        ${iterations ? sql`and e.iteration = any(${`{${iterations.join(',')}}`}::int[])` : sql``}
      order by e.prompt_id, e.chosen_id, e.rejected_id`);
    lines = result.rows.map((row) => JSON.stringify({ prompt: row.prompt, chosen: row.chosen, rejected: row.rejected, soft_label: row.soft_label }));
    counts = { rows: result.rows.length, ai: result.rows.filter((r) => r.source === 'ai').length, human: result.rows.filter((r) => r.source === 'human').length };
  } else if (job.data.source === 'rollouts') {
    // In the prompts' and samples' order, never by row id (a retried batch inserts its rows later) or
    // group_key as text ('10' < '9'), so two runs with the same rollouts train on the same sequence.
    const result = await db.execute<{ prompt: unknown; completion: string; total: number; components: Record<string, number>; group_key: string; sampled_logprobs: number[] | null; sampled_token_ids: number[] | null; trace: unknown[] | null; metadata: unknown }>(sql`
      select p.messages as prompt, c.text as completion, w.total, w.components, w.group_key, c.sampled_logprobs, c.sampled_token_ids, c.trace, p.metadata
      from rollout_rewards w
      join completions c on c.id = w.completion_id
      join prompts p on p.id = c.prompt_id
      where w.run_id = ${job.runId} and w.iteration = ${job.data.iteration} and c.stage = 'rollout'
      order by c.prompt_id, c.sample_index`);
    // The server's log-probs of the sampled tokens (and their ids), when the endpoint returned them: `trainer rl --tis-cap` corrects with them.
    lines = result.rows.map((row) =>
      JSON.stringify({
        prompt: row.prompt,
        completion: row.completion,
        reward: row.total,
        rewards: row.components,
        group: row.group_key,
        ...(row.sampled_logprobs ? { sampled_logprobs: row.sampled_logprobs } : {}),
        ...(row.sampled_token_ids ? { sampled_token_ids: row.sampled_token_ids } : {}),
        // A tool-using rollout: its turns after the prompt and the tools offered, which the trainer renders through the chat template.
        ...(row.trace ? { messages: row.trace, tools: toolsOffered(row.metadata) ?? [] } : {}),
      }),
    );
    counts = { rows: result.rows.length };
  } else {
    const result = await db.execute<{ prompt: unknown; revision: string }>(sql`
      select distinct on (k.source_completion_id) p.messages as prompt, c.text as revision
      from critiques k
      join completions c on c.id = k.revision_id
      join prompts p on p.id = c.prompt_id
      where k.run_id = ${job.runId} and p.split = 'train'
      order by k.source_completion_id, k.round desc`);
    lines = result.rows.map((row) => JSON.stringify({ prompt: row.prompt, completion: row.revision }));
    counts = { rows: result.rows.length };
  }
  if (lines.length === 0) {
    throw ApplicationFailure.nonRetryable(`run ${job.runId} iteration ${job.iteration}: no ${job.data.source} to train the ${job.kind} model on`, 'NoTrainingData');
  }
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, lines.join('\n') + '\n');
  await rename(tmp, file);
  return counts;
}

async function registerModel(
  db: Database,
  job: TrainerJob,
  result: { artifactPath: string; metrics: Record<string, unknown>; hyperparameters: Record<string, unknown>; rows: Record<string, number>; parent?: { id: number } },
): Promise<TrainedModel> {
  const [run] = await db.select({ hash: sql<string | null>`(select content_hash from constitutions where id = ${runs.constitutionId})` }).from(runs).where(eq(runs.id, job.runId));
  const lineage = {
    baseModel: job.baseModel,
    parentModelId: result.parent?.id ?? null,
    command: job.command,
    data: { source: job.data.source, runIds: [job.runId], ...('iterations' in job.data && job.data.iterations ? { iterations: job.data.iterations } : {}), ...('iteration' in job.data ? { iteration: job.data.iteration } : {}), counts: result.rows },
  };
  // The model row and its metrics as the run's `kind.*` metrics, in one transaction: both or neither,
  // and a retried job that finds its model registered writes nothing (its metrics came with it).
  const inserted = await db.transaction(async (tx) => {
    const [row] = await tx
      .insert(models)
      .values({
        modelKey: job.modelKey,
        kind: job.kind,
        parentId: result.parent?.id ?? null,
        runId: job.runId,
        iteration: job.iteration,
        artifactPath: result.artifactPath,
        constitutionHash: run?.hash ?? null,
        lineage,
        hyperparameters: result.hyperparameters,
        metrics: result.metrics,
      })
      .onConflictDoNothing({ target: models.modelKey })
      .returning({ id: models.id });
    if (row) await recordMetrics(tx, job.runId, job.iteration, trainerJobMetrics(job.kind, result.metrics));
    return row;
  });
  if (inserted) return { modelId: inserted.id, modelKey: job.modelKey, artifactPath: result.artifactPath };
  return (await findModel(db, job.modelKey))!;
}

/** The tools a rollout's tool-call task offered the model (none for other prompts). */
function toolsOffered(metadata: unknown): ToolDefinition[] | undefined {
  const task = taskOf(metadata);
  return task?.verifier === 'tool-call' ? offeredTools(task) : undefined;
}
