// `tenet ui`: the audit console (console/), a web page over the same queries as `tenet audit`.
import { userInfo } from 'node:os';
import type { Client } from '@temporalio/client';
import { Command } from 'commander';
import { z } from 'zod';
import { startConsole } from '../../console/server.js';
import { listenToken, tokenVariable } from '../../worker/http-guard.js';
import { openTemporal } from '../context.js';
import { withDatabase } from '../database.js';
import { parseOptions } from '../options.js';

const uiOptions = z.object({
  host: z.string().min(1).default('127.0.0.1'),
  port: z.coerce.number({ error: 'expected a port number' }).int().min(0).max(65535).default(8777),
  reviewer: z.string().trim().min(1).default(process.env.USER ?? userInfo().username),
});

export const uiCommand = new Command('ui')
  .description(`the audit console: runs, decisions, overrides and the review queue in a browser (127.0.0.1 only unless ${tokenVariable} is set)`)
  .option('--host <address>', `address to listen on (anything but loopback needs ${tokenVariable})`, '127.0.0.1')
  .option('--port <port>', 'port to listen on (0: any free one)', '8777')
  .option('--reviewer <name>', 'the reviewer name forms start with (default: $USER)')
  .action(async (raw: unknown) => {
    const options = parseOptions(uiOptions, raw);
    const token = listenToken(options.host);
    await withDatabase(async (db) => {
      const temporal = lazyTemporal();
      const server = await startConsole({ db, token, reviewer: options.reviewer, host: options.host, port: options.port, temporal: temporal.get });
      console.log(`tenet ui: the audit console is at ${server.url}/${token ? ` (bearer token from ${tokenVariable} required)` : ''}`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await server.close();
      await (await temporal.opened())?.connection.close();
    });
  });

/** A Temporal client opened when the console first needs one; a failed attempt is tried again next time. */
export function lazyTemporal(open: () => Promise<Client> = openTemporal) {
  let client: Promise<Client> | undefined;
  return {
    get: () =>
      (client ??= open().catch((error: unknown) => {
        client = undefined;
        throw error;
      })),
    opened: async () => (client ? client.catch(() => undefined) : undefined),
  };
}
