// `tenet rater eval`: a rater configuration (the run config's rater endpoint and label settings)
// measured on a gold set. The gold file is checked before anything is written or called; the pairs
// then go through the label stage as a `rater-eval` run, and the metrics (raw, and after the run
// config's debiasing as training gets the labels) are stored and printed.
import { WorkflowExecutionAlreadyStartedError, WorkflowFailedError, type Client } from '@temporalio/client';
import { Command } from 'commander';
import { z } from 'zod';
import type { Constitution } from '../../../core/constitution/schema.js';
import { rootCauseMessage } from '../../../core/failure.js';
import { taskQueues } from '../../../core/queues.js';
import type { GoldPair } from '../../../core/rater/gold.js';
import type { RunConfig } from '../../../core/run-config.js';
import { storeConstitution } from '../../../db/constitutions.js';
import { findRaterEvaluation, setUpRaterEvaluation } from '../../../db/rater-evaluations.js';
import type { raterEvaluation } from '../../../workflows/rater-eval.js';
import { requireConstitution } from '../../constitution-file.js';
import { withDatabase, withTemporal } from '../../database.js';
import { UserError } from '../../errors.js';
import { readGold } from '../../gold-file.js';
import { parseOptions, printJson } from '../../options.js';
import { followRun, progressMode, type ProgressMode } from '../../progress.js';
import { localEndpoints, readRunConfig } from '../../run-files.js';
import { evaluationView, printEvaluation } from './report.js';

const evalOptions = z.object({
  gold: z.string().min(1),
  config: z.string().min(1).optional(),
  constitution: z.string().min(1),
  json: z.boolean().default(false),
});

/** Comparisons the evaluation asks: both orders of each pair, under its own principle or the drawn ensemble. */
function plannedComparisons(pairs: readonly GoldPair[], config: RunConfig, constitution: Constitution): number {
  const comparable = constitution.principles.filter((p) => (p.comparisons ?? []).length > 0).length;
  const drawn = Math.min(config.label.ensemble ?? constitution.defaults.principles_per_comparison, comparable);
  return pairs.reduce((sum, p) => sum + 2 * (p.principle ? 1 : drawn), 0);
}

async function runEvaluation(client: Client, workflowId: string, args: Parameters<typeof raterEvaluation>[0], progress: ProgressMode) {
  try {
    await client.workflow.start<typeof raterEvaluation>('raterEvaluation', { taskQueue: taskQueues.cpu, workflowId, args: [args] });
  } catch (error) {
    // The same evaluation is under way (another terminal, or an earlier call cut short): follow it.
    if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
  }
  const handle = client.workflow.getHandle<typeof raterEvaluation>(workflowId);
  try {
    return await followRun(handle, () => handle.result(), progress);
  } catch (error) {
    if (error instanceof WorkflowFailedError) throw new UserError(`the evaluation failed (run it again once this is fixed; answers so far are kept): ${rootCauseMessage(error)}`);
    throw error;
  }
}

export const raterEvalCommand = new Command('eval')
  .description(
    'measure a rater on a gold set: accuracy per order and combined, position bias, order agreement, ties, abstentions, calibration, tokens; raw and after the configured debiasing (label.position_prior, disagreement, margin, mode); per principle and category',
  )
  .requiredOption('--gold <file>', 'gold set JSONL: {"id", "category", "principle"?, "prompt" | "messages", "chosen", "rejected"} per line')
  .option('--config <file>', "run config YAML: the rater is endpoints.rater with the label: settings; default: a local endpoint on 127.0.0.1:8000")
  .option('--constitution <file>', 'constitution YAML (principles and comparison template)', 'constitutions/default.yaml')
  .option('--json', 'print the evaluation as JSON')
  .action(async (raw: unknown) => {
    const options = parseOptions(evalOptions, raw);
    const constitution = requireConstitution(options.constitution);
    const config = readRunConfig(options.config, localEndpoints);
    const gold = readGold(options.gold, constitution.constitution);
    await withDatabase((db) =>
      withTemporal(async (client) => {
        const stored = await storeConstitution(db, { constitution: constitution.constitution, source: constitution.source, sourcePath: options.constitution });
        const setup = await setUpRaterEvaluation(db, { gold, constitution: stored, config });
        if (setup.done) {
          if (!options.json) console.log(`this rater, gold set and constitution were evaluated before (evaluation ${setup.evaluationId}); stored figures:`);
        } else {
          if (!options.json) console.log(`rater evaluation ${setup.evaluationId} started: run ${setup.runId}, workflow ${setup.workflowId}, ${gold.pairs.length} pairs`);
          const scale = config.scale;
          const comparisons = plannedComparisons(gold.pairs, config, constitution.constitution);
          // With --json, stdout is the evaluation alone: bars (stderr, and only on a terminal) rather than progress lines.
          const progress = progressMode(options.json ? 'bars' : undefined);
          await runEvaluation(client, setup.workflowId, { runId: setup.runId, pairs: gold.pairs.length, comparisons, batchSize: scale.batch_size, maxBatchesInFlight: scale.max_batches_in_flight }, progress);
        }
        const view = evaluationView((await findRaterEvaluation(db, setup.evaluationId))!, 'completed');
        if (options.json) printJson(view);
        else printEvaluation(view);
      }),
    );
  });
