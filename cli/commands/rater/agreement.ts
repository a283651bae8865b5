// `tenet rater agreement`: on the pairs humans reviewed in a run, how often the AI's label picks the human's choice.
import { Command } from 'commander';
import { evaluateRater } from '../../../core/rater/evaluation.js';
import { findRun } from '../../../db/queries/runs.js';
import { humanReviewedDecisions } from '../../../db/rater-evaluations.js';
import { withDatabase } from '../../database.js';
import { UserError } from '../../errors.js';
import { parseOptions, printJson } from '../../options.js';
import { id, jsonOption } from './options.js';
import { printMetricsTable } from './report.js';

export const agreementCommand = new Command('agreement')
  .description("AI–human agreement on a run (the RLAIF paper's AI labeler alignment): on the pairs humans reviewed, how often the AI's label picks the human's choice, per principle")
  .argument('<run>', 'run id')
  .option('--json', 'print as JSON')
  .action(async (ref: string, raw: unknown) => {
    const options = parseOptions(jsonOption, raw);
    const runId = parseOptions(id('a run'), ref);
    const reviewed = await withDatabase(async (db) => ((await findRun(db, runId)) ? humanReviewedDecisions(db, runId) : undefined));
    if (!reviewed) throw new UserError(`no run ${runId}`);
    const { decisions, reviewedPairs, humanTies } = reviewed;
    const e = evaluateRater(decisions);
    const agreement = (m: typeof e.overall) => ({ agreement: m.accuracy.combined.accuracy, pairs: m.accuracy.combined.decided, agree: m.accuracy.combined.correct, disagree: m.accuracy.combined.wrong, ai_ties: m.accuracy.combined.ties });
    if (options.json) {
      return printJson({ run_id: runId, reviewed_pairs: reviewedPairs, human_ties: humanTies, overall: agreement(e.overall), principles: Object.fromEntries(Object.entries(e.principles).map(([k, m]) => [k, agreement(m)])), metrics: e });
    }
    console.log(`run ${runId}: ${reviewedPairs} pairs reviewed by humans (${humanTies} ties, left out); ${e.overall.accuracy.combined.decided} of the rest have AI decisions`);
    if (e.overall.pairs === 0) return;
    console.log(`AI–human agreement ${e.overall.accuracy.combined.accuracy?.toFixed(3) ?? '-'} (${e.overall.accuracy.combined.correct} agree, ${e.overall.accuracy.combined.wrong} disagree, ${e.overall.accuracy.combined.ties} AI ties)`);
    printMetricsTable({ overall: e.overall, principles: e.principles, categories: {} });
  });
