// Debiasing a rater's pairwise answers. A rater's log-odds for option A are modelled as
//   logit P(A) = content + b,
// where `content` flips sign with the order and `b` is its position prior (a small judge that always
// answers "A" has a large b and little content). Over a pair asked in both orders the content cancels,
// so the median logit of P(A) over both-order decisions estimates b (a fixed prior, e.g. from content-free
// inputs or a gold-set measurement, can be given instead). Each decision is corrected by subtracting b
// in log-odds space, then the orders are combined there. Pairs whose orders disagree can be kept,
// tied or dropped; pairs too close to 0.5 can be dropped from training. Pure; the label activity applies it.
import type { Order } from './labels.js';

/** Probabilities are kept this far from 0 and 1 before taking log-odds (text answers are exactly 0 or 1). */
export const logitEpsilon = 1e-6;

export function logit(p: number): number {
  const q = Math.min(1 - logitEpsilon, Math.max(logitEpsilon, p));
  return Math.log(q / (1 - q));
}

export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export interface OrderedDecision {
  /** AB, BA, and what identifies the comparison both orders share (pair, principle, slot). */
  order: Order;
  comparison: string;
  /** P(option A) as the rater gave it (clamped for chain of thought). */
  probabilityA: number;
}

export interface PositionPrior {
  /** The prior P(option A) with no content to tell the options apart; 0.5 is no bias. */
  probabilityA: number;
  /** How many decisions it was estimated from; 0 for a prior given in the config. */
  decisions: number;
}

/**
 * The position prior estimated from decisions whose comparison was answered in both orders:
 * sigmoid of the median logit P(A). The median, not the mean: an answer read from text, or with
 * only one option among the top logprobs, is P(A) = 0 or 1, whose clipped logit (±13.8) would drag
 * a mean. Undefined when no comparison has both orders.
 */
export function estimatePositionPrior(decisions: readonly OrderedDecision[]): PositionPrior | undefined {
  const orders = new Map<string, Set<Order>>();
  for (const d of decisions) orders.set(d.comparison, (orders.get(d.comparison) ?? new Set()).add(d.order));
  const both = decisions.filter((d) => orders.get(d.comparison)!.size === 2);
  if (both.length === 0) return undefined;
  return { probabilityA: sigmoid(median(both.map((d) => logit(d.probabilityA)))), decisions: both.length };
}

/** Log-odds that the pair's first completion is better, from one decision, with the prior taken out. */
export function debiasedFirstLogit(probabilityA: number, order: Order, prior: number): number {
  const corrected = logit(probabilityA) - logit(prior);
  return order === 'AB' ? corrected : -corrected;
}

export interface DebiasedVerdict {
  /** P(first completion better): sigmoid of the mean debiased log-odds over every decision. */
  softLabel: number;
  /** Whether the AB and BA sides (each its mean debiased log-odds) favour the same completion; undefined with one order. */
  ordersAgree: boolean | undefined;
}

/** Combines one pair's decisions in log-odds space after removing the position prior. */
export function combineDebiased(decisions: readonly { order: Order; probabilityA: number }[], prior: number): DebiasedVerdict | undefined {
  if (decisions.length === 0) return undefined;
  const logits = decisions.map((d) => ({ order: d.order, value: debiasedFirstLogit(d.probabilityA, d.order, prior) }));
  const mean = (values: readonly number[]) => values.reduce((sum, v) => sum + v, 0) / values.length;
  const side = (order: Order) => {
    const values = logits.filter((l) => l.order === order).map((l) => l.value);
    return values.length === 0 ? undefined : mean(values) >= 0;
  };
  const ab = side('AB');
  const ba = side('BA');
  return { softLabel: sigmoid(mean(logits.map((l) => l.value))), ordersAgree: ab === undefined || ba === undefined ? undefined : ab === ba };
}

export type Disagreement = 'keep' | 'tie' | 'drop';
/** `flagged`: a completion carries injection flags and `label.flagged` drops it (core/rater/pairwise.ts). */
export type DropReason = 'orders-disagree' | 'below-margin' | 'flagged';

export interface TrainingPolicy {
  /** Pairs whose AB and BA decisions favour different completions: keep the averaged label, make it 0.5, or drop the pair. */
  disagreement: Disagreement;
  /** Pairs with |P(first better) − 0.5| below this are dropped (0 drops none). */
  margin: number;
}

export type PolicyOutcome = { keep: true; softLabel: number } | { keep: false; reason: DropReason; softLabel: number };

/** What a pair's label becomes for training under the disagreement and margin rules. */
export function applyTrainingPolicy(verdict: { softLabel: number; ordersAgree: boolean | undefined }, policy: TrainingPolicy): PolicyOutcome {
  const disagree = verdict.ordersAgree === false;
  if (disagree && policy.disagreement === 'drop') return { keep: false, reason: 'orders-disagree', softLabel: verdict.softLabel };
  const softLabel = disagree && policy.disagreement === 'tie' ? 0.5 : verdict.softLabel;
  if (Math.abs(softLabel - 0.5) < policy.margin) return { keep: false, reason: 'below-margin', softLabel };
  return { keep: true, softLabel };
}
