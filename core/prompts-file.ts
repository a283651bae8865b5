// Prompt data sets: JSONL, one prompt per line, either {"prompt": "..."} or {"messages": [...]},
// with an optional id, split and metadata. Every bad line is named; nothing starts on a bad file.
import { z } from 'zod';
import { formatProblem, jsonPlace, schemaProblems } from './source-problems.js';

/** One chat message of a prompt ({role, content}); the gold-set reader (core/rater/gold.ts) takes it too. */
export const message = z.strictObject({
  role: z.enum(['system', 'user', 'assistant'], { error: "expected role 'system', 'user' or 'assistant'" }),
  content: z.string({ error: 'expected content (a text)' }),
});

const lineSchema = z
  .strictObject({
    id: z.union([z.string().min(1), z.number().int()], { error: 'expected an id (a text or a whole number)' }).optional(),
    prompt: z.string({ error: 'expected prompt (a text)' }).trim().min(1, { error: 'expected a non-empty prompt' }).optional(),
    messages: z.array(message, { error: 'expected messages (a list of {role, content})' }).min(1, { error: 'expected at least one message' }).optional(),
    split: z.enum(['train', 'eval'], { error: "expected split 'train' or 'eval'" }).optional(),
    metadata: z.record(z.string(), z.unknown()).optional(),
  })
  .refine((line) => (line.prompt === undefined) !== (line.messages === undefined), { error: "expected exactly one of 'prompt' or 'messages'" })
  .refine((line) => !line.messages?.length || line.messages.at(-1)?.role === 'user', { error: 'expected the last message to be from the user' });

export interface PromptRecord {
  key: string;
  messages: { role: 'system' | 'user' | 'assistant'; content: string }[];
  split: 'train' | 'eval';
  metadata: Record<string, unknown>;
}

export type PromptsParse = { ok: true; prompts: PromptRecord[] } | { ok: false; problems: string[] };

/**
 * The lines of a JSONL file checked against `schema`: blank lines skipped, every bad line (not JSON,
 * not the schema, an id seen before) named in `problems` as `file:line:column: key.path: what was
 * expected` (core/source-problems.ts). Each good line comes with its key: its id, or `line-N` without one.
 */
export function readJsonlLines<T extends object>(text: string, file: string, schema: z.ZodType<T>, problems: string[]): { key: string; data: T }[] {
  const lines: { key: string; data: T }[] = [];
  const seen = new Map<string, number>();
  text.split('\n').forEach((raw, index) => {
    const lineNumber = index + 1;
    if (raw.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (error) {
      const message = (error as Error).message;
      const position = /at position (\d+)/.exec(message)?.[1];
      problems.push(`${file}:${lineNumber}:${position === undefined ? 1 : Number(position) + 1}: not valid JSON (${message})`);
      return;
    }
    const parsed = schema.safeParse(value, { reportInput: true });
    if (!parsed.success) {
      problems.push(...schemaProblems(parsed.error.issues, schema, jsonPlace(raw, file, lineNumber)).map(formatProblem));
      return;
    }
    const id = (parsed.data as { id?: string | number }).id;
    const key = id === undefined ? `line-${lineNumber}` : String(id);
    const first = seen.get(key);
    if (first !== undefined) {
      problems.push(`${formatProblem({ file, line: lineNumber, column: idColumn(raw), path: 'id', message: `duplicate id '${key}' (first on line ${first})` })}`);
      return;
    }
    seen.set(key, lineNumber);
    lines.push({ key, data: parsed.data });
  });
  return lines;
}

/** The column of a line's "id" value (1 when it has none). */
function idColumn(raw: string): number {
  const match = /"id"\s*:\s*/.exec(raw);
  return match ? match.index + match[0].length + 1 : 1;
}

export function parsePromptsJsonl(text: string, file: string): PromptsParse {
  const problems: string[] = [];
  const prompts: PromptRecord[] = readJsonlLines(text, file, lineSchema, problems).map(({ key, data }) => ({
    key,
    messages: data.messages ?? [{ role: 'user', content: data.prompt! }],
    split: data.split ?? 'train',
    metadata: data.metadata ?? {},
  }));
  if (problems.length === 0 && prompts.length === 0) problems.push(`${file}: no prompts (the file is empty)`);
  return problems.length > 0 ? { ok: false, problems } : { ok: true, prompts };
}
