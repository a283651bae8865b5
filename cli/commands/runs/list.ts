// `tenet runs list`: runs, newest first.
import { Command } from 'commander';
import { z } from 'zod';
import { listRuns } from '../../../db/queries/runs.js';
import { runStatuses } from '../../../db/schema.js';
import { withDatabase } from '../../database.js';
import { parseOptions, printJson } from '../../options.js';

const listOptions = z.object({
  status: z.enum(runStatuses, { error: `expected one of ${runStatuses.join(', ')}` }).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(50),
  json: z.boolean().default(false),
});

export const listCommand = new Command('list')
  .description('runs, newest first')
  .option('--status <status>', `only runs with this status (${runStatuses.join(', ')})`)
  .option('--limit <n>', 'how many', '50')
  .option('--json', 'print as JSON')
  .action(async (raw: unknown) => {
    const options = parseOptions(listOptions, raw);
    const rows = await withDatabase((db) => listRuns(db, options));
    if (options.json) return printJson(rows);
    if (rows.length === 0) return console.log('no runs');
    for (const r of rows) console.log(`${String(r.id).padStart(5)}  ${r.status.padEnd(9)}  ${r.kind.padEnd(8)}  ${r.createdAt.toISOString()}  ${r.workflowId}${r.error ? `  (${r.error.slice(0, 80)})` : ''}`);
  });
