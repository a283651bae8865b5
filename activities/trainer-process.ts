// Supervision of one trainer process (`python -m tenet_trainer …`) for a trainer-job activity:
// - a heartbeat on every progress line (its details carry the newest checkpoint), and on a timer;
// - on cancellation, SIGTERM (the trainer checkpoints and exits), SIGKILL after the grace period;
// - a failure carries the tail of stderr; a user error (exit 2) is not retried; a preempted
//   trainer (SIGTERM from elsewhere) is retried and resumes from its checkpoint;
// - a trainer left running by a worker that died is stopped before a new attempt starts;
// - on a CPU-only worker, the process is forked from a pre-imported interpreter (trainer-forkserver.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, createWriteStream, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { StringDecoder } from 'node:string_decoder';
import { ApplicationFailure, CancelledFailure, Context } from '@temporalio/activity';
import { z } from 'zod';
import { commandLine, stopProcess } from '../worker/processes.js';
import type { ForkedRun, TrainerForkServer } from './trainer-forkserver.js';

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

/** A file another process appends to, read as it grows: each whole line, then what is left at `stop`. */
function tailLines(file: string, from: number, onLine: (line: string) => void): { stop(): void } {
  let offset = from;
  let rest = '';
  const decoder = new StringDecoder('utf8');
  const buffer = Buffer.alloc(64 * 1024);
  const read = () => {
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch {
      return; // not written yet
    }
    try {
      for (;;) {
        const n = readSync(fd, buffer, 0, buffer.length, offset);
        if (n <= 0) break;
        offset += n;
        rest += decoder.write(buffer.subarray(0, n));
      }
    } finally {
      closeSync(fd);
    }
    const lines = rest.split('\n');
    rest = lines.pop()!;
    for (const line of lines) onLine(line);
  };
  const timer = setInterval(read, 100);
  return {
    stop() {
      clearInterval(timer);
      read();
      rest += decoder.end();
      if (rest) onLine(rest);
      rest = '';
    },
  };
}

/** True for a missing or empty file, or one whose last byte is a newline. */
function endsWithNewline(file: string): boolean {
  const size = sizeOf(file);
  if (size === 0) return true;
  const fd = openSync(file, 'r');
  try {
    const last = Buffer.alloc(1);
    readSync(fd, last, 0, 1, size - 1);
    return last[0] === 0x0a;
  } finally {
    closeSync(fd);
  }
}

function missingPython(python: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(`trainer Python not found at ${python}; run \`make setup\` or set TENET_PYTHON`, 'TrainerMissing');
}

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** The trainer process, however it was started: what supervision needs of it. */
interface TrainerChild {
  kill(signal: NodeJS.Signals): void;
  /** Resolves once the process has exited and all its output has been read. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Runs `python ARGS` for a trainer job and supervises it. `deps.forkServer` (CPU-only workers): the
 * process is forked from the pre-imported interpreter and writes its own log files, which are read as
 * they grow; otherwise it is spawned and its output piped into the same files.
 */
export async function superviseTrainer(deps: { python: string; stopGraceS?: number; forkServer?: TrainerForkServer }, args: string[], jobDir: string, gpus: string[], resumeFrom: TrainerHeartbeat | undefined): Promise<TrainerProgress> {
  const activity = Context.current();
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONUNBUFFERED: '1' };
  // A GPU worker pins each job to the GPUs of its slots (its processes take one each, by LOCAL_RANK).
  if (gpus.length > 0) env.CUDA_VISIBLE_DEVICES = gpus.join(',');
  const pidFile = path.join(jobDir, 'trainer.pid');
  // The job's own log, next to its checkpoints: every progress line, and stderr.
  const progressPath = path.join(jobDir, 'trainer.log.jsonl');
  const stderrPath = path.join(jobDir, 'trainer.stderr.log');
  let latest: TrainerHeartbeat = resumeFrom ?? { step: 0, totalSteps: null, checkpoint: null, loss: null };
  let done: TrainerProgress | undefined;
  let preempted: TrainerProgress | undefined;
  let userError: string | undefined;
  const stderr: string[] = [];

  const onProgressLine = (line: string) => {
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
  };
  const onStderrLine = (line: string) => {
    stderr.push(line);
    if (stderr.length > STDERR_TAIL_LINES) stderr.shift();
  };

  // Heartbeats between progress lines too (a long step must not look like a dead worker), which is
  // also how this activity learns of its cancellation.
  const every = Math.max(200, Math.min(5_000, (activity.info.heartbeatTimeoutMs ?? 30_000) / 3));
  let child: TrainerChild;
  let pid: number | undefined;
  if (deps.forkServer && gpus.length === 0) {
    // The trainer appends to the logs itself: a line an earlier attempt left unfinished when it was killed gets its end first.
    for (const file of [progressPath, stderrPath]) if (!endsWithNewline(file)) appendFileSync(file, '\n');
    const progressTail = tailLines(progressPath, sizeOf(progressPath), onProgressLine);
    const stderrTail = tailLines(stderrPath, sizeOf(stderrPath), onStderrLine);
    const stopTails = () => {
      progressTail.stop();
      stderrTail.stop();
    };
    let run: ForkedRun;
    // The first job waits for the server to import torch & co. (seconds, more on a loaded machine):
    // heartbeats go on meanwhile, or a short heartbeat timeout would start a second attempt beside this one.
    const waiting = setInterval(() => activity.heartbeat(latest), every);
    try {
      run = await deps.forkServer.run({ args: args.slice(2), env, cwd: jobDir, stdout: progressPath, stderr: stderrPath, append: true });
    } catch (error) {
      stopTails();
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw missingPython(deps.python);
      throw ApplicationFailure.retryable(`trainer could not start: ${(error as Error).message}`, 'TrainerFailed');
    } finally {
      clearInterval(waiting);
    }
    const forkedPid = run.pid;
    pid = forkedPid;
    child = {
      kill: (signal) => {
        try {
          process.kill(forkedPid, signal);
        } catch {
          // already gone
        }
      },
      exited: run.exit.then(async (status) => {
        if (status.lost) {
          // The server's reporter went away: stop the trainer rather than leave it unsupervised.
          await stopProcess(forkedPid, { graceMs: (deps.stopGraceS ?? 120) * 1000 });
          onStderrLine(`(tenet: lost the trainer's exit status from its fork server; pid ${forkedPid} was stopped)`);
        }
        stopTails();
        return { code: status.lost ? null : status.code, signal: status.lost ? null : status.signal };
      }),
    };
  } else {
    const spawned: ChildProcess = spawn(deps.python, args, { cwd: jobDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const progressLog = createWriteStream(progressPath, { flags: 'a' });
    const stderrLog = createWriteStream(stderrPath, { flags: 'a' });
    createInterface({ input: spawned.stdout! }).on('line', (line) => {
      progressLog.write(line + '\n');
      onProgressLine(line);
    });
    createInterface({ input: spawned.stderr! }).on('line', (line) => {
      stderrLog.write(line + '\n');
      onStderrLine(line);
    });
    pid = spawned.pid;
    child = {
      kill: (signal) => spawned.kill(signal),
      exited: new Promise((resolve, reject) => {
        spawned.on('error', (error: NodeJS.ErrnoException) => {
          progressLog.end();
          stderrLog.end();
          if (error.code === 'ENOENT') reject(missingPython(deps.python));
          else reject(ApplicationFailure.retryable(`trainer could not start: ${error.message}`, 'TrainerFailed'));
        });
        spawned.on('close', (code, signal) => {
          progressLog.end();
          stderrLog.end();
          resolve({ code, signal });
        });
      }),
    };
  }
  if (pid !== undefined) void writeFile(pidFile, String(pid)).catch(() => undefined);

  const pulse = setInterval(() => activity.heartbeat(latest), every);
  let cancelled = false;
  let killTimer: NodeJS.Timeout | undefined;
  const onCancel = () => {
    cancelled = true;
    child.kill('SIGTERM');
    killTimer = setTimeout(() => child.kill('SIGKILL'), (deps.stopGraceS ?? 120) * 1000);
  };
  activity.cancellationSignal.addEventListener('abort', onCancel, { once: true });
  if (activity.cancellationSignal.aborted) onCancel(); // cancelled while the fork server was starting
  const cleanUp = () => {
    clearInterval(pulse);
    if (killTimer) clearTimeout(killTimer);
    activity.cancellationSignal.removeEventListener('abort', onCancel);
    void rm(pidFile, { force: true }).catch(() => undefined);
  };

  let code: number | null;
  let signal: NodeJS.Signals | null;
  try {
    ({ code, signal } = await child.exited);
  } finally {
    cleanUp();
  }
  const tail = stderr.join('\n');
  if (cancelled) {
    throw new CancelledFailure(`trainer stopped on cancellation at step ${latest.step}${latest.checkpoint ? ` (checkpoint ${latest.checkpoint})` : ''}`);
  } else if (code === 0 && done) {
    return done;
  } else if (code === 0 && preempted) {
    throw ApplicationFailure.retryable(`trainer was stopped at step ${latest.step}; the retry resumes from ${preempted.checkpoint ?? 'its newest checkpoint'}`, 'TrainerPreempted', latest);
  } else if (code === 2) {
    throw ApplicationFailure.nonRetryable(`trainer ${args[2]}: ${userError ?? (stderr.at(-1) ?? 'bad configuration')}`, 'TrainerUserError');
  } else {
    const how = signal ? `was killed by ${signal}` : code === null ? 'ended without an exit status' : `exited with code ${code}`;
    throw ApplicationFailure.retryable(`trainer ${args[2]} ${how} at step ${latest.step}; stderr tail:\n${tail}`, 'TrainerFailed', latest);
  }
}
