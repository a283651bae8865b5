// From a rater's answer to a soft label: option-token log-probabilities when the endpoint returns
// them, else the parsed letter; both orders averaged; chain-of-thought answers clamped to a band.

export type Choice = 'A' | 'B';
export type Order = 'AB' | 'BA';

export interface TopLogprob {
  token: string;
  logprob: number;
}

export interface RaterAnswer {
  /** The letter the rater picked, or undefined when the answer cannot be read. */
  choice: Choice | undefined;
  /** P(option A is better) as the rater gave it, before any clamping. */
  probabilityA: number | undefined;
  source: 'logprobs' | 'text';
}

/** The option letter a token stands for: "A", " A", "(A", "A)" … */
function optionOf(token: string): Choice | undefined {
  const cleaned = token.replace(/[\s()[\].:*"'`]/g, '').toUpperCase();
  return cleaned === 'A' || cleaned === 'B' ? cleaned : undefined;
}

/**
 * P(first) of a two-way answer from the top log-probabilities of its token: the mass of the tokens
 * that stand for `first` over the mass of both; undefined when neither is there.
 */
export function twoWayProbability<T>(top: readonly TopLogprob[], meaning: (token: string) => T | undefined, first: T, second: T): number | undefined {
  let p = 0;
  let q = 0;
  for (const entry of top) {
    const option = meaning(entry.token);
    if (option === first) p += Math.exp(entry.logprob);
    else if (option === second) q += Math.exp(entry.logprob);
  }
  return p + q === 0 ? undefined : p / (p + q);
}

/** P(A) from the top log-probabilities of the answer token; undefined when neither option is there. */
export function probabilityFromLogprobs(top: readonly TopLogprob[]): number | undefined {
  return twoWayProbability(top, optionOf, 'A', 'B');
}

/**
 * The letter in a free-text answer. Direct mode expects the letter first ("A", "(B)", "B) because…");
 * chain-of-thought mode looks for the last "answer is (X)" style statement.
 */
export function parseChoice(text: string, mode: 'direct' | 'cot'): Choice | undefined {
  const trimmed = text.trim();
  if (mode === 'direct') {
    const match = /^\(?\s*([AB])\s*(\)|\.|:|,|$|\s)/i.exec(trimmed);
    if (match) return match[1]!.toUpperCase() as Choice;
    const statement = /\b(?:answer|option|response)\s*(?:is|:)?\s*:?\s*\(?\s*([AB])\b\)?/i.exec(trimmed);
    return statement ? (statement[1]!.toUpperCase() as Choice) : undefined;
  }
  const statements = [...trimmed.matchAll(/\b(?:answer|option|choice|response)\s*(?:is|:)\s*:?\s*\(?\s*([AB])\b\)?/gi)];
  const last = statements.at(-1);
  if (last) return last[1]!.toUpperCase() as Choice;
  const trailing = /\(?\s*([AB])\s*\)?\s*\.?\s*$/.exec(trimmed);
  return trailing && trimmed.length < 4 ? (trailing[1]!.toUpperCase() as Choice) : undefined;
}

export function readAnswer(text: string, top: readonly TopLogprob[] | undefined, mode: 'direct' | 'cot'): RaterAnswer {
  if (mode === 'direct' && top && top.length > 0) {
    const probabilityA = probabilityFromLogprobs(top);
    if (probabilityA !== undefined) return { choice: probabilityA >= 0.5 ? 'A' : 'B', probabilityA, source: 'logprobs' };
  }
  const choice = parseChoice(text, mode);
  return { choice, probabilityA: choice === undefined ? undefined : choice === 'A' ? 1 : 0, source: 'text' };
}

/** Chain-of-thought answers are over-confident; the CAI paper clamps them to 40–60 %. */
export function clamp(probability: number, band: readonly [number, number]): number {
  return Math.min(band[1], Math.max(band[0], probability));
}

/** P(the completion shown first in order AB is better), from one decision's P(option A). */
export function probabilityFirstBetter(probabilityA: number, order: Order): number {
  return order === 'AB' ? probabilityA : 1 - probabilityA;
}

export interface PairVerdict {
  /** P(first completion of the pair is better), averaged over every decision. */
  softLabel: number;
  /** Whether the AB and BA decisions picked the same completion; undefined with one order only. */
  ordersAgree: boolean | undefined;
}

/** Averages decisions of one pair (each already mapped to P(first better)) over orders and principles. */
export function combineDecisions(decisions: readonly { order: Order; probabilityFirst: number }[]): PairVerdict | undefined {
  if (decisions.length === 0) return undefined;
  const softLabel = decisions.reduce((sum, d) => sum + d.probabilityFirst, 0) / decisions.length;
  const side = (orders: Order) => {
    const picks = decisions.filter((d) => d.order === orders);
    if (picks.length === 0) return undefined;
    return picks.reduce((sum, d) => sum + d.probabilityFirst, 0) / picks.length >= 0.5;
  };
  const ab = side('AB');
  const ba = side('BA');
  return { softLabel, ordersAgree: ab === undefined || ba === undefined ? undefined : ab === ba };
}
