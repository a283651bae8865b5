// The score stage (RLAIF's direct mode): a 1–10 score per principle per completion from the rater,
// normalised to [-1, 1]. Unreadable answers are kept, repaired up to the limit, then skipped and counted.
import { and, eq, inArray } from 'drizzle-orm';
import { renderTemplate } from '../core/rater/prompt.js';
import type { Database } from '../db/pool.js';
import { completions, raterDecisions } from '../db/schema.js';
import type { StageCounts } from './label.js';
import { raterCallFields } from './decisions.js';
import type { ChatMessage, ModelEndpoints } from './llm.js';
import { conversationText, type PrincipleRow, type PromptRow, type RunContext } from './run-context.js';

const repairText = 'Your answer could not be read. Reply with one whole number from 1 to 10 and nothing else.';

/** The score in a rater's answer: the first whole number from 1 to 10 standing on its own. */
export function parseScore(text: string): number | undefined {
  const match = /(?:^|[^\d.])(10|[1-9])(?![\d.]\d)(?:\s*\/\s*10)?/.exec(text.trim());
  return match ? Number(match[1]) : undefined;
}

/** 1 → -1, 10 → 1. */
export function normaliseScore(score: number): number {
  return (score - 5.5) / 4.5;
}

/** What a pointwise rater is asked to judge against: the critique request, else the first comparison question. */
export function scoringCriterion(principle: PrincipleRow): string {
  return principle.critique ?? principle.comparisons[0] ?? principle.key;
}

export async function scorePrompt(db: Database, llm: ModelEndpoints, context: RunContext, prompt: PromptRow, iteration: number): Promise<StageCounts> {
  const rows = await db
    .select({ id: completions.id, text: completions.text })
    .from(completions)
    .where(and(eq(completions.runId, context.runId), eq(completions.promptId, prompt.id), eq(completions.stage, 'sample'), eq(completions.iteration, iteration)))
    .orderBy(completions.sampleIndex);
  const counts: StageCounts = { done: 0, failed: 0 };
  const conversation = conversationText(prompt.messages);
  await Promise.all(
    rows.flatMap((completion) =>
      context.principles.map(async (principle) => {
        const ok = (await scoreOne(db, llm, context, { prompt, conversation, completion, principle, iteration })) !== undefined;
        if (ok) counts.done++;
        else counts.failed++;
      }),
    ),
  );
  return counts;
}

export async function scoreOne(
  db: Database,
  llm: ModelEndpoints,
  context: RunContext,
  s: {
    prompt: PromptRow;
    conversation: string;
    completion: { id: number; text: string };
    principle: PrincipleRow;
    iteration: number;
    /** Process rewards score one step of the completion: its index and the text the rater sees. */
    step?: { index: number; count: number; text: string };
  },
): Promise<number | undefined> {
  const limit = context.config.label.repair_limit;
  const stage = s.step ? 'process' : 'score';
  const base = s.step ? `process:${s.iteration}:${s.completion.id}:${s.step.index}:${s.principle.key}` : `score:${s.iteration}:${s.completion.id}:${s.principle.key}`;
  const keys = Array.from({ length: limit + 1 }, (_, attempt) => `${base}#${attempt}`);
  const stored = await db
    .select({ key: raterDecisions.decisionKey, outcome: raterDecisions.outcome, score: raterDecisions.score })
    .from(raterDecisions)
    .where(and(eq(raterDecisions.runId, context.runId), inArray(raterDecisions.decisionKey, keys)));
  const done = stored.find((row) => row.outcome === 'ok');
  if (done) return done.score ?? undefined;

  const criterion = scoringCriterion(s.principle);
  const rendered = renderTemplate(context.template('score'), { principle: criterion }, { prompt: s.conversation, response: s.step?.text ?? s.completion.text });
  const messages: ChatMessage[] = [{ role: 'user', content: rendered.text }];
  for (let attempt = 0; attempt <= limit; attempt++) {
    const request = { messages: [...messages], temperature: 0, max_tokens: context.config.score.max_tokens };
    const result = await llm.chat(context.config.endpoints.rater, request);
    const score = parseScore(result.text);
    if (attempt >= stored.length) {
      await db
        .insert(raterDecisions)
        .values({
          ...raterCallFields(context, request, result),
          decisionKey: `${base}#${attempt}`,
          stage,
          iteration: s.iteration,
          principleId: s.principle.id,
          principleKey: s.principle.key,
          principleText: criterion,
          promptId: s.prompt.id,
          completionAId: s.completion.id,
          completionBId: null,
          order: null,
          parsedChoice: score === undefined ? 'unparseable' : String(score),
          probabilities: score === undefined ? null : { score, ...(s.step ? { step: s.step.index, steps: s.step.count } : {}) },
          score: score === undefined ? null : normaliseScore(score),
          outcome: score === undefined ? 'unparseable' : 'ok',
          attempt,
          flags: rendered.flags,
        })
        .onConflictDoNothing();
    }
    if (score !== undefined) return normaliseScore(score);
    messages.push({ role: 'assistant', content: result.text }, { role: 'user', content: repairText });
  }
  return undefined;
}
