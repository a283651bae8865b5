// `tenet worker --queue cpu|gpu|all`: a worker process on the stack's Temporal and Postgres.
import { Command } from 'commander';
import { z } from 'zod';
import type { QueueName } from '../../core/queues.js';
import { temporalDataConverter } from '../../worker/data-converter.js';
import { resolveEndpoints } from '../../worker/dev-stack.js';
import { temporalConnectOptions } from '../../worker/temporal-connection.js';
import { runWorker } from '../../worker/worker.js';
import { getSettings } from '../context.js';
import { exitCodes, UserError } from '../errors.js';
import { parseOptions } from '../options.js';

const workerOptions = z.object({
  queue: z.enum(['cpu', 'gpu', 'all'], { error: "expected cpu, gpu or all" }),
  exitWithParent: z.boolean().default(false),
});

export const workerCommand = new Command('worker')
  .description('run a worker: cpu (workflows, I/O, rating, DB), gpu (trainer jobs only, one per visible GPU) or all')
  .requiredOption('--queue <queue>', 'cpu | gpu | all')
  .option('--exit-with-parent', 'stop when the parent process dies (used by `tenet dev`)')
  .action(async (raw: unknown) => {
    const options = parseOptions(workerOptions, raw);
    const settings = getSettings();
    const endpoints = resolveEndpoints(settings);
    const queues: QueueName[] = options.queue === 'all' ? ['cpu', 'gpu'] : [options.queue];
    if (!endpoints.databaseUrl) {
      // CPU workers store everything there; GPU workers read training data and register models.
      throw new UserError('a worker needs Postgres: set DATABASE_URL or start `tenet dev`', exitCodes.unavailable);
    }
    const { dataConverter, description } = temporalDataConverter(settings, endpoints.temporalAddress);
    console.log(`tenet worker: ${description}`);
    if (options.exitWithParent) {
      const parent = process.ppid;
      setInterval(() => {
        if (process.ppid !== parent) process.kill(process.pid, 'SIGTERM');
      }, 1_000).unref();
    }
    await runWorker({
      queues,
      temporalAddress: endpoints.temporalAddress,
      connectOptions: temporalConnectOptions(settings, endpoints.temporalAddress),
      namespace: settings.namespace,
      databaseUrl: endpoints.databaseUrl,
      python: settings.python,
      artifactsRoot: settings.artifacts,
      trainerPreimport: settings.trainerPreimport,
      dataConverter,
      onReady: (names) => console.log(`tenet worker ready: polling ${names.join(', ')} on ${endpoints.temporalAddress}`),
    });
  });
