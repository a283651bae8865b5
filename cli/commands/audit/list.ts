// `tenet audit list`: rater decisions, filtered, sorted and paged (keyset: --after the cursor it prints).
import { Command } from 'commander';
import { z } from 'zod';
import { decisionCursor, decisionCursorPattern, decisionSorts, listDecisions } from '../../../db/queries/audit.js';
import { withDatabase } from '../../database.js';
import { parseOptions, printJson } from '../../options.js';
import { date, id } from './options.js';

const listOptions = z.object({
  run: id('run').optional(),
  principle: z.string().min(1).optional(),
  stage: z.string().min(1).optional(),
  model: z.string().min(1).optional(),
  disagree: z.boolean().default(false),
  lowConfidence: z.union([z.literal(true), z.coerce.number().gt(0.5).max(1)]).optional(),
  overridden: z.boolean().default(false),
  flagged: z.boolean().default(false),
  unparseable: z.boolean().default(false),
  since: date.optional(),
  until: date.optional(),
  sort: z.enum(decisionSorts, { error: `expected one of ${decisionSorts.join(', ')}` }).default('id'),
  after: z.string().regex(decisionCursorPattern, { error: 'expected a cursor as printed by the previous page (e.g. 1234 or 0.75_1234)' }).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(50),
  offset: z.coerce.number().int().min(0).default(0),
  json: z.boolean().default(false),
});

export const listCommand = new Command('list')
  .description('rater decisions, filtered, sorted and paged')
  .option('--run <id>', 'only this run')
  .option('--principle <key>', 'only decisions under this principle id')
  .option('--stage <stage>', 'only decisions of this stage (label, score, critique, process, …)')
  .option('--model <name>', 'only this rater model')
  .option('--disagree', 'only pairs whose AB and BA answers disagree (position bias)')
  .option('--low-confidence [threshold]', 'only decisions whose confidence is below the threshold (default 0.6)')
  .option('--overridden', 'only decisions a human has overruled')
  .option('--flagged', 'only decisions whose untrusted text tried to steer the rater')
  .option('--unparseable', 'only answers that could not be read')
  .option('--since <date>', 'from this date or time')
  .option('--until <date>', 'before this date or time')
  .option('--sort <order>', `${decisionSorts.join(' | ')} ('-' for descending)`, 'id')
  .option('--after <cursor>', 'the page after this cursor (printed at the end of the previous page)')
  .option('--limit <n>', 'page size', '50')
  .option('--offset <n>', 'skip this many (without --after)', '0')
  .option('--json', 'print as JSON')
  .action(async (raw: unknown) => {
    const options = parseOptions(listOptions, raw);
    const lowConfidence = options.lowConfidence === true ? 0.6 : options.lowConfidence;
    const rows = await withDatabase((db) => listDecisions(db, { ...options, lowConfidence }));
    if (options.json) return printJson(rows);
    if (rows.length === 0) return console.log('no decisions match');
    console.log('   id   run  principle                        order choice  conf  model             flags');
    for (const r of rows) {
      const choice = r.human_prefer_a_b ? `${r.parsed_choice ?? '-'}→H` : (r.parsed_choice ?? '-');
      console.log(
        `${String(r.id).padStart(5)} ${String(r.run_id).padStart(5)}  ${r.principle_key.slice(0, 32).padEnd(32)} ${(r.order ?? '').padEnd(5)} ${choice.padEnd(7)} ${r.confidence === null ? '  -  ' : r.confidence.toFixed(2)}  ${r.rater_model.slice(0, 16).padEnd(16)}  ${r.flags.join(',')}`,
      );
    }
    if (rows.length === options.limit) console.log(`… more with --after ${decisionCursor(rows.at(-1)!, options.sort)}${options.sort === 'id' ? '' : ` --sort ${options.sort}`}`);
  });
