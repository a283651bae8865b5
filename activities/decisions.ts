// The fields every rater_decisions row takes from its run and from the model call that made it.
import type { ChatRequest, ChatResult } from './llm.js';
import type { RunContext } from './run-context.js';

export function raterCallFields(context: RunContext, request: ChatRequest, result: ChatResult) {
  const rater = context.config.endpoints.rater;
  return {
    runId: context.runId,
    constitutionId: context.constitutionId,
    constitutionHash: context.constitutionHash,
    raterEndpoint: rater.base_url,
    raterModel: rater.model,
    request: { model: rater.model, ...request },
    rawResponse: result.raw,
    fromCache: result.fromCache,
    latencyMs: result.latencyMs,
    promptTokens: result.promptTokens,
    completionTokens: result.completionTokens,
    cacheKey: result.cacheKey,
  };
}
