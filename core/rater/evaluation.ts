// How good a rater is, measured against known answers (a gold set's chosen response, or a human's
// choice): accuracy in each order and combined, position bias, order agreement, ties and abstentions,
// calibration of the soft labels (ECE, Brier) and tokens, overall and per principle and category.
// Pure: the activity reads decision rows and hands them here.
import { combineDecisions, type Order } from './labels.js';

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

/** The metrics of a set of decisions (all of one principle, say). */
export function raterMetrics(decisions: readonly EvalDecision[]): RaterMetrics {
  // A comparison counts once: decided by its readable answer (first ask or a repair), else abstained.
  const comparisons = [...groupBy(decisions, (d) => d.comparison).values()].map((calls) => {
    const ordered = [...calls].sort((a, b) => a.attempt - b.attempt);
    const decided = ordered.find((c): c is EvalDecision & { probabilityA: number } => c.probabilityA !== undefined);
    return { decided, repaired: decided !== undefined && decided !== ordered[0] };
  });
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

/** Overall, per principle and per category. A pair judged under several principles counts under each, with only that principle's answers. */
export function evaluateRater(decisions: readonly EvalDecision[]): RaterEvaluation {
  const per = (key: (d: EvalDecision) => string) =>
    Object.fromEntries([...groupBy(decisions, key).entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, group]) => [name, raterMetrics(group)]));
  return { overall: raterMetrics(decisions), principles: per((d) => d.principle), categories: per((d) => d.category) };
}
