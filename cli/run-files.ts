// Reading the files of a run (config YAML, prompts JSONL) with every problem named before anything starts.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { formatPath } from '../core/constitution/parse.js';
import { parsePromptsJsonl, type PromptRecord } from '../core/prompts-file.js';
import { runConfigSchema, type RunConfig } from '../core/run-config.js';
import { UserError } from './errors.js';

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new UserError(`cannot read the ${what} ${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`);
  }
}

export function readRunConfig(file: string | undefined, fallback: unknown): RunConfig {
  let raw: unknown = fallback;
  if (file) {
    try {
      raw = parse(readText(file, 'run config'));
    } catch (error) {
      if (error instanceof UserError) throw error;
      throw new UserError(`${file}: YAML syntax error: ${(error as Error).message.split('\n')[0]}`);
    }
  }
  const parsed = runConfigSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => `${file ?? 'run config'}: ${formatPath(issue.path) || '(top)'}: ${issue.message}`);
    throw new UserError(`invalid run config:\n${lines.join('\n')}`);
  }
  return parsed.data;
}

export function readPrompts(file: string): PromptRecord[] {
  const result = parsePromptsJsonl(readText(file, 'prompts file'), file);
  if (!result.ok) throw new UserError(`${file} has bad lines; nothing was started:\n${result.problems.slice(0, 50).join('\n')}${result.problems.length > 50 ? `\n… and ${result.problems.length - 50} more` : ''}`);
  return result.prompts;
}
