// Tool-using rollouts: the model is asked with the task's tools; the calls it makes run in the task's
// environment (core/tools/) and their results go back as `role: tool` messages until it answers
// without calling a tool or reaches max_turns. Every conversation of a batch advances one turn at a
// time, each turn one chatMany. Each turn's request is in the request cache and the tools are pure, so
// a retried activity replays the same conversations without paying or acting twice.
import { answerTurn } from '../core/tools/run.js';
import type { ToolEnvironment, TraceMessage } from '../core/tools/environment.js';
import type { EndpointConfig } from '../core/run-config.js';
import type { ChatRequest, ChatResult, ModelEndpoints } from './llm.js';

export interface ToolConversation {
  /** The first request: the prompt and the tools. */
  request: ChatRequest;
  /** Absent for tools offered as definitions only: one turn, its calls stored unanswered. */
  environment: ToolEnvironment | undefined;
}

export interface ToolConversationResult {
  /** The messages after the prompt. */
  trace: TraceMessage[];
  /** Every model answer, in order. */
  answers: ChatResult[];
}

export async function runToolConversations(llm: ModelEndpoints, endpoint: EndpointConfig, conversations: readonly ToolConversation[]): Promise<ToolConversationResult[]> {
  const results: ToolConversationResult[] = conversations.map(() => ({ trace: [], answers: [] }));
  let active = conversations.map((_, i) => i);
  while (active.length > 0) {
    const answers = await llm.chatMany(
      endpoint,
      active.map((i) => ({ ...conversations[i]!.request, messages: [...conversations[i]!.request.messages, ...results[i]!.trace] })),
    );
    const next: number[] = [];
    active.forEach((i, k) => {
      const result = results[i]!;
      result.answers.push(answers[k]!);
      const turn = answerTurn(conversations[i]!.environment, result.answers.length, answers[k]!);
      result.trace.push(...turn.messages);
      if (turn.again) next.push(i);
    });
    active = next;
  }
  return results;
}
