// `tenet migrate`: apply the database migrations.
import { Command } from 'commander';
import { z } from 'zod';
import { applyMigrations } from '../../db/migrate.js';
import { resolveEndpoints } from '../../worker/dev-stack.js';
import { getSettings } from '../context.js';
import { exitCodes, UserError } from '../errors.js';
import { parseOptions, printJson } from '../options.js';

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
