// `tenet rater list`: rater evaluations, newest first, with their overall figures.
import { Command } from 'commander';
import { z } from 'zod';
import { listRaterEvaluations } from '../../../db/rater-evaluations.js';
import { withDatabase } from '../../database.js';
import { parseOptions, printJson } from '../../options.js';
import { jsonOption } from './options.js';
import { storedEvaluationView } from './report.js';

export const listCommand = new Command('list')
  .description('rater evaluations, newest first, with their overall figures')
  .option('--limit <n>', 'how many', '50')
  .option('--json', 'print as JSON')
  .action(async (raw: unknown) => {
    const options = parseOptions(jsonOption.extend({ limit: z.coerce.number().int().min(1).max(10_000).default(50) }), raw);
    const views = await withDatabase(async (db) => Promise.all((await listRaterEvaluations(db, options.limit)).map((row) => storedEvaluationView(db, row))));
    if (options.json) return printJson(views);
    if (views.length === 0) return console.log('no rater evaluations (`tenet rater eval --gold FILE --config run.yaml` makes one)');
    for (const v of views) {
      const rater = v.rater as { endpoint: { model: string } };
      const o = v.metrics?.overall;
      console.log(
        `${String(v.id).padStart(5)}  ${v.status.padEnd(9)}  ${rater.endpoint.model.slice(0, 24).padEnd(24)}  ${v.gold.name.slice(0, 24).padEnd(24)} ${String(v.gold.pairs).padStart(5)} pairs  ${o ? `acc ${o.accuracy.combined.accuracy?.toFixed(2) ?? '-'}  agree ${o.order_agreement?.toFixed(2) ?? '-'}  bias ${o.position_bias?.toFixed(2) ?? '-'}${o.debiased ? `  debiased acc ${o.debiased.accuracy.accuracy?.toFixed(2) ?? '-'}` : ''}` : 'no metrics yet'}  ${v.created_at.toISOString()}`,
      );
    }
  });
