// `tenet models list`: models the trainer made, newest first, with a few of their metrics.
import { Command } from 'commander';
import { z } from 'zod';
import { listModels } from '../../../db/queries/models.js';
import { withDatabase } from '../../database.js';
import { parseOptions, printJson } from '../../options.js';
import { id } from './options.js';

const listOptions = z.object({ run: id('a run id').optional(), kind: z.enum(['base', 'sft', 'reward', 'policy'], { error: 'expected base, sft, reward or policy' }).optional(), json: z.boolean().default(false) });

export const listCommand = new Command('list')
  .description('models the trainer made, newest first')
  .option('--run <id>', 'only this run')
  .option('--kind <kind>', 'base | sft | reward | policy')
  .option('--json', 'print JSON')
  .action(async (raw: unknown) => {
    const options = parseOptions(listOptions, raw);
    const rows = await withDatabase((db) => listModels(db, { ...options, limit: 500 }));
    if (options.json) return printJson(rows);
    if (rows.length === 0) return console.log('no models');
    for (const row of rows) {
      const metrics = Object.entries(row.metrics as Record<string, unknown>)
        .filter(([, v]) => typeof v === 'number')
        .slice(0, 4)
        .map(([k, v]) => `${k}=${(v as number).toFixed(4)}`)
        .join(' ');
      console.log(`${String(row.id).padStart(5)}  ${row.kind.padEnd(7)} ${row.modelKey.padEnd(28)} parent=${row.parentId ?? '-'}  ${metrics}`);
    }
  });
