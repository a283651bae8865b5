// The label stage (RL-CAI / RLAIF, pairwise): for each pair of completions of a prompt, principles
// drawn per comparison, the rater asked in both orders, soft labels from option-token logprobs (or
// the parsed answer), unreadable answers repaired or skipped, and one preference per pair.
// A whole batch of prompts moves together: one read of what exists, the rater calls of each round
// sent at once, one write per table per round. What is asked and how answers combine is decided in
// core/rater/pairwise.ts; this file calls the rater and writes rows.
import { Context } from '@temporalio/activity';
import { and, eq } from 'drizzle-orm';
import {
  askFor,
  baseOfKey,
  decisionKey,
  planPairs,
  preferenceOf,
  readDecision,
  repair,
  resumeComparison,
  type Comparison,
  type PairIdentity,
  type StoredAttempt,
} from '../core/rater/pairwise.js';
import { inList, insertKeyedRows, insertNewRows } from '../db/bulk.js';
import type { Database } from '../db/pool.js';
import { completions, preferences, raterDecisions } from '../db/schema.js';
import { raterCallFields } from './decisions.js';
import type { ModelEndpoints } from './llm.js';
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

/** What is compared: the sampled completions (training preferences), two policies' evaluation samples, or a gold set's pairs (rater evaluation). */
export interface LabelMode {
  completionStage: 'sample' | 'eval' | 'gold';
  decisionStage: 'label' | 'evaluate' | 'rater-eval';
  /** The principles a pair is judged by instead of the per-pair draw (undefined: draw as usual). */
  principlesFor?: (pair: PairIdentity<PromptRow, CompletionRow>) => readonly PrincipleRow[] | undefined;
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
  const storedByBase = new Map<string, StoredAttempt[]>();
  for (const row of stored) {
    const base = baseOfKey(row.key);
    storedByBase.set(base, [...(storedByBase.get(base) ?? []), { id: row.id, key: row.key, outcome: row.outcome, probabilities: row.probabilities, text: rawText(row.raw) }]);
  }

  const pairs = planPairs({
    runId: context.runId,
    stage: mode.decisionStage,
    iteration,
    prompts: prompts.map((prompt) => ({ prompt, conversation: conversationText(prompt.messages) })),
    completions: sampled,
    principles: context.principles,
    ensemble: settings.ensemble ?? context.constitution.defaults.principles_per_comparison,
    sampling: context.constitution.defaults.principle_sampling,
    template: context.template('comparison'),
    cot: settings.cot,
    ...(mode.principlesFor ? { principlesFor: mode.principlesFor } : {}),
  });
  const comparisons = pairs.flatMap((pair) => pair.comparisons);
  for (const c of comparisons) resumeComparison(c, storedByBase.get(c.base) ?? []);

  await askUntilDecided(db, llm, context, comparisons, iteration, mode);

  const preferenceRows = pairs.flatMap((pair) => {
    const fields = preferenceOf(pair);
    return fields ? [Object.assign(fields, { runId: context.runId, iteration, source: 'ai' })] : [];
  });
  for (let i = 0; i < preferenceRows.length; i += 1_000) await insertNewRows(db, preferences, preferenceRows.slice(i, i + 1_000));

  const done = comparisons.filter((c) => c.decided).length;
  return { done, failed: comparisons.length - done };
}

/** Rounds: every comparison without a readable answer is asked (or repaired) at once, up to the repair limit. */
async function askUntilDecided(db: Database, llm: ModelEndpoints, context: RunContext, comparisons: Comparison<PromptRow, PrincipleRow>[], iteration: number, mode: LabelMode): Promise<void> {
  const settings = context.config.label;
  let pending = comparisons.filter((c) => !c.decided && c.attempt <= settings.repair_limit);
  while (pending.length > 0) {
    const requests = pending.map((c) => askFor(settings, c));
    const results = await llm.chatMany(context.config.endpoints.rater, requests);
    const rows = pending.map((c, i) => {
      const result = results[i]!;
      const read = readDecision(settings, c.order, result.text, result.firstTokenTopLogprobs);
      const [responseA, responseB] = c.order === 'AB' ? [c.first, c.second] : [c.second, c.first];
      return {
        comparison: c,
        text: result.text,
        read,
        // Object.assign rather than a spread: V8 builds `{ ...fields, and 15 more }` slowly, ~12 KB of garbage a row.
        values: Object.assign(raterCallFields(context, requests[i]!, result), {
          decisionKey: decisionKey(c),
          stage: mode.decisionStage,
          iteration,
          principleId: c.principle.id,
          principleKey: c.principle.key,
          principleText: c.question,
          promptId: c.prompt.id,
          completionAId: responseA.id,
          completionBId: responseB.id,
          order: c.order,
          parsedChoice: read.answer.choice ?? 'unparseable',
          probabilities: read.probabilities,
          outcome: read.answer.choice === undefined ? 'unparseable' : 'ok',
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
    for (const { comparison: c, read, text, values } of rows) {
      if (read.probabilityFirst !== undefined) {
        c.decided = { id: ids.get(values.decisionKey)!, probabilityFirst: read.probabilityFirst, probabilityA: read.probabilityA! };
        c.attempt++;
      } else repair(c, text);
    }
    Context.current().heartbeat({ decided: comparisons.filter((c) => c.decided).length });
    pending = pending.filter((c) => !c.decided && c.attempt <= settings.repair_limit);
  }
}

function rawText(raw: unknown): string {
  const content = (raw as { choices?: { message?: { content?: string | null } }[] })?.choices?.[0]?.message?.content;
  return content ?? '';
}
