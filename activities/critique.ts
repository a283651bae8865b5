// The critique→revision stage (SL-CAI): per sampled response, K rounds; each round draws a principle,
// asks the critic for a critique, then for a revision of the latest text. Every step is stored; the
// last revision of each chain is the SFT target.
import { and, eq } from 'drizzle-orm';
import { pickWeighted } from '../core/rater/principles.js';
import { renderTemplate } from '../core/rater/prompt.js';
import { criticEndpoint } from '../core/run-config.js';
import type { Database } from '../db/pool.js';
import { completions, critiques } from '../db/schema.js';
import type { StageCounts } from './label.js';
import type { ModelEndpoints } from './llm.js';
import { conversationText, type PromptRow, type RunContext } from './run-context.js';

/** Revisions share the completions table; their sample_index is source index × this + round. */
export const revisionIndexStride = 100;

export async function critiquePrompt(db: Database, llm: ModelEndpoints, context: RunContext, prompt: PromptRow, iteration: number): Promise<StageCounts> {
  const endpoint = criticEndpoint(context.config);
  const settings = context.config.critique;
  const rounds = settings.rounds ?? context.constitution.defaults.critique_rounds;
  const candidates = context.principles.filter((p) => p.critique !== null && p.revision !== null);
  const counts: StageCounts = { done: 0, failed: 0 };
  if (candidates.length === 0) return counts;
  const sources = await db
    .select({ id: completions.id, text: completions.text, sampleIndex: completions.sampleIndex })
    .from(completions)
    .where(and(eq(completions.runId, context.runId), eq(completions.promptId, prompt.id), eq(completions.stage, 'sample'), eq(completions.iteration, iteration)))
    .orderBy(completions.sampleIndex);
  const conversation = conversationText(prompt.messages);

  await Promise.all(
    sources.map(async (source) => {
      const done = await db
        .select({ round: critiques.round, text: completions.text })
        .from(critiques)
        .innerJoin(completions, eq(completions.id, critiques.revisionCompletionId))
        .where(and(eq(critiques.runId, context.runId), eq(critiques.sourceCompletionId, source.id)))
        .orderBy(critiques.round);
      let current = done.at(-1)?.text ?? source.text;
      for (let round = done.length; round < rounds; round++) {
        const principle = pickWeighted(candidates, `${context.runId}:critique:${source.id}:${round}`, context.constitution.defaults.principle_sampling);
        const critiqueRequest = principle.critique!;
        const revisionRequest = principle.revision!;
        const critiquePrompt = renderTemplate(context.template('critique'), { critique_request: critiqueRequest }, { prompt: conversation, response: current });
        const critique = await llm.chat(endpoint, { messages: [{ role: 'user', content: critiquePrompt.text }], temperature: settings.temperature, max_tokens: settings.max_tokens });
        const revisionPrompt = renderTemplate(
          context.template('revision'),
          { critique_request: critiqueRequest, revision_request: revisionRequest },
          { prompt: conversation, response: current, critique: critique.text },
        );
        const revision = await llm.chat(endpoint, { messages: [{ role: 'user', content: revisionPrompt.text }], temperature: settings.temperature, max_tokens: settings.max_tokens });
        // The revision and its critique row land together or not at all.
        await db.transaction(async (tx) => {
          const [stored] = await tx
            .insert(completions)
            .values({
              runId: context.runId,
              promptId: prompt.id,
              stage: 'revision',
              iteration,
              sampleIndex: source.sampleIndex * revisionIndexStride + round,
              parentId: source.id,
              policyModel: endpoint.model,
              policyVersion: endpoint.model,
              text: revision.text,
              generationParams: { temperature: settings.temperature, max_tokens: settings.max_tokens, endpoint: endpoint.base_url, round, from_cache: revision.fromCache },
              finishReason: revision.finishReason,
              promptTokens: revision.promptTokens,
              completionTokens: revision.completionTokens,
            })
            .onConflictDoUpdate({
              target: [completions.runId, completions.promptId, completions.stage, completions.iteration, completions.policyVersion, completions.sampleIndex],
              set: { text: revision.text },
            })
            .returning({ id: completions.id });
          await tx
            .insert(critiques)
            .values({
              runId: context.runId,
              sourceCompletionId: source.id,
              round,
              constitutionId: context.constitutionId,
              principleId: principle.id,
              principleKey: principle.key,
              critiqueRequest,
              revisionRequest,
              critique: critique.text,
              revisionCompletionId: stored!.id,
              flags: [...new Set([...critiquePrompt.flags, ...revisionPrompt.flags])],
            })
            .onConflictDoNothing();
        });
        current = revision.text;
        counts.done++;
      }
    }),
  );
  return counts;
}
