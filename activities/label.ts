// The label stage (RL-CAI / RLAIF, pairwise): for each pair of completions of a prompt, principles
// drawn per comparison, the rater asked in both orders, soft labels from option-token logprobs (or
// the parsed answer), unreadable answers repaired or skipped, and one preference per pair.
// A whole batch of prompts moves together: one read of what exists, the rater calls of each round
// sent at once, one write per table per round.
import { Context } from '@temporalio/activity';
import { and, eq } from 'drizzle-orm';
import { clamp, combineDecisions, probabilityFirstBetter, readAnswer, type Order } from '../core/rater/labels.js';
import { pickDistinct, stableHash } from '../core/rater/principles.js';
import { renderTemplate } from '../core/rater/prompt.js';
import { inList, insertKeyedRows, insertNewRows } from '../db/bulk.js';
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
  promptId: number;
  text: string;
}

const repairText =
  'Your answer could not be read. Reply with exactly one letter, A or B, naming the better response, and nothing else.';

interface Comparison {
  prompt: PromptRow;
  first: CompletionRow;
  second: CompletionRow;
  pairKey: string;
  principle: PrincipleRow;
  slot: number;
  order: Order;
  /** decision_key without the attempt suffix. */
  base: string;
  question: string;
  messages: ChatMessage[];
  flags: string[];
  attempt: number;
  /** Set once a readable answer is stored. */
  decided?: { id: number; probabilityFirst: number };
}

type StoredDecision = { id: number; key: string; outcome: string; probabilities: unknown; raw: unknown };

/** What is compared: the sampled completions (training preferences), or two policies' evaluation samples. */
export interface LabelMode {
  completionStage: 'sample' | 'eval';
  decisionStage: 'label' | 'evaluate';
}
const labelMode: LabelMode = { completionStage: 'sample', decisionStage: 'label' };

export async function labelBatch(db: Database, llm: ModelEndpoints, context: RunContext, prompts: PromptRow[], iteration: number, mode: LabelMode = labelMode): Promise<StageCounts> {
  const settings = context.config.label;
  const promptIds = prompts.map((p) => p.id);
  const sampled = await db
    .select({ id: completions.id, promptId: completions.promptId, text: completions.text })
    .from(completions)
    .where(and(eq(completions.runId, context.runId), inList(completions.promptId, promptIds), eq(completions.stage, mode.completionStage), eq(completions.iteration, iteration)))
    .orderBy(completions.promptId, completions.sampleIndex);
  const stored = await db
    .select({ id: raterDecisions.id, key: raterDecisions.decisionKey, outcome: raterDecisions.outcome, probabilities: raterDecisions.probabilities, raw: raterDecisions.rawResponse })
    .from(raterDecisions)
    .where(and(eq(raterDecisions.runId, context.runId), inList(raterDecisions.promptId, promptIds), eq(raterDecisions.stage, mode.decisionStage), eq(raterDecisions.iteration, iteration)));
  const storedByBase = new Map<string, StoredDecision[]>();
  for (const row of stored) {
    const base = row.key.slice(0, row.key.lastIndexOf('#'));
    storedByBase.set(base, [...(storedByBase.get(base) ?? []), row]);
  }

  const candidates = context.principles.filter((p) => p.comparisons.length > 0);
  const ensemble = context.config.label.ensemble ?? context.constitution.defaults.principles_per_comparison;
  const comparisons: Comparison[] = [];
  const pairs: { prompt: PromptRow; first: CompletionRow; second: CompletionRow; comparisons: Comparison[] }[] = [];
  for (const prompt of prompts) {
    const rows = sampled.filter((c) => c.promptId === prompt.id);
    const conversation = conversationText(prompt.messages);
    for (let i = 0; i < rows.length; i++) {
      for (let j = i + 1; j < rows.length; j++) {
        const [first, second] = [rows[i]!, rows[j]!];
        const pairKey = `${context.runId}:${mode.decisionStage}:${iteration}:${first.id}:${second.id}`;
        const pair = { prompt, first, second, comparisons: [] as Comparison[] };
        pickDistinct(candidates, pairKey, ensemble, context.constitution.defaults.principle_sampling).forEach((principle, slot) => {
          for (const order of ['AB', 'BA'] as const) {
            const comparison = newComparison({ context, prompt, conversation, first, second, pairKey, principle, slot, order, iteration, stage: mode.decisionStage });
            replayStored(comparison, storedByBase.get(comparison.base) ?? []);
            pair.comparisons.push(comparison);
            comparisons.push(comparison);
          }
        });
        pairs.push(pair);
      }
    }
  }

  // Rounds: every comparison without a readable answer is asked (or repaired) at once.
  let pending = comparisons.filter((c) => !c.decided && c.attempt <= settings.repair_limit);
  while (pending.length > 0) {
    const requests = pending.map((c) => requestFor(context, c));
    const results = await llm.chatMany(context.config.endpoints.rater, requests);
    const rows = pending.map((c, i) => {
      const result = results[i]!;
      const answer = readAnswer(result.text, result.firstTokenTopLogprobs, settings.cot ? 'cot' : 'direct');
      const probabilityA = answer.probabilityA === undefined ? undefined : settings.cot ? clamp(answer.probabilityA, settings.cot_band) : answer.probabilityA;
      const probabilityFirst = probabilityA === undefined ? undefined : probabilityFirstBetter(probabilityA, c.order);
      const [responseA, responseB] = c.order === 'AB' ? [c.first, c.second] : [c.second, c.first];
      return {
        comparison: c,
        text: result.text,
        probabilityFirst,
        // Object.assign rather than a spread: V8 builds `{ ...fields, and 15 more }` slowly, ~12 KB of garbage a row.
        values: Object.assign(raterCallFields(context, requests[i]!, result), {
          decisionKey: `${c.base}#${c.attempt}`,
          stage: mode.decisionStage,
          iteration,
          principleId: c.principle.id,
          principleKey: c.principle.key,
          principleText: c.question,
          promptId: c.prompt.id,
          completionAId: responseA.id,
          completionBId: responseB.id,
          order: c.order,
          parsedChoice: answer.choice ?? 'unparseable',
          probabilities:
            probabilityA === undefined ? null : { A: probabilityA, B: 1 - probabilityA, first: probabilityFirst, source: answer.source, unclamped_A: answer.probabilityA },
          outcome: answer.choice === undefined ? 'unparseable' : 'ok',
          attempt: c.attempt,
          flags: c.flags,
        }),
      };
    });
    // A retry's duplicates are ignored; every key gets its id.
    const ids = await insertKeyedRows(
      db,
      raterDecisions,
      rows.map((r) => r.values),
      { id: raterDecisions.id, key: raterDecisions.decisionKey, scope: eq(raterDecisions.runId, context.runId) },
      (row) => row.decisionKey,
    );
    for (const row of rows) {
      const c = row.comparison;
      if (row.probabilityFirst !== undefined) c.decided = { id: ids.get(row.values.decisionKey)!, probabilityFirst: row.probabilityFirst };
      else c.messages = [...c.messages, { role: 'assistant', content: row.text }, { role: 'user', content: repairText }];
      c.attempt++;
    }
    Context.current().heartbeat({ decided: comparisons.filter((c) => c.decided).length });
    pending = pending.filter((c) => !c.decided && c.attempt <= settings.repair_limit);
  }

  const preferenceRows = pairs.flatMap((pair) => {
    const made = pair.comparisons.filter((c) => c.decided);
    const verdict = combineDecisions(made.map((c) => ({ order: c.order, probabilityFirst: c.decided!.probabilityFirst })));
    if (!verdict) return [];
    const firstWins = verdict.softLabel >= 0.5;
    return [
      {
        runId: context.runId,
        iteration,
        promptId: pair.prompt.id,
        completionLowId: Math.min(pair.first.id, pair.second.id),
        completionHighId: Math.max(pair.first.id, pair.second.id),
        chosenId: firstWins ? pair.first.id : pair.second.id,
        rejectedId: firstWins ? pair.second.id : pair.first.id,
        softLabel: firstWins ? verdict.softLabel : 1 - verdict.softLabel,
        ordersAgree: verdict.ordersAgree ?? null,
        source: 'ai',
        decisionIds: made.map((c) => c.decided!.id).sort((a, b) => a - b),
      },
    ];
  });
  for (let i = 0; i < preferenceRows.length; i += 1_000) await insertNewRows(db, preferences, preferenceRows.slice(i, i + 1_000));

  const done = comparisons.filter((c) => c.decided).length;
  return { done, failed: comparisons.length - done };
}

type ComparisonIdentity = Pick<Comparison, 'prompt' | 'first' | 'second' | 'pairKey' | 'principle' | 'slot' | 'order'>;

function newComparison(a: ComparisonIdentity & { context: RunContext; conversation: string; iteration: number; stage: LabelMode['decisionStage'] }): Comparison {
  const { context, conversation, iteration, stage, ...identity } = a;
  const settings = context.config.label;
  const question = a.principle.comparisons[stableHash(`${a.pairKey}:${a.slot}`) % a.principle.comparisons.length]!;
  const [responseA, responseB] = a.order === 'AB' ? [a.first, a.second] : [a.second, a.first];
  const rendered = renderTemplate(context.template('comparison'), { question }, { conversation, response_a: responseA.text, response_b: responseB.text });
  const cotInstruction = settings.cot
    ? '\n\nThink it through step by step first. Then finish with a line of the form "The answer is: (A)" or "The answer is: (B)".'
    : '';
  // Onto the fresh rest object rather than spread into a new one (see the decision rows below).
  return Object.assign(identity, {
    base: `${stage}:${iteration}:${a.first.id}:${a.second.id}:${a.principle.key}:${a.slot}:${a.order}`,
    question,
    messages: [{ role: 'user' as const, content: rendered.text + cotInstruction }],
    flags: rendered.flags,
    attempt: 0,
  });
}

/** Picks up where an earlier attempt of this batch stopped: a readable answer, or the repairs so far. */
function replayStored(c: Comparison, stored: StoredDecision[]): void {
  const good = stored.find((row) => row.outcome === 'ok');
  if (good) {
    c.decided = { id: good.id, probabilityFirst: (good.probabilities as { first: number }).first };
    return;
  }
  for (const earlier of [...stored].sort((a, b) => a.key.localeCompare(b.key))) {
    c.messages = [...c.messages, { role: 'assistant', content: rawText(earlier.raw) }, { role: 'user', content: repairText }];
    c.attempt++;
  }
}

function requestFor(context: RunContext, c: Comparison): ChatRequest {
  const settings = context.config.label;
  return {
    messages: c.messages,
    temperature: 0,
    max_tokens: settings.cot ? settings.max_tokens : 4,
    ...(settings.logprobs && !settings.cot && c.attempt === 0 ? { logprobs: true, top_logprobs: 5 } : {}),
  };
}

function rawText(raw: unknown): string {
  const content = (raw as { choices?: { message?: { content?: string | null } }[] })?.choices?.[0]?.message?.content;
  return content ?? '';
}
