// The verifier a prompt's task names, run on one response. Tasks come from a verifiable-tasks file
// (core/verifiers/tasks.ts) and travel with the prompt in `metadata.task`.
import type { ToolEnvironment } from '../../core/tools/environment.js';
import type { CodeOptions, CodeTests, CodeLanguage } from '../../core/verifiers/code.js';
import { extractProgram } from '../../core/verifiers/code.js';
import { verifyMath, type MathOptions } from '../../core/verifiers/math.js';
import type { VerifiableTask } from '../../core/verifiers/tasks.js';
import { verifyToolCalls, type ExpectedTrace, type ToolCallOptions } from '../../core/verifiers/tool-call.js';
import type { Verdict } from '../../core/verifiers/verdict.js';
import { verifyCode } from './sandbox.js';

/** What of a task a prompt carries: the verifier and what it needs. */
export type TaskSpec =
  | { verifier: 'math'; reference: string; options?: Partial<MathOptions> }
  | { verifier: 'code'; language: CodeLanguage; entry: string; tests: CodeTests; options?: Partial<CodeOptions> }
  | { verifier: 'tool-call'; expected: ExpectedTrace; tools?: unknown[]; environment?: ToolEnvironment; options?: Partial<ToolCallOptions> };

/** The prompt metadata of a task: its own metadata plus the spec under `task`. */
export function taskMetadata(task: VerifiableTask): Record<string, unknown> {
  const { key: _key, messages: _messages, split: _split, metadata, ...spec } = task;
  return { ...metadata, task: spec };
}

export function taskOf(metadata: unknown): TaskSpec | undefined {
  const task = (metadata as { task?: TaskSpec } | null)?.task;
  return task && typeof task === 'object' && 'verifier' in task ? task : undefined;
}

/**
 * Judges a response. Tool-call tasks judge the rollout's trace (its messages after the prompt) where it
 * has one, else the response as a one-message trace (its text as the final answer, so expected tool
 * calls score as missing).
 */
export async function verifyResponse(task: TaskSpec, response: string, trace?: unknown[] | null): Promise<Verdict> {
  if (task.verifier === 'math') return verifyMath(response, task.reference, task.options);
  if (task.verifier === 'code') return verifyCode({ language: task.language, source: extractProgram(response, task.language), entry: task.entry }, task.tests, task.options);
  return verifyToolCalls(trace ?? [{ role: 'assistant', content: response }], task.expected, task.options);
}
