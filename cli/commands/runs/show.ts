// `tenet runs show`: one run's status, config, live progress (from Temporal when it answers) and metrics.
import { Command } from 'commander';
import { z } from 'zod';
import { runMetrics } from '../../../db/queries/runs.js';
import { describePending, pendingFailures, type PendingFailure } from '../../../worker/pending.js';
import { progressQuery } from '../../../workflows/types.js';
import { withDatabase, withTemporal } from '../../database.js';
import { parseOptions, printJson } from '../../options.js';
import { requireRun } from './find.js';

export const showCommand = new Command('show')
  .description('one run: status, config, live progress and metrics')
  .argument('<run>', 'run id or workflow id')
  .option('--json', 'print as JSON')
  .action(async (ref: string, raw: unknown) => {
    const options = parseOptions(z.object({ json: z.boolean().default(false) }), raw);
    const { row, metricRows } = await withDatabase(async (db) => {
      const run = await requireRun(db, ref);
      return { row: run, metricRows: await runMetrics(db, run.id) };
    });
    let progress: unknown = null;
    let pending: PendingFailure[] = [];
    await withTemporal(async (client) => {
      progress = await client.workflow.getHandle(row.workflowId).query(progressQuery);
      if (!row.finishedAt) pending = await pendingFailures(client.workflow, row.workflowId);
    }).catch(() => {
      // Temporal down or the workflow gone: the rows above still say what is known.
    });
    if (options.json) return printJson({ ...row, progress, pending, metrics: metricRows });
    console.log(`run ${row.id}  ${row.status}  ${row.workflowId}`);
    console.log(`  created ${row.createdAt.toISOString()}${row.startedAt ? `  started ${row.startedAt.toISOString()}` : ''}${row.finishedAt ? `  finished ${row.finishedAt.toISOString()}` : ''}`);
    if (row.error) console.log(row.status === 'paused' ? `  alert: ${row.error}\n  (\`tenet runs resume ${row.id}\` goes on)` : `  error: ${row.error}`);
    const alerts = metricRows.filter((m) => m.name === 'monitor.alerts' && m.value > 0);
    for (const a of alerts) console.log(`  monitors: ${a.value} alert(s) after iteration ${a.iteration}`);
    if (Array.isArray(progress)) for (const p of progress as { stage: string; done: number; total: number; failed: number }[]) console.log(`  ${p.stage.padEnd(9)} ${p.done}/${p.total}  failed ${p.failed}`);
    for (const p of pending) console.log(`  waiting: ${describePending(p)}`);
    for (const m of metricRows) console.log(`  metric  iteration ${m.iteration}  ${m.name} = ${m.value}`);
  });
