// `tenet rater show`: one stored rater evaluation with every figure overall, per principle and per category.
import { Command } from 'commander';
import { findRaterEvaluation } from '../../../db/rater-evaluations.js';
import { withDatabase } from '../../database.js';
import { UserError } from '../../errors.js';
import { parseOptions, printJson } from '../../options.js';
import { id, jsonOption } from './options.js';
import { printEvaluation, storedEvaluationView } from './report.js';

export const showCommand = new Command('show')
  .description('one stored rater evaluation: the rater, the gold set, and every figure overall, per principle and per category')
  .argument('<evaluation>', 'evaluation id (`tenet rater list` shows them)')
  .option('--json', 'print as JSON')
  .action(async (ref: string, raw: unknown) => {
    const options = parseOptions(jsonOption, raw);
    const evaluationId = parseOptions(id('an evaluation'), ref);
    const view = await withDatabase(async (db) => {
      const row = await findRaterEvaluation(db, evaluationId);
      return row && storedEvaluationView(db, row);
    });
    if (!view) throw new UserError(`no rater evaluation ${evaluationId} (\`tenet rater list\` shows them)`);
    if (options.json) printJson(view);
    else printEvaluation(view);
  });
