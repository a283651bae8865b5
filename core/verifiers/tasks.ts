// Data sets of verifiable tasks: JSONL, one task per line, each naming its verifier and what that verifier
// needs — a reference answer (math), visible and hidden test cases (code), or an expected trace (tool-call,
// optionally with an `environment` of built-in tools the rollout runs).
// Every bad line is named, as for prompt files; nothing starts on a bad file.
import { z } from 'zod';
import { readJsonlLines } from '../prompts-file.js';
import { codeLanguages, codeOptionsSchema, codeTestsSchema } from './code.js';
import { mathOptionsSchema } from './math.js';
import { toolEnvironmentSchema } from '../tools/environment.js';
import { expectedTraceSchema, toolCallOptionsSchema } from './tool-call.js';

const message = z.strictObject({
  role: z.enum(['system', 'user', 'assistant'], { error: "expected role 'system', 'user' or 'assistant'" }),
  content: z.string({ error: 'expected content (a text)' }),
});

const common = {
  id: z.union([z.string().min(1), z.number().int()], { error: 'expected an id (a text or a whole number)' }).optional(),
  prompt: z.string({ error: 'expected prompt (a text)' }).trim().min(1, { error: 'expected a non-empty prompt' }).optional(),
  messages: z.array(message, { error: 'expected messages (a list of {role, content})' }).min(1, { error: 'expected at least one message' }).optional(),
  split: z.enum(['train', 'eval'], { error: "expected split 'train' or 'eval'" }).optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
};

const mathTask = z.strictObject({
  ...common,
  verifier: z.literal('math'),
  reference: z.union([z.string().trim().min(1), z.number()], { error: 'expected reference (the answer, a text or a number)' }).transform(String),
  options: mathOptionsSchema.optional(),
});

const codeTask = z.strictObject({
  ...common,
  verifier: z.literal('code'),
  language: z.enum(codeLanguages, { error: `expected language ${codeLanguages.map((name) => `'${name}'`).join(' or ')}` }),
  entry: z.string({ error: 'expected entry (the function the tests call)' }).regex(/^[A-Za-z_$][\w$]*$/, { error: 'expected entry to be a function name' }),
  tests: codeTestsSchema.refine((tests) => tests.visible.length + tests.hidden.length > 0, { error: 'expected at least one test case' }),
  options: codeOptionsSchema.optional(),
});

const toolCallTask = z.strictObject({
  ...common,
  verifier: z.literal('tool-call'),
  /** The tool definitions offered to the model (OpenAI 'tools'), passed through as they are. */
  tools: z.array(z.record(z.string(), z.unknown()), { error: 'expected tools (a list of tool definitions)' }).optional(),
  /** Built-in tools the rollout runs (core/tools/), fed back until the model answers or max_turns. */
  environment: toolEnvironmentSchema.optional(),
  expected: expectedTraceSchema.refine((trace) => trace.calls.length > 0 || trace.answer !== undefined, { error: 'expected calls or an answer to check' }),
  options: toolCallOptionsSchema.optional(),
});

const lineSchema = z
  .discriminatedUnion('verifier', [mathTask, codeTask, toolCallTask], { error: "expected verifier 'math', 'code' or 'tool-call'" })
  .refine((line) => (line.prompt === undefined) !== (line.messages === undefined), { error: "expected exactly one of 'prompt' or 'messages'" })
  .refine((line) => !line.messages?.length || line.messages.at(-1)?.role === 'user', { error: 'expected the last message to be from the user' })
  .refine((line) => line.verifier !== 'tool-call' || line.tools === undefined || line.environment === undefined, {
    error: "expected either 'tools' (definitions only) or 'environment' (built-in tools that run), not both",
  });

type TaskLine = z.output<typeof lineSchema>;
type Specific<T> = Omit<T, 'id' | 'prompt' | 'messages' | 'split' | 'metadata'>;

export type VerifiableTask = {
  key: string;
  messages: { role: 'system' | 'user' | 'assistant'; content: string }[];
  split: 'train' | 'eval';
  metadata: Record<string, unknown>;
} & (Specific<Extract<TaskLine, { verifier: 'math' }>> | Specific<Extract<TaskLine, { verifier: 'code' }>> | Specific<Extract<TaskLine, { verifier: 'tool-call' }>>);

export type TasksParse = { ok: true; tasks: VerifiableTask[] } | { ok: false; problems: string[] };

export function parseTasksJsonl(text: string, file: string): TasksParse {
  const problems: string[] = [];
  const tasks: VerifiableTask[] = readJsonlLines(text, file, lineSchema, problems).map(({ key, data }) => {
    const { id: _id, prompt, messages, split, metadata, ...specific } = data;
    return { key, messages: messages ?? [{ role: 'user', content: prompt! }], split: split ?? 'train', metadata: metadata ?? {}, ...specific };
  });
  if (problems.length === 0 && tasks.length === 0) problems.push(`${file}: no tasks (the file is empty)`);
  return problems.length > 0 ? { ok: false, problems } : { ok: true, tasks };
}
