// The sample stage: N completions per prompt from the policy endpoint, each stored with its
// generation parameters and token usage. A completion that exists is not asked for again.
import { and, eq } from 'drizzle-orm';
import { stableHash } from '../core/rater/principles.js';
import type { Database } from '../db/pool.js';
import { completions } from '../db/schema.js';
import type { ChatMessage, ModelEndpoints } from './llm.js';
import type { PromptRow, RunContext } from './run-context.js';

export async function samplePrompt(db: Database, llm: ModelEndpoints, context: RunContext, prompt: PromptRow, iteration: number): Promise<number> {
  const endpoint = context.config.endpoints.policy;
  const params = context.config.sample;
  const existing = await db
    .select({ sampleIndex: completions.sampleIndex })
    .from(completions)
    .where(and(eq(completions.runId, context.runId), eq(completions.promptId, prompt.id), eq(completions.stage, 'sample'), eq(completions.iteration, iteration)));
  const have = new Set(existing.map((row) => row.sampleIndex));
  // Every sample gets its own seed, so the n requests differ (and cache apart) even where the endpoint ignores seeds.
  const baseSeed = params.seed ?? stableHash(`${context.runId}:${prompt.key}`) % 1_000_000;
  await Promise.all(
    Array.from({ length: params.n }, (_, sampleIndex) => sampleIndex)
      .filter((sampleIndex) => !have.has(sampleIndex))
      .map(async (sampleIndex) => {
        const request = {
          messages: prompt.messages as ChatMessage[],
          temperature: params.temperature,
          top_p: params.top_p,
          max_tokens: params.max_tokens,
          seed: baseSeed + sampleIndex,
        };
        const result = await llm.chat(endpoint, request);
        await db
          .insert(completions)
          .values({
            runId: context.runId,
            promptId: prompt.id,
            stage: 'sample',
            iteration,
            sampleIndex,
            policyModel: endpoint.model,
            policyVersion: endpoint.model,
            text: result.text,
            generationParams: { temperature: request.temperature, top_p: request.top_p, max_tokens: request.max_tokens, seed: request.seed, endpoint: endpoint.base_url, from_cache: result.fromCache },
            finishReason: result.finishReason,
            promptTokens: result.promptTokens,
            completionTokens: result.completionTokens,
          })
          .onConflictDoNothing();
      }),
  );
  return params.n;
}
