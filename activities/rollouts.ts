// The rollout stage of online RL: group_size completions per training prompt from the current
// policy, scored in Node by the reward model (onnxruntime-node) plus the configured reward terms;
// every component and the total are stored per completion (rollout_rewards). The server's log-probs
// of the sampled tokens (and their ids, where it gives them) are stored with each completion for the
// trainer's importance correction (loop.rollouts.logprobs). Tool-call tasks with tools are rolled out
// as conversations (./tool-rollouts.ts): their trace is stored with the completion and scored.
import { ApplicationFailure } from '@temporalio/activity';
import { and, eq, inArray, isNull } from 'drizzle-orm';
import { availableParallelism } from 'node:os';
import PQueue from 'p-queue';
import { stableHash } from '../core/rater/principles.js';
import { checkFormat, composeRewards, lengthPenaltyRaw, RewardInputError, type ComposedReward, type RewardRow } from '../core/rewards/compose.js';
import { rolloutRewardTerms } from '../core/run-config.js';
import { offeredTools, type TraceMessage } from '../core/tools/environment.js';
import type { Verdict } from '../core/verifiers/verdict.js';
import type { Database } from '../db/pool.js';
import { completions, rolloutRewards } from '../db/schema.js';
import type { StageCounts } from './label.js';
import { processRewards } from './process.js';
import type { ChatMessage, ChatRequest, ChatResult, ModelEndpoints } from './llm.js';
import type { StageBatch } from './pipeline.js';
import { conversationText, type PromptRow, type RunContext } from './run-context.js';
import { scoreOne } from './score.js';
import { runToolConversations, type ToolConversation } from './tool-rollouts.js';
import type { RewardScorers } from './scorers.js';
import { taskOf, verifyResponse, type TaskSpec } from './verifiers/dispatch.js';

export async function rolloutBatch(db: Database, llm: ModelEndpoints, scorers: RewardScorers, context: RunContext, prompts: PromptRow[], batch: StageBatch): Promise<StageCounts> {
  if (batch.rewardModelId === undefined && rolloutRewardTerms(context.config.loop).reward_model) throw ApplicationFailure.nonRetryable('the rollout stage needs a reward model', 'RewardModelMissing');
  const settings = context.config.loop.rollouts;
  const configured = context.config.endpoints.policy;
  const endpoint = batch.policyModel ? { ...configured, model: batch.policyModel } : configured;
  const promptIds = prompts.map((p) => p.id);
  const where = and(eq(completions.runId, context.runId), inArray(completions.promptId, promptIds), eq(completions.stage, 'rollout'), eq(completions.iteration, batch.iteration));
  const have = new Set((await db.select({ promptId: completions.promptId, sampleIndex: completions.sampleIndex }).from(completions).where(where)).map((r) => `${r.promptId}:${r.sampleIndex}`));

  const wanted: { prompt: PromptRow; sampleIndex: number; seed: number }[] = [];
  for (const prompt of prompts) {
    // Seeded by the run config's sample.seed when it sets one (two runs of one config roll out alike), else by the run.
    const base = stableHash(`${seedScope(context)}:rollout:${batch.iteration}:${prompt.key}`) % 1_000_000;
    for (let sampleIndex = 0; sampleIndex < settings.group_size; sampleIndex++) {
      if (!have.has(`${prompt.id}:${sampleIndex}`)) wanted.push({ prompt, sampleIndex, seed: base + sampleIndex });
    }
  }
  if (wanted.length > 0) {
    const logprobs = logprobsRequest(settings.logprobs);
    const requests: ChatRequest[] = wanted.map((w) => ({ messages: w.prompt.messages as ChatMessage[], temperature: settings.temperature, max_tokens: settings.max_tokens, seed: w.seed, ...logprobs }));
    // Tool-call tasks that offer tools: a conversation each; everything else: one request.
    const conversations = new Map<number, ToolConversation>();
    wanted.forEach((w, i) => {
      const task = taskOf(w.prompt.metadata);
      const tools = task?.verifier === 'tool-call' ? offeredTools(task) : undefined;
      if (task?.verifier === 'tool-call' && tools) conversations.set(i, { request: { ...requests[i]!, tools }, environment: task.environment });
    });
    let results: { text: string; last: ChatResult; trace: TraceMessage[] | null; completionTokens: number | null; turns: number }[];
    try {
      const plain = wanted.flatMap((_, i) => (conversations.has(i) ? [] : [i]));
      const [single, conversed] = await Promise.all([llm.chatMany(endpoint, plain.map((i) => requests[i]!)), runToolConversations(llm, endpoint, [...conversations.values()])]);
      const byIndex = new Map<number, (typeof results)[number]>();
      plain.forEach((i, k) => byIndex.set(i, { text: single[k]!.text, last: single[k]!, trace: null, completionTokens: single[k]!.completionTokens, turns: 1 }));
      [...conversations.keys()].forEach((i, k) => {
        const { trace, answers } = conversed[k]!;
        const counted = answers.every((a) => a.completionTokens !== null) ? answers.reduce((sum, a) => sum + a.completionTokens!, 0) : null;
        byIndex.set(i, { text: answers.at(-1)!.text, last: answers.at(-1)!, trace, completionTokens: counted, turns: answers.length });
      });
      results = wanted.map((_, i) => byIndex.get(i)!);
    } catch (error) {
      // An endpoint that rejects the token-id extension (OpenAI's API): name the setting that sends it.
      if (error instanceof ApplicationFailure && error.nonRetryable && logprobs.return_tokens_as_token_ids && /return_tokens_as_token_ids/.test(error.message)) {
        throw ApplicationFailure.nonRetryable(`${error.message} — set loop.rollouts.logprobs: without-ids (or off) for this endpoint`, error.type ?? 'EndpointRejected');
      }
      throw error;
    }
    const rows = wanted.map((w, i) => {
      const { text, last, trace, completionTokens, turns } = results[i]!;
      // Log-probs of a one-turn answer only: those of several turns do not pair with one completion's tokens.
      const sampledLogprobs = turns === 1 ? (last.sampledLogprobs ?? null) : null;
      return {
        runId: context.runId,
        promptId: w.prompt.id,
        stage: 'rollout',
        iteration: batch.iteration,
        sampleIndex: w.sampleIndex,
        policyModel: endpoint.model,
        policyVersion: endpoint.model,
        text,
        generationParams: { temperature: settings.temperature, max_tokens: settings.max_tokens, seed: w.seed, endpoint: endpoint.base_url, from_cache: last.fromCache, ...(trace ? { turns } : {}) },
        finishReason: last.finishReason,
        promptTokens: last.promptTokens,
        completionTokens,
        sampledLogprobs,
        // Ids only when they pair one-to-one with the log-probs.
        sampledTokenIds: sampledLogprobs && last.sampledTokenIds?.length === sampledLogprobs.length ? last.sampledTokenIds : null,
        trace,
      };
    });
    for (let i = 0; i < rows.length; i += 500) await db.insert(completions).values(rows.slice(i, i + 500)).onConflictDoNothing();
  }

  // Score what has no reward yet (a retried batch skips what it scored before).
  const pending = await db
    .select({ id: completions.id, promptId: completions.promptId, text: completions.text, tokens: completions.completionTokens, trace: completions.trace })
    .from(completions)
    .leftJoin(rolloutRewards, eq(rolloutRewards.completionId, completions.id))
    .where(and(where, isNull(rolloutRewards.id)));
  if (pending.length > 0) {
    const terms = rolloutRewardTerms(context.config.loop);
    const byId = new Map(prompts.map((p) => [p.id, p]));
    const scores = terms.reward_model ? await (await scorers.get(batch.rewardModelId!)).score(pending.map((r) => ({ prompt: byId.get(r.promptId)!.messages, completion: r.text }))) : [];
    const verdicts = terms.verifier ? await verifyAll(pending.map((r) => ({ task: taskOf(byId.get(r.promptId)!.metadata), text: r.text, trace: r.trace as unknown[] | null }))) : [];
    const raterScores = terms.rater_score ? await raterScoresOf(db, llm, context, pending.map((r) => ({ prompt: byId.get(r.promptId)!, completion: { id: r.id, text: r.text } })), batch.iteration) : [];
    const processValues = terms.process
      ? await processRewards(db, llm, context, pending.map((r) => ({ prompt: byId.get(r.promptId)!, completion: { id: r.id, text: r.text } })), batch.iteration, terms.process)
      : [];
    const rows: RewardRow[] = pending.map((r, i) => ({
      id: `completion ${r.id}`,
      raw: {
        ...(terms.reward_model ? { reward_model: scores[i] } : {}),
        ...(terms.length_penalty ? { length_penalty: lengthPenaltyRaw(r.tokens ?? 0, settings.max_tokens) } : {}),
        ...(terms.format ? { format: checkFormat(r.text, terms.format).raw } : {}),
        ...(terms.verifier ? { verifier: verdicts[i]?.reward ?? null } : {}),
        ...(terms.process ? { process: processValues[i] ?? null } : {}),
        ...(terms.rater_score ? { rater_score: raterScores[i] ?? null } : {}),
      },
    }));
    let composed: ComposedReward[];
    try {
      composed = composeRewards(terms, rows);
    } catch (error) {
      if (error instanceof RewardInputError) throw ApplicationFailure.nonRetryable(`run ${context.runId} iteration ${batch.iteration}: ${error.message}`, 'RewardInputMissing');
      throw error;
    }
    const rewardRows = pending.map((r, i) => ({
      runId: context.runId,
      iteration: batch.iteration,
      completionId: r.id,
      groupKey: `${r.promptId}`,
      rewardModelId: terms.reward_model ? batch.rewardModelId! : null,
      components: composed[i]!.components,
      raw: composed[i]!.raw,
      normalisation: composed[i]!.batch ?? null,
      verdict: verdicts[i] ?? null,
      flags: verdicts[i]?.flags ?? [],
      total: composed[i]!.total,
    }));
    // One transaction: a z-scored batch is stored whole, or a retry would z-score the leftover rows on their own.
    await db.transaction(async (tx) => {
      for (let i = 0; i < rewardRows.length; i += 500) await tx.insert(rolloutRewards).values(rewardRows.slice(i, i + 500)).onConflictDoNothing();
    });
  }
  return { done: prompts.length * settings.group_size, failed: 0 };
}

/** The request fields that ask for the sampled tokens' log-probs (top_logprobs 0: the sampled token's own only). */
function logprobsRequest(mode: 'with-ids' | 'without-ids' | 'off'): Pick<ChatRequest, 'logprobs' | 'top_logprobs' | 'return_tokens_as_token_ids'> {
  if (mode === 'off') return {};
  return { logprobs: true, top_logprobs: 0, ...(mode === 'with-ids' ? { return_tokens_as_token_ids: true } : {}) };
}

/** What seeds a run's rollouts and evaluations: its config's sample.seed when set, else its id. */
export function seedScope(context: RunContext): string {
  const seed = context.config.sample.seed;
  return seed === undefined ? String(context.runId) : `seed ${seed}`;
}

/** Verdicts of the prompts' tasks (none for a prompt without one), a few sandboxes at a time. */
async function verifyAll(items: { task: TaskSpec | undefined; text: string; trace: unknown[] | null }[]): Promise<(Verdict | undefined)[]> {
  const queue = new PQueue({ concurrency: Math.max(1, availableParallelism()) });
  return Promise.all(items.map((item) => (item.task ? queue.add(() => verifyResponse(item.task!, item.text, item.trace)) : Promise.resolve(undefined))));
}

/** The rater's pointwise score of each rollout: the mean over principles of its 1–10 scores, in [-1, 1] (decisions of stage `score`). */
async function raterScoresOf(db: Database, llm: ModelEndpoints, context: RunContext, items: { prompt: PromptRow; completion: { id: number; text: string } }[], iteration: number): Promise<(number | undefined)[]> {
  return Promise.all(
    items.map(async ({ prompt, completion }) => {
      const conversation = conversationText(prompt.messages);
      const scores = await Promise.all(context.principles.map((principle) => scoreOne(db, llm, context, { prompt, conversation, completion, principle, iteration })));
      const read = scores.filter((s): s is number => s !== undefined);
      return read.length === 0 ? undefined : read.reduce((a, b) => a + b, 0) / read.length;
    }),
  );
}
