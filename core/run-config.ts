// A run's configuration (run.yaml): the model endpoints per role and the settings of each stage.
// Keys are snake_case as in the YAML; the parsed object is stored with the run.
import { z } from 'zod';
import { monitorsSchema } from './monitors.js';
import { defaultRewardTerms, rewardTermsSchema, type RewardTerms } from './rewards/compose.js';

const positiveInt = (what: string) => z.number({ error: `expected ${what} (a whole number)` }).int({ error: `expected ${what} (a whole number)` }).positive({ error: `expected ${what} above 0` });

export const endpointSchema = z.strictObject({
  /** OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1 */
  base_url: z.url({ error: 'expected an http(s) URL such as http://127.0.0.1:8000/v1', protocol: /^https?$/ }),
  model: z.string({ error: 'expected a model name' }).min(1, { error: 'expected a model name' }),
  /** Name of the environment variable that holds the API key; the key itself never enters a file, the DB or a log. */
  api_key_env: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'expected the NAME of an environment variable, not the key itself' })
    .optional(),
  max_concurrency: positiveInt('a concurrency').default(16),
  requests_per_second: z.number({ error: 'expected a rate (requests per second)' }).positive().optional(),
  timeout_s: z.number({ error: 'expected seconds' }).positive().default(120),
  max_retries: z.number().int().min(0).max(20).default(6),
  /** Prices per million tokens, for the cost column of `tenet audit stats`. */
  price_per_mtok: z.strictObject({ input: z.number().min(0), output: z.number().min(0) }).optional(),
});
export type EndpointConfig = z.output<typeof endpointSchema>;

/** Trainer flags (snake_case, as `python -m tenet_trainer <command> --help` lists them); the trainer rejects unknown ones. */
const trainerOptions = z.record(
  z.string().regex(/^[a-z][a-z0-9_]*$/, { error: 'expected a trainer option name in snake_case, e.g. max_steps' }),
  z.union([z.string(), z.number(), z.boolean()], { error: 'expected a string, number or boolean' }),
);
// Set by the loop itself, not by the run config.
const reservedTrainerOptions = ['model', 'data', 'output', 'adapter', 'resume_from', 'config'];
const trainerOptionsFor = (what: string) =>
  trainerOptions.default({}).refine((options) => !reservedTrainerOptions.some((key) => key in options), {
    error: `${what}: ${reservedTrainerOptions.join(', ')} are set by the loop`,
  });

/**
 * The training loop after the data stages: reward model → policy update (DPO from preferences, or
 * online RL from scored rollouts) → evaluation, `iterations` times. `mode: none` stops after the
 * data stages.
 */
const gpuCount = z.number({ error: 'expected a number of GPUs' }).int().min(1, { error: 'expected at least 1 GPU' }).max(64);

export const loopSchema = z
  .strictObject({
    mode: z.enum(['none', 'dpo', 'online'], { error: 'expected none, dpo or online' }).default('none'),
    iterations: z.number().int().min(1).max(1_000).default(1),
    /** The policy's weights for training: a local folder or a Hugging Face hub id. The policy endpoint serves the same model. */
    base_model: z.string().min(1).optional(),
    /** Load each new policy adapter into the policy endpoint (`trainer serve`, or vLLM with LoRA enabled) under the name `<run>-it<N>`. */
    serve_adapters: z.boolean().default(true),
    reward_model: z
      .strictObject({
        /** The reward model's backbone; defaults to base_model. */
        base: z.string().min(1).optional(),
        options: trainerOptionsFor('loop.reward_model.options'),
        /** GPUs for the job (one trainer process each, FSDP2 over them); a GPU worker with fewer refuses it. */
        gpus: gpuCount.optional(),
      })
      .default({ options: {} }),
    /** Flags of `trainer dpo` or `trainer rl`, by mode, and the GPUs of the job. */
    policy: z.strictObject({ options: trainerOptionsFor('loop.policy.options'), gpus: gpuCount.optional() }).default({ options: {} }),
    rollouts: z
      .strictObject({
        /** Completions per prompt: the group of group-relative advantages. */
        group_size: z.number().int().min(2).max(64).default(4),
        temperature: z.number().min(0).max(2).default(1),
        max_tokens: positiveInt('a token limit').default(128),
        /** Reward terms besides the reward model: subtract length_penalty × completion tokens / max_tokens. */
        length_penalty: z.number().min(0).default(0),
        /**
         * The server's log-probs of the sampled tokens, stored per rollout (completions.sampled_logprobs) and passed to
         * `trainer rl` for its importance correction and its policy.logprob_mismatch metric. `with-ids` also asks for the
         * token ids (return_tokens_as_token_ids: vLLM, `trainer serve`); `without-ids` asks for the log-probs only, for
         * endpoints that reject that field (OpenAI's API); `off` asks for neither. An endpoint that returns none still works.
         */
        logprobs: z.enum(['with-ids', 'without-ids', 'off'], { error: 'expected with-ids, without-ids or off' }).default('with-ids'),
      })
      .default({ group_size: 4, temperature: 1, max_tokens: 128, length_penalty: 0, logprobs: 'with-ids' }),
    /** Reward terms of online rollouts (core/rewards/compose.ts); default: the reward model, minus rollouts.length_penalty × tokens / max_tokens. */
    rewards: rewardTermsSchema.optional(),
    /** Thresholds checked after each iteration; an alert pauses the run and says why (core/monitors.ts). */
    monitors: monitorsSchema.default({}),
    evaluate: z
      .strictObject({
        /** Share of the prompts held out for evaluation when the prompts file marks none as `eval`. */
        heldout_fraction: z.number().min(0).max(0.9).default(0.2),
        /** At most this many held-out prompts per evaluation. */
        max_prompts: z.number().int().min(1).max(100_000).default(64),
        temperature: z.number().min(0).max(2).default(0),
        max_tokens: positiveInt('a token limit').default(128),
        /**
         * Completions per evaluated prompt that `trainer kl` samples from the new policy at temperature 1
         * to measure eval.kl_k1 / eval.kl_k3 on (both estimators assume samples from the policy; the
         * evaluation's own completions are greedy by default).
         */
        kl_samples: z.number().int().min(1).max(256).default(4),
      })
      .default({ heldout_fraction: 0.2, max_prompts: 64, temperature: 0, max_tokens: 128, kl_samples: 4 }),
  })
  .refine((loop) => loop.mode === 'none' || loop.base_model !== undefined, { error: 'loop.base_model: required when loop.mode is dpo or online', path: ['base_model'] })
  .refine((loop) => loop.rewards === undefined || loop.rollouts.length_penalty === 0, {
    error: 'with loop.rewards, set the length penalty as loop.rewards.length_penalty.weight',
    path: ['rollouts', 'length_penalty'],
  })
  .refine((loop) => !(loop.rewards?.length_penalty && Number(loop.policy.options.length_penalty ?? 0) > 0), {
    error: 'the trainer would penalise length twice: keep loop.rewards.length_penalty or this option, not both',
    path: ['policy', 'options', 'length_penalty'],
  })
  .default({
    mode: 'none',
    iterations: 1,
    serve_adapters: true,
    reward_model: { options: {} },
    policy: { options: {} },
    rollouts: { group_size: 4, temperature: 1, max_tokens: 128, length_penalty: 0, logprobs: 'with-ids' },
    monitors: {},
    evaluate: { heldout_fraction: 0.2, max_prompts: 64, temperature: 0, max_tokens: 128, kl_samples: 4 },
  });
export type LoopConfig = z.output<typeof loopSchema>;

/** The reward terms of a run's rollouts: its `loop.rewards`, or the reward model less the length penalty. */
export function rolloutRewardTerms(loop: LoopConfig): RewardTerms {
  return loop.rewards ?? defaultRewardTerms(loop.rollouts.length_penalty);
}

export const runConfigSchema = z.strictObject({
  endpoints: z.strictObject({
    policy: endpointSchema,
    /** Writes critiques and revisions; defaults to the policy endpoint. */
    critic: endpointSchema.optional(),
    rater: endpointSchema,
  }),
  sample: z
    .strictObject({
      n: z.number().int().min(1).max(16).default(2),
      temperature: z.number().min(0).max(2).default(0.9),
      top_p: z.number().gt(0).max(1).default(1),
      max_tokens: positiveInt('a token limit').default(256),
      seed: z.number().int().optional(),
    })
    .default({ n: 2, temperature: 0.9, top_p: 1, max_tokens: 256 }),
  critique: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** Defaults to the constitution's critique_rounds. */
      rounds: z.number().int().min(1).max(16).optional(),
      max_tokens: positiveInt('a token limit').default(256),
      temperature: z.number().min(0).max(2).default(0.7),
    })
    .default({ enabled: true, max_tokens: 256, temperature: 0.7 }),
  label: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** Chain of thought: the rater reasons, then answers; its probabilities are clamped to cot_band. */
      cot: z.boolean().default(false),
      cot_band: z
        .tuple([z.number().min(0).max(1), z.number().min(0).max(1)])
        .refine(([low, high]) => low <= 0.5 && high >= 0.5 && low < high, { error: 'expected [low, high] with low ≤ 0.5 ≤ high' })
        .default([0.4, 0.6]),
      /** Principles per pair (an ensemble); defaults to the constitution's principles_per_comparison. */
      ensemble: z.number().int().min(1).max(16).optional(),
      /** Ask logprobs for the option tokens (soft labels); falls back to parsing the answer. */
      logprobs: z.boolean().default(true),
      max_tokens: positiveInt('a token limit').default(512),
      /** Repair prompts after an unparseable answer, before the comparison is skipped and counted. */
      repair_limit: z.number().int().min(0).max(5).default(2),
      /**
       * pairwise: the rater compares two completions, in both orders; pointwise: it is asked per completion and
       * principle question "Yes or No", and a pair's label is sigmoid(logit P(yes | first) − logit P(yes | second)).
       */
      mode: z.enum(['pairwise', 'pointwise']).default('pairwise'),
      /**
       * The rater's position prior, taken out in log-odds before both orders are combined (core/rater/calibration.ts):
       * `none` averages the orders' probabilities as they are; `batch` estimates the prior P(A) from the batch's own
       * both-order decisions; a number is a prior P(A) measured elsewhere (a gold set, content-free inputs).
       */
      position_prior: z.union([z.enum(['none', 'batch']), z.number().gt(0).lt(1)]).default('none'),
      /** Pairs whose two orders favour different completions: keep the combined label, make it a tie (0.5), or drop the pair. */
      disagreement: z.enum(['keep', 'tie', 'drop']).default('keep'),
      /** Pairs whose label lies closer than this to 0.5 are kept out of training (counted in `tenet audit stats`); 0 keeps all. */
      margin: z.number().min(0).max(0.5).default(0),
      /**
       * Pairs with a completion flagged for injection-looking text (master-key answers, fake verdicts, text addressed to
       * the rater, fence characters; core/rater/prompt.ts): keep them as labelled, drop them from training, or drop them
       * only when the flagged completion would be the chosen one. Drops are stored with reason `flagged`; decisions stay.
       */
      flagged: z.enum(['keep', 'drop', 'drop-chosen'], { error: 'expected keep, drop or drop-chosen' }).default('keep'),
    })
    .default({ enabled: true, cot: false, cot_band: [0.4, 0.6], logprobs: true, max_tokens: 512, repair_limit: 2, mode: 'pairwise', position_prior: 'none', disagreement: 'keep', margin: 0, flagged: 'keep' }),
  /** Pointwise scores (1–10 per principle per completion, normalised to [-1, 1]); repairs follow label.repair_limit. */
  score: z
    .strictObject({
      enabled: z.boolean().default(false),
      max_tokens: positiveInt('a token limit').default(16),
    })
    .default({ enabled: false, max_tokens: 16 }),
  scale: z
    .strictObject({
      /** Prompts per activity. */
      batch_size: z.number().int().min(1).max(10_000).default(64),
      /** Prompts per child workflow. */
      shard_size: z.number().int().min(1).max(1_000_000).default(1_024),
      /** Child workflows in flight at once. */
      max_shards_in_flight: z.number().int().min(1).max(1_000).default(200),
      /** Activities in flight per child workflow. */
      max_batches_in_flight: z.number().int().min(1).max(1_000).default(4),
      /** A batch whose worker stops heartbeating this long is retried elsewhere (each prompt heartbeats). */
      heartbeat_timeout_s: z.number().int().min(1).max(3_600).default(120),
    })
    .default({ batch_size: 64, shard_size: 1_024, max_shards_in_flight: 200, max_batches_in_flight: 4, heartbeat_timeout_s: 120 }),
  loop: loopSchema,
});
export type RunConfig = z.output<typeof runConfigSchema>;
export type RunConfigInput = z.input<typeof runConfigSchema>;

export function criticEndpoint(config: RunConfig): EndpointConfig {
  return config.endpoints.critic ?? config.endpoints.policy;
}
