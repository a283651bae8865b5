// Tool-call verifier: compares the tool calls in an OpenAI-format trace with the expected calls, and
// optionally the final answer text. Arguments compare as JSON (key order and 1 vs 1.0 ignored); free-text
// fields can be compared loosely per field path; order matters or not per task; credit is all or nothing
// or the fraction of expected calls matched.
import { z } from 'zod';
import { canonicalJsonEqual } from '../json.js';
import { verifyMath } from './math.js';
import { verdict, type Verdict } from './verdict.js';

const fieldRuleSchema = z.strictObject({
  /** exact: equal JSON; text: equal after case, whitespace and end punctuation are ignored; tokens: word overlap (F1) ≥ threshold;
   * number: numbers (or numeric text) within tolerance; any: present with any value. */
  match: z.enum(['exact', 'text', 'tokens', 'number', 'any'], { error: "expected match 'exact', 'text', 'tokens', 'number' or 'any'" }),
  threshold: z.number().min(0).max(1).default(0.8),
  tolerance: z.number().min(0).default(0),
});
export type FieldRule = z.output<typeof fieldRuleSchema>;

export const expectedToolCallSchema = z.strictObject({
  name: z.string({ error: 'expected a tool name' }).min(1, { error: 'expected a tool name' }),
  arguments: z.record(z.string(), z.unknown(), { error: 'expected arguments (an object)' }).default({}),
});

export const expectedTraceSchema = z.strictObject({
  calls: z.array(expectedToolCallSchema, { error: 'expected calls (a list of {name, arguments})' }).default([]),
  /** The final answer text, when the task checks it. */
  answer: z.string().optional(),
});
export type ExpectedTrace = z.output<typeof expectedTraceSchema>;

export const toolCallOptionsSchema = z.strictObject({
  order: z.enum(['strict', 'any'], { error: "expected order 'strict' or 'any'" }).default('strict'),
  credit: z.enum(['all', 'fraction'], { error: "expected credit 'all' or 'fraction'" }).default('all'),
  /** Calls beyond the expected ones: 'penalise' counts them against the score, 'ignore' lets them pass. */
  extra_calls: z.enum(['penalise', 'ignore']).default('penalise'),
  /** Argument keys the expectation does not name: 'reject' fails the call, 'ignore' lets them pass. */
  extra_keys: z.enum(['reject', 'ignore']).default('reject'),
  /** Per argument path ("query", "filters.city", "items.*.name", or "tool:path" for one tool only). */
  fields: z.record(z.string(), fieldRuleSchema).default({}),
  /** math: the answer is extracted from the final text (boxed, "answer:", last number) and compared as maths. */
  answer_match: z.enum(['exact', 'text', 'tokens', 'math']).default('text'),
  answer_threshold: z.number().min(0).max(1).default(0.8),
  /** With credit 'fraction', the answer's share of the reward when both calls and an answer are checked. */
  answer_weight: z.number().min(0).max(1).default(0.5),
});
export type ToolCallOptions = z.output<typeof toolCallOptionsSchema>;
export type ToolCallCode = 'match' | 'mismatch' | 'no-calls' | 'no-answer' | 'bad-arguments' | 'bad-trace';

const defaultOptions: ToolCallOptions = toolCallOptionsSchema.parse({});

const traceSchema = z.array(
  z.looseObject({
    role: z.string(),
    content: z.union([z.string(), z.null(), z.array(z.looseObject({ type: z.string(), text: z.string().optional() }))]).optional(),
    tool_calls: z
      .array(z.looseObject({ function: z.looseObject({ name: z.string(), arguments: z.union([z.string(), z.record(z.string(), z.unknown())]) }) }))
      .nullish(),
  }),
);

interface ActualCall {
  name: string;
  arguments: unknown;
}

export function verifyToolCalls(trace: unknown, expected: ExpectedTrace, options: Partial<ToolCallOptions> = {}): Verdict<ToolCallCode> {
  const settings = { ...defaultOptions, ...options };
  const parsed = traceSchema.safeParse(trace);
  if (!parsed.success) return verdict(0, 'bad-trace', { problem: parsed.error.issues[0]?.message, path: parsed.error.issues[0]?.path.join('.') });

  const calls: ActualCall[] = [];
  for (const message of parsed.data) {
    if (message.role !== 'assistant') continue;
    for (const call of message.tool_calls ?? []) {
      const raw = call.function.arguments;
      if (typeof raw !== 'string') {
        calls.push({ name: call.function.name, arguments: raw });
        continue;
      }
      try {
        calls.push({ name: call.function.name, arguments: raw.trim() === '' ? {} : JSON.parse(raw) });
      } catch (error) {
        return verdict(0, 'bad-arguments', { call: calls.length, name: call.function.name, error: (error as Error).message, arguments: raw.slice(0, 200) });
      }
    }
  }

  const rules = Object.entries(settings.fields).map(([key, rule]) => compileRule(key, rule));
  const matches = (want: ExpectedTrace['calls'][number], got: ActualCall) =>
    want.name === got.name && compareValues(want.arguments, got.arguments, [], want.name, rules, settings).equal;
  const matched = settings.order === 'strict' ? longestCommonSubsequence(expected.calls, calls, matches) : maximumMatching(expected.calls, calls, matches);
  const pairedActual = new Set(matched.map(([, actual]) => actual));
  const pairedExpected = new Set(matched.map(([want]) => want));
  const extras = calls.length - matched.length;
  const flags: string[] = [];
  if (extras > 0) flags.push('extra-calls');
  const signatures = calls.map((call) => `${call.name}\u0000${stableJson(call.arguments)}`);
  if (new Set(signatures).size < signatures.length && new Set(expected.calls.map((call) => `${call.name}\u0000${stableJson(call.arguments)}`)).size === expected.calls.length) flags.push('repeated-calls');

  const penalisedExtras = settings.extra_calls === 'penalise' ? extras : 0;
  const callsAllMatched = matched.length === expected.calls.length && penalisedExtras === 0;
  const callScore =
    settings.credit === 'all' ? (callsAllMatched ? 1 : 0) : expected.calls.length + penalisedExtras === 0 ? 1 : matched.length / (expected.calls.length + penalisedExtras);

  const detail: Record<string, unknown> = {
    matched: matched.length,
    expected: expected.calls.length,
    actual: calls.length,
    unmatched: expected.calls.flatMap((want, index) => (pairedExpected.has(index) ? [] : [{ index, name: want.name, why: explainMismatch(want, calls, pairedActual, rules, settings) }])),
    extra: calls.flatMap((call, index) => (pairedActual.has(index) ? [] : [call.name])),
  };

  let answerScore: number | undefined;
  let finalText: string | undefined;
  if (expected.answer !== undefined) {
    finalText = finalAnswer(parsed.data);
    answerScore = finalText !== undefined && answerMatches(expected.answer, finalText, settings) ? 1 : 0;
    detail.answer = { expected: expected.answer, actual: finalText?.slice(0, 200), equal: answerScore === 1 };
  }

  const weight = settings.answer_weight;
  const reward =
    answerScore === undefined
      ? callScore
      : expected.calls.length === 0 && calls.length === 0
        ? answerScore
        : settings.credit === 'all'
          ? callScore * answerScore
          : (1 - weight) * callScore + weight * answerScore;
  const code: ToolCallCode = !callsAllMatched
    ? calls.length === 0 && expected.calls.length > 0
      ? 'no-calls'
      : 'mismatch'
    : answerScore === 0
      ? finalText === undefined
        ? 'no-answer'
        : 'mismatch'
      : 'match';
  return verdict(reward, code, detail, flags);
}

// ---- argument comparison ----

interface CompiledRule {
  tool?: string;
  path: string[];
  rule: FieldRule;
}

function compileRule(key: string, rule: FieldRule): CompiledRule {
  const colon = key.indexOf(':');
  const tool = colon >= 0 ? key.slice(0, colon) : undefined;
  const path = (colon >= 0 ? key.slice(colon + 1) : key).split('.').filter((part) => part !== '');
  return { tool, path, rule };
}

function ruleAt(path: string[], tool: string, rules: CompiledRule[]): FieldRule | undefined {
  return rules.find((candidate) => (candidate.tool === undefined || candidate.tool === tool) && candidate.path.length === path.length && candidate.path.every((part, i) => part === '*' || part === path[i]))?.rule;
}

interface Comparison {
  equal: boolean;
  /** Where the first difference is, e.g. "filters.city". */
  path?: string;
}

function compareValues(want: unknown, got: unknown, path: string[], tool: string, rules: CompiledRule[], options: ToolCallOptions): Comparison {
  const here = (equal: boolean): Comparison => (equal ? { equal } : { equal, path: path.join('.') || '(arguments)' });
  const rule = ruleAt(path, tool, rules);
  if (rule) return here(ruleMatches(rule, want, got));
  if (Array.isArray(want) || Array.isArray(got)) {
    if (!Array.isArray(want) || !Array.isArray(got) || want.length !== got.length) return here(false);
    for (let i = 0; i < want.length; i++) {
      const inner = compareValues(want[i], got[i], [...path, String(i)], tool, rules, options);
      if (!inner.equal) return inner;
    }
    return here(true);
  }
  if (isPlainObject(want) || isPlainObject(got)) {
    if (!isPlainObject(want) || !isPlainObject(got)) return here(false);
    for (const key of Object.keys(want)) {
      if (!(key in got)) return { equal: false, path: [...path, key].join('.') };
      const inner = compareValues(want[key], got[key], [...path, key], tool, rules, options);
      if (!inner.equal) return inner;
    }
    if (options.extra_keys === 'reject') {
      const extra = Object.keys(got).find((key) => !(key in want));
      if (extra !== undefined) return { equal: false, path: [...path, extra].join('.') };
    }
    return here(true);
  }
  return here(canonicalJsonEqual(want, got));
}

function ruleMatches(rule: FieldRule, want: unknown, got: unknown): boolean {
  switch (rule.match) {
    case 'any':
      return got !== undefined;
    case 'exact':
      return canonicalJsonEqual(want, got);
    case 'number': {
      const a = asNumber(want);
      const b = asNumber(got);
      return a !== undefined && b !== undefined && Math.abs(a - b) <= rule.tolerance;
    }
    case 'text':
      return typeof want === 'string' && typeof got === 'string' && looseText(want) === looseText(got);
    case 'tokens':
      return typeof want === 'string' && typeof got === 'string' && tokenF1(want, got) >= rule.threshold;
  }
}

function answerMatches(want: string, got: string, options: ToolCallOptions): boolean {
  switch (options.answer_match) {
    case 'exact':
      return want === got;
    case 'text':
      return looseText(want) === looseText(got);
    case 'tokens':
      return tokenF1(want, got) >= options.answer_threshold;
    case 'math':
      return verifyMath(got, want).reward === 1;
  }
}

function looseText(text: string): string {
  return text.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ').trim().replace(/[.!?;,]+$/, '');
}

/** F1 of the two texts' word sets: 1 when they share every word, 0 when none. */
export function tokenF1(a: string, b: string): number {
  const words = (text: string) => new Set(text.normalize('NFKC').toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []);
  const left = words(a);
  const right = words(b);
  if (left.size === 0 && right.size === 0) return 1;
  let shared = 0;
  for (const word of left) if (right.has(word)) shared++;
  return (2 * shared) / (left.size + right.size);
}

function asNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) return Number(value);
  return undefined;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (isPlainObject(value)) return `{${Object.keys(value).sort().map((key) => `${JSON.stringify(key)}:${stableJson(value[key])}`).join(',')}}`;
  return JSON.stringify(value) ?? 'null';
}

function explainMismatch(want: ExpectedTrace['calls'][number], calls: ActualCall[], paired: Set<number>, rules: CompiledRule[], options: ToolCallOptions): string {
  const sameName = calls.map((call, index) => ({ call, index })).filter(({ call }) => call.name === want.name);
  if (sameName.length === 0) return `no call to ${want.name}`;
  const candidate = sameName.find(({ index }) => !paired.has(index)) ?? sameName[0]!;
  const comparison = compareValues(want.arguments, candidate.call.arguments, [], want.name, rules, options);
  return comparison.equal ? `call ${candidate.index} matches but is out of order` : `call ${candidate.index} differs at ${comparison.path}`;
}

function finalAnswer(messages: z.output<typeof traceSchema>): string | undefined {
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i]!;
    if (message.role !== 'assistant') continue;
    const content = typeof message.content === 'string' ? message.content : (message.content ?? []).map((part) => part.text ?? '').join('');
    if (content.trim() !== '') return content.trim();
  }
  return undefined;
}

// ---- pairing expected with actual calls ----

/** Order-sensitive pairing: the longest common subsequence of matching calls, so one inserted call does not shift the rest. */
function longestCommonSubsequence<E, A>(expected: E[], actual: A[], matches: (e: E, a: A) => boolean): [number, number][] {
  const rows = expected.length;
  const cols = actual.length;
  const table = Array.from({ length: rows + 1 }, () => new Array<number>(cols + 1).fill(0));
  for (let i = rows - 1; i >= 0; i--) {
    for (let j = cols - 1; j >= 0; j--) {
      table[i]![j] = matches(expected[i]!, actual[j]!) ? table[i + 1]![j + 1]! + 1 : Math.max(table[i + 1]![j]!, table[i]![j + 1]!);
    }
  }
  const pairs: [number, number][] = [];
  for (let i = 0, j = 0; i < rows && j < cols; ) {
    if (table[i]![j] === table[i + 1]![j + 1]! + 1 && matches(expected[i]!, actual[j]!)) pairs.push([i++, j++]);
    else if (table[i + 1]![j]! >= table[i]![j + 1]!) i++;
    else j++;
  }
  return pairs;
}

/** Order-free pairing: a maximum bipartite matching (augmenting paths), so a loose rule cannot steal another call's partner. */
function maximumMatching<E, A>(expected: E[], actual: A[], matches: (e: E, a: A) => boolean): [number, number][] {
  const edges = expected.map((want) => actual.flatMap((got, j) => (matches(want, got) ? [j] : [])));
  const owner = new Array<number | undefined>(actual.length).fill(undefined);
  const augment = (i: number, seen: Set<number>): boolean => {
    for (const j of edges[i]!) {
      if (seen.has(j)) continue;
      seen.add(j);
      if (owner[j] === undefined || augment(owner[j], seen)) {
        owner[j] = i;
        return true;
      }
    }
    return false;
  };
  expected.forEach((_, i) => augment(i, new Set()));
  return owner.flatMap((i, j) => (i === undefined ? [] : [[i, j] as [number, number]]));
}
