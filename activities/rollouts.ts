// The rollout stage of online RL: group_size completions per training prompt from the current
// policy, scored in Node by the reward model (onnxruntime-node) plus the configured reward terms;
// every component and the total are stored per completion (rollout_rewards).
import { ApplicationFailure } from '@temporalio/activity';
import { and, eq, inArray, isNull } from 'drizzle-orm';
import { stableHash } from '../core/rater/principles.js';
import type { Database } from '../db/pool.js';
import { completions, rolloutRewards } from '../db/schema.js';
import type { StageCounts } from './label.js';
import type { ChatMessage, ModelEndpoints } from './llm.js';
import type { StageBatch } from './pipeline.js';
import type { PromptRow, RunContext } from './run-context.js';
import type { RewardScorers } from './scorers.js';

/** Reward terms besides the reward model's score, by name; each returns the term's value (already weighted). */
export function rewardComponents(score: number, completionTokens: number, settings: { length_penalty: number; max_tokens: number }): Record<string, number> {
  const components: Record<string, number> = { reward_model: score };
  if (settings.length_penalty > 0) components.length_penalty = -settings.length_penalty * (completionTokens / settings.max_tokens);
  return components;
}

export async function rolloutBatch(db: Database, llm: ModelEndpoints, scorers: RewardScorers, context: RunContext, prompts: PromptRow[], batch: StageBatch): Promise<StageCounts> {
  if (batch.rewardModelId === undefined) throw ApplicationFailure.nonRetryable('the rollout stage needs a reward model', 'RewardModelMissing');
  const settings = context.config.loop.rollouts;
  const configured = context.config.endpoints.policy;
  const endpoint = batch.policyModel ? { ...configured, model: batch.policyModel } : configured;
  const promptIds = prompts.map((p) => p.id);
  const where = and(eq(completions.runId, context.runId), inArray(completions.promptId, promptIds), eq(completions.stage, 'rollout'), eq(completions.iteration, batch.iteration));
  const have = new Set((await db.select({ promptId: completions.promptId, sampleIndex: completions.sampleIndex }).from(completions).where(where)).map((r) => `${r.promptId}:${r.sampleIndex}`));

  const wanted: { prompt: PromptRow; sampleIndex: number; seed: number }[] = [];
  for (const prompt of prompts) {
    const base = stableHash(`${context.runId}:rollout:${batch.iteration}:${prompt.key}`) % 1_000_000;
    for (let sampleIndex = 0; sampleIndex < settings.group_size; sampleIndex++) {
      if (!have.has(`${prompt.id}:${sampleIndex}`)) wanted.push({ prompt, sampleIndex, seed: base + sampleIndex });
    }
  }
  if (wanted.length > 0) {
    const results = await llm.chatMany(
      endpoint,
      wanted.map((w) => ({ messages: w.prompt.messages as ChatMessage[], temperature: settings.temperature, max_tokens: settings.max_tokens, seed: w.seed })),
    );
    const rows = wanted.map((w, i) => ({
      runId: context.runId,
      promptId: w.prompt.id,
      stage: 'rollout',
      iteration: batch.iteration,
      sampleIndex: w.sampleIndex,
      policyModel: endpoint.model,
      policyVersion: endpoint.model,
      text: results[i]!.text,
      generationParams: { temperature: settings.temperature, max_tokens: settings.max_tokens, seed: w.seed, endpoint: endpoint.base_url, from_cache: results[i]!.fromCache },
      finishReason: results[i]!.finishReason,
      promptTokens: results[i]!.promptTokens,
      completionTokens: results[i]!.completionTokens,
    }));
    for (let i = 0; i < rows.length; i += 500) await db.insert(completions).values(rows.slice(i, i + 500)).onConflictDoNothing();
  }

  // Score what has no reward yet (a retried batch skips what it scored before).
  const pending = await db
    .select({ id: completions.id, promptId: completions.promptId, text: completions.text, tokens: completions.completionTokens })
    .from(completions)
    .leftJoin(rolloutRewards, eq(rolloutRewards.completionId, completions.id))
    .where(and(where, isNull(rolloutRewards.id)));
  if (pending.length > 0) {
    const scorer = await scorers.get(batch.rewardModelId);
    const byId = new Map(prompts.map((p) => [p.id, p]));
    const scores = await scorer.score(pending.map((r) => ({ prompt: byId.get(r.promptId)!.messages, completion: r.text })));
    const rewardRows = pending.map((r, i) => {
      const components = rewardComponents(scores[i]!, r.tokens ?? 0, settings);
      return {
        runId: context.runId,
        iteration: batch.iteration,
        completionId: r.id,
        groupKey: `${r.promptId}`,
        rewardModelId: batch.rewardModelId!,
        components,
        total: Object.values(components).reduce((a, b) => a + b, 0),
      };
    });
    for (let i = 0; i < rewardRows.length; i += 500) await db.insert(rolloutRewards).values(rewardRows.slice(i, i + 500)).onConflictDoNothing();
  }
  return { done: prompts.length * settings.group_size, failed: 0 };
}
