// Gold sets for rater evaluation: JSONL, one labelled pair per line,
//   {"id", "category", "principle"?, "prompt" | "messages", "chosen", "rejected"}
// where `chosen` is the better response. Every bad line is named (file:line: what was expected)
// before anything is written or called. (Uses node:crypto: workflow code must not import this file.)
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { canonicalJson } from '../constitution/hash.js';
import { message, readJsonlLines } from '../prompts-file.js';
import { closestWord } from '../text.js';

const response = (name: string) =>
  z.string({ error: `expected ${name} (a text: the ${name === 'chosen' ? 'better' : 'worse'} response)` }).refine((text) => text.trim() !== '', { error: `expected a non-empty ${name}` });

/** What a gold line may name as its principle: the constitution's principles, and which of them can compare. */
export interface GoldPrinciples {
  constitution: string;
  comparable: readonly string[];
  all: readonly string[];
}

function principleProblem(key: string, principles: GoldPrinciples): string | undefined {
  if (principles.comparable.includes(key)) return undefined;
  if (principles.all.includes(key)) return `principle '${key}' of ${principles.constitution} has no comparison questions`;
  const near = closestWord(key, principles.all);
  return `unknown principle '${key}' (not in ${principles.constitution}${near ? `; did you mean '${near}'?` : ''})`;
}

function lineSchema(principles: GoldPrinciples | undefined) {
  return z
    .strictObject({
      id: z.string({ error: 'expected an id (a text)' }).min(1, { error: 'expected a non-empty id' }),
      category: z.string({ error: 'expected a category (a text)' }).trim().min(1, { error: 'expected a non-empty category' }),
      principle: z
        .string({ error: 'expected principle (a principle id of the constitution)' })
        .min(1)
        .superRefine((key, ctx) => {
          const problem = principles && principleProblem(key, principles);
          if (problem) ctx.addIssue({ code: 'custom', message: problem });
        })
        .optional(),
      prompt: z.string({ error: 'expected prompt (a text)' }).trim().min(1, { error: 'expected a non-empty prompt' }).optional(),
      messages: z.array(message, { error: 'expected messages (a list of {role, content})' }).min(1, { error: 'expected at least one message' }).optional(),
      chosen: response('chosen'),
      rejected: response('rejected'),
      metadata: z.record(z.string(), z.unknown()).optional(),
    })
    .refine((line) => (line.prompt === undefined) !== (line.messages === undefined), { error: "expected exactly one of 'prompt' or 'messages'" })
    .refine((line) => !line.messages?.length || line.messages.at(-1)?.role === 'user', { error: 'expected the last message to be from the user' })
    .refine((line) => line.chosen.trim() !== line.rejected.trim(), { error: 'expected two different responses (chosen and rejected are identical)', path: ['rejected'] });
}

export interface GoldPair {
  id: string;
  category: string;
  /** The principle this pair is judged by; undefined: the label stage's usual draw. */
  principle: string | undefined;
  messages: { role: 'system' | 'user' | 'assistant'; content: string }[];
  chosen: string;
  rejected: string;
  metadata: Record<string, unknown>;
}

export type GoldParse = { ok: true; pairs: GoldPair[]; hash: string } | { ok: false; problems: string[] };

/**
 * A gold set's pairs, or every problem with its file:line. With `principles`, each named principle
 * must be one of the constitution's that has comparison questions.
 */
export function parseGoldJsonl(text: string, file: string, principles?: GoldPrinciples): GoldParse {
  const problems: string[] = [];
  const pairs: GoldPair[] = readJsonlLines(text, file, lineSchema(principles), problems).map(({ data }) => ({
    id: data.id,
    category: data.category,
    principle: data.principle,
    messages: data.messages ?? [{ role: 'user', content: data.prompt! }],
    chosen: data.chosen,
    rejected: data.rejected,
    metadata: data.metadata ?? {},
  }));
  if (problems.length === 0 && pairs.length === 0) problems.push(`${file}: no pairs (the file is empty)`);
  return problems.length > 0 ? { ok: false, problems } : { ok: true, pairs, hash: goldSetHash(pairs) };
}

/** sha256 of the pairs' canonical JSON: the same pairs give the same hash however the file is laid out. */
export function goldSetHash(pairs: readonly GoldPair[]): string {
  return createHash('sha256').update(canonicalJson(pairs)).digest('hex');
}
