// Supervision of one trainer process (`python -m tenet_trainer …`) for a trainer-job activity:
// - a heartbeat on every progress line (its details carry the newest checkpoint), and on a timer;
// - on cancellation, SIGTERM (the trainer checkpoints and exits), SIGKILL after the grace period;
// - a failure carries the tail of stderr; a user error (exit 2) is not retried; a preempted
//   trainer (SIGTERM from elsewhere) is retried and resumes from its checkpoint;
// - a trainer left running by a worker that died is stopped before a new attempt starts.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { ApplicationFailure, CancelledFailure, Context } from '@temporalio/activity';
import { z } from 'zod';
import { commandLine, stopProcess } from '../worker/processes.js';

const STDERR_TAIL_LINES = 25;

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
export type TrainerProgress = z.infer<typeof progressSchema>;

export interface TrainerHeartbeat {
  step: number;
  totalSteps: number | null;
  checkpoint: string | null;
  loss: number | null;
}

/** A trainer left running by a worker that died (same machine) is stopped before a new attempt starts. */
export async function stopLeftover(jobDir: string): Promise<void> {
  const pidFile = path.join(jobDir, 'trainer.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  // Only a process that is still a trainer (a pid can be reused): SIGTERM, a minute to checkpoint, then SIGKILL.
  if (Number.isInteger(pid) && pid > 0 && commandLine(pid)?.includes('tenet_trainer')) await stopProcess(pid, { graceMs: 60_000 });
  await rm(pidFile, { force: true });
}

export function superviseTrainer(deps: { python: string; stopGraceS?: number }, args: string[], jobDir: string, gpus: string[], resumeFrom: TrainerHeartbeat | undefined): Promise<TrainerProgress> {
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
  let done: TrainerProgress | undefined;
  let preempted: TrainerProgress | undefined;
  let userError: string | undefined;
  const stderr: string[] = [];

  createInterface({ input: child.stdout! }).on('line', (line) => {
    progressLog.write(line + '\n');
    let parsed: TrainerProgress;
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

  return new Promise<TrainerProgress>((resolve, reject) => {
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
