// The rater's accuracy on a stratified subset of the shipped gold set (the first N pairs of each
// category of constitutions/gold/default.jsonl), under a run config's rater and label settings:
// the same rater evaluation as `tenet rater eval`, stored and auditable, sized to run beside a demo
// or a benchmark. Used by `tenet demo` and `npm run bench -- learn`.
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { taskQueues } from '../core/queues.js';
import type { RaterMetrics } from '../core/rater/evaluation.js';
import { goldSetHash } from '../core/rater/gold.js';
import type { RunConfig } from '../core/run-config.js';
import { storeConstitution } from '../db/constitutions.js';
import type { Database } from '../db/pool.js';
import { findRaterEvaluation, setUpRaterEvaluation } from '../db/rater-evaluations.js';
import { projectRoot } from '../worker/settings.js';
import type { raterEvaluation } from '../workflows/rater-eval.js';
import { requireConstitution } from './constitution-file.js';
import { readGold } from './gold-file.js';
import { followRun, type ProgressMode } from './progress.js';

export interface GoldSubsetAccuracy {
  evaluationId: number;
  pairs: number;
  raw: number | null;
  debiased: number | null;
  dropsAsTies: number | null;
  positionBias: number | null;
  orderAgreement: number | null;
}

export async function goldSubsetAccuracy(input: { db: Database; client: Client; config: RunConfig; perCategory: number; progress: ProgressMode }): Promise<GoldSubsetAccuracy> {
  const file = path.join(projectRoot, 'constitutions', 'gold', 'default.jsonl');
  const constitutionFile = path.join(projectRoot, 'constitutions', 'default.yaml');
  const constitution = requireConstitution(constitutionFile);
  const all = readGold(file, constitution.constitution);
  const taken = new Map<string, number>();
  const pairs = all.pairs.filter((pair) => {
    const n = taken.get(pair.category) ?? 0;
    taken.set(pair.category, n + 1);
    return n < input.perCategory;
  });
  const stored = await storeConstitution(input.db, { constitution: constitution.constitution, source: constitution.source, sourcePath: constitutionFile });
  const setup = await setUpRaterEvaluation(input.db, {
    gold: { name: `default.jsonl (first ${input.perCategory} per category)`, hash: goldSetHash(pairs), pairs },
    constitution: stored,
    config: input.config,
  });
  // The same rater configuration on the same pairs was measured already: its stored result stands.
  if (!setup.done) {
    const handle = await input.client.workflow.start<typeof raterEvaluation>('raterEvaluation', {
      taskQueue: taskQueues.cpu,
      workflowId: setup.workflowId,
      args: [{ runId: setup.runId, pairs: pairs.length, comparisons: 2 * pairs.length, batchSize: input.config.scale.batch_size, maxBatchesInFlight: input.config.scale.max_batches_in_flight }],
    });
    await followRun(handle, () => handle.result(), input.progress);
  }
  const row = await findRaterEvaluation(input.db, setup.evaluationId);
  const overall = (row?.metrics as { overall?: RaterMetrics } | null)?.overall;
  return {
    evaluationId: setup.evaluationId,
    pairs: pairs.length,
    raw: overall?.accuracy.combined.accuracy ?? null,
    debiased: overall?.debiased?.accuracy.accuracy ?? null,
    dropsAsTies: overall?.debiased?.accuracy_drops_as_ties ?? null,
    positionBias: overall?.position_bias ?? null,
    orderAgreement: overall?.order_agreement ?? null,
  };
}
