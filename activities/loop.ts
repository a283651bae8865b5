// CPU-side activities of the training loop: planning trainer jobs from the run config, putting a
// new policy adapter into service on the policy endpoint, and evaluating it against the previous
// policy on held-out prompts (rater win rate in both orders, reward-model score, length).
import { ApplicationFailure, Context } from '@temporalio/activity';
import { and, eq, inArray, lte } from 'drizzle-orm';
import { evaluateMonitors, pauseReason, raterVerifierDisagreement, rolloutFlagMetrics, type MonitorAlert } from '../core/monitors.js';
import { stableHash } from '../core/rater/principles.js';
import { lengthControlledWinRate } from '../core/length-control.js';
import { wilsonInterval } from '../core/stats.js';
import type { Database } from '../db/pool.js';
import { recordMetrics } from '../db/runs.js';
import { completions, metrics, models, preferences, rolloutRewards } from '../db/schema.js';
import { labelBatch } from './label.js';
import type { ChatMessage, ModelEndpoints } from './llm.js';
import { seedScope } from './rollouts.js';
import { promptsAt, type RunContexts } from './run-context.js';
import type { RewardScorers } from './scorers.js';
import type { TrainerJob } from './trainer.js';

export interface PlanInput {
  runId: number;
  iteration: number;
  step: 'reward' | 'policy';
  /** The current policy's model id (none in the first iteration: the base model). */
  policyModelId?: number;
}

export interface EvaluateInput {
  runId: number;
  iteration: number;
  /** Served model names of the policy before and after this iteration's update. */
  previousPolicy: string;
  newPolicy: string;
  rewardModelId: number;
}

export interface EvaluateResult {
  winRate: number | null;
  meanReward: number | null;
  meanLength: number | null;
  prompts: number;
}

export function createLoopActivities(deps: { db: Database; llm: ModelEndpoints; contexts: RunContexts; scorers: RewardScorers }) {
  const { db, llm, contexts, scorers } = deps;
  return {
    async planTrainerJob(input: PlanInput): Promise<TrainerJob> {
      const { config } = await contexts.get(input.runId);
      const loop = config.loop;
      if (loop.mode === 'none' || !loop.base_model) throw ApplicationFailure.nonRetryable(`run ${input.runId} has no training loop (loop.mode is none)`, 'NoLoop');
      const prefix = `run-${input.runId}/it-${input.iteration}`;
      if (input.step === 'reward') {
        return {
          runId: input.runId,
          iteration: input.iteration,
          command: 'reward-model',
          kind: 'reward',
          modelKey: `${prefix}/reward`,
          baseModel: loop.reward_model.base ?? loop.base_model,
          options: loop.reward_model.options,
          // Every preference gathered so far: later iterations add to the reward model's data.
          data: { source: 'preferences', iterations: Array.from({ length: input.iteration + 1 }, (_, i) => i) },
        };
      }
      return {
        runId: input.runId,
        iteration: input.iteration,
        command: loop.mode === 'dpo' ? 'dpo' : 'rl',
        kind: 'policy',
        modelKey: `${prefix}/policy`,
        baseModel: loop.base_model,
        ...(input.policyModelId !== undefined ? { parentModelId: input.policyModelId } : {}),
        options: loop.policy.options,
        data: loop.mode === 'dpo' ? { source: 'preferences', iterations: [input.iteration] } : { source: 'rollouts', iteration: input.iteration },
      };
    },

    /** The policy endpoint's own model name (the policy before the first update). */
    async basePolicyName(input: { runId: number }): Promise<string> {
      return (await contexts.get(input.runId)).config.endpoints.policy.model;
    },

    /** Loads the adapter into the policy endpoint under `name` (vLLM's /v1/load_lora_adapter API, which `trainer serve` shares). */
    async activatePolicy(input: { runId: number; modelId: number; name: string }): Promise<void> {
      const { config } = await contexts.get(input.runId);
      if (!config.loop.serve_adapters) return;
      const [row] = await db.select({ path: models.artifactPath }).from(models).where(eq(models.id, input.modelId));
      if (!row) throw ApplicationFailure.nonRetryable(`model ${input.modelId} is not registered`, 'ModelMissing');
      const endpoint = config.endpoints.policy;
      const url = `${endpoint.base_url.replace(/\/+$/, '')}/load_lora_adapter`;
      const apiKey = endpoint.api_key_env ? process.env[endpoint.api_key_env] : undefined;
      // Heartbeats while the endpoint loads it (loading can take a while): a worker lost mid-load is noticed within the heartbeat timeout.
      const activity = Context.current();
      const pulse = setInterval(() => activity.heartbeat(), Math.max(200, Math.min(5_000, (activity.info.heartbeatTimeoutMs ?? 15_000) / 3)));
      let response: Response;
      try {
        response = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) },
          body: JSON.stringify({ lora_name: input.name, lora_path: row.path }),
          signal: AbortSignal.timeout(endpoint.timeout_s * 1000),
        });
      } catch (error) {
        clearInterval(pulse);
        throw ApplicationFailure.retryable(`policy endpoint ${endpoint.base_url}: cannot load adapter ${input.name}: ${(error as Error).message}`, 'EndpointUnavailable');
      }
      const text = await response.text().finally(() => clearInterval(pulse));
      if (!response.ok) {
        const body = text.slice(0, 500);
        const message = `policy endpoint ${endpoint.base_url} (model ${endpoint.model}) refused adapter ${input.name} from ${row.path}: HTTP ${response.status} ${body}`;
        if (response.status >= 500 || response.status === 429) throw ApplicationFailure.retryable(message, 'EndpointUnavailable');
        // vLLM refuses a name it already holds (400 "has already been loaded"), e.g. when this is the
        // retry of a load that went through before its worker was lost. The same adapter under the
        // same name is what was asked for; another one under that name is a conflict.
        const loaded = await loadedAdapterRoot(endpoint.base_url, apiKey, input.name, endpoint.timeout_s);
        if (loaded === row.path) return;
        throw ApplicationFailure.nonRetryable(loaded === undefined ? message : `${message} (the endpoint holds ${input.name} from ${loaded})`, 'AdapterRejected');
      }
    },

    /**
     * Held-out prompts, one completion each from the previous and the new policy; the rater compares
     * each pair in both orders (stage `evaluate`). Records eval.* metrics for the iteration.
     */
    checkMonitors,

    async evaluatePolicy(input: EvaluateInput): Promise<EvaluateResult> {
      const activity = Context.current();
      const pulse = setInterval(() => activity.heartbeat(), Math.max(200, Math.min(5_000, (activity.info.heartbeatTimeoutMs ?? 15_000) / 3)));
      try {
        return await evaluate(input);
      } finally {
        clearInterval(pulse);
      }
    },
  };

  /**
   * After an iteration: the rollouts' flag and rater–verifier metrics, then the monitors over the
   * run's metrics so far. Alerts (with why) go back to the workflow, which pauses the run.
   */
  async function checkMonitors(input: { runId: number; iteration: number }): Promise<{ alerts: MonitorAlert[]; reason?: string }> {
    const { config } = await contexts.get(input.runId);
    const rewards = await db
      .select({ raw: rolloutRewards.raw, flags: rolloutRewards.flags, verdict: rolloutRewards.verdict })
      .from(rolloutRewards)
      .where(and(eq(rolloutRewards.runId, input.runId), eq(rolloutRewards.iteration, input.iteration)));
    await recordMetrics(db, input.runId, input.iteration, {
      ...rolloutFlagMetrics(rewards.map((r) => (r.verdict === null ? undefined : r.flags))),
      ...raterVerifierDisagreement(rewards.map((r) => ({ rater: r.raw.rater_score, verifier: r.raw.verifier }))),
    });
    const rows = await db.select().from(metrics).where(and(eq(metrics.runId, input.runId), lte(metrics.iteration, input.iteration)));
    const byIteration = new Map<number, Record<string, number>>();
    for (const row of rows) byIteration.set(row.iteration, { ...byIteration.get(row.iteration), [row.name]: row.value });
    const report = evaluateMonitors([...byIteration].map(([iteration, values]) => ({ iteration, metrics: values })), config.loop.monitors);
    await recordMetrics(db, input.runId, input.iteration, report.values);
    return { alerts: report.alerts, ...(report.alerts.length > 0 ? { reason: pauseReason(report) } : {}) };
  }

  async function evaluate(input: EvaluateInput): Promise<EvaluateResult> {
      const context = await contexts.get(input.runId);
      const settings = context.config.loop.evaluate;
      const heldout = await promptsAt(db, input.runId, 0, settings.max_prompts, 'eval');
      if (heldout.length === 0) return { winRate: null, meanReward: null, meanLength: null, prompts: 0 };
      const endpoint = context.config.endpoints.policy;
      const policies = [input.previousPolicy, input.newPolicy];
      const where = and(eq(completions.runId, input.runId), eq(completions.stage, 'eval'), eq(completions.iteration, input.iteration), inArray(completions.promptId, heldout.map((p) => p.id)));
      const existing = new Set((await db.select({ promptId: completions.promptId, version: completions.policyVersion }).from(completions).where(where)).map((r) => `${r.promptId}:${r.version}`));
      const wanted = heldout.flatMap((prompt) => policies.filter((policy) => !existing.has(`${prompt.id}:${policy}`)).map((policy) => ({ prompt, policy })));
      if (wanted.length > 0) {
        const results = await Promise.all(
          policies.map((policy) => {
            const requests = wanted.filter((w) => w.policy === policy);
            return llm
              .chatMany(
                { ...endpoint, model: policy },
                requests.map((w) => ({ messages: w.prompt.messages as ChatMessage[], temperature: settings.temperature, max_tokens: settings.max_tokens, seed: stableHash(`${seedScope(context)}:eval:${w.prompt.key}`) % 1_000_000 })),
              )
              .then((answers) => answers.map((answer, i) => ({ ...requests[i]!, answer })));
          }),
        );
        const rows = results.flat().map(({ prompt, policy, answer }) => ({
          runId: input.runId,
          promptId: prompt.id,
          stage: 'eval',
          iteration: input.iteration,
          sampleIndex: policy === input.newPolicy ? 1 : 0,
          policyModel: policy,
          policyVersion: policy,
          text: answer.text,
          generationParams: { temperature: settings.temperature, max_tokens: settings.max_tokens, endpoint: endpoint.base_url, from_cache: answer.fromCache },
          finishReason: answer.finishReason,
          promptTokens: answer.promptTokens,
          completionTokens: answer.completionTokens,
        }));
        await db.insert(completions).values(rows).onConflictDoNothing();
      }
      await labelBatch(db, llm, context, heldout, input.iteration, { completionStage: 'eval', decisionStage: 'evaluate' });

      const samples = await db.select({ id: completions.id, promptId: completions.promptId, version: completions.policyVersion, text: completions.text, tokens: completions.completionTokens }).from(completions).where(where);
      const fresh = samples.filter((s) => s.version === input.newPolicy);
      const newIds = new Set(fresh.map((s) => s.id));
      const verdicts = await db
        .select({ promptId: preferences.promptId, chosen: preferences.chosenId, soft: preferences.softLabel })
        .from(preferences)
        .where(and(eq(preferences.runId, input.runId), eq(preferences.iteration, input.iteration), inArray(preferences.promptId, heldout.map((p) => p.id))));
      // P(new policy's answer is better), per held-out prompt.
      const wins = verdicts.map((v) => (newIds.has(v.chosen) ? v.soft : 1 - v.soft));
      const scorer = await scorers.get(input.rewardModelId);
      const byId = new Map(heldout.map((p) => [p.id, p]));
      const rewards = await scorer.score(fresh.map((s) => ({ prompt: byId.get(s.promptId)!.messages, completion: s.text })));
      // The previous policy's answers under the same reward model: the baseline of the reward-hacking monitor.
      const previous = samples.filter((s) => s.version === input.previousPolicy);
      const previousRewards = await scorer.score(previous.map((s) => ({ prompt: byId.get(s.promptId)!.messages, completion: s.text })));
      const previousMean = mean(previousRewards);
      const result: EvaluateResult = {
        winRate: mean(wins),
        meanReward: mean(rewards),
        meanLength: mean(fresh.map((s) => s.tokens ?? 0)),
        prompts: heldout.length,
      };
      const values: Record<string, number> = { 'eval.prompts': heldout.length };
      if (result.winRate !== null) {
        // Its 95% interval over the held-out prompts: with a handful of them a win rate says little.
        const interval = wilsonInterval(result.winRate, wins.length);
        Object.assign(values, { 'eval.win_rate': result.winRate, 'eval.win_rate_low': interval.low, 'eval.win_rate_high': interval.high });
        // Length-controlled: the preference regressed on the length difference (new − previous, in
        // tokens) and read at zero difference, so a policy that only grew longer under a rater that
        // likes length does not look better.
        const tokens = new Map(samples.map((s) => [`${s.promptId}:${s.version}`, s.tokens ?? 0]));
        const diffs = verdicts.map((v) => (tokens.get(`${v.promptId}:${input.newPolicy}`) ?? 0) - (tokens.get(`${v.promptId}:${input.previousPolicy}`) ?? 0));
        const controlled = lengthControlledWinRate(wins, diffs);
        if (controlled) values['eval.win_rate_lc'] = controlled.winRate;
      }
      if (result.meanReward !== null) values['eval.mean_reward'] = result.meanReward;
      if (result.meanLength !== null) values['eval.mean_length'] = result.meanLength;
      if (previousMean !== null) values['eval.mean_reward_previous'] = previousMean;
      await recordMetrics(db, input.runId, input.iteration, values);
      return result;
  }
}

/** Where the endpoint's model list says the adapter `name` was loaded from (its `root`), or undefined when it is not listed or the list cannot be read. */
async function loadedAdapterRoot(baseUrl: string, apiKey: string | undefined, name: string, timeoutS: number): Promise<string | undefined> {
  try {
    const response = await fetch(`${baseUrl.replace(/\/+$/, '')}/models`, {
      headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {},
      signal: AbortSignal.timeout(timeoutS * 1000),
    });
    if (!response.ok) return undefined;
    const list = (await response.json()) as { data?: { id?: unknown; root?: unknown }[] };
    const entry = list.data?.find((model) => model.id === name);
    return typeof entry?.root === 'string' ? entry.root : undefined;
  } catch {
    return undefined;
  }
}

function mean(values: number[]): number | null {
  return values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length;
}
