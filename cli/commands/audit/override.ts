// `tenet audit override`: a human overrules a decision (a human_reviews row; the AI's row stays).
import { Command } from 'commander';
import { z } from 'zod';
import { overrideDecision } from '../../../db/queries/audit.js';
import { ReviewRefused } from '../../../db/queries/labels.js';
import { withDatabase } from '../../database.js';
import { UserError } from '../../errors.js';
import { parseOptions, printJson } from '../../options.js';
import { id, reviewer } from './options.js';

const overrideOptions = z.object({
  prefer: z.enum(['A', 'B', 'tie'], { error: 'expected A, B or tie (A and B as shown by `tenet audit show`)' }),
  reason: z.string().trim().min(1, { error: 'expected a reason' }),
  reviewer,
  key: z.string().min(1).optional(),
  json: z.boolean().default(false),
});

export const overrideCommand = new Command('override')
  .description('overrule a decision; the AI row stays as it was, and the preferences training reads follow the human')
  .argument('<decision>', 'decision id')
  .requiredOption('--prefer <choice>', 'A | B | tie, as the decision showed them')
  .requiredOption('--reason <text>', 'why')
  .option('--reviewer <name>', 'who (default: $USER)')
  .option('--key <key>', 'idempotency key: the same key never writes twice (default: a new one)')
  .option('--json', 'print as JSON')
  .action(async (ref: string, raw: unknown) => {
    const options = parseOptions(overrideOptions, raw);
    const decisionId = parseOptions(id('decision'), ref);
    const reviewId = await withDatabase((db) => overrideDecision(db, { decisionId, prefer: options.prefer, reason: options.reason, reviewer: options.reviewer, key: options.key })).catch((error: unknown) => {
      throw error instanceof ReviewRefused ? new UserError(error.message) : error;
    });
    if (options.json) printJson({ reviewId, decisionId, prefer: options.prefer });
    else console.log(`review ${reviewId}: decision ${decisionId} overridden (${options.prefer}) by ${options.reviewer}`);
  });
