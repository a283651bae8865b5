// `tenet audit label`: a human picks the better of two completions of one prompt.
import { Command } from 'commander';
import { z } from 'zod';
import { labelPair, ReviewRefused } from '../../../db/queries/labels.js';
import { withDatabase } from '../../database.js';
import { UserError } from '../../errors.js';
import { parseOptions, printJson } from '../../options.js';
import { id, reviewer } from './options.js';

const labelOptions = z.object({
  chosen: id('completion'),
  rejected: id('completion'),
  reason: z.string().trim().min(1).default('human label'),
  reviewer,
  key: z.string().min(1).optional(),
  json: z.boolean().default(false),
});

export const labelCommand = new Command('label')
  .description('label a pair directly (a human picks the better of two completions of one prompt); it joins the same preference store')
  .requiredOption('--chosen <completion>', 'the better completion id')
  .requiredOption('--rejected <completion>', 'the worse completion id')
  .option('--reason <text>', 'why')
  .option('--reviewer <name>', 'who (default: $USER)')
  .option('--key <key>', 'idempotency key')
  .option('--json', 'print as JSON')
  .action(async (raw: unknown) => {
    const options = parseOptions(labelOptions, raw);
    if (options.chosen === options.rejected) throw new UserError('--chosen and --rejected must be two different completions');
    const reviewId = await withDatabase((db) => labelPair(db, { chosen: options.chosen, rejected: options.rejected, reason: options.reason, reviewer: options.reviewer, key: options.key })).catch((error: unknown) => {
      throw error instanceof ReviewRefused ? new UserError(error.message) : error;
    });
    if (options.json) printJson({ reviewId });
    else console.log(`review ${reviewId}: ${options.reviewer} prefers completion ${options.chosen} over ${options.rejected}`);
  });
