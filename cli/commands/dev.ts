// `tenet dev`: the embedded stack (Temporal dev server, Postgres, a worker on both queues) and the audit console, until Ctrl-C.
import { userInfo } from 'node:os';
import { Command } from 'commander';
import { z } from 'zod';
import { startConsole } from '../../console/server.js';
import { getDatabase, redactUrl } from '../../db/pool.js';
import { resolveEndpoints, StackRunningError } from '../../worker/dev-stack.js';
import { checkHealth } from '../../worker/health.js';
import { temporalConnectOptions } from '../../worker/temporal-connection.js';
import { closeAll, getSettings } from '../context.js';
import { exitCodes } from '../errors.js';
import { parseOptions } from '../options.js';
import { startStackInterruptibly } from '../stack-start.js';
import { printHealth } from './status.js';
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
