// Reward composition in one place: a run's config names the reward terms, each with a weight and a
// normalisation, and every rollout's reward is Σ weight × normalise(raw). Each rollout keeps every
// raw value, every weighted component and the total (and the batch statistics a z-score used), so
// an audit can always explain a reward. The KL coefficient is not a term: it stays in the RL config
// (loop.policy.options.kl_coef), where the trainer applies it per token against the reference.
//
// Raw values per term (computed where the data lives; the helpers here are the pure ones):
//   reward_model    the reward model's score (unbounded)
//   rater_score     the rater's pointwise score, mean over principles, normalised to [-1, 1]
//   verifier        the task's verifier reward, in [0, 1]
//   process         step scores aggregated per response (core/rewards/process.ts)
//   length_penalty  −completion tokens / max_tokens, in [−1, 0] (lengthPenaltyRaw)
//   format          format checks passed: 1 or 0 (score: all), or the share passed (fraction) (checkFormat)
//
// Normalisation, before the weight:
//   none            the raw value
//   zscore          (raw − mean) / std over the rows of this batch that have the term (population std);
//                   a batch whose values are all equal (std 0, or one row) contributes 0 for that term
//   {range: [lo,hi]} (raw − lo) / (hi − lo), clipped to [0, 1]: lo and below → 0, hi and above → 1
//
// A configured term without a raw value in a row is an error naming the row and the term, unless the
// term is `optional: true`: then that row has neither raw value nor component for it (not 0), and its
// z-score statistics come from the rows that have one. Non-finite raw values are always errors.
import { z } from 'zod';
import { closestWord } from '../text.js';
import { processOptions } from './process.js';

export const rewardTermNames = ['reward_model', 'rater_score', 'verifier', 'process', 'length_penalty', 'format'] as const;
export type RewardTermName = (typeof rewardTermNames)[number];

export const normaliseSchema = z.union(
  [
    z.enum(['none', 'zscore']),
    z.strictObject({
      range: z
        .tuple([z.number(), z.number()], { error: 'expected range [lo, hi] (two numbers)' })
        .refine(([lo, hi]) => lo < hi, { error: 'expected range [lo, hi] with lo < hi' }),
    }),
  ],
  { error: "expected normalise 'none', 'zscore' or {range: [lo, hi]}" },
);
export type Normalise = z.output<typeof normaliseSchema>;

const common = {
  weight: z.number({ error: 'expected weight (a number)' }).default(1),
  normalise: normaliseSchema.default('none'),
  /** Rows may lack this term (e.g. a verifier only some tasks have); otherwise a missing value is an error. */
  optional: z.boolean({ error: 'expected optional (true or false)' }).default(false),
};

const regexFlags = z.string().regex(/^(?!.*(.).*\1)[imsu]*$/, { error: 'expected flags from i, m, s, u, each at most once' });

const formatCheckKinds = ['must_match', 'must_not_match', 'max_chars', 'valid_json'] as const;

/** One format check: exactly one of must_match, must_not_match, max_chars, valid_json. */
export const formatCheckSchema = z
  .strictObject({
    /** A regular expression (JavaScript syntax) the response must match somewhere. */
    must_match: z.string().min(1).optional(),
    /** A regular expression the response must not match anywhere. */
    must_not_match: z.string().min(1).optional(),
    /** Flags of the expression. */
    flags: regexFlags.optional(),
    /** At most this many characters (Unicode code points). */
    max_chars: z.number().int({ error: 'expected max_chars (a whole number)' }).positive().optional(),
    /** whole: the trimmed response is a JSON object or array; fenced: the last ```json block is. */
    valid_json: z.enum(['whole', 'fenced'], { error: "expected valid_json 'whole' or 'fenced'" }).optional(),
  })
  .superRefine((check, context) => {
    const kinds = formatCheckKinds.filter((kind) => check[kind] !== undefined);
    if (kinds.length !== 1) {
      context.addIssue({ code: 'custom', message: `expected exactly one of ${formatCheckKinds.join(', ')} per check${kinds.length ? `, got ${kinds.join(' and ')}` : ''}` });
      return;
    }
    const pattern = check.must_match ?? check.must_not_match;
    if (check.flags !== undefined && pattern === undefined) context.addIssue({ code: 'custom', path: ['flags'], message: 'flags go with must_match or must_not_match' });
    if (pattern !== undefined && (check.flags === undefined || regexFlags.safeParse(check.flags).success)) {
      try {
        new RegExp(pattern, check.flags);
      } catch (error) {
        context.addIssue({ code: 'custom', path: [kinds[0]!], message: `not a valid regular expression: ${(error as Error).message}` });
      }
    }
  });
export type FormatCheck = z.output<typeof formatCheckSchema>;

export const formatOptionsSchema = z.strictObject({
  checks: z.array(formatCheckSchema, { error: 'expected checks (a list)' }).min(1, { error: 'expected at least one format check' }),
  /** all: 1 when every check passes, else 0; fraction: the share of checks that pass. */
  score: z.enum(['all', 'fraction'], { error: "expected score 'all' or 'fraction'" }).default('all'),
});
export type FormatOptions = z.output<typeof formatOptionsSchema>;

const termSchemas = {
  reward_model: termSchema('reward_model', { ...common }),
  rater_score: termSchema('rater_score', { ...common }),
  verifier: termSchema('verifier', { ...common }),
  process: termSchema('process', { ...common, ...processOptions }),
  length_penalty: termSchema('length_penalty', { ...common }),
  format: termSchema('format', { ...common, ...formatOptionsSchema.shape }),
};

function termSchema<Shape extends z.core.$ZodLooseShape>(name: RewardTermName, shape: Shape) {
  const keys = Object.keys(shape);
  return z.strictObject(shape, {
    error: (issue) => {
      if (issue.code === 'invalid_type') return `expected the options of reward term '${name}' (a mapping; {} takes the defaults)`;
      if (issue.code !== 'unrecognized_keys') return undefined;
      return issue.keys
        .map((key) => {
          const suggestion = closestWord(key, keys);
          return `unknown key '${key}' in reward term '${name}' (expected one of: ${keys.join(', ')})${suggestion ? `; did you mean '${suggestion}'?` : ''}`;
        })
        .join('; ');
    },
  });
}

// Names people reach for that are not terms, with where the thing lives instead.
const notTerms: Record<string, string> = {
  kl: 'the KL coefficient is not a reward term: set it in the RL config (loop.policy.options.kl_coef)',
  kl_penalty: 'the KL coefficient is not a reward term: set it in the RL config (loop.policy.options.kl_coef)',
};

export const rewardTermsSchema = z
  .strictObject(
    {
      reward_model: termSchemas.reward_model.optional(),
      rater_score: termSchemas.rater_score.optional(),
      verifier: termSchemas.verifier.optional(),
      process: termSchemas.process.optional(),
      length_penalty: termSchemas.length_penalty.optional(),
      format: termSchemas.format.optional(),
    },
    {
      error: (issue) => {
        if (issue.code === 'unrecognized_keys') return issue.keys.map(unknownTermMessage).join('; ');
        if (issue.code === 'invalid_type') return `expected reward terms (a mapping of ${rewardTermNames.join(', ')})`;
        return undefined;
      },
    },
  )
  .refine((terms) => Object.values(terms).some((term) => term !== undefined), {
    error: `expected at least one reward term (${rewardTermNames.join(', ')})`,
    when: (payload) => payload.issues.length === 0,
  });
export type RewardTerms = z.output<typeof rewardTermsSchema>;
export type RewardTermsInput = z.input<typeof rewardTermsSchema>;

function unknownTermMessage(name: string): string {
  const why = notTerms[name.toLowerCase()];
  if (why) return `'${name}': ${why}`;
  const suggestion = closestWord(name, rewardTermNames);
  return `unknown reward term '${name}' (expected one of: ${rewardTermNames.join(', ')})${suggestion ? `; did you mean '${suggestion}'?` : ''}`;
}

/**
 * Today's rollout reward as terms: the reward model's score as it is, minus length_penalty × tokens / max_tokens
 * when loop.rollouts.length_penalty is above 0.
 */
export function defaultRewardTerms(lengthPenalty = 0): RewardTerms {
  return rewardTermsSchema.parse(lengthPenalty > 0 ? { reward_model: {}, length_penalty: { weight: lengthPenalty } } : { reward_model: {} });
}

/** One rollout's raw values by term; null or absent means it has none. `id` names the row in errors. */
export interface RewardRow {
  id?: string | number;
  raw: Partial<Record<RewardTermName, number | null>>;
}

export interface TermBatchStats {
  mean: number;
  /** 0 when the batch's values are all equal (then the term contributed 0 to every row). */
  std: number;
  /** Rows of the batch that had the term. */
  n: number;
}

export interface ComposedReward {
  /** The raw value of each configured term the row has. */
  raw: Record<string, number>;
  /** weight × normalise(raw), per term. */
  components: Record<string, number>;
  /** The sum of the components. */
  total: number;
  /** Per z-scored term: the batch's mean and std it was scored with (absent without zscore terms). */
  batch?: Record<string, TermBatchStats>;
}

export class RewardInputError extends Error {
  override name = 'RewardInputError';
}

/** Composes each row's reward from its raw values; z-scores are computed over these rows only. */
export function composeRewards(terms: RewardTerms, rows: readonly RewardRow[]): ComposedReward[] {
  const configured = rewardTermNames.flatMap((name) => {
    const term = terms[name];
    return term ? [{ name, term }] : [];
  });
  const values = configured.map(({ name, term }) =>
    rows.map((row, index) => {
      const value = row.raw[name];
      const where = `row ${index}${row.id !== undefined ? ` (${row.id})` : ''}`;
      if (value === undefined || value === null) {
        if (term.optional) return undefined;
        throw new RewardInputError(`${where}: no value for reward term '${name}' (mark the term optional: true if rows may lack it)`);
      }
      if (!Number.isFinite(value)) throw new RewardInputError(`${where}: reward term '${name}' is not a finite number (${value})`);
      return value;
    }),
  );
  const batch: Record<string, TermBatchStats> = {};
  configured.forEach(({ name, term }, t) => {
    if (term.normalise === 'zscore') batch[name] = batchStats(values[t]!.filter((value) => value !== undefined));
  });
  return rows.map((_, index) => {
    const raw: Record<string, number> = {};
    const components: Record<string, number> = {};
    let total = 0;
    configured.forEach(({ name, term }, t) => {
      const value = values[t]![index];
      if (value === undefined) return;
      raw[name] = value;
      components[name] = term.weight * normalise(value, term.normalise, batch[name]);
      total += components[name];
    });
    return { raw, components, total, ...(Object.keys(batch).length > 0 ? { batch } : {}) };
  });
}

function batchStats(values: number[]): TermBatchStats {
  const n = values.length;
  if (n === 0) return { mean: 0, std: 0, n };
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / n);
  // Equal values can leave a std of rounding noise (0.1 + 0.1 + 0.1 ≠ 0.3), which would blow it up to ±1.
  return { mean, std: std <= 1e-12 * Math.max(1, Math.abs(mean)) ? 0 : std, n };
}

function normalise(value: number, mode: Normalise, stats: TermBatchStats | undefined): number {
  if (mode === 'none') return value;
  if (mode === 'zscore') return stats && stats.std > 0 ? (value - stats.mean) / stats.std : 0;
  const [lo, hi] = mode.range;
  return Math.min(1, Math.max(0, (value - lo) / (hi - lo)));
}

/** The length_penalty term's raw value: −tokens / max_tokens (weight it to set the strength). */
export function lengthPenaltyRaw(completionTokens: number, maxTokens: number): number {
  if (!(maxTokens > 0)) throw new RangeError(`max_tokens must be above 0, got ${maxTokens}`);
  if (!(completionTokens >= 0)) throw new RangeError(`completion tokens must be 0 or more, got ${completionTokens}`);
  return -completionTokens / maxTokens;
}

export interface FormatResult {
  /** The format term's raw value. */
  raw: number;
  /** Each failed check, described, for the audit (e.g. "must_match /^Answer:/m"). */
  failed: string[];
}

/** Runs the format checks on a response. Expressions come from the run config, not from model output. */
export function checkFormat(text: string, options: Pick<FormatOptions, 'checks'> & Partial<Pick<FormatOptions, 'score'>>): FormatResult {
  const failed = options.checks.filter((check) => !passes(text, check)).map(describeCheck);
  const passed = options.checks.length - failed.length;
  const raw = (options.score ?? 'all') === 'all' ? (failed.length === 0 ? 1 : 0) : passed / options.checks.length;
  return { raw, failed };
}

function passes(text: string, check: FormatCheck): boolean {
  if (check.must_match !== undefined) return new RegExp(check.must_match, check.flags).test(text);
  if (check.must_not_match !== undefined) return !new RegExp(check.must_not_match, check.flags).test(text);
  if (check.max_chars !== undefined) return codePoints(text) <= check.max_chars;
  if (check.valid_json === 'whole') return isJsonStructure(text);
  if (check.valid_json === 'fenced') {
    const blocks = [...text.matchAll(/```json[ \t]*\n([\s\S]*?)```/gi)];
    const last = blocks.at(-1);
    return last !== undefined && isJsonStructure(last[1]!);
  }
  throw new Error(`format check with no kind: ${JSON.stringify(check)}`);
}

function describeCheck(check: FormatCheck): string {
  if (check.must_match !== undefined) return `must_match /${check.must_match}/${check.flags ?? ''}`;
  if (check.must_not_match !== undefined) return `must_not_match /${check.must_not_match}/${check.flags ?? ''}`;
  if (check.max_chars !== undefined) return `max_chars ${check.max_chars}`;
  return `valid_json ${check.valid_json}`;
}

function codePoints(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

function isJsonStructure(text: string): boolean {
  try {
    const value: unknown = JSON.parse(text.trim());
    return value !== null && typeof value === 'object';
  } catch {
    return false;
  }
}
