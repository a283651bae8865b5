// `tenet status`: each part of the stack, up or down.
import { Command } from 'commander';
import { z } from 'zod';
import { resolveEndpoints } from '../../worker/dev-stack.js';
import { checkHealth } from '../../worker/health.js';
import { temporalConnectOptions } from '../../worker/temporal-connection.js';
import { getSettings } from '../context.js';
import { exitCodes } from '../errors.js';
import { parseOptions, printJson } from '../options.js';

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

export function printHealth(health: { part: string; ok: boolean; detail: string }[]): void {
  for (const part of health) console.log(`${part.ok ? 'ok  ' : 'DOWN'}  ${part.part.padEnd(17)} ${part.detail}`);
}
