// Evaluating a new policy against the previous one on held-out prompts: one completion each, the
// rater in both orders (stage `evaluate`), the reward model's score and the length; eval.* metrics.
import { Context } from '@temporalio/activity';
import { and, eq, inArray } from 'drizzle-orm';
import { lengthControlledWinRate } from '../core/length-control.js';
import { stableHash } from '../core/rater/principles.js';
import { wilsonInterval } from '../core/stats.js';
import type { Database } from '../db/pool.js';
import { recordMetrics } from '../db/runs.js';
import { completions, preferences } from '../db/schema.js';
import { labelBatch } from './label.js';
import type { ChatMessage, ModelEndpoints } from './llm.js';
import { seedScope } from './rollouts.js';
import { promptsAt, type RunContexts } from './run-context.js';
import type { RewardScorers } from './scorers.js';

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

export function createEvaluationActivities(deps: { db: Database; llm: ModelEndpoints; contexts: RunContexts; scorers: RewardScorers }) {
  const { db, llm, contexts, scorers } = deps;
  return {
    /**
     * Held-out prompts, one completion each from the previous and the new policy; the rater compares
     * each pair in both orders (stage `evaluate`). Records eval.* metrics for the iteration.
     */
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

function mean(values: number[]): number | null {
  return values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length;
}
