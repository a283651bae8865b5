// `tenet audit stats`: per principle of a run, the label split, order agreement, confidence, tokens, cost.
import { Command } from 'commander';
import { preferenceDropCounts, principleStats } from '../../../db/queries/audit.js';
import { withDatabase } from '../../database.js';
import { UserError } from '../../errors.js';
import { parseOptions, printJson } from '../../options.js';
import { id, jsonOnly } from './options.js';

export const statsCommand = new Command('stats')
  .description('per principle: label distribution, order agreement (position bias), mean confidence, tokens and cost')
  .argument('<run>', 'run id')
  .option('--json', 'print as JSON')
  .action(async (ref: string, raw: unknown) => {
    const options = parseOptions(jsonOnly, raw);
    const runId = parseOptions(id('run'), ref);
    const { stats, drops } = await withDatabase(async (db) => ({ stats: await principleStats(db, runId), drops: await preferenceDropCounts(db, runId) }));
    if (!stats) throw new UserError(`no run ${runId}`);
    if (options.json) return printJson(stats);
    if (stats.length === 0) return console.log(`run ${runId} has no label decisions yet`);
    console.log('principle                         decisions    A    B  unparse  agree  conf   tokens in/out      cost  flagged');
    for (const s of stats) {
      console.log(
        `${s.principle.slice(0, 32).padEnd(32)} ${String(s.decisions).padStart(9)} ${String(s.chose_a).padStart(4)} ${String(s.chose_b).padStart(4)} ${String(s.unparseable).padStart(8)}  ${s.order_agreement === null ? '  -  ' : s.order_agreement.toFixed(2)}  ${s.mean_confidence === null ? '  -  ' : s.mean_confidence.toFixed(2)}  ${`${s.prompt_tokens}/${s.completion_tokens}`.padStart(14)}  ${s.cost === null ? '     -' : s.cost.toFixed(4).padStart(8)}  ${s.flagged}`,
      );
    }
    if (drops.length > 0) console.log(`pairs kept out of training: ${drops.map((d) => `${d.pairs} ${d.reason}`).join(', ')} (label.disagreement, label.margin)`);
  });
