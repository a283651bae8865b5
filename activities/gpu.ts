// GPU-queue activities. They run only on `tenet worker --queue gpu` (or the dev worker), next to
// the Python trainer in .venv.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ApplicationFailure } from '@temporalio/activity';
import { z } from 'zod';
import type { Database } from '../db/pool.js';
import { createTrainerActivities } from './trainer.js';

const run = promisify(execFile);

const probeSchema = z.object({ python: z.string(), torch: z.string(), cuda: z.boolean(), devices: z.number().int(), deviceNames: z.array(z.string()) });
export type TrainerProbe = z.infer<typeof probeSchema>;

const probeScript = `
import json, platform, torch
n = torch.cuda.device_count() if torch.cuda.is_available() else 0
print(json.dumps({"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.cuda.is_available(),
  "devices": n, "deviceNames": [torch.cuda.get_device_name(i) for i in range(n)]}))
`;

export interface GpuDeps {
  python: string;
  /** Trainer jobs read their data from, and register their models in, Postgres. */
  db?: Database;
  artifactsRoot?: string;
  gpus?: string[];
  /** Trainer jobs of a CPU-only worker fork from a pre-imported interpreter (TrainerDeps.preimport); default true. */
  preimport?: boolean;
}

export function createGpuActivities(options: GpuDeps) {
  const trainer = options.db && options.artifactsRoot ? createTrainerActivities({ db: options.db, python: options.python, artifactsRoot: options.artifactsRoot, gpus: options.gpus ?? [], preimport: options.preimport ?? true }) : undefined;
  const runTrainerJob: ReturnType<typeof createTrainerActivities>['runTrainerJob'] = trainer
    ? (job) => trainer.runTrainerJob(job)
    : () => Promise.reject(ApplicationFailure.nonRetryable('this GPU worker was started without a database; trainer jobs need one', 'WorkerMisconfigured'));
  const measurePolicy: ReturnType<typeof createTrainerActivities>['measurePolicy'] = trainer
    ? (input) => trainer.measurePolicy(input)
    : () => Promise.reject(ApplicationFailure.nonRetryable('this GPU worker was started without a database; trainer jobs need one', 'WorkerMisconfigured'));
  return {
    runTrainerJob,
    measurePolicy,
    /** What the trainer sees on this worker: Python, torch, visible GPUs. */
    async probeTrainer(): Promise<TrainerProbe> {
      let stdout: string;
      try {
        ({ stdout } = await run(options.python, ['-c', probeScript], { timeout: 120_000 }));
      } catch (error) {
        const e = error as NodeJS.ErrnoException & { stderr?: string };
        if (e.code === 'ENOENT') {
          throw ApplicationFailure.nonRetryable(`trainer Python not found at ${options.python}; run \`make setup\` or set TENET_PYTHON`, 'TrainerMissing');
        }
        throw ApplicationFailure.retryable(`trainer probe failed: ${(e.stderr ?? e.message).trim().split('\n').slice(-3).join(' | ')}`, 'TrainerProbeFailed');
      }
      const parsed = probeSchema.safeParse(JSON.parse(stdout.trim().split('\n').at(-1) ?? 'null'));
      if (!parsed.success) throw ApplicationFailure.nonRetryable(`trainer probe printed something unexpected: ${stdout.slice(0, 200)}`, 'TrainerProbeFailed');
      return parsed.data;
    },
  };
}
