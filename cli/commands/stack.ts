// `tenet dev`, `tenet status`, `tenet worker`, `tenet migrate`
import { userInfo } from 'node:os';
import { Command } from 'commander';
import { z } from 'zod';
import type { QueueName } from '../../core/queues.js';
import { applyMigrations } from '../../db/migrate.js';
import { startConsole } from '../../console/server.js';
import { getDatabase, redactUrl } from '../../db/pool.js';
import { temporalDataConverter } from '../../worker/data-converter.js';
import { resolveEndpoints, StackRunningError } from '../../worker/dev-stack.js';
import { checkHealth } from '../../worker/health.js';
import { temporalConnectOptions } from '../../worker/temporal-connection.js';
import { runWorker } from '../../worker/worker.js';
import { closeAll, getSettings } from '../context.js';
import { exitCodes, UserError } from '../errors.js';
import { parseOptions, printJson } from '../options.js';
import { startStackInterruptibly } from '../stack-start.js';
import { lazyTemporal } from './ui.js';

export const devCommand = new Command('dev')
  .description('start the embedded stack: Temporal dev server, Postgres, a worker on both queues, and the audit console (Ctrl-C stops all)')
  .option('--ui-port <port>', 'port of the audit console on 127.0.0.1 (another free one when taken; 0: any)', '8777')
  .action(async (raw: unknown) => {
    const options = parseOptions(z.object({ uiPort: z.coerce.number({ error: 'expected a port number' }).int().min(0).max(65535).default(8777) }), raw);
    const settings = getSettings();
    let stack;
    try {
      stack = await startStackInterruptibly(settings, (line) => console.log(`tenet dev: ${line}`));
    } catch (error) {
      if (error instanceof StackRunningError) {
        console.error(`tenet dev: ${error.message}`);
        const address = error.state.temporal.address;
        const health = await checkHealth({ temporalAddress: address, connectOptions: temporalConnectOptions(settings, address), namespace: settings.namespace, databaseUrl: resolveEndpoints(settings).databaseUrl });
        printHealth(health);
        process.exit(exitCodes.alreadyRunning);
      }
      throw error;
    }
    console.log(`tenet dev: stack ready in ${(stack.startupMs / 1000).toFixed(1)} s`);
    console.log(`  Temporal   ${stack.temporalAddress}${stack.uiUrl ? `   UI ${stack.uiUrl}` : ''}`);
    console.log(`  Postgres   ${redactUrl(stack.databaseUrl)}   migration ${stack.migrations.current}`);
    console.log(`  worker     polling tenet-cpu and tenet-gpu   logs ${settings.home}/logs/`);
    const ui = await startDevConsole(stack.databaseUrl, options.uiPort).catch((error: unknown) => {
      console.error(`tenet dev: the audit console did not start: ${(error as Error).message}`);
      return undefined;
    });
    if (ui) console.log(`  console    ${ui.server.url}/   (the audit console; \`tenet ui\` serves it alone)`);
    console.log('Press Ctrl-C to stop every part.');

    const reason = await Promise.race([
      stack.failed,
      new Promise<string>((resolve) => {
        process.once('SIGINT', () => resolve('interrupted'));
        process.once('SIGTERM', () => resolve('terminated'));
      }),
    ]);
    const failed = reason !== 'interrupted' && reason !== 'terminated';
    console.log(failed ? `tenet dev: ${reason}; stopping the stack` : 'tenet dev: stopping…');
    // A second Ctrl-C while stopping kills at once.
    process.once('SIGINT', () => process.exit(130));
    await ui?.close();
    await stack.stop();
    console.log('tenet dev: stopped');
    process.exit(failed ? exitCodes.unavailable : exitCodes.ok);
  });

/** The audit console over the dev stack, on 127.0.0.1 (loopback needs no token), at `port` or another free one. */
async function startDevConsole(databaseUrl: string, port: number) {
  const db = getDatabase(databaseUrl);
  const temporal = lazyTemporal();
  const reviewer = process.env.USER ?? userInfo().username;
  const start = (at: number) => startConsole({ db, token: undefined, reviewer, host: '127.0.0.1', port: at, temporal: temporal.get });
  const server = await start(port).catch((error: NodeJS.ErrnoException) => (error.code === 'EADDRINUSE' ? start(0) : Promise.reject(error)));
  return {
    server,
    async close() {
      await server.close();
      await closeAll(await temporal.opened());
    },
  };
}

export const statusCommand = new Command('status')
  .description('report each part of the stack; exits 3 when one is down')
  .option('--json', 'print as JSON')
  .action(async (raw: unknown) => {
    const options = parseOptions(z.object({ json: z.boolean().default(false) }), raw);
    const settings = getSettings();
    const endpoints = resolveEndpoints(settings);
    const health = await checkHealth({
      temporalAddress: endpoints.temporalAddress,
      connectOptions: temporalConnectOptions(settings, endpoints.temporalAddress),
      namespace: settings.namespace,
      databaseUrl: endpoints.databaseUrl,
    });
    const healthy = health.every((part) => part.ok);
    if (options.json) printJson({ healthy, stack: endpoints.stack ? { pid: endpoints.stack.pid, startedAt: endpoints.stack.startedAt } : null, parts: health });
    else {
      if (endpoints.stack) console.log(`embedded stack: pid ${endpoints.stack.pid}, up since ${endpoints.stack.startedAt}`);
      printHealth(health);
    }
    process.exitCode = healthy ? exitCodes.ok : exitCodes.unavailable;
  });

function printHealth(health: { part: string; ok: boolean; detail: string }[]): void {
  for (const part of health) console.log(`${part.ok ? 'ok  ' : 'DOWN'}  ${part.part.padEnd(17)} ${part.detail}`);
}

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
      dataConverter,
      onReady: (names) => console.log(`tenet worker ready: polling ${names.join(', ')} on ${endpoints.temporalAddress}`),
    });
  });

export const migrateCommand = new Command('migrate')
  .description('apply the database migrations (the stack and workers also do this at start-up)')
  .option('--json', 'print as JSON')
  .action(async (raw: unknown) => {
    const options = parseOptions(z.object({ json: z.boolean().default(false) }), raw);
    const { databaseUrl } = resolveEndpoints(getSettings());
    if (!databaseUrl) throw new UserError('no database: set DATABASE_URL or start `tenet dev`', exitCodes.unavailable);
    const state = await applyMigrations(databaseUrl);
    if (options.json) printJson(state);
    else console.log(`migrations: ${state.applied}/${state.expected} applied, at ${state.current}`);
  });
