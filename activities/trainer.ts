// Trainer jobs on the GPU queue: the activity writes the job's data from Postgres, runs
// `python -m tenet_trainer <command>` as a child process and supervises it:
// - a heartbeat on every progress line (its details carry the newest checkpoint), and on a timer;
// - on cancellation, SIGTERM (the trainer checkpoints and exits) and a wait for the exit;
// - on a retry, `--resume-from` the checkpoint of the last heartbeat;
// - a failure carries the tail of stderr; a user error (exit 2) is not retried;
// - the model is registered only after the trainer published its artifact, in one insert keyed by
//   `model_key`, so a failed job never leaves a half-registered model and a retried one never two.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { ApplicationFailure, CancelledFailure, Context } from '@temporalio/activity';
import { eq, sql } from 'drizzle-orm';
import { z } from 'zod';
import { stableHash } from '../core/rater/principles.js';
import { runConfigSchema } from '../core/run-config.js';
import { iterationNames, trainerJobMetrics, type TrainerJob } from '../core/trainer-jobs.js';
import { offeredTools, type ToolDefinition } from '../core/tools/environment.js';
import type { Database } from '../db/pool.js';
import { recordMetrics } from '../db/runs.js';
import { models, runs } from '../db/schema.js';
import { taskOf } from './verifiers/dispatch.js';

export type { ModelKind, TrainerCommand, TrainerJob, TrainerOptions } from '../core/trainer-jobs.js';

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

/** One line of the trainer's stdout (zod at the boundary; unknown events pass through). */
const progressSchema = z.looseObject({
  event: z.string(),
  step: z.number().int().optional(),
  total_steps: z.number().int().optional(),
  loss: z.number().nullable().optional(),
  checkpoint: z.string().optional(),
  output: z.string().optional(),
  metrics: z.record(z.string(), z.unknown()).optional(),
  message: z.string().optional(),
  hyperparameters: z.record(z.string(), z.unknown()).optional(),
});
type Progress = z.infer<typeof progressSchema>;

export interface TrainerHeartbeat {
  step: number;
  totalSteps: number | null;
  checkpoint: string | null;
  loss: number | null;
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
}

/**
 * Hands out the worker's GPU ids to concurrent jobs: a job holds as many as it asks for until it
 * ends; jobs that find too few free wait, first come first served (a big job is not overtaken by
 * small ones). A CPU-only worker hands out none.
 */
export class GpuSlots {
  private readonly free: string[];
  private readonly waiting: { count: number; resolve: (gpus: string[]) => void }[] = [];
  constructor(private readonly gpus: string[]) {
    this.free = [...gpus];
  }
  /** `count` GPU ids once that many are free; rejects at once when the worker has fewer in all, or on `signal`. */
  acquire(count: number, signal?: AbortSignal): Promise<string[]> {
    const refused = gpuRequestError(count, this.gpus.length);
    if (refused) return Promise.reject(new Error(refused));
    if (this.gpus.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      const waiter = { count, resolve };
      this.waiting.push(waiter);
      signal?.addEventListener(
        'abort',
        () => {
          const at = this.waiting.indexOf(waiter);
          if (at < 0) return;
          this.waiting.splice(at, 1);
          this.grant();
          reject(new CancelledFailure('cancelled while waiting for GPUs'));
        },
        { once: true },
      );
      this.grant();
    });
  }
  release(gpus: string[]): void {
    this.free.push(...gpus);
    this.grant();
  }
  private grant(): void {
    while (this.waiting.length > 0 && this.waiting[0]!.count <= this.free.length) {
      const next = this.waiting.shift()!;
      next.resolve(this.free.splice(0, next.count));
    }
  }
}

/** Why a job asking for `requested` GPUs cannot run on a worker with `available` (a CPU-only worker runs one process), or undefined. */
export function gpuRequestError(requested: number, available: number): string | undefined {
  if (!Number.isInteger(requested) || requested < 1) return `gpus: expected a whole number of GPUs, 1 or more, got ${requested}`;
  if (requested > Math.max(1, available)) return `gpus: the job asks for ${requested} GPUs; this worker has ${available}`;
  return undefined;
}

const STDERR_TAIL_LINES = 25;

export function createTrainerActivities(deps: TrainerDeps) {
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
      let done: Progress;
      try {
        done = await supervise(deps, args, jobDir, gpus, previous.success ? previous.data : undefined);
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
        const done = await supervise(deps, ['-m', 'tenet_trainer', 'kl', '--model', baseModel, '--adapter', model.path, '--data', dataFile, ...sampling.map(String)], jobDir, gpus, undefined);
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

/** A trainer left running by a worker that died (same machine) is stopped before a new attempt starts. */
async function stopLeftover(jobDir: string): Promise<void> {
  const pidFile = path.join(jobDir, 'trainer.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  if (Number.isInteger(pid) && pid > 0 && isTrainer(pid)) {
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 600 && isAlive(pid); i++) await new Promise((resolve) => setTimeout(resolve, 100));
    if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  }
  await rm(pidFile, { force: true });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function isTrainer(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('tenet_trainer');
  } catch {
    return false;
  }
}

function supervise(deps: TrainerDeps, args: string[], jobDir: string, gpus: string[], resumeFrom: TrainerHeartbeat | undefined): Promise<Progress> {
  const activity = Context.current();
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONUNBUFFERED: '1' };
  // A GPU worker pins each job to the GPUs of its slots (its processes take one each, by LOCAL_RANK).
  if (gpus.length > 0) env.CUDA_VISIBLE_DEVICES = gpus.join(',');
  const child: ChildProcess = spawn(deps.python, args, { cwd: jobDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const pidFile = path.join(jobDir, 'trainer.pid');
  if (child.pid !== undefined) void writeFile(pidFile, String(child.pid)).catch(() => undefined);

  // The job's own log, next to its checkpoints: every progress line, and stderr.
  const progressLog = createWriteStream(path.join(jobDir, 'trainer.log.jsonl'), { flags: 'a' });
  const stderrLog = createWriteStream(path.join(jobDir, 'trainer.stderr.log'), { flags: 'a' });
  let latest: TrainerHeartbeat = resumeFrom ?? { step: 0, totalSteps: null, checkpoint: null, loss: null };
  let done: Progress | undefined;
  let preempted: Progress | undefined;
  let userError: string | undefined;
  const stderr: string[] = [];

  createInterface({ input: child.stdout! }).on('line', (line) => {
    progressLog.write(line + '\n');
    let parsed: Progress;
    try {
      const result = progressSchema.safeParse(JSON.parse(line));
      if (!result.success) return;
      parsed = result.data;
    } catch {
      return; // not a progress line (a library printing to stdout)
    }
    latest = {
      step: parsed.step ?? latest.step,
      totalSteps: parsed.total_steps ?? latest.totalSteps,
      checkpoint: parsed.checkpoint ?? latest.checkpoint,
      loss: parsed.loss ?? latest.loss,
    };
    if (parsed.event === 'done') done = parsed;
    if (parsed.event === 'preempted') preempted = parsed;
    if (parsed.event === 'error') userError = parsed.message;
    activity.heartbeat(latest);
  });
  createInterface({ input: child.stderr! }).on('line', (line) => {
    stderrLog.write(line + '\n');
    stderr.push(line);
    if (stderr.length > STDERR_TAIL_LINES) stderr.shift();
  });

  // Heartbeats between progress lines too (a long step must not look like a dead worker), which is
  // also how this activity learns of its cancellation.
  const every = Math.max(200, Math.min(5_000, (activity.info.heartbeatTimeoutMs ?? 30_000) / 3));
  const pulse = setInterval(() => activity.heartbeat(latest), every);
  let cancelled = false;
  let killTimer: NodeJS.Timeout | undefined;
  const onCancel = () => {
    cancelled = true;
    child.kill('SIGTERM');
    killTimer = setTimeout(() => child.kill('SIGKILL'), (deps.stopGraceS ?? 120) * 1000);
  };
  activity.cancellationSignal.addEventListener('abort', onCancel, { once: true });

  return new Promise<Progress>((resolve, reject) => {
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') reject(ApplicationFailure.nonRetryable(`trainer Python not found at ${deps.python}; run \`make setup\` or set TENET_PYTHON`, 'TrainerMissing'));
      else reject(ApplicationFailure.retryable(`trainer could not start: ${error.message}`, 'TrainerFailed'));
    });
    child.on('close', (code, signal) => {
      clearInterval(pulse);
      progressLog.end();
      stderrLog.end();
      if (killTimer) clearTimeout(killTimer);
      activity.cancellationSignal.removeEventListener('abort', onCancel);
      void rm(pidFile, { force: true }).catch(() => undefined);
      const tail = stderr.join('\n');
      if (cancelled) {
        reject(new CancelledFailure(`trainer stopped on cancellation at step ${latest.step}${latest.checkpoint ? ` (checkpoint ${latest.checkpoint})` : ''}`));
      } else if (code === 0 && done) {
        resolve(done);
      } else if (code === 0 && preempted) {
        reject(ApplicationFailure.retryable(`trainer was stopped at step ${latest.step}; the retry resumes from ${preempted.checkpoint ?? 'its newest checkpoint'}`, 'TrainerPreempted', latest));
      } else if (code === 2) {
        reject(ApplicationFailure.nonRetryable(`trainer ${args[2]}: ${userError ?? (stderr.at(-1) ?? 'bad configuration')}`, 'TrainerUserError'));
      } else {
        const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        reject(ApplicationFailure.retryable(`trainer ${args[2]} ${how} at step ${latest.step}; stderr tail:\n${tail}`, 'TrainerFailed', latest));
      }
    });
  });
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
