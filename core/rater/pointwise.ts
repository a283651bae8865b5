// Pointwise labels for small judges that cannot compare two long texts: each completion is asked
// alone, per principle question, "does it satisfy this? Yes or No", P(yes) is read from the first
// token's top log-probabilities (else the parsed word), and a pair's soft label is
//   sigmoid(mean over its questions of logit P_yes(first) − logit P_yes(second)).
// A completion shared by several pairs is asked once per question (one decision key).
import { applyTrainingPolicy, logit, sigmoid, type PolicyOutcome, type TrainingPolicy } from './calibration.js';
import { twoWayProbability, type TopLogprob } from './labels.js';
import { addOutcome, applyFlaggedPolicy, flagRecord, repair, type BatchLabels, type LabelPolicy, type StoredAttempt, type PairPlan, type PlanCompletion, type PlanPrinciple, type RaterMessage } from './pairwise.js';
import { renderTemplate } from './prompt.js';

export const yesNoTemplate = [
  'Consider the following conversation between a user and an AI assistant.',
  '',
  '{{conversation}}',
  '',
  "The assistant's response:",
  '{{response}}',
  '',
  'Does this response satisfy the following? {{question}}',
  'Answer Yes or No.',
].join('\n');

export const yesNoRepairText = 'Your answer could not be read. Reply with exactly one word, Yes or No, and nothing else.';

export interface YesNoAnswer {
  /** P(yes) of a readable answer; undefined when neither word can be found. */
  probabilityYes: number | undefined;
  source: 'logprobs' | 'text';
}

const wordOf = (token: string) => token.replace(/[\s().:*"'`!,]/g, '').toLowerCase();

/** P(yes) from the top log-probabilities of the first answer token; undefined when neither word is there. */
export function probabilityYesFromLogprobs(top: readonly TopLogprob[]): number | undefined {
  return twoWayProbability(top, wordOf, 'yes', 'no');
}

export function readYesNo(text: string, top: readonly TopLogprob[] | undefined): YesNoAnswer {
  const fromLogprobs = top && top.length > 0 ? probabilityYesFromLogprobs(top) : undefined;
  if (fromLogprobs !== undefined) return { probabilityYes: fromLogprobs, source: 'logprobs' };
  const word = /^\W*(yes|no)\b/i.exec(text)?.[1]?.toLowerCase();
  return { probabilityYes: word === undefined ? undefined : word === 'yes' ? 1 : 0, source: 'text' };
}

export interface PointAsk<C extends PlanCompletion = PlanCompletion, P extends PlanPrinciple = PlanPrinciple> {
  completion: C;
  principle: P;
  question: string;
  promptId: number;
  /** decision_key without the attempt suffix. */
  base: string;
  messages: RaterMessage[];
  flags: string[];
  attempt: number;
  decided?: { id: number; probabilityYes: number };
}

/** Picks up where an earlier attempt stopped: a readable answer, or the repairs so far (see resumeComparison). */
export function resumeAsk(ask: PointAsk, stored: readonly StoredAttempt[]): void {
  const good = stored.find((row) => row.outcome === 'ok');
  if (good) {
    ask.decided = { id: good.id, probabilityYes: (good.probabilities as { yes: number }).yes };
    return;
  }
  for (const earlier of [...stored].sort((a, b) => a.key.localeCompare(b.key))) repair(ask, earlier.text, yesNoRepairText);
}

export interface PointwisePair<Q, P extends PlanPrinciple, C extends PlanCompletion> {
  pair: PairPlan<Q, P, C>;
  /** Per principle slot: the asks about the first and the second completion. */
  slots: { first: PointAsk<C, P>; second: PointAsk<C, P> }[];
}

/**
 * The yes/no asks of planned pairs: each slot's question (the one its pairwise comparisons drew),
 * asked about each completion alone. Asks are shared between pairs by key.
 */
export function planPointwise<Q extends { id: number }, P extends PlanPrinciple, C extends PlanCompletion>(
  pairs: readonly PairPlan<Q, P, C>[],
  settings: { stage: string; iteration: number; conversationOf: (prompt: Q) => string },
): { pairs: PointwisePair<Q, P, C>[]; asks: PointAsk<C, P>[] } {
  const asks = new Map<string, PointAsk<C, P>>();
  const askFor = (prompt: Q, completion: C, principle: P, question: string): PointAsk<C, P> => {
    const base = `${settings.stage}:${settings.iteration}:${completion.id}:${principle.key}:q${principle.comparisons.indexOf(question)}:yes-no`;
    let ask = asks.get(base);
    if (!ask) {
      const rendered = renderTemplate(yesNoTemplate, { question }, { conversation: settings.conversationOf(prompt), response: completion.text });
      ask = { completion, principle, question, promptId: prompt.id, base, messages: [{ role: 'user', content: rendered.text }], flags: rendered.flags, attempt: 0 };
      asks.set(base, ask);
    }
    return ask;
  };
  const planned = pairs.map((pair) => ({
    pair,
    slots: pair.comparisons
      .filter((c) => c.order === 'AB')
      .map((c) => ({ first: askFor(pair.prompt, pair.first, c.principle, c.question), second: askFor(pair.prompt, pair.second, c.principle, c.question) })),
  }));
  return { pairs: planned, asks: [...asks.values()] };
}

/** A pair's P(first better) from the slots where both completions were read, under the training rules; undefined with none. */
export function pointwiseVerdict(slots: PointwisePair<unknown, PlanPrinciple, PlanCompletion>['slots'], policy: TrainingPolicy): { outcome: PolicyOutcome; softLabel: number; decisionIds: number[] } | undefined {
  const read = slots.filter((s) => s.first.decided && s.second.decided);
  if (read.length === 0) return undefined;
  const gap = read.reduce((sum, s) => sum + logit(s.first.decided!.probabilityYes) - logit(s.second.decided!.probabilityYes), 0) / read.length;
  const softLabel = sigmoid(gap);
  const decisionIds = [...new Set(read.flatMap((s) => [s.first.decided!.id, s.second.decided!.id]))];
  // One completion at a time: there are no orders to disagree.
  return { outcome: applyTrainingPolicy({ softLabel, ordersAgree: undefined }, policy), softLabel, decisionIds };
}

/** Every planned pair's pointwise label: a preference or a drop, recorded as pointwise. */
export function labelPointwise<Q extends { id: number }>(pairs: readonly PointwisePair<Q, PlanPrinciple, PlanCompletion>[], policy: TrainingPolicy & Pick<LabelPolicy, 'flagged'>): Omit<BatchLabels, 'prior'> {
  const labels: Omit<BatchLabels, 'prior'> = { preferences: [], drops: [] };
  for (const { pair, slots } of pairs) {
    const verdict = pointwiseVerdict(slots, policy);
    if (!verdict) continue;
    const debias = {
      mode: 'pointwise' as const,
      position_prior: 'none' as const,
      prior_a: null,
      prior_decisions: 0,
      disagreement: policy.disagreement,
      margin: policy.margin,
      ...flagRecord(pair, policy),
      combined: verdict.softLabel,
    };
    addOutcome(labels, pair, applyFlaggedPolicy(pair, verdict.outcome, policy), undefined, verdict.decisionIds, debias);
  }
  return labels;
}
