// The label stage (RL-CAI / RLAIF, pairwise): for each pair of completions of a prompt, principles
// drawn per comparison, the rater asked in both orders, soft labels from option-token logprobs (or
// the parsed answer), unreadable answers repaired or skipped, and one preference per pair.
// A whole batch of prompts moves together: one read of what exists, the rater calls of each round
// sent at once, one write per table per round. What is asked and how answers combine is decided in
// core/rater/pairwise.ts; this file calls the rater and writes rows.
import { Context } from '@temporalio/activity';
import { and, eq } from 'drizzle-orm';
import type { PgTable } from 'drizzle-orm/pg-core';
import {
  askFor,
  baseOfKey,
  decisionKey,
  planPairs,
  labelPairs,
  readDecision,
  repair,
  resumeComparison,
  repairText,
  type BatchLabels,
  type LabelPolicy,
  type PairIdentity,
  type PairPlan,
  type RaterMessage,
  type StoredAttempt,
} from '../core/rater/pairwise.js';
import { labelPointwise, planPointwise, readYesNo, resumeAsk, yesNoRepairText } from '../core/rater/pointwise.js';
import { inList, insertKeyedRows, insertNewRows } from '../db/bulk.js';
import type { Database } from '../db/pool.js';
import { completions, preferenceDrops, preferences, raterDecisions } from '../db/schema.js';
import { raterCallFields } from './decisions.js';
import type { ChatRequest, ChatResult, ModelEndpoints } from './llm.js';
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
  // Drops keep pairs out of training only; an evaluation's win rate counts every pair.
  const policy = mode.decisionStage === 'label' ? settings : { ...settings, disagreement: 'keep' as const, margin: 0, flagged: 'keep' as const };
  const stamp = { runId: context.runId, iteration };
  const asked = settings.mode === 'pointwise' ? await rateAlone(db, llm, context, pairs, storedByBase, stamp, mode, policy) : await rateBothOrders(db, llm, context, pairs, storedByBase, stamp, mode, policy);
  await insertInChunks(db, preferences, asked.labels.preferences.map((row) => Object.assign(row, stamp, { source: 'ai' })));
  await insertInChunks(db, preferenceDrops, asked.labels.drops.map((row) => Object.assign(row, stamp)));
  const done = asked.items.filter((c) => c.decided).length;
  return { done, failed: asked.items.length - done };
}

type Stamp = { runId: number; iteration: number };
type Pairs = PairPlan<PromptRow, PrincipleRow, CompletionRow>[];
type Rated = { items: { decided?: unknown }[]; labels: Omit<BatchLabels, 'prior'> };

/** Pairwise: every comparison in both orders, then each pair's verdict, debiased by the policy. */
async function rateBothOrders(db: Database, llm: ModelEndpoints, context: RunContext, pairs: Pairs, stored: Map<string, StoredAttempt[]>, stamp: Stamp, mode: LabelMode, policy: LabelPolicy): Promise<Rated> {
  const settings = context.config.label;
  const comparisons = pairs.flatMap((pair) => pair.comparisons);
  for (const c of comparisons) resumeComparison(c, stored.get(c.base) ?? []);
  await askInRounds(db, llm, context, comparisons, {
    request: (c) => askFor(settings, c),
    record: (c, result) => {
      const read = readDecision(settings, c.order, result.text, result.firstTokenTopLogprobs);
      const [responseA, responseB] = c.order === 'AB' ? [c.first, c.second] : [c.second, c.first];
      return {
        fields: {
          principle: c.principle,
          principleText: c.question,
          promptId: c.prompt.id,
          completionAId: responseA.id,
          completionBId: responseB.id,
          order: c.order,
          parsedChoice: read.answer.choice ?? 'unparseable',
          probabilities: read.probabilities,
        },
        decide: read.probabilityFirst === undefined ? undefined : (id) => (c.decided = { id, probabilityFirst: read.probabilityFirst!, probabilityA: read.probabilityA! }),
      };
    },
    repairText,
    stage: mode.decisionStage,
    iteration: stamp.iteration,
  });
  return { items: comparisons, labels: labelPairs(pairs, policy) };
}

/** Pointwise: each completion asked alone per question (Yes or No), then each pair's label from the two P(yes). */
async function rateAlone(db: Database, llm: ModelEndpoints, context: RunContext, pairs: Pairs, stored: Map<string, StoredAttempt[]>, stamp: Stamp, mode: LabelMode, policy: LabelPolicy): Promise<Rated> {
  const planned = planPointwise(pairs, { stage: mode.decisionStage, iteration: stamp.iteration, conversationOf: (prompt) => conversationText(prompt.messages) });
  for (const ask of planned.asks) resumeAsk(ask, stored.get(ask.base) ?? []);
  const logprobs = context.config.label.logprobs;
  await askInRounds(db, llm, context, planned.asks, {
    request: (ask) => ({ messages: ask.messages, temperature: 0, max_tokens: 4, ...(logprobs && ask.attempt === 0 ? { logprobs: true, top_logprobs: 5 } : {}) }),
    record: (ask, result) => {
      const read = readYesNo(result.text, result.firstTokenTopLogprobs);
      const p = read.probabilityYes;
      return {
        fields: {
          principle: ask.principle,
          principleText: ask.question,
          promptId: ask.promptId,
          completionAId: ask.completion.id,
          completionBId: null,
          order: null,
          parsedChoice: p === undefined ? 'unparseable' : p >= 0.5 ? 'yes' : 'no',
          probabilities: p === undefined ? null : { yes: p, no: 1 - p, source: read.source },
        },
        decide: p === undefined ? undefined : (id) => (ask.decided = { id, probabilityYes: p }),
      };
    },
    repairText: yesNoRepairText,
    stage: mode.decisionStage,
    iteration: stamp.iteration,
  });
  return { items: planned.asks, labels: labelPointwise(planned.pairs, policy) };
}

interface Asked {
  base: string;
  messages: RaterMessage[];
  flags: string[];
  attempt: number;
  decided?: unknown;
}

interface AskRules<T extends Asked> {
  request(item: T): ChatRequest;
  /** The decision row's own fields for an answer, and how to mark the item decided when it was readable. */
  record(
    item: T,
    result: ChatResult,
  ): {
    fields: { principle: PrincipleRow; principleText: string; promptId: number; completionAId: number; completionBId: number | null; order: string | null; parsedChoice: string; probabilities: unknown };
    decide: ((id: number) => void) | undefined;
  };
  repairText: string;
  stage: string;
  iteration: number;
}

/** Rounds: every item without a readable answer is asked (or repaired) at once, up to the repair limit. */
async function askInRounds<T extends Asked>(db: Database, llm: ModelEndpoints, context: RunContext, items: T[], rules: AskRules<T>): Promise<void> {
  const limit = context.config.label.repair_limit;
  let pending = items.filter((c) => !c.decided && c.attempt <= limit);
  while (pending.length > 0) {
    const requests = pending.map((c) => rules.request(c));
    const results = await llm.chatMany(context.config.endpoints.rater, requests);
    const rows = pending.map((c, i) => {
      const result = results[i]!;
      const { fields, decide } = rules.record(c, result);
      const { principle, ...rest } = fields;
      return {
        item: c,
        text: result.text,
        decide,
        // Object.assign rather than a spread: V8 builds `{ ...fields, and 15 more }` slowly, ~12 KB of garbage a row.
        values: Object.assign(raterCallFields(context, requests[i]!, result), rest, {
          decisionKey: decisionKey(c),
          stage: rules.stage,
          iteration: rules.iteration,
          principleId: principle.id,
          principleKey: principle.key,
          outcome: decide ? 'ok' : 'unparseable',
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
    for (const { item, decide, text, values } of rows) {
      if (decide) {
        decide(ids.get(values.decisionKey)!);
        item.attempt++;
      } else repair(item, text, rules.repairText);
    }
    Context.current().heartbeat({ decided: items.filter((c) => c.decided).length });
    pending = pending.filter((c) => !c.decided && c.attempt <= limit);
  }
}

async function insertInChunks<TTable extends PgTable>(db: Database, table: TTable, rows: TTable['$inferInsert'][]): Promise<void> {
  for (let i = 0; i < rows.length; i += 1_000) await insertNewRows(db, table, rows.slice(i, i + 1_000));
}

function rawText(raw: unknown): string {
  const content = (raw as { choices?: { message?: { content?: string | null } }[] })?.choices?.[0]?.message?.content;
  return content ?? '';
}
