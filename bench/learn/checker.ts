// The learning benchmark's checker: principles a program can check, independent of the rater.
// Each held-out prompt of `npm run bench -- learn` carries the checks its own instructions imply
// (a word limit, a number of bullet points, a first word, the answer to a simple question); a
// response satisfies the prompt when it passes every one. Pure functions, no model.

export type Check =
  /** At most this many words (a word: a run of non-space characters with a letter or digit in it). */
  | { kind: 'max_words'; words: number }
  /** Exactly this many list items (lines that start with -, *, • or "1." / "1)"). */
  | { kind: 'bullets'; count: number }
  /** The first word, case and punctuation aside, is this one (e.g. "yes"). */
  | { kind: 'starts_with'; word: string }
  /** One of these answers appears: a number by value (3,600 = 3600), a word or phrase as whole words. */
  | { kind: 'answer'; expected: string[] }
  /** A single line (no line break inside the trimmed response). */
  | { kind: 'one_line' };

export type CheckKind = Check['kind'];

export interface CheckResult {
  ok: boolean;
  /** The checks the response failed. */
  failed: Check[];
}

const wordPattern = /[\p{L}\p{N}]/u;
const bulletPattern = /^\s*(?:[-*•]|\d{1,2}[.)])\s+\S/;
const numberPattern = /-?\d[\d,]*(?:\.\d+)?/g;

export function words(text: string): string[] {
  return text.split(/\s+/).filter((w) => wordPattern.test(w));
}

/** The numbers written in the text, by value ("3,600" → 3600; "1." → 1). */
export function numbersIn(text: string): number[] {
  return [...text.matchAll(numberPattern)].map((m) => Number(m[0].replace(/,/g, ''))).filter((n) => Number.isFinite(n));
}

const normalised = (text: string) =>
  ` ${text
    .toLowerCase()
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/[^\p{L}\p{N}]+/gu, ' ')
    .trim()} `;

function hasAnswer(response: string, expected: string): boolean {
  const asNumber = Number(expected.replace(/,/g, ''));
  if (expected.trim() !== '' && Number.isFinite(asNumber) && /^-?[\d,.]+$/.test(expected.trim())) return numbersIn(response).includes(asNumber);
  return normalised(response).includes(normalised(expected));
}

export function passes(check: Check, response: string): boolean {
  const text = response.trim();
  switch (check.kind) {
    case 'max_words':
      return text.length > 0 && words(text).length <= check.words;
    case 'bullets':
      return text.split('\n').filter((line) => bulletPattern.test(line)).length === check.count;
    case 'starts_with': {
      const first = normalised(text).trim().split(' ')[0] ?? '';
      return first === normalised(check.word).trim();
    }
    case 'answer':
      return check.expected.some((answer) => hasAnswer(text, answer));
    case 'one_line':
      return text.length > 0 && !text.includes('\n');
  }
}

export function checkResponse(checks: readonly Check[], response: string): CheckResult {
  if (checks.length === 0) throw new RangeError('checkResponse: a checked prompt needs at least one check');
  const failed = checks.filter((check) => !passes(check, response));
  return { ok: failed.length === 0, failed };
}

export interface Satisfaction {
  /** Share of responses that pass every check of their prompt. */
  rate: number;
  satisfied: number;
  total: number;
  /** Per check kind: how many checks of that kind passed, of how many. */
  byKind: Partial<Record<CheckKind, { passed: number; total: number }>>;
}

/** The checker's satisfaction rate over (checks, response) items. */
export function satisfaction(items: readonly { checks: readonly Check[]; response: string }[]): Satisfaction {
  if (items.length === 0) throw new RangeError('satisfaction: no responses to check');
  const byKind: Satisfaction['byKind'] = {};
  let satisfied = 0;
  for (const { checks, response } of items) {
    const result = checkResponse(checks, response);
    if (result.ok) satisfied++;
    for (const check of checks) {
      const tally = (byKind[check.kind] ??= { passed: 0, total: 0 });
      tally.total++;
      if (!result.failed.includes(check)) tally.passed++;
    }
  }
  return { rate: satisfied / items.length, satisfied, total: items.length, byKind };
}
