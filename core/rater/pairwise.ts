// The pairwise label stage as pure steps: which comparisons a batch asks (pairs, principles drawn
// per pair, both orders) and under which decision keys, how an earlier attempt is resumed or an
// unreadable answer repaired, how one answer becomes P(first better), and how a pair's decisions
// become one preference. The activity only calls the rater and writes what these return.
import { clamp, combineDecisions, probabilityFirstBetter, readAnswer, type Order, type RaterAnswer, type TopLogprob } from './labels.js';
import { applyTrainingPolicy, combineDebiased, estimatePositionPrior, type DropReason, type PolicyOutcome, type PositionPrior, type TrainingPolicy } from './calibration.js';
import { pickDistinct, stableHash } from './principles.js';
import { injectionFlags, renderTemplate } from './prompt.js';

export interface RaterMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface PlanCompletion {
  id: number;
  promptId: number;
  text: string;
}

export interface PlanPrinciple {
  id: number;
  key: string;
  comparisons: string[];
  weight: number;
}

/** What decides how comparisons are asked and read (the run config's `label` section). */
export interface AskSettings {
  cot: boolean;
  cot_band: readonly [number, number];
  logprobs: boolean;
  max_tokens: number;
}

export interface PairIdentity<Q, C extends PlanCompletion = PlanCompletion> {
  prompt: Q;
  first: C;
  second: C;
  /** `run:stage:iteration:first:second`: the key principles and questions are drawn by. */
  pairKey: string;
}

export interface Comparison<Q, P extends PlanPrinciple, C extends PlanCompletion = PlanCompletion> extends PairIdentity<Q, C> {
  principle: P;
  slot: number;
  order: Order;
  /** decision_key without the attempt suffix. */
  base: string;
  question: string;
  messages: RaterMessage[];
  flags: string[];
  attempt: number;
  /** Set once a readable answer is stored. */
  decided?: { id: number; probabilityFirst: number; probabilityA: number };
}

export interface PairPlan<Q, P extends PlanPrinciple, C extends PlanCompletion = PlanCompletion> extends PairIdentity<Q, C> {
  comparisons: Comparison<Q, P, C>[];
  /**
   * The injection flags of each completion alone (core/rater/prompt.ts), what `label.flagged` reads;
   * a comparison's own `flags` also hold those of the conversation.
   */
  completionFlags: { first: string[]; second: string[] };
}

export interface PlanInput<Q extends { id: number }, P extends PlanPrinciple, C extends PlanCompletion> {
  runId: number;
  /** The decision stage (`label`, `evaluate`, ...): first part of every decision key. */
  stage: string;
  iteration: number;
  /** Each prompt with its conversation as the comparison template shows it. */
  prompts: readonly { prompt: Q; conversation: string }[];
  /** The completions to pair, in the order pairs are formed (by prompt, then sample index). */
  completions: readonly C[];
  /** The constitution's principles; those without comparison questions are never drawn. */
  principles: readonly P[];
  ensemble: number;
  sampling: 'weighted' | 'uniform';
  template: string;
  cot: boolean;
  /**
   * The principles a pair is judged by, when not drawn (e.g. a gold pair labelled for one principle).
   * Returning undefined falls back to the draw. Slots follow the returned order.
   */
  principlesFor?: (pair: PairIdentity<Q, C>) => readonly P[] | undefined;
}

export const cotInstruction = '\n\nThink it through step by step first. Then finish with a line of the form "The answer is: (A)" or "The answer is: (B)".';

export const repairText = 'Your answer could not be read. Reply with exactly one letter, A or B, naming the better response, and nothing else.';

export function pairKeyOf(runId: number, stage: string, iteration: number, first: { id: number }, second: { id: number }): string {
  return `${runId}:${stage}:${iteration}:${first.id}:${second.id}`;
}

/** Every pair of completions of each prompt (i < j in the given order), its principles and both orders. */
export function planPairs<Q extends { id: number }, P extends PlanPrinciple, C extends PlanCompletion>(input: PlanInput<Q, P, C>): PairPlan<Q, P, C>[] {
  const candidates = input.principles.filter((p) => p.comparisons.length > 0);
  const pairs: PairPlan<Q, P, C>[] = [];
  for (const { prompt, conversation } of input.prompts) {
    const rows = input.completions.filter((c) => c.promptId === prompt.id);
    for (let i = 0; i < rows.length; i++) {
      for (let j = i + 1; j < rows.length; j++) {
        const [first, second] = [rows[i]!, rows[j]!];
        const identity = { prompt, first, second, pairKey: pairKeyOf(input.runId, input.stage, input.iteration, first, second) };
        const chosen = input.principlesFor?.(identity) ?? pickDistinct(candidates, identity.pairKey, input.ensemble, input.sampling);
        const comparisons: Comparison<Q, P, C>[] = [];
        chosen.forEach((principle, slot) => {
          for (const order of ['AB', 'BA'] as const) comparisons.push(newComparison(input, conversation, identity, principle, slot, order));
        });
        pairs.push({ ...identity, comparisons, completionFlags: { first: injectionFlags(first.text), second: injectionFlags(second.text) } });
      }
    }
  }
  return pairs;
}

function newComparison<Q extends { id: number }, P extends PlanPrinciple, C extends PlanCompletion>(
  input: PlanInput<Q, P, C>,
  conversation: string,
  identity: PairIdentity<Q, C>,
  principle: P,
  slot: number,
  order: Order,
): Comparison<Q, P, C> {
  const { first, second, pairKey } = identity;
  const question = principle.comparisons[stableHash(`${pairKey}:${slot}`) % principle.comparisons.length]!;
  const [responseA, responseB] = order === 'AB' ? [first, second] : [second, first];
  const rendered = renderTemplate(input.template, { question }, { conversation, response_a: responseA.text, response_b: responseB.text });
  return {
    prompt: identity.prompt,
    first,
    second,
    pairKey,
    principle,
    slot,
    order,
    base: `${input.stage}:${input.iteration}:${first.id}:${second.id}:${principle.key}:${slot}:${order}`,
    question,
    messages: [{ role: 'user', content: rendered.text + (input.cot ? cotInstruction : '') }],
    flags: rendered.flags,
    attempt: 0,
  };
}

/** The decision key without its `#attempt` suffix. */
export function baseOfKey(key: string): string {
  return key.slice(0, key.lastIndexOf('#'));
}

export interface StoredAttempt {
  id: number;
  key: string;
  outcome: string;
  probabilities: unknown;
  /** The rater's answer text of that attempt. */
  text: string;
}

/** Picks up where an earlier attempt of this batch stopped: a readable answer, or the repairs so far. */
export function resumeComparison(c: Comparison<unknown, PlanPrinciple>, stored: readonly StoredAttempt[]): void {
  const good = stored.find((row) => row.outcome === 'ok');
  if (good) {
    const probabilities = good.probabilities as { first: number; A: number };
    c.decided = { id: good.id, probabilityFirst: probabilities.first, probabilityA: probabilities.A };
    return;
  }
  for (const earlier of [...stored].sort((a, b) => a.key.localeCompare(b.key))) repair(c, earlier.text);
}

/** After an unreadable answer: the answer and a repair prompt join the conversation; the attempt counts. */
export function repair(c: Pick<Comparison<unknown, PlanPrinciple>, 'messages' | 'attempt'>, answerText: string, request = repairText): void {
  c.messages = [...c.messages, { role: 'assistant', content: answerText }, { role: 'user', content: request }];
  c.attempt++;
}

export function decisionKey(c: Pick<Comparison<unknown, PlanPrinciple>, 'base' | 'attempt'>): string {
  return `${c.base}#${c.attempt}`;
}

export interface RaterAsk {
  messages: RaterMessage[];
  temperature: number;
  max_tokens: number;
  logprobs?: boolean;
  top_logprobs?: number;
}

/** The request for a comparison's next attempt: option-token logprobs on the first, direct ask only. */
export function askFor(settings: AskSettings, c: Pick<Comparison<unknown, PlanPrinciple>, 'messages' | 'attempt'>): RaterAsk {
  return {
    messages: c.messages,
    temperature: 0,
    max_tokens: settings.cot ? settings.max_tokens : 4,
    ...(settings.logprobs && !settings.cot && c.attempt === 0 ? { logprobs: true, top_logprobs: 5 } : {}),
  };
}

export interface ReadDecision {
  answer: RaterAnswer;
  /** P(option A), clamped to the band for chain-of-thought answers; undefined when unreadable. */
  probabilityA: number | undefined;
  probabilityFirst: number | undefined;
  /** What the decision row stores under `probabilities`. */
  probabilities: { A: number; B: number; first: number; source: RaterAnswer['source']; unclamped_A: number } | null;
}

/** One answer read in terms of the pair: P(A) (clamped for chain of thought) and P(first better). */
export function readDecision(settings: AskSettings, order: Order, text: string, top: readonly TopLogprob[] | undefined): ReadDecision {
  const answer = readAnswer(text, top, settings.cot ? 'cot' : 'direct');
  if (answer.probabilityA === undefined) return { answer, probabilityA: undefined, probabilityFirst: undefined, probabilities: null };
  const probabilityA = settings.cot ? clamp(answer.probabilityA, settings.cot_band) : answer.probabilityA;
  const probabilityFirst = probabilityFirstBetter(probabilityA, order);
  return {
    answer,
    probabilityA,
    probabilityFirst,
    probabilities: { A: probabilityA, B: 1 - probabilityA, first: probabilityFirst, source: answer.source, unclamped_A: answer.probabilityA },
  };
}

export interface PreferenceFields {
  promptId: number;
  completionLowId: number;
  completionHighId: number;
  chosenId: number;
  rejectedId: number;
  /** P(chosen is better). */
  softLabel: number;
  ordersAgree: boolean | null;
  decisionIds: number[];
}

/**
 * What becomes of a pair with a flagged completion (the run config's `label.flagged`): `keep` labels it
 * as any other (the flags stay on its decisions and in its debias record, for audit); `drop` keeps it
 * out of training whichever side won; `drop-chosen` only when the completion it would prefer is flagged
 * (an injection that lost stays a useful preference).
 */
export type FlaggedPolicy = 'keep' | 'drop' | 'drop-chosen';

/** How a batch's labels are debiased and filtered (the run config's `label` section). */
export interface LabelPolicy extends TrainingPolicy {
  position_prior: 'none' | 'batch' | number;
  /** Flagged pairs; `keep` when absent. */
  flagged?: FlaggedPolicy;
}

/** What a preference (or drop) row records of how its label was made. */
export interface DebiasRecord {
  /** pairwise: both orders of a comparison; pointwise: each completion asked alone (core/rater/pointwise.ts). */
  mode: 'pairwise' | 'pointwise';
  position_prior: LabelPolicy['position_prior'];
  /** The prior P(A) taken out; null when none was (`none`, or a batch with no both-order comparison). */
  prior_a: number | null;
  /** Decisions the prior was estimated from (0 when given or not used). */
  prior_decisions: number;
  disagreement: LabelPolicy['disagreement'];
  margin: number;
  flagged: FlaggedPolicy;
  /** The injection flags of the pair's flagged completions, by completion id; absent when neither is flagged. */
  flags?: Record<string, string[]>;
  /** P(first completion better) after debiasing, before the disagreement rule. */
  combined: number;
}

export interface DropFields extends Omit<PreferenceFields, 'chosenId' | 'rejectedId'> {
  reason: DropReason;
  debias: DebiasRecord;
}

export interface BatchLabels {
  preferences: (PreferenceFields & { debias: DebiasRecord })[];
  drops: DropFields[];
  prior: PositionPrior | undefined;
}

/** The prior a batch's decisions are corrected by: none, the one given, or estimated from their both-order comparisons. */
export function batchPrior(pairs: readonly PairPlan<unknown, PlanPrinciple>[], positionPrior: LabelPolicy['position_prior']): PositionPrior | undefined {
  if (positionPrior === 'none') return undefined;
  if (typeof positionPrior === 'number') return { probabilityA: positionPrior, decisions: 0 };
  const decided = pairs.flatMap((pair) => pair.comparisons.filter((c) => c.decided));
  return estimatePositionPrior(decided.map((c) => ({ order: c.order, comparison: `${c.pairKey}:${c.principle.key}:${c.slot}`, probabilityA: c.decided!.probabilityA })));
}

/** Every pair's verdict: debiased by the policy's prior, then kept as a preference or dropped with a reason. */
export function labelPairs<Q extends { id: number }>(pairs: readonly PairPlan<Q, PlanPrinciple>[], policy: LabelPolicy): BatchLabels {
  const prior = batchPrior(pairs, policy.position_prior);
  const labels: BatchLabels = { preferences: [], drops: [], prior };
  for (const pair of pairs) {
    const made = pair.comparisons.filter((c) => c.decided);
    const verdict =
      policy.position_prior === 'none'
        ? combineDecisions(made.map((c) => ({ order: c.order, probabilityFirst: c.decided!.probabilityFirst })))
        : combineDebiased(made.map((c) => ({ order: c.order, probabilityA: c.decided!.probabilityA })), prior?.probabilityA ?? 0.5);
    if (!verdict) continue;
    const debias: DebiasRecord = {
      mode: 'pairwise',
      position_prior: policy.position_prior,
      prior_a: prior?.probabilityA ?? null,
      prior_decisions: prior?.decisions ?? 0,
      disagreement: policy.disagreement,
      margin: policy.margin,
      ...flagRecord(pair, policy),
      combined: verdict.softLabel,
    };
    addOutcome(labels, pair, applyFlaggedPolicy(pair, applyTrainingPolicy(verdict, policy), policy), verdict.ordersAgree, made.map((c) => c.decided!.id), debias);
  }
  return labels;
}

/** The flagged policy and the pair's flags by completion id, as its debias record holds them. */
export function flagRecord(pair: Pick<PairPlan<unknown, PlanPrinciple>, 'first' | 'second' | 'completionFlags'>, policy: Pick<LabelPolicy, 'flagged'>): Pick<DebiasRecord, 'flagged' | 'flags'> {
  const flags: Record<string, string[]> = {};
  if (pair.completionFlags.first.length > 0) flags[pair.first.id] = pair.completionFlags.first;
  if (pair.completionFlags.second.length > 0) flags[pair.second.id] = pair.completionFlags.second;
  return { flagged: policy.flagged ?? 'keep', ...(Object.keys(flags).length > 0 ? { flags } : {}) };
}

/**
 * The flagged rule after the disagreement and margin rules: a pair they kept is dropped (reason
 * `flagged`) under `drop` when either completion is flagged, under `drop-chosen` when the one its
 * label prefers is. A pair they dropped keeps their reason.
 */
export function applyFlaggedPolicy(pair: Pick<PairPlan<unknown, PlanPrinciple>, 'completionFlags'>, outcome: PolicyOutcome, policy: Pick<LabelPolicy, 'flagged'>): PolicyOutcome {
  const rule = policy.flagged ?? 'keep';
  if (!outcome.keep || rule === 'keep') return outcome;
  const { first, second } = pair.completionFlags;
  // P(first better) ≥ 0.5 makes the first completion the chosen one (preferenceFields).
  const chosenFlagged = outcome.softLabel >= 0.5 ? first.length > 0 : second.length > 0;
  const drop = rule === 'drop' ? first.length > 0 || second.length > 0 : chosenFlagged;
  return drop ? { keep: false, reason: 'flagged', softLabel: outcome.softLabel } : outcome;
}

/** A pair's label under the training rules: a preference, or a drop with its reason. */
export function addOutcome(
  labels: Omit<BatchLabels, 'prior'>,
  pair: PairIdentity<{ id: number }>,
  outcome: PolicyOutcome,
  ordersAgree: boolean | undefined,
  decisionIds: readonly number[],
  debias: DebiasRecord,
): void {
  const fields = preferenceFields(pair, outcome.softLabel, ordersAgree, decisionIds);
  if (outcome.keep) {
    labels.preferences.push(Object.assign(fields, { debias }));
    return;
  }
  const { chosenId, rejectedId: _, ...pairFields } = fields;
  // The drop stores P(low-id completion better), whichever side the label leaned to.
  labels.drops.push(Object.assign(pairFields, { softLabel: chosenId === pairFields.completionLowId ? fields.softLabel : 1 - fields.softLabel, reason: outcome.reason, debias }));
}

/** The preference row's pair fields for P(first better) = `softLabel`: chosen is the likelier side. */
export function preferenceFields(pair: PairIdentity<{ id: number }>, softLabel: number, ordersAgree: boolean | undefined, decisionIds: readonly number[]): PreferenceFields {
  const firstWins = softLabel >= 0.5;
  return {
    promptId: pair.prompt.id,
    completionLowId: Math.min(pair.first.id, pair.second.id),
    completionHighId: Math.max(pair.first.id, pair.second.id),
    chosenId: firstWins ? pair.first.id : pair.second.id,
    rejectedId: firstWins ? pair.second.id : pair.first.id,
    softLabel: firstWins ? softLabel : 1 - softLabel,
    ordersAgree: ordersAgree ?? null,
    decisionIds: [...decisionIds].sort((a, b) => a - b),
  };
}
