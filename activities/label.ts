// The label stage (RL-CAI / RLAIF, pairwise): for each pair of completions of a prompt, principles
// drawn per comparison, the rater asked in both orders, soft labels from option-token logprobs (or
// the parsed answer), unreadable answers repaired or skipped, and one preference per pair.
import { and, eq, inArray } from 'drizzle-orm';
import { clamp, combineDecisions, probabilityFirstBetter, readAnswer, type Order } from '../core/rater/labels.js';
import { pickDistinct, stableHash } from '../core/rater/principles.js';
import { renderTemplate } from '../core/rater/prompt.js';
import type { Database } from '../db/pool.js';
import { completions, preferences, raterDecisions } from '../db/schema.js';
import { raterCallFields } from './decisions.js';
import type { ChatMessage, ChatRequest, ModelEndpoints } from './llm.js';
import { conversationText, type PrincipleRow, type PromptRow, type RunContext } from './run-context.js';

export interface StageCounts {
  done: number;
  failed: number;
}

interface CompletionRow {
  id: number;
  text: string;
}

const repairText =
  'Your answer could not be read. Reply with exactly one letter, A or B, naming the better response, and nothing else.';

export async function labelPrompt(db: Database, llm: ModelEndpoints, context: RunContext, prompt: PromptRow, iteration: number): Promise<StageCounts> {
  const rows = await db
    .select({ id: completions.id, text: completions.text })
    .from(completions)
    .where(and(eq(completions.runId, context.runId), eq(completions.promptId, prompt.id), eq(completions.stage, 'sample'), eq(completions.iteration, iteration)))
    .orderBy(completions.sampleIndex);
  const candidates = context.principles.filter((p) => p.comparisons.length > 0);
  const ensemble = context.config.label.ensemble ?? context.constitution.defaults.principles_per_comparison;
  const counts: StageCounts = { done: 0, failed: 0 };
  const pairs: [CompletionRow, CompletionRow][] = [];
  for (let i = 0; i < rows.length; i++) for (let j = i + 1; j < rows.length; j++) pairs.push([rows[i]!, rows[j]!]);

  await Promise.all(
    pairs.map(async ([first, second]) => {
      const pairKey = `${context.runId}:label:${iteration}:${first.id}:${second.id}`;
      const picks = pickDistinct(candidates, pairKey, ensemble, context.constitution.defaults.principle_sampling);
      const outcomes = await Promise.all(
        picks.flatMap((principle, slot) =>
          (['AB', 'BA'] as const).map(async (order) => {
            const decision = await decide(db, llm, context, { prompt, first, second, principle, slot, order, iteration, pairKey });
            if (decision) counts.done++;
            else counts.failed++;
            return decision;
          }),
        ),
      );
      const made = outcomes.filter((d): d is Decided => d !== undefined);
      const verdict = combineDecisions(made);
      if (!verdict) return;
      const firstWins = verdict.softLabel >= 0.5;
      await db
        .insert(preferences)
        .values({
          runId: context.runId,
          iteration,
          promptId: prompt.id,
          completionLowId: Math.min(first.id, second.id),
          completionHighId: Math.max(first.id, second.id),
          chosenId: firstWins ? first.id : second.id,
          rejectedId: firstWins ? second.id : first.id,
          softLabel: firstWins ? verdict.softLabel : 1 - verdict.softLabel,
          ordersAgree: verdict.ordersAgree ?? null,
          source: 'ai',
          decisionIds: made.map((d) => d.id).sort((a, b) => a - b),
        })
        .onConflictDoNothing();
    }),
  );
  return counts;
}

interface Decided {
  id: number;
  order: Order;
  probabilityFirst: number;
}

interface Comparison {
  prompt: PromptRow;
  first: CompletionRow;
  second: CompletionRow;
  principle: PrincipleRow;
  slot: number;
  order: Order;
  iteration: number;
  pairKey: string;
}

/** One comparison in one order: reuse a stored answer, else ask (and repair up to the limit). */
async function decide(db: Database, llm: ModelEndpoints, context: RunContext, c: Comparison): Promise<Decided | undefined> {
  const settings = context.config.label;
  const base = `label:${c.iteration}:${c.first.id}:${c.second.id}:${c.principle.key}:${c.slot}:${c.order}`;
  const keys = Array.from({ length: settings.repair_limit + 1 }, (_, attempt) => `${base}#${attempt}`);
  const stored = await db
    .select({ id: raterDecisions.id, key: raterDecisions.decisionKey, outcome: raterDecisions.outcome, probabilities: raterDecisions.probabilities, raw: raterDecisions.rawResponse })
    .from(raterDecisions)
    .where(and(eq(raterDecisions.runId, context.runId), inArray(raterDecisions.decisionKey, keys)));
  const good = stored.find((row) => row.outcome === 'ok');
  if (good) return { id: good.id, order: c.order, probabilityFirst: (good.probabilities as { first: number }).first };

  const question = c.principle.comparisons[stableHash(`${c.pairKey}:${c.slot}`) % c.principle.comparisons.length]!;
  const [responseA, responseB] = c.order === 'AB' ? [c.first, c.second] : [c.second, c.first];
  const rendered = renderTemplate(
    context.template('comparison'),
    { question },
    { conversation: conversationText(c.prompt.messages), response_a: responseA.text, response_b: responseB.text },
  );
  const cotInstruction = settings.cot
    ? '\n\nThink it through step by step first. Then finish with a line of the form "The answer is: (A)" or "The answer is: (B)".'
    : '';
  const messages: ChatMessage[] = [{ role: 'user', content: rendered.text + cotInstruction }];
  const history = stored.sort((a, b) => a.key.localeCompare(b.key));
  for (const earlier of history) {
    messages.push({ role: 'assistant', content: rawText(earlier.raw) }, { role: 'user', content: repairText });
  }

  for (let attempt = history.length; attempt <= settings.repair_limit; attempt++) {
    const request: ChatRequest = {
      messages,
      temperature: 0,
      max_tokens: settings.cot ? settings.max_tokens : 4,
      ...(settings.logprobs && !settings.cot && attempt === 0 ? { logprobs: true, top_logprobs: 5 } : {}),
    };
    const result = await llm.chat(context.config.endpoints.rater, request);
    const answer = readAnswer(result.text, result.firstTokenTopLogprobs, settings.cot ? 'cot' : 'direct');
    const probabilityA = answer.probabilityA === undefined ? undefined : settings.cot ? clamp(answer.probabilityA, settings.cot_band) : answer.probabilityA;
    const probabilityFirst = probabilityA === undefined ? undefined : probabilityFirstBetter(probabilityA, c.order);
    const [row] = await db
      .insert(raterDecisions)
      .values({
        ...raterCallFields(context, request, result),
        decisionKey: `${base}#${attempt}`,
        stage: 'label',
        iteration: c.iteration,
        principleId: c.principle.id,
        principleKey: c.principle.key,
        principleText: question,
        promptId: c.prompt.id,
        completionAId: responseA.id,
        completionBId: responseB.id,
        order: c.order,
        parsedChoice: answer.choice ?? 'unparseable',
        probabilities:
          probabilityA === undefined ? null : { A: probabilityA, B: 1 - probabilityA, first: probabilityFirst, source: answer.source, unclamped_A: answer.probabilityA },
        outcome: answer.choice === undefined ? 'unparseable' : 'ok',
        attempt,
        flags: rendered.flags,
      })
      .onConflictDoNothing()
      .returning({ id: raterDecisions.id });
    const id = row?.id ?? (await existingId(db, context.runId, `${base}#${attempt}`));
    if (probabilityFirst !== undefined) return { id, order: c.order, probabilityFirst };
    messages.push({ role: 'assistant', content: result.text }, { role: 'user', content: repairText });
  }
  return undefined;
}

function rawText(raw: unknown): string {
  const content = (raw as { choices?: { message?: { content?: string | null } }[] })?.choices?.[0]?.message?.content;
  return content ?? '';
}

async function existingId(db: Database, runId: number, decisionKey: string): Promise<number> {
  const [row] = await db
    .select({ id: raterDecisions.id })
    .from(raterDecisions)
    .where(and(eq(raterDecisions.runId, runId), eq(raterDecisions.decisionKey, decisionKey)));
  if (!row) throw new Error(`decision ${decisionKey} vanished`);
  return row.id;
}
