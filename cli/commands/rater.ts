// `tenet rater eval|show|list|agreement`: measure a rater on a gold set, read stored evaluations,
// and the agreement of a run's AI labels with the humans who reviewed its pairs.
import { Command } from 'commander';
import { eq } from 'drizzle-orm';
import { z } from 'zod';
import { evaluateRater } from '../../core/rater/evaluation.js';
import { findRaterEvaluation, humanReviewedDecisions, listRaterEvaluations } from '../../db/rater-evaluations.js';
import { runs } from '../../db/schema.js';
import { closeAll, openDatabase } from '../context.js';
import { UserError } from '../errors.js';
import { parseOptions, printJson } from '../options.js';
import { raterEvalCommand } from './rater-eval.js';
import { evaluationView, printEvaluation, printMetricsTable } from './rater-report.js';

const id = (what: string) => z.coerce.number({ error: `expected ${what} id (a whole number)` }).int({ error: `expected ${what} id (a whole number)` }).positive({ error: `expected ${what} id (a whole number)` });
const jsonOption = z.object({ json: z.boolean().default(false) });

async function runStatus(db: Awaited<ReturnType<typeof openDatabase>>, runId: number): Promise<string> {
  const [run] = await db.select({ status: runs.status }).from(runs).where(eq(runs.id, runId));
  return run?.status ?? 'unknown';
}

const showCommand = new Command('show')
  .description('one stored rater evaluation: the rater, the gold set, and every figure overall, per principle and per category')
  .argument('<evaluation>', 'evaluation id (`tenet rater list` shows them)')
  .option('--json', 'print as JSON')
  .action(async (ref: string, raw: unknown) => {
    const options = parseOptions(jsonOption, raw);
    const evaluationId = parseOptions(id('an evaluation'), ref);
    const db = await openDatabase();
    try {
      const row = await findRaterEvaluation(db, evaluationId);
      if (!row) throw new UserError(`no rater evaluation ${evaluationId} (\`tenet rater list\` shows them)`);
      const view = evaluationView(row, await runStatus(db, row.runId));
      if (options.json) printJson(view);
      else printEvaluation(view);
    } finally {
      await closeAll();
    }
  });

const listCommand = new Command('list')
  .description('rater evaluations, newest first, with their overall figures')
  .option('--limit <n>', 'how many', '50')
  .option('--json', 'print as JSON')
  .action(async (raw: unknown) => {
    const options = parseOptions(jsonOption.extend({ limit: z.coerce.number().int().min(1).max(10_000).default(50) }), raw);
    const db = await openDatabase();
    try {
      const rows = await listRaterEvaluations(db, options.limit);
      const views = await Promise.all(rows.map(async (row) => evaluationView(row, await runStatus(db, row.runId))));
      if (options.json) return printJson(views);
      if (views.length === 0) return console.log('no rater evaluations (`tenet rater eval --gold FILE --config run.yaml` makes one)');
      for (const v of views) {
        const rater = v.rater as { endpoint: { model: string } };
        const o = v.metrics?.overall;
        console.log(
          `${String(v.id).padStart(5)}  ${v.status.padEnd(9)}  ${rater.endpoint.model.slice(0, 24).padEnd(24)}  ${v.gold.name.slice(0, 24).padEnd(24)} ${String(v.gold.pairs).padStart(5)} pairs  ${o ? `acc ${o.accuracy.combined.accuracy?.toFixed(2) ?? '-'}  agree ${o.order_agreement?.toFixed(2) ?? '-'}  bias ${o.position_bias?.toFixed(2) ?? '-'}${o.debiased ? `  debiased acc ${o.debiased.accuracy.accuracy?.toFixed(2) ?? '-'}` : ''}` : 'no metrics yet'}  ${v.created_at.toISOString()}`,
        );
      }
    } finally {
      await closeAll();
    }
  });

const agreementCommand = new Command('agreement')
  .description("AI–human agreement on a run (the RLAIF paper's AI labeler alignment): on the pairs humans reviewed, how often the AI's label picks the human's choice, per principle")
  .argument('<run>', 'run id')
  .option('--json', 'print as JSON')
  .action(async (ref: string, raw: unknown) => {
    const options = parseOptions(jsonOption, raw);
    const runId = parseOptions(id('a run'), ref);
    const db = await openDatabase();
    try {
      if ((await runStatus(db, runId)) === 'unknown') throw new UserError(`no run ${runId}`);
      const { decisions, reviewedPairs, humanTies } = await humanReviewedDecisions(db, runId);
      const e = evaluateRater(decisions);
      const agreement = (m: typeof e.overall) => ({ agreement: m.accuracy.combined.accuracy, pairs: m.accuracy.combined.decided, agree: m.accuracy.combined.correct, disagree: m.accuracy.combined.wrong, ai_ties: m.accuracy.combined.ties });
      if (options.json) {
        return printJson({ run_id: runId, reviewed_pairs: reviewedPairs, human_ties: humanTies, overall: agreement(e.overall), principles: Object.fromEntries(Object.entries(e.principles).map(([k, m]) => [k, agreement(m)])), metrics: e });
      }
      console.log(`run ${runId}: ${reviewedPairs} pairs reviewed by humans (${humanTies} ties, left out); ${e.overall.accuracy.combined.decided} of the rest have AI decisions`);
      if (e.overall.pairs === 0) return;
      console.log(`AI–human agreement ${e.overall.accuracy.combined.accuracy?.toFixed(3) ?? '-'} (${e.overall.accuracy.combined.correct} agree, ${e.overall.accuracy.combined.wrong} disagree, ${e.overall.accuracy.combined.ties} AI ties)`);
      printMetricsTable({ overall: e.overall, principles: e.principles, categories: {} });
    } finally {
      await closeAll();
    }
  });

export const raterCommand = new Command('rater')
  .description('measure a rater before trusting it: gold-set evaluations and AI–human agreement')
  .addCommand(raterEvalCommand)
  .addCommand(showCommand)
  .addCommand(listCommand)
  .addCommand(agreementCommand);
