// Reading the files of a run (config YAML, prompts JSONL) with every problem named before anything starts.
import { readFileSync } from 'node:fs';
import { parsePromptsJsonl, type PromptRecord } from '../core/prompts-file.js';
import { runConfigSchema, type RunConfig } from '../core/run-config.js';
import { formatProblem, parseYamlSource } from '../core/source-problems.js';
import { parseTasksJsonl } from '../core/verifiers/tasks.js';
import { taskMetadata } from '../activities/verifiers/dispatch.js';
import { UserError } from './errors.js';

/** Without --config a run talks to a local OpenAI-compatible server, e.g. `trainer serve`. */
export const localEndpoints = {
  endpoints: {
    policy: { base_url: 'http://127.0.0.1:8000/v1', model: 'local' },
    rater: { base_url: 'http://127.0.0.1:8000/v1', model: 'local' },
  },
};

export function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new UserError(`cannot read the ${what} ${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`);
  }
}

export function readRunConfig(file: string | undefined, fallback: unknown): RunConfig {
  if (!file) return runConfigSchema.parse(fallback);
  const parsed = parseYamlSource(readText(file, 'run config'), file, runConfigSchema, { value: {} });
  if (!parsed.ok) throw new UserError(`${file} is not a valid run config:\n${parsed.problems.map(formatProblem).join('\n')}`);
  return parsed.data;
}

/**
 * A prompts file, or a verifiable-tasks file (core/verifiers/tasks.ts) when its first line names a
 * `verifier`: each task becomes a prompt that carries its verifier spec (`metadata.task`).
 */
export function readPrompts(file: string): PromptRecord[] {
  const text = readText(file, 'prompts file');
  const bad = (problems: string[]) =>
    new UserError(`${file} has bad lines; nothing was started:\n${problems.slice(0, 50).join('\n')}${problems.length > 50 ? `\n… and ${problems.length - 50} more` : ''}`);
  if (isTasksFile(text)) {
    const tasks = parseTasksJsonl(text, file);
    if (!tasks.ok) throw bad(tasks.problems);
    return tasks.tasks.map((task) => ({ key: task.key, messages: task.messages, split: task.split, metadata: taskMetadata(task) }));
  }
  const result = parsePromptsJsonl(text, file);
  if (!result.ok) throw bad(result.problems);
  return result.prompts;
}

function isTasksFile(text: string): boolean {
  const first = text.split('\n').find((line) => line.trim() !== '');
  try {
    const value: unknown = first ? JSON.parse(first) : undefined;
    return typeof value === 'object' && value !== null && 'verifier' in value;
  } catch {
    return false;
  }
}
