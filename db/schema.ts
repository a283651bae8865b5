// The whole database, as drizzle tables. Every table that activities write has a unique key made of
// attempt-independent parts (run, item, stage, ...) so retried writes upsert instead of doubling.
import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  check,
  doublePrecision,
  index,
  integer,
  jsonb,
  numeric,
  pgTable,
  pgView,
  text,
  timestamp,
  uniqueIndex,
  type AnyPgColumn,
} from 'drizzle-orm/pg-core';

const createdAt = { createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow() };
const id = { id: bigserial('id', { mode: 'number' }).primaryKey() };
const ref = (name: string) => bigint(name, { mode: 'number' });
// Foreign keys that many tables share. Rows of a run go when the run goes.
const runRef = () =>
  ref('run_id')
    .notNull()
    .references(() => runs.id, { onDelete: 'cascade' });
const promptRef = () =>
  ref('prompt_id')
    .notNull()
    .references(() => prompts.id);
const completionRef = (name: string) =>
  ref(name)
    .notNull()
    .references(() => completions.id);

export const constitutions = pgTable(
  'constitutions',
  {
    ...id,
    name: text('name').notNull(),
    /** 1, 2, 3, ... per name, in the order new contents were first stored. */
    version: integer('version').notNull(),
    /** sha256 of the canonical JSON of the parsed constitution. */
    contentHash: text('content_hash').notNull(),
    /** The file text as first stored under this hash. */
    source: text('source').notNull(),
    /** The parsed constitution, as the pipeline reads it. */
    parsed: jsonb('parsed').notNull(),
    sourcePath: text('source_path'),
    ...createdAt,
  },
  (t) => [uniqueIndex('constitutions_content_hash_key').on(t.contentHash), uniqueIndex('constitutions_name_version_key').on(t.name, t.version)],
);

export const principles = pgTable(
  'principles',
  {
    ...id,
    constitutionId: ref('constitution_id')
      .notNull()
      .references(() => constitutions.id, { onDelete: 'cascade' }),
    key: text('key').notNull(),
    position: integer('position').notNull(),
    critique: text('critique'),
    revision: text('revision'),
    comparisons: jsonb('comparisons').$type<string[]>().notNull().default(sql`'[]'::jsonb`),
    weight: doublePrecision('weight').notNull(),
    tags: jsonb('tags').$type<string[]>().notNull().default(sql`'[]'::jsonb`),
  },
  (t) => [uniqueIndex('principles_constitution_key').on(t.constitutionId, t.key), check('principles_weight_positive', sql`${t.weight} > 0`)],
);

export const runStatuses = ['pending', 'running', 'paused', 'completed', 'failed', 'cancelled'] as const;
export type RunStatus = (typeof runStatuses)[number];

export const runs = pgTable(
  'runs',
  {
    ...id,
    workflowId: text('workflow_id').notNull(),
    kind: text('kind').notNull(),
    constitutionId: ref('constitution_id').references(() => constitutions.id),
    config: jsonb('config').notNull(),
    status: text('status').$type<RunStatus>().notNull().default('pending'),
    error: text('error'),
    ...createdAt,
    startedAt: timestamp('started_at', { withTimezone: true }),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('runs_workflow_id_key').on(t.workflowId),
    index('runs_status_idx').on(t.status),
    check('runs_status_known', sql`${t.status} in ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled')`),
  ],
);

export const prompts = pgTable(
  'prompts',
  {
    ...id,
    runId: runRef(),
    /** Stable key of the prompt inside its data set (given id or line number). */
    key: text('key').notNull(),
    /** Chat messages ([{role, content}]) that make the prompt. */
    messages: jsonb('messages').notNull(),
    split: text('split').notNull().default('train'),
    metadata: jsonb('metadata').notNull().default(sql`'{}'::jsonb`),
    ...createdAt,
  },
  (t) => [uniqueIndex('prompts_run_key').on(t.runId, t.key)],
);

export const completions = pgTable(
  'completions',
  {
    ...id,
    runId: runRef(),
    promptId: ref('prompt_id')
      .notNull()
      .references(() => prompts.id, { onDelete: 'cascade' }),
    /** sample | revision | rollout | eval */
    stage: text('stage').notNull(),
    iteration: integer('iteration').notNull().default(0),
    sampleIndex: integer('sample_index').notNull(),
    /** For revisions: the completion this one revises. */
    parentId: ref('parent_id').references((): AnyPgColumn => completions.id),
    policyModel: text('policy_model').notNull(),
    policyVersion: text('policy_version').notNull(),
    text: text('text').notNull(),
    generationParams: jsonb('generation_params').notNull(),
    finishReason: text('finish_reason'),
    promptTokens: integer('prompt_tokens'),
    completionTokens: integer('completion_tokens'),
    /**
     * Rollouts: the serving engine's log-probs of the sampled tokens, one per generated token, for the
     * trainer's importance correction; null when the endpoint returned none (or was not asked).
     */
    sampledLogprobs: doublePrecision('sampled_logprobs').array(),
    /** Rollouts: the sampled token ids, parallel to sampled_logprobs; null when the endpoint named its tokens by text only. */
    sampledTokenIds: integer('sampled_token_ids').array(),
    /**
     * Rollouts of a task with a tool environment: the messages after the prompt (assistant turns with
     * their tool_calls, `role: tool` results, the final answer), OpenAI format; null for one-turn completions.
     */
    trace: jsonb('trace'),
    ...createdAt,
  },
  (t) => [
    uniqueIndex('completions_item_key').on(t.runId, t.promptId, t.stage, t.iteration, t.policyVersion, t.sampleIndex),
    index('completions_prompt_idx').on(t.promptId),
  ],
);

export const raterDecisions = pgTable(
  'rater_decisions',
  {
    ...id,
    runId: runRef(),
    /** Attempt-independent identity of the call: (stage, iteration, items, principle, order, slot). */
    decisionKey: text('decision_key').notNull(),
    /** label | score | critique | revision | evaluate | process */
    stage: text('stage').notNull(),
    iteration: integer('iteration').notNull().default(0),
    constitutionId: ref('constitution_id')
      .notNull()
      .references(() => constitutions.id),
    constitutionHash: text('constitution_hash').notNull(),
    principleId: ref('principle_id')
      .notNull()
      .references(() => principles.id),
    principleKey: text('principle_key').notNull(),
    /** The exact principle text put in front of the rater. */
    principleText: text('principle_text').notNull(),
    promptId: promptRef(),
    completionAId: completionRef('completion_a_id'),
    completionBId: ref('completion_b_id').references(() => completions.id),
    /** AB or BA for pairwise decisions; null for pointwise ones. */
    order: text('order'),
    raterEndpoint: text('rater_endpoint').notNull(),
    raterModel: text('rater_model').notNull(),
    /** The request body as sent (messages, sampling parameters). */
    request: jsonb('request').notNull(),
    rawResponse: jsonb('raw_response').notNull(),
    /** A | B | tie | invalid for pairwise; the score text for pointwise. */
    parsedChoice: text('parsed_choice'),
    /** {"A": p, "B": p} or {"score": s}. */
    probabilities: jsonb('probabilities'),
    score: doublePrecision('score'),
    fromCache: boolean('from_cache').notNull(),
    /** ok | unparseable: an unreadable answer is kept with its raw text, then repaired or skipped. */
    outcome: text('outcome').notNull().default('ok'),
    /** 0 for the first ask, 1.. for repair prompts after an unparseable answer. */
    attempt: integer('attempt').notNull().default(0),
    /** Injection flags raised by the untrusted text in the prompt (see core/rater/prompt.ts). */
    flags: jsonb('flags').$type<string[]>().notNull().default(sql`'[]'::jsonb`),
    cacheKey: text('cache_key'),
    latencyMs: integer('latency_ms').notNull(),
    promptTokens: integer('prompt_tokens'),
    completionTokens: integer('completion_tokens'),
    ...createdAt,
    /** The larger of P(A) and P(B) of a pairwise decision; null for pointwise ones. */
    confidence: doublePrecision('confidence').generatedAlwaysAs(sql`greatest((probabilities ->> 'A')::float8, (probabilities ->> 'B')::float8)`),
  },
  (t) => [
    uniqueIndex('rater_decisions_key').on(t.runId, t.decisionKey),
    // Keyset paging and the review queue (db/queries/audit.ts): ascending confidence as coalesce(confidence, 2)
    // and descending as coalesce(-confidence, 1) (nulls last both ways), then id; flagged decisions apart, as they are few.
    index('rater_decisions_confidence_asc_idx').on(sql`coalesce(${t.confidence}, 2)`, t.id),
    index('rater_decisions_confidence_desc_idx').on(sql`coalesce(-${t.confidence}, 1)`, t.id),
    // The same within a run: the review queue of one run, and a run's decisions by confidence.
    index('rater_decisions_run_confidence_idx').on(t.runId, sql`coalesce(${t.confidence}, 2)`, t.id),
    index('rater_decisions_flagged_idx').on(sql`coalesce(${t.confidence}, 2)`, t.id).where(sql`jsonb_array_length(${t.flags}) > 0`),
    index('rater_decisions_flagged_desc_idx').on(sql`coalesce(-${t.confidence}, 1)`, t.id).where(sql`jsonb_array_length(${t.flags}) > 0`),
    index('rater_decisions_flagged_id_idx').on(t.id).where(sql`jsonb_array_length(${t.flags}) > 0`),
    // A pair in either order, as human_reviews and preferences name it.
    index('rater_decisions_pair_either_idx').on(t.runId, sql`least(${t.completionAId}, ${t.completionBId})`, sql`greatest(${t.completionAId}, ${t.completionBId})`),
    index('rater_decisions_run_idx').on(t.runId, t.stage, t.iteration),
    index('rater_decisions_principle_idx').on(t.principleKey),
    index('rater_decisions_model_idx').on(t.raterModel),
    index('rater_decisions_created_idx').on(t.createdAt),
    index('rater_decisions_pair_idx').on(t.completionAId, t.completionBId),
    check('rater_decisions_order_known', sql`${t.order} is null or ${t.order} in ('AB', 'BA')`),
    check('rater_decisions_outcome_known', sql`${t.outcome} in ('ok', 'unparseable')`),
  ],
);

export const preferences = pgTable(
  'preferences',
  {
    ...id,
    runId: runRef(),
    iteration: integer('iteration').notNull().default(0),
    promptId: promptRef(),
    /** The pair, stored with the lower completion id first so (a, b) and (b, a) are one row. */
    completionLowId: completionRef('completion_low_id'),
    completionHighId: completionRef('completion_high_id'),
    chosenId: completionRef('chosen_id'),
    rejectedId: completionRef('rejected_id'),
    /** P(chosen is better), averaged over orders and principles. */
    softLabel: doublePrecision('soft_label').notNull(),
    ordersAgree: boolean('orders_agree'),
    /** ai | human */
    source: text('source').notNull(),
    decisionIds: jsonb('decision_ids').$type<number[]>().notNull().default(sql`'[]'::jsonb`),
    /** How an AI label was debiased and filtered (mode, position prior, disagreement, margin); null for human rows. */
    debias: jsonb('debias'),
    ...createdAt,
  },
  (t) => [
    uniqueIndex('preferences_pair_key').on(t.runId, t.iteration, t.completionLowId, t.completionHighId, t.source),
    // The review queue's "order disagreement first".
    index('preferences_disagree_idx').on(t.runId, t.completionLowId, t.completionHighId).where(sql`${t.ordersAgree} = false`),
    index('preferences_prompt_idx').on(t.promptId),
    check('preferences_pair_ordered', sql`${t.completionLowId} < ${t.completionHighId}`),
    check('preferences_soft_label_range', sql`${t.softLabel} >= 0 and ${t.softLabel} <= 1`),
  ],
);

/**
 * Pairs the label stage rated but kept out of training: their orders disagreed (label.disagreement
 * `drop`) or their debiased label lay within label.margin of 0.5. Counted by `tenet audit stats`.
 */
export const preferenceDrops = pgTable(
  'preference_drops',
  {
    ...id,
    runId: runRef(),
    iteration: integer('iteration').notNull().default(0),
    promptId: promptRef(),
    completionLowId: completionRef('completion_low_id'),
    completionHighId: completionRef('completion_high_id'),
    /** orders-disagree | below-margin | flagged (label.flagged) */
    reason: text('reason').notNull(),
    /** P(low-id completion is better) after debiasing. */
    softLabel: doublePrecision('soft_label').notNull(),
    ordersAgree: boolean('orders_agree'),
    decisionIds: jsonb('decision_ids').$type<number[]>().notNull().default(sql`'[]'::jsonb`),
    debias: jsonb('debias').notNull(),
    ...createdAt,
  },
  (t) => [
    uniqueIndex('preference_drops_pair_key').on(t.runId, t.iteration, t.completionLowId, t.completionHighId),
    check('preference_drops_reason_known', sql`${t.reason} in ('orders-disagree', 'below-margin', 'flagged')`),
    check('preference_drops_pair_ordered', sql`${t.completionLowId} < ${t.completionHighId}`),
  ],
);

export const humanReviews = pgTable(
  'human_reviews',
  {
    ...id,
    /** Client-chosen key, so a re-sent review does not land twice. */
    reviewKey: text('review_key').notNull(),
    decisionId: ref('decision_id').references(() => raterDecisions.id),
    runId: runRef(),
    promptId: promptRef(),
    completionAId: completionRef('completion_a_id'),
    completionBId: completionRef('completion_b_id'),
    /** A | B | tie, relative to completion_a / completion_b. */
    prefer: text('prefer').notNull(),
    reason: text('reason').notNull(),
    reviewer: text('reviewer').notNull(),
    ...createdAt,
  },
  (t) => [
    uniqueIndex('human_reviews_key').on(t.reviewKey),
    index('human_reviews_decision_idx').on(t.decisionId),
    index('human_reviews_pair_idx').on(t.completionAId, t.completionBId),
    // The latest review of a pair in either order (decision listings, the review queue).
    index('human_reviews_pair_either_idx').on(t.runId, sql`least(${t.completionAId}, ${t.completionBId})`, sql`greatest(${t.completionAId}, ${t.completionBId})`, t.createdAt, t.id),
    check('human_reviews_prefer_known', sql`${t.prefer} in ('A', 'B', 'tie')`),
  ],
);

export const models = pgTable(
  'models',
  {
    ...id,
    /** Attempt-independent identity, e.g. `<run>/<iteration>/reward`. */
    modelKey: text('model_key').notNull(),
    /** base | sft | reward | policy */
    kind: text('kind').notNull(),
    parentId: ref('parent_id').references((): AnyPgColumn => models.id),
    runId: ref('run_id').references(() => runs.id),
    iteration: integer('iteration'),
    artifactPath: text('artifact_path').notNull(),
    constitutionHash: text('constitution_hash'),
    /** The preference snapshot (run ids, counts), data sets and parents this model came from. */
    lineage: jsonb('lineage').notNull().default(sql`'{}'::jsonb`),
    hyperparameters: jsonb('hyperparameters').notNull().default(sql`'{}'::jsonb`),
    metrics: jsonb('metrics').notNull().default(sql`'{}'::jsonb`),
    ...createdAt,
  },
  (t) => [
    uniqueIndex('models_key').on(t.modelKey),
    index('models_run_idx').on(t.runId),
    check('models_kind_known', sql`${t.kind} in ('base', 'sft', 'reward', 'policy')`),
  ],
);

export const metrics = pgTable(
  'metrics',
  {
    ...id,
    runId: runRef(),
    iteration: integer('iteration').notNull(),
    name: text('name').notNull(),
    value: doublePrecision('value').notNull(),
    recordedAt: timestamp('recorded_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('metrics_run_iteration_name').on(t.runId, t.iteration, t.name)],
);

/** SL-CAI steps: per response and round, the principle used, the critique, and the revision (a completion). */
export const critiques = pgTable(
  'critiques',
  {
    ...id,
    runId: runRef(),
    /** The response this chain revises (a `sample` completion). */
    sourceCompletionId: completionRef('source_completion_id'),
    round: integer('round').notNull(),
    constitutionId: ref('constitution_id')
      .notNull()
      .references(() => constitutions.id),
    principleId: ref('principle_id')
      .notNull()
      .references(() => principles.id),
    principleKey: text('principle_key').notNull(),
    critiqueRequest: text('critique_request').notNull(),
    revisionRequest: text('revision_request').notNull(),
    critique: text('critique').notNull(),
    /** The revised response of this round, stored as a completion of stage `revision`. */
    revisionCompletionId: completionRef('revision_completion_id'),
    flags: jsonb('flags').$type<string[]>().notNull().default(sql`'[]'::jsonb`),
    ...createdAt,
  },
  (t) => [uniqueIndex('critiques_chain_round').on(t.runId, t.sourceCompletionId, t.round)],
);

/** Responses of model endpoints by request hash: a retried activity or a re-run never pays twice. */
export const requestCache = pgTable('request_cache', {
  /** sha256 of (endpoint, model, full request body). */
  key: text('key').primaryKey(),
  endpoint: text('endpoint').notNull(),
  model: text('model').notNull(),
  response: jsonb('response').notNull(),
  latencyMs: integer('latency_ms').notNull(),
  ...createdAt,
});

/**
 * Rewards of scored completions (online RL rollouts, evaluation samples): every component and the
 * total, so an audit can always explain a reward. One row per completion.
 */
/**
 * Process-reward steps judged by a checker instead of the rater (core/verifiers/arithmetic.ts): what
 * the step stated, each check, and the score it gave. Steps the rater scored are rater_decisions of
 * stage `process`.
 */
export const stepChecks = pgTable(
  'step_checks',
  {
    ...id,
    runId: runRef(),
    iteration: integer('iteration').notNull(),
    completionId: completionRef('completion_id'),
    /** 0-based position of the step, and how many steps the response was split into. */
    stepIndex: integer('step_index').notNull(),
    stepCount: integer('step_count').notNull(),
    /** arithmetic */
    checker: text('checker').notNull(),
    stepText: text('step_text').notNull(),
    /** [{left, right, leftValue, rightValue, holds}] */
    checks: jsonb('checks').notNull(),
    /** In [-1, 1], as a rater's step score. */
    score: doublePrecision('score').notNull(),
    ...createdAt,
  },
  (t) => [uniqueIndex('step_checks_step').on(t.completionId, t.stepIndex, t.checker), index('step_checks_run_idx').on(t.runId, t.iteration)],
);

export const rolloutRewards = pgTable(
  'rollout_rewards',
  {
    ...id,
    runId: runRef(),
    iteration: integer('iteration').notNull(),
    completionId: completionRef('completion_id'),
    /** Completions of one prompt drawn together: the group of group-relative advantages. */
    groupKey: text('group_key').notNull(),
    /** The reward model that scored it (models.id), when one did. */
    rewardModelId: ref('reward_model_id').references(() => models.id),
    /** {"reward_model": 0.42, "length_penalty": -0.1, ...}: each term after its normalisation and weight. */
    components: jsonb('components').$type<Record<string, number>>().notNull(),
    /** Each term's raw value before normalisation. */
    raw: jsonb('raw').$type<Record<string, number>>().notNull().default(sql`'{}'::jsonb`),
    /** Per z-scored term, the batch mean and std it was scored with. */
    normalisation: jsonb('normalisation'),
    /** The verifier's verdict ({reward, reason, flags}) when a verifier judged this rollout. */
    verdict: jsonb('verdict'),
    /** Flags raised while scoring (tamper, hardcode-suspect, ...). */
    flags: jsonb('flags').$type<string[]>().notNull().default(sql`'[]'::jsonb`),
    total: doublePrecision('total').notNull(),
    ...createdAt,
  },
  (t) => [uniqueIndex('rollout_rewards_completion').on(t.completionId), index('rollout_rewards_run_idx').on(t.runId, t.iteration)],
);

/**
 * Rater evaluations (`tenet rater eval`): a rater configuration measured on a gold set of labelled
 * pairs. The calls are the rater_decisions (stage `rater-eval`) of the evaluation's run; one row per
 * (rater configuration, gold set, constitution).
 */
export const raterEvaluations = pgTable(
  'rater_evaluations',
  {
    ...id,
    /** sha256 of (rater configuration hash, gold-set hash, constitution hash). */
    evalKey: text('eval_key').notNull(),
    runId: runRef(),
    goldName: text('gold_name').notNull(),
    /** sha256 of the gold pairs' canonical JSON (core/rater/gold.ts). */
    goldHash: text('gold_hash').notNull(),
    goldPairs: integer('gold_pairs').notNull(),
    constitutionId: ref('constitution_id')
      .notNull()
      .references(() => constitutions.id),
    constitutionHash: text('constitution_hash').notNull(),
    raterEndpoint: text('rater_endpoint').notNull(),
    raterModel: text('rater_model').notNull(),
    /** The rater endpoint (an API key only by its variable's NAME) and the label settings measured. */
    raterConfig: jsonb('rater_config').notNull(),
    raterConfigHash: text('rater_config_hash').notNull(),
    /** {overall, principles, categories} (core/rater/evaluation.ts); null until the evaluation has finished. */
    metrics: jsonb('metrics'),
    ...createdAt,
    completedAt: timestamp('completed_at', { withTimezone: true }),
  },
  (t) => [uniqueIndex('rater_evaluations_key').on(t.evalKey), index('rater_evaluations_run_idx').on(t.runId)],
);

// The audit views (their SQL is migration 0002_audit_views.sql; drizzle-kit leaves `.existing()` views
// alone). Declared here so that queries over them are typed. The AI's rows are never updated; human
// reviews sit beside them and win where they exist.

/** The newest human review of each pair (in either order). */
export const latestHumanReviews = pgView('latest_human_reviews', {
  id: bigint('id', { mode: 'number' }).notNull(),
  reviewKey: text('review_key').notNull(),
  decisionId: ref('decision_id'),
  runId: ref('run_id').notNull(),
  promptId: ref('prompt_id').notNull(),
  completionAId: ref('completion_a_id').notNull(),
  completionBId: ref('completion_b_id').notNull(),
  prefer: text('prefer').$type<'A' | 'B' | 'tie'>().notNull(),
  reason: text('reason').notNull(),
  reviewer: text('reviewer').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull(),
}).existing();

/** Every rater decision with the texts it judged and its override, if any. */
export const auditDecisions = pgView('audit_decisions', {
  id: bigint('id', { mode: 'number' }).notNull(),
  runId: ref('run_id').notNull(),
  stage: text('stage').notNull(),
  iteration: integer('iteration').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull(),
  principleKey: text('principle_key').notNull(),
  principleText: text('principle_text').notNull(),
  constitutionHash: text('constitution_hash').notNull(),
  raterEndpoint: text('rater_endpoint').notNull(),
  raterModel: text('rater_model').notNull(),
  order: text('order'),
  attempt: integer('attempt').notNull(),
  outcome: text('outcome').notNull(),
  parsedChoice: text('parsed_choice'),
  pA: doublePrecision('p_a'),
  pB: doublePrecision('p_b'),
  confidence: doublePrecision('confidence'),
  flags: jsonb('flags').$type<string[]>().notNull(),
  fromCache: boolean('from_cache').notNull(),
  latencyMs: integer('latency_ms').notNull(),
  promptTokens: integer('prompt_tokens'),
  completionTokens: integer('completion_tokens'),
  prompt: jsonb('prompt').$type<{ role: string; content: string }[]>().notNull(),
  completionAId: ref('completion_a_id').notNull(),
  completionA: text('completion_a').notNull(),
  completionBId: ref('completion_b_id'),
  completionB: text('completion_b'),
  humanPreferAB: text('human_prefer_a_b').$type<'A' | 'B' | 'tie'>(),
  humanReason: text('human_reason'),
  humanReviewer: text('human_reviewer'),
  humanCompletionAId: ref('human_completion_a_id'),
}).existing();

/** The preferences training reads: the AI's, unless a human reviewed the pair; a human "tie" drops it. */
export const effectivePreferences = pgView('effective_preferences', {
  runId: ref('run_id').notNull(),
  iteration: integer('iteration').notNull(),
  promptId: ref('prompt_id').notNull(),
  chosenId: ref('chosen_id').notNull(),
  rejectedId: ref('rejected_id').notNull(),
  softLabel: doublePrecision('soft_label').notNull(),
  ordersAgree: boolean('orders_agree'),
  source: text('source').$type<'ai' | 'human'>().notNull(),
  decisionIds: jsonb('decision_ids').$type<number[]>().notNull(),
  reviewId: ref('review_id'),
}).existing();

/** Per run and principle of the label stage: label split, order agreement, confidence, tokens, cache, flags. */
export const principleStatsView = pgView('principle_stats', {
  runId: ref('run_id').notNull(),
  principleKey: text('principle_key').notNull(),
  decisions: bigint('decisions', { mode: 'number' }).notNull(),
  choseA: bigint('chose_a', { mode: 'number' }).notNull(),
  choseB: bigint('chose_b', { mode: 'number' }).notNull(),
  unparseable: bigint('unparseable', { mode: 'number' }).notNull(),
  meanConfidence: doublePrecision('mean_confidence'),
  orderAgreement: numeric('order_agreement', { mode: 'number' }),
  promptTokens: bigint('prompt_tokens', { mode: 'number' }),
  completionTokens: bigint('completion_tokens', { mode: 'number' }),
  fromCache: bigint('from_cache', { mode: 'number' }).notNull(),
  flagged: bigint('flagged', { mode: 'number' }).notNull(),
}).existing();
