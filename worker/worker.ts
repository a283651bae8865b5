// Worker bootstrap: connect, create one Temporal worker per task queue, run until a signal.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { DataConverter } from '@temporalio/common';
import { NativeConnection, Runtime, Worker, bundleWorkflowCode, type WorkflowBundle } from '@temporalio/worker';
import { createCpuActivities, createGpuActivities } from '../activities/index.js';
import { taskQueues, type QueueName } from '../core/queues.js';
import { closeDatabase, getDatabase } from '../db/pool.js';
import { applyMigrations } from '../db/migrate.js';
import { failureConverterPath } from './data-converter.js';
import { connectHint, describeTemporal, type TemporalConnectOptions } from './temporal-connection.js';
import { cachedBundle } from './workflow-bundle.js';

export const workflowsPath = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

export interface WorkerOptions {
  queues: QueueName[];
  temporalAddress: string;
  /** TLS and API key for `temporalAddress` (worker/temporal-connection.ts); plain gRPC without. */
  connectOptions?: TemporalConnectOptions;
  namespace: string;
  databaseUrl: string | undefined;
  python: string;
  /** Job data, checkpoints and artifacts of trainer jobs. */
  artifactsRoot: string;
  /** CPU-only: fork trainer jobs from a pre-imported interpreter (default true; TENET_TRAINER_PREIMPORT). */
  trainerPreimport?: boolean;
  /** Payload codec and failure converter (see worker/data-converter.ts). */
  dataConverter?: DataConverter;
  /** Called once every worker polls. */
  onReady?: (queues: string[]) => void;
}

/** GPUs this worker may use, as CUDA_VISIBLE_DEVICES names them: that variable when set, else what nvidia-smi lists. */
export function visibleGpus(): string[] {
  const visible = process.env.CUDA_VISIBLE_DEVICES;
  if (visible !== undefined) return visible.split(',').map((d) => d.trim()).filter((d) => d !== '' && d !== '-1');
  try {
    const lines = execFileSync('nvidia-smi', ['-L'], { encoding: 'utf8', timeout: 5_000 }).split('\n').filter((line) => line.startsWith('GPU '));
    return lines.map((_, i) => String(i));
  } catch {
    return [];
  }
}

/** The workflow bundle, rebuilt only when a source changed (worker/workflow-bundle.ts). */
export async function bundleWorkflows(): Promise<WorkflowBundle> {
  return cachedBundle({ workflowsPath, failureConverterPath }, () => bundleWorkflowCode({ workflowsPath, failureConverterPath, logger: quietBundlerLogger }));
}

const quietBundlerLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (message: string) => console.warn(message),
  error: (message: string) => console.error(message),
};

export async function runWorker(options: WorkerOptions): Promise<void> {
  Runtime.install({ shutdownSignals: ['SIGINT', 'SIGTERM'] });
  const connect = { ...options.connectOptions, address: options.temporalAddress };
  const connection = await NativeConnection.connect(connect).catch((error: unknown) => {
    // Keeps the error's kind (the CLI tells a connection failure from a bug by it); names where and how.
    if (error instanceof Error) error.message = `cannot reach Temporal at ${describeTemporal(connect)}: ${error.message}${connectHint(connect)}`;
    throw error;
  });
  const workers: Worker[] = [];
  try {
    if (!options.databaseUrl) throw new Error('a worker needs DATABASE_URL (or the dev stack) to reach Postgres');
    await applyMigrations(options.databaseUrl);
    const db = getDatabase(options.databaseUrl);
    if (options.queues.includes('cpu')) {
      workers.push(
        await Worker.create({
          connection,
          namespace: options.namespace,
          dataConverter: options.dataConverter,
          taskQueue: taskQueues.cpu,
          workflowBundle: await bundleWorkflows(),
          activities: createCpuActivities({ db }),
        }),
      );
    }
    if (options.queues.includes('gpu')) {
      // One trainer job per visible GPU; a CPU-only machine still runs one at a time.
      const gpus = visibleGpus();
      workers.push(
        await Worker.create({
          connection,
          namespace: options.namespace,
          dataConverter: options.dataConverter,
          taskQueue: taskQueues.gpu,
          activities: createGpuActivities({ python: options.python, db, artifactsRoot: options.artifactsRoot, gpus, preimport: options.trainerPreimport }),
          maxConcurrentActivityTaskExecutions: Math.max(1, gpus.length),
        }),
      );
    }
    options.onReady?.(options.queues.map((q) => taskQueues[q]));
    await Promise.all(workers.map((worker) => worker.run()));
  } finally {
    await connection.close();
    await closeDatabase();
  }
}
