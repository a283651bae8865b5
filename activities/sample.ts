// The sample stage: N completions per prompt from the policy endpoint, each stored with its
// generation parameters and token usage. A completion that exists is not asked for again; a batch
// of prompts reads what exists once, sends the rest at once and writes once.
import { and, eq } from 'drizzle-orm';
import { stableHash } from '../core/rater/principles.js';
import { inList, insertNewRows } from '../db/bulk.js';
import type { Database } from '../db/pool.js';
import { completions } from '../db/schema.js';
import type { StageCounts } from './label.js';
import type { ChatMessage, ChatRequest, ModelEndpoints } from './llm.js';
import type { PromptRow, RunContext } from './run-context.js';

export async function sampleBatch(db: Database, llm: ModelEndpoints, context: RunContext, prompts: PromptRow[], iteration: number, options: { policyModel?: string } = {}): Promise<StageCounts> {
  const configured = context.config.endpoints.policy;
  const endpoint = options.policyModel ? { ...configured, model: options.policyModel } : configured;
  const params = context.config.sample;
  const existing = await db
    .select({ promptId: completions.promptId, sampleIndex: completions.sampleIndex })
    .from(completions)
    .where(and(eq(completions.runId, context.runId), inList(completions.promptId, prompts.map((p) => p.id)), eq(completions.stage, 'sample'), eq(completions.iteration, iteration)));
  const have = new Set(existing.map((row) => `${row.promptId}:${row.sampleIndex}`));
  const wanted: { prompt: PromptRow; sampleIndex: number; request: ChatRequest & { seed: number } }[] = [];
  for (const prompt of prompts) {
    // Every sample gets its own seed, so the n requests differ (and cache apart) even where the endpoint ignores seeds.
    const baseSeed = params.seed ?? stableHash(`${context.runId}:${prompt.key}`) % 1_000_000;
    for (let sampleIndex = 0; sampleIndex < params.n; sampleIndex++) {
      if (have.has(`${prompt.id}:${sampleIndex}`)) continue;
      wanted.push({
        prompt,
        sampleIndex,
        request: { messages: prompt.messages as ChatMessage[], temperature: params.temperature, top_p: params.top_p, max_tokens: params.max_tokens, seed: baseSeed + sampleIndex },
      });
    }
  }
  if (wanted.length > 0) {
    const results = await llm.chatMany(endpoint, wanted.map((w) => w.request));
    const rows = wanted.map(({ prompt, sampleIndex, request }, i) => {
      const result = results[i]!;
      return {
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
      };
    });
    for (let i = 0; i < rows.length; i += 1_000) await insertNewRows(db, completions, rows.slice(i, i + 1_000));
  }
  return { done: prompts.length * params.n, failed: 0 };
}
