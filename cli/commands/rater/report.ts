// How `tenet rater eval|show|agreement` print metrics (core/rater/evaluation.ts): one line per
// group (overall, each principle, each category), raw and after the configured debiasing, or the
// JSON as stored.
import type { DebiasedMetrics, RaterEvaluation, RaterMetrics } from '../../../core/rater/evaluation.js';
import type { Database } from '../../../db/pool.js';
import { findRun } from '../../../db/queries/runs.js';
import type { RaterEvaluationRow } from '../../../db/rater-evaluations.js';

const fixed = (value: number | null, digits = 2) => (value === null ? '-' : value.toFixed(digits));
const signed = (value: number | null) => (value === null ? '-' : `${value >= 0 ? '+' : ''}${value.toFixed(2)}`);

const header = `${'group'.padEnd(36)} ${'pairs'.padStart(5)}  acc-AB  acc-BA  acc-both  ties  p-bias  agree  abstain    ECE  Brier  tokens in/out`;

/** A group's name and its cells, each right-aligned to its width. */
function row(name: string, cells: [text: string, width: number][]): string {
  return [name.slice(0, 36).padEnd(36), ...cells.map(([text, width]) => text.padStart(width))].join(' ');
}

function metricsLine(name: string, m: RaterMetrics): string {
  return row(name, [
    [String(m.pairs), 5],
    [' ', 1],
    [fixed(m.accuracy.ab.accuracy), 6],
    [fixed(m.accuracy.ba.accuracy), 7],
    [fixed(m.accuracy.combined.accuracy), 9],
    [fixed(m.tie_rate), 5],
    [signed(m.position_bias), 7],
    [fixed(m.order_agreement), 6],
    [fixed(m.abstain_rate), 8],
    [fixed(m.ece, 3), 6],
    [fixed(m.brier, 3), 6],
    [` ${m.tokens.prompt}/${m.tokens.completion}`, 0],
  ]);
}

const debiasedHeader = `${'group'.padEnd(36)} ${'pairs'.padStart(5)}  kept  drop-disagree  drop-margin  acc-kept  acc-all  ties  p-bias  agree    ECE  Brier`;

function debiasedLine(name: string, d: DebiasedMetrics): string {
  return row(name, [
    [String(d.labelled), 5],
    [String(d.kept), 5],
    [String(d.dropped.orders_disagree), 14],
    [String(d.dropped.below_margin), 12],
    [fixed(d.accuracy.accuracy), 9],
    [fixed(d.accuracy_drops_as_ties), 8],
    [fixed(d.tie_rate), 5],
    [signed(d.position_bias), 7],
    [fixed(d.order_agreement), 6],
    [fixed(d.ece, 3), 6],
    [fixed(d.brier, 3), 6],
  ]);
}

/** Each group's line: overall, per principle, per category. */
function groups(e: RaterEvaluation): [string, RaterMetrics][] {
  return [['overall', e.overall], ...Object.entries(e.principles).map(([name, m]): [string, RaterMetrics] => [`principle ${name}`, m]), ...Object.entries(e.categories).map(([name, m]): [string, RaterMetrics] => [`category ${name}`, m])];
}

export function printMetricsTable(e: RaterEvaluation): void {
  console.log(header);
  for (const [name, m] of groups(e)) console.log(metricsLine(name, m));
}

/** The figures after the configured debiasing, as training gets the labels (nothing printed for evaluations stored before they were measured). */
export function printDebiasedTable(e: RaterEvaluation): void {
  const d = e.overall.debiased;
  if (!d) return;
  const { mode, position_prior, disagreement, margin } = d.settings;
  const prior = d.prior_a === null ? 'no prior taken out' : `prior P(A) ${fixed(d.prior_a.min, 3)}${d.prior_a.max === d.prior_a.min ? '' : `–${fixed(d.prior_a.max, 3)}`} taken out`;
  console.log(`after debiasing (mode ${mode}, position_prior ${position_prior}, disagreement ${disagreement}, margin ${margin}; ${prior}):`);
  console.log(debiasedHeader);
  for (const [name, m] of groups(e)) if (m.debiased) console.log(debiasedLine(name, m.debiased));
}

export interface EvaluationView {
  id: number;
  run_id: number;
  status: string;
  gold: { name: string; hash: string; pairs: number };
  constitution_hash: string;
  rater: unknown;
  rater_config_hash: string;
  metrics: RaterEvaluation | null;
  created_at: Date;
  completed_at: Date | null;
}

export function evaluationView(row: RaterEvaluationRow, status: string): EvaluationView {
  return {
    id: row.id,
    run_id: row.runId,
    status,
    gold: { name: row.goldName, hash: row.goldHash, pairs: row.goldPairs },
    constitution_hash: row.constitutionHash,
    rater: row.raterConfig,
    rater_config_hash: row.raterConfigHash,
    metrics: row.metrics as RaterEvaluation | null,
    created_at: row.createdAt,
    completed_at: row.completedAt,
  };
}

/** The view of a stored evaluation, with its run's status ('unknown' when the run is gone). */
export async function storedEvaluationView(db: Database, row: RaterEvaluationRow): Promise<EvaluationView> {
  return evaluationView(row, (await findRun(db, row.runId))?.status ?? 'unknown');
}

export function printEvaluation(view: EvaluationView): void {
  const rater = view.rater as { endpoint: { base_url: string; model: string }; label: { cot: boolean; logprobs: boolean; ensemble?: number } };
  console.log(`rater evaluation ${view.id} (run ${view.run_id}, ${view.status}): ${rater.endpoint.model} at ${rater.endpoint.base_url}`);
  console.log(`  gold set ${view.gold.name}: ${view.gold.pairs} pairs, sha256 ${view.gold.hash.slice(0, 12)}; constitution ${view.constitution_hash.slice(0, 12)}`);
  console.log(`  label settings: ${JSON.stringify(rater.label)}`);
  if (!view.metrics) return console.log('  no metrics yet: the evaluation has not finished');
  const o = view.metrics.overall;
  console.log(
    `  ${o.comparisons} comparisons, ${o.calls} calls (${o.repaired} repaired, ${o.tokens.cached_calls} from cache); combined ${o.accuracy.combined.correct} right, ${o.accuracy.combined.wrong} wrong, ${o.accuracy.combined.ties} ties`,
  );
  console.log('raw (each answer as the rater gave it):');
  printMetricsTable(view.metrics);
  printDebiasedTable(view.metrics);
}
