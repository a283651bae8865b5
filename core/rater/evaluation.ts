// How good a rater is, measured against known answers (a gold set's chosen response, or a human's
// choice): accuracy in each order and combined, position bias, order agreement, ties and abstentions,
// calibration of the soft labels (ECE, Brier) and tokens, overall and per principle and category.
// Beside those raw figures, the same after the run config's debiasing (position prior, disagreement
// and margin rules, or pointwise labels): read from the labels the label stage itself made, with the
// training rules applied by the functions training uses, so what is measured is what training gets.
// Pure: the activity reads decision and preference rows and hands them here.
import { applyTrainingPolicy, logit, sigmoid } from './calibration.js';
import { combineDecisions, type Order } from './labels.js';
import type { DebiasRecord, LabelPolicy } from './pairwise.js';

/** One rater call on a pair whose better response is known. */
export interface EvalDecision {
  /** The pair (a gold line, or a reviewed pair). */
  pair: string;
  category: string;
  principle: string;
  /** Attempt-independent identity of the comparison: its first ask and repairs share it. */
  comparison: string;
  /** 0 for the first ask, 1.. for repairs. */
  attempt: number;
  /** AB: the better (gold-chosen) response was shown as A; BA: it was shown as B. */
  order: Order;
  /** P(response A is better) of a readable answer; undefined when the answer could not be read. */
  probabilityA: number | undefined;
  promptTokens: number;
  completionTokens: number;
  fromCache: boolean;
}

export interface OrderAccuracy {
  /** Share of the order's decided comparisons that favour the better response (a 0.5 counts half); null with none. */
  accuracy: number | null;
  decided: number;
}

export interface RaterMetrics {
  pairs: number;
  comparisons: number;
  /** Rater calls, repairs included. */
  calls: number;
  accuracy: {
    ab: OrderAccuracy;
    ba: OrderAccuracy;
    /** Per pair, the soft label over both orders (and every principle asked) against the known answer; a tie (exactly 0.5) counts half. */
    combined: { accuracy: number | null; correct: number; wrong: number; ties: number; decided: number };
  };
  /** Mean P(the response shown first is better) − 0.5 over decided comparisons: 0 is unbiased, +0.5 always picks A. */
  position_bias: number | null;
  /** Share of pairs decided in both orders whose two orders pick the same response. */
  order_agreement: number | null;
  order_agreement_pairs: number;
  /** Pairs whose combined soft label is exactly 0.5, over decided pairs. */
  tie_rate: number | null;
  /** Comparisons with no readable answer after every repair (skipped), over all comparisons. */
  abstain_rate: number | null;
  /** Comparisons decided by a repair (their first answer could not be read). */
  repaired: number;
  /** Expected calibration error of the combined soft labels: 10 equal-width bins on the confidence of the predicted side. */
  ece: number | null;
  /** Mean squared distance of the combined soft label from the known answer (1). */
  brier: number | null;
  tokens: { prompt: number; completion: number; cached_calls: number };
  /** The same pairs after the configured debiasing, as training gets them; absent in evaluations stored before it was measured. */
  debiased?: DebiasedMetrics;
}

/** A gold pair's label as the label stage made it (its preference row, debiased by the run config). */
export interface EvalLabel {
  pair: string;
  category: string;
  /** The principles its decisions were asked under. */
  principles: readonly string[];
  mode: DebiasRecord['mode'];
  /** P(the better response wins) after the position prior (or pointwise), before the disagreement and margin rules. */
  combined: number;
  /** Whether its debiased AB and BA sides pick the same response; undefined with one order (or pointwise). */
  ordersAgree: boolean | undefined;
  /** The prior P(A) taken out of its decisions; null when none was. */
  priorA: number | null;
}

/** The run config's debiasing settings an evaluation is read under (`label:`). */
export interface DebiasSettings extends LabelPolicy {
  mode: DebiasRecord['mode'];
}

export interface DebiasedMetrics {
  settings: DebiasSettings;
  /** The smallest and largest prior P(A) taken out (a batch prior differs per label batch); null when none was. */
  prior_a: { min: number; max: number } | null;
  /** Pairs with a label (both responses read, in any order). */
  labelled: number;
  /** Pairs training keeps, and the ones it drops by reason. */
  kept: number;
  dropped: { orders_disagree: number; below_margin: number };
  /** Over kept pairs, their label after the rules (a tie, exactly 0.5, counts half). */
  accuracy: { accuracy: number | null; correct: number; wrong: number; ties: number };
  /** Over labelled pairs, a dropped pair counted as a tie: comparable between settings that drop different shares. */
  accuracy_drops_as_ties: number | null;
  /** Mean debiased P(the response shown first is better) − 0.5 over decided pairwise comparisons (the prior of each pair taken out). */
  position_bias: number | null;
  /** Share of labelled pairs with both orders whose debiased orders pick the same response. */
  order_agreement: number | null;
  /** Kept pairs whose label is exactly 0.5 (a disagreement made a tie, say), over kept pairs. */
  tie_rate: number | null;
  ece: number | null;
  brier: number | null;
}

export interface RaterEvaluation {
  overall: RaterMetrics;
  principles: Record<string, RaterMetrics>;
  categories: Record<string, RaterMetrics>;
}

const ratio = (part: number, whole: number): number | null => (whole === 0 ? null : part / whole);

/** 1 when `p` (P(better response wins)) favours the better response, 0 when it favours the worse, 0.5 on a tie. */
export function credit(p: number): number {
  return p > 0.5 ? 1 : p < 0.5 ? 0 : 0.5;
}

/** P(the better response wins) of one readable answer. */
function probabilityBetter(d: EvalDecision & { probabilityA: number }): number {
  return d.order === 'AB' ? d.probabilityA : 1 - d.probabilityA;
}

/** ECE with `bins` equal-width bins on the confidence max(p, 1 − p) of each soft label p = P(better response wins). */
export function expectedCalibrationError(softLabels: readonly number[], bins = 10): number | null {
  if (softLabels.length === 0) return null;
  const sums = Array.from({ length: bins }, () => ({ n: 0, confidence: 0, correct: 0 }));
  for (const p of softLabels) {
    const confidence = Math.max(p, 1 - p);
    const bin = sums[Math.min(bins - 1, Math.floor(confidence * bins))]!;
    bin.n++;
    bin.confidence += confidence;
    bin.correct += credit(p);
  }
  return sums.reduce((total, b) => total + (b.n === 0 ? 0 : (b.n / softLabels.length) * Math.abs(b.correct / b.n - b.confidence / b.n)), 0);
}

export function brierScore(softLabels: readonly number[]): number | null {
  if (softLabels.length === 0) return null;
  return softLabels.reduce((sum, p) => sum + (1 - p) ** 2, 0) / softLabels.length;
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}

/** A comparison counts once: decided by its readable answer (first ask or a repair), else abstained. */
function readComparisons(decisions: readonly EvalDecision[]): { decided: (EvalDecision & { probabilityA: number }) | undefined; repaired: boolean }[] {
  return [...groupBy(decisions, (d) => d.comparison).values()].map((calls) => {
    const ordered = [...calls].sort((a, b) => a.attempt - b.attempt);
    const decided = ordered.find((c): c is EvalDecision & { probabilityA: number } => c.probabilityA !== undefined);
    return { decided, repaired: decided !== undefined && decided !== ordered[0] };
  });
}

/** The metrics of a set of decisions (all of one principle, say). */
export function raterMetrics(decisions: readonly EvalDecision[]): RaterMetrics {
  const comparisons = readComparisons(decisions);
  const decided = comparisons.flatMap((c) => (c.decided ? [c.decided] : []));
  const orderAccuracy = (order: Order): OrderAccuracy => {
    const inOrder = decided.filter((d) => d.order === order);
    return { accuracy: ratio(inOrder.reduce((sum, d) => sum + credit(probabilityBetter(d)), 0), inOrder.length), decided: inOrder.length };
  };
  const verdicts = [...groupBy(decided, (d) => d.pair).values()].map((made) => combineDecisions(made.map((d) => ({ order: d.order, probabilityFirst: probabilityBetter(d) })))!);
  const softLabels = verdicts.map((v) => v.softLabel);
  const count = (score: number) => softLabels.filter((p) => credit(p) === score).length;
  const [correct, wrong, ties] = [count(1), count(0), count(0.5)];
  const bothOrders = verdicts.filter((v) => v.ordersAgree !== undefined);
  return {
    pairs: new Set(decisions.map((d) => d.pair)).size,
    comparisons: comparisons.length,
    calls: decisions.length,
    accuracy: {
      ab: orderAccuracy('AB'),
      ba: orderAccuracy('BA'),
      combined: { accuracy: ratio(correct + ties / 2, softLabels.length), correct, wrong, ties, decided: softLabels.length },
    },
    position_bias: decided.length === 0 ? null : decided.reduce((sum, d) => sum + d.probabilityA, 0) / decided.length - 0.5,
    order_agreement: ratio(bothOrders.filter((v) => v.ordersAgree).length, bothOrders.length),
    order_agreement_pairs: bothOrders.length,
    tie_rate: ratio(ties, softLabels.length),
    abstain_rate: ratio(comparisons.length - decided.length, comparisons.length),
    repaired: comparisons.filter((c) => c.repaired).length,
    ece: expectedCalibrationError(softLabels),
    brier: brierScore(softLabels),
    tokens: {
      prompt: decisions.reduce((sum, d) => sum + d.promptTokens, 0),
      completion: decisions.reduce((sum, d) => sum + d.completionTokens, 0),
      cached_calls: decisions.filter((d) => d.fromCache).length,
    },
  };
}

/**
 * The figures of the labels the label stage made under `settings`, with the training rules
 * (disagreement, margin) applied as training applies them; `decisions` (of the same pairs) give the
 * position bias left after each pair's prior is taken out.
 */
export function debiasedMetrics(labels: readonly EvalLabel[], decisions: readonly EvalDecision[], settings: DebiasSettings): DebiasedMetrics {
  const outcomes = labels.map((label) => applyTrainingPolicy({ softLabel: label.combined, ordersAgree: label.ordersAgree }, settings));
  const kept = outcomes.flatMap((o) => (o.keep ? [o.softLabel] : []));
  const dropped = (reason: string) => outcomes.filter((o) => !o.keep && o.reason === reason).length;
  const count = (score: number) => kept.filter((p) => credit(p) === score).length;
  const [correct, wrong, ties] = [count(1), count(0), count(0.5)];
  const priors = labels.flatMap((l) => (l.priorA === null ? [] : [l.priorA]));
  const priorOf = new Map(labels.map((l) => [l.pair, l.priorA ?? 0.5]));
  const shownFirst = readComparisons(decisions).flatMap(({ decided: d }) => (d && priorOf.has(d.pair) ? [sigmoid(logit(d.probabilityA) - logit(priorOf.get(d.pair)!))] : []));
  const bothOrders = labels.filter((l) => l.ordersAgree !== undefined);
  return {
    settings,
    prior_a: priors.length === 0 ? null : { min: Math.min(...priors), max: Math.max(...priors) },
    labelled: labels.length,
    kept: kept.length,
    dropped: { orders_disagree: dropped('orders-disagree'), below_margin: dropped('below-margin') },
    accuracy: { accuracy: ratio(correct + ties / 2, kept.length), correct, wrong, ties },
    accuracy_drops_as_ties: ratio(correct + (ties + labels.length - kept.length) / 2, labels.length),
    position_bias: shownFirst.length === 0 ? null : shownFirst.reduce((sum, p) => sum + p, 0) / shownFirst.length - 0.5,
    order_agreement: ratio(bothOrders.filter((l) => l.ordersAgree).length, bothOrders.length),
    tie_rate: ratio(ties, kept.length),
    ece: expectedCalibrationError(kept),
    brier: brierScore(kept),
  };
}

/**
 * Overall, per principle and per category. A pair judged under several principles counts under each, with only that principle's answers
 * (its debiased label, which combines every principle, counts under each). With `labels` and `settings`, each group also has its figures
 * after the configured debiasing.
 */
export function evaluateRater(decisions: readonly EvalDecision[], debiased?: { labels: readonly EvalLabel[]; settings: DebiasSettings }): RaterEvaluation {
  const metrics = (group: readonly EvalDecision[], labels: readonly EvalLabel[]): RaterMetrics =>
    debiased ? { ...raterMetrics(group), debiased: debiasedMetrics(labels, group, debiased.settings) } : raterMetrics(group);
  const labels = debiased?.labels ?? [];
  const per = (decisionKey: (d: EvalDecision) => string, labelKeys: (l: EvalLabel) => readonly string[]) => {
    const names = [...new Set([...decisions.map(decisionKey), ...labels.flatMap(labelKeys)])].sort((a, b) => a.localeCompare(b));
    return Object.fromEntries(names.map((name) => [name, metrics(decisions.filter((d) => decisionKey(d) === name), labels.filter((l) => labelKeys(l).includes(name)))]));
  };
  return { overall: metrics(decisions, labels), principles: per((d) => d.principle, (l) => l.principles), categories: per((d) => d.category, (l) => [l.category]) };
}
