// Math verifier: extracts a response's final answer and compares it with the reference, numerically
// (with tolerance) and symbolically (mathjs parses both sides; expressions with variables are compared
// at fixed sample points). Only the final answer counts: a right number earlier in the text earns nothing.
// Answers are parsed, checked against an allowlist of node types, functions and constants, and only
// then evaluated, so an answer can never assign, define functions, import or reach anything else.
import type { MathNode } from 'mathjs';
// mathjs's single-file build, a full instance with plain numbers: its ES modules (1,262 files) take
// seconds to load, the bundle a tenth of that. Nothing here changes the instance.
import math from 'mathjs/lib/browser/math.js';
import { z } from 'zod';
import { verdict, type Verdict } from './verdict.js';

export const extractionStrategies = ['boxed', 'answer', 'last-number'] as const;
export type ExtractionStrategy = (typeof extractionStrategies)[number];

export const mathOptionsSchema = z.strictObject({
  /** Tried in this order; the first that finds an answer decides. */
  strategies: z
    .array(z.enum(extractionStrategies, { error: "expected a strategy 'boxed', 'answer' or 'last-number'" }))
    .min(1, { error: 'expected at least one strategy' })
    .default(['boxed', 'answer', 'last-number']),
  rel_tol: z.number().min(0).max(1).default(1e-6),
  abs_tol: z.number().min(0).default(1e-9),
  /** '50%': 'strip' reads 50, 'fraction' reads 0.5, 'either' accepts both readings. */
  percent: z.enum(['strip', 'fraction', 'either'], { error: "expected percent 'strip', 'fraction' or 'either'" }).default('either'),
  /** Longer final answers are not parsed (flag 'too-long'). */
  max_length: z.number().int().positive().max(10_000).default(200),
});
export type MathOptions = z.output<typeof mathOptionsSchema>;
export type MathCode = 'match' | 'mismatch' | 'no-answer';

const defaultOptions: MathOptions = mathOptionsSchema.parse({});

export interface ExtractedAnswer {
  answer: string;
  strategy: ExtractionStrategy;
}

export interface Extraction {
  found?: ExtractedAnswer;
  /** Every complete \boxed{…} in the response, in order (for the 'multiple-answers' flag). */
  boxed: string[];
  /** The last \boxed{ never closes: the response was cut off. */
  truncated: boolean;
}

/** The response's final answer, by the first strategy that finds one. */
export function extractAnswer(response: string, strategies: readonly ExtractionStrategy[] = defaultOptions.strategies): Extraction {
  const { boxed, truncated } = findBoxed(response);
  if (truncated) return { boxed, truncated };
  for (const strategy of strategies) {
    const answer = strategy === 'boxed' ? boxed.at(-1) : strategy === 'answer' ? answerLine(response) : lastNumber(response);
    if (answer !== undefined && answer.trim() !== '') return { found: { answer: answer.trim(), strategy }, boxed, truncated };
    // An empty last \boxed{} is the final answer, empty: no falling back to a number boxed earlier.
    if (answer !== undefined && strategy === 'boxed') break;
  }
  return { boxed, truncated };
}

export function verifyMath(response: string, reference: string, options: Partial<MathOptions> = {}): Verdict<MathCode> {
  const settings = { ...defaultOptions, ...options };
  const extraction = extractAnswer(response, settings.strategies);
  const flags: string[] = [];
  if (extraction.truncated) return verdict(0, 'no-answer', { reference }, ['truncated']);
  const found = extraction.found;
  if (!found) return verdict(0, 'no-answer', { reference });
  if (new Set(extraction.boxed.map((answer) => canonicalText(answer))).size > 1) flags.push('multiple-answers');
  const detail = { answer: found.answer.slice(0, 200), strategy: found.strategy, reference };
  if (found.answer.length > settings.max_length) return verdict(0, 'no-answer', detail, [...flags, 'too-long']);
  const comparison = compareAnswers(found.answer, reference, settings);
  return verdict(comparison.equal ? 1 : 0, comparison.equal ? 'match' : 'mismatch', { ...detail, method: comparison.method }, flags);
}

export type ComparisonMethod = 'numeric' | 'symbolic' | 'text';

/** Whether two final answers mean the same value: numbers within tolerance, expressions equal at sample points, else equal text. */
export function compareAnswers(answer: string, reference: string, options: Partial<MathOptions> = {}): { equal: boolean; method: ComparisonMethod } {
  const settings = { ...defaultOptions, ...options };
  const referenceReadings = readings(reference, settings, undefined);
  const referenceNumeric = referenceReadings.some((reading) => reading.expression && reading.expression.variables.length === 0);
  const answerReadings = readings(answer, settings, referenceNumeric);
  let method: ComparisonMethod = 'text';
  for (const left of answerReadings) {
    for (const right of referenceReadings) {
      if (left.text === right.text) return { equal: true, method: 'text' };
      if (left.expression && right.expression) {
        const symbolic = left.expression.variables.length > 0 || right.expression.variables.length > 0;
        method = symbolic ? 'symbolic' : 'numeric';
        if (expressionsEqual(left.expression, right.expression, settings)) return { equal: true, method };
      }
    }
  }
  return { equal: false, method };
}

// ---- extraction ----

function findBoxed(text: string): { boxed: string[]; truncated: boolean } {
  const boxed: string[] = [];
  const start = /\\(?:boxed|fbox)\s*(\{)?/g;
  let truncated = false;
  for (let match = start.exec(text); match; match = start.exec(text)) {
    if (match[1] === undefined) {
      // \boxed 5 (no braces) takes the next token.
      const token = /^\s*([^\s$]+)/.exec(text.slice(start.lastIndex));
      if (token) boxed.push(token[1]!);
      continue;
    }
    const close = closingBrace(text, start.lastIndex - 1);
    truncated = close === undefined;
    if (close === undefined) break;
    boxed.push(text.slice(start.lastIndex, close));
    start.lastIndex = close + 1;
  }
  return { boxed, truncated };
}

/** Index of the brace that closes the one at `open`, or undefined when it never closes. */
function closingBrace(text: string, open: number): number | undefined {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const char = text[i];
    if (char === '\\') i++;
    else if (char === '{') depth++;
    else if (char === '}' && --depth === 0) return i;
  }
  return undefined;
}

function answerLine(text: string): string | undefined {
  const pattern = /\b(?:final\s+answer|answer)\b[\s*_]*[:：][\s*_]*([^\n]*)/gi;
  let last: RegExpExecArray | undefined;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) last = match;
  if (!last) return undefined;
  let answer = last[1]!.trim();
  // "Answer:" alone on its line: the answer is on the next non-empty line.
  if (answer === '') answer = text.slice(last.index + last[0].length).split('\n').find((line) => line.trim() !== '')?.trim() ?? '';
  // "Final Answer: The final answer is $5$. I hope it is correct."
  const restated = /answer\s+is\s*[:：]?\s*(.+)$/i.exec(answer);
  if (restated) answer = restated[1]!;
  const mathSpans = [...answer.matchAll(/\$([^$]+)\$/g)];
  if (mathSpans.length > 0) answer = mathSpans.at(-1)![1]!;
  return answer.replace(/[*_]+$/, '').trim();
}

const numberToken = /(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*\/\s*\d+(?:\.\d+)?)?%?|(?<![\w.])-?\.\d+%?/g;

function lastNumber(text: string): string | undefined {
  return [...text.matchAll(numberToken)].at(-1)?.[0];
}

// ---- normalisation ----

interface Reading {
  text: string;
  expression?: CheckedExpression;
}

/** The ways an answer can be read: one, or two when a percentage may mean either 50 or 0.5. */
function readings(raw: string, options: MathOptions, referenceNumeric: boolean | undefined): Reading[] {
  const normalised = normalise(raw, referenceNumeric !== false);
  const texts: string[] = [];
  const percent = /^(.*?)\s*%$/.exec(normalised);
  if (percent) {
    if (options.percent !== 'fraction') texts.push(percent[1]!);
    if (options.percent !== 'strip') texts.push(`(${percent[1]!})/100`);
  } else {
    texts.push(normalised);
  }
  return texts.map((text) => ({ text: canonicalText(text), expression: checkedParse(text) }));
}

function canonicalText(text: string): string {
  return text.toLowerCase().replace(/\s+/g, ' ').replace(/[.\s]+$/, '').trim();
}

/** LaTeX and prose around a final answer, reduced to something mathjs parses. */
export function normalise(raw: string, stripUnits = true): string {
  let text = raw.trim();
  text = text.replace(/^\$+|\$+$/g, '').replace(/^\\\(|\\\)$/g, '').replace(/^\\\[|\\\]$/g, '').trim();
  text = text.replace(/\\(?:displaystyle|left|right|big|Big|bigl|bigr|Bigl|Bigr)\b/g, '');
  text = text.replace(/\\(?:text|textbf|mathrm|mathbf|operatorname|mbox)\s*\{([^{}]*)\}/g, ' $1 ');
  text = replaceFractions(text);
  text = text.replace(/\\sqrt\s*\[([^\]]*)\]\s*\{([^{}]*)\}/g, 'nthRoot($2, $1)').replace(/\\sqrt\s*\{([^{}]*)\}/g, 'sqrt($1)').replace(/\\sqrt\s*(\d+|[a-zA-Z])/g, 'sqrt($1)');
  text = text.replace(/\{,\}/g, ',').replace(/\\[,;:! ]|~/g, '');
  text = text.replace(/\\%/g, '%').replace(/\\\$/g, '$');
  text = text.replace(/\^\s*\{?\s*\\circ\s*\}?|°/g, '').replace(/\\(?:degree|circ)\b/g, '');
  text = text.replace(/\\(?:cdot|times|ast)\b/g, '*').replace(/\\div\b/g, '/').replace(/\\pi\b/g, 'pi').replace(/\\infty\b/g, 'Infinity');
  text = text.replace(/\\ln\b/g, 'log').replace(/\\(log|sin|cos|tan|sec|csc|cot|exp)\b/g, '$1').replace(/\bln\s*\(/g, 'log(');
  text = text.replace(/[{]/g, '(').replace(/[}]/g, ')').replace(/[−–]/g, '-').replace(/×|⋅/g, '*').replace(/÷/g, '/');
  text = text.replace(/^(?:\\approx|≈|~)\s*/, '');
  // "x = 5" → "5"; an equation with an expression on the left stays as it is (and fails to parse).
  const assignment = /^\s*[a-zA-Z]\w*\s*=\s*([^=]+)$/.exec(text);
  if (assignment) text = assignment[1]!;
  text = text.replace(/^[$€£¥]\s*/, '').replace(/(?<![\w.])(\d{1,3}(?:,\d{3})+)(?![\d,])/g, (digits) => digits.replace(/,/g, ''));
  text = text.trim().replace(/[.,;!]+$/, '').trim();
  if (stripUnits) {
    // A plain number followed by a unit or words ("5 cm", "12 apples", "3 m^2") is the number; "2e5" and "5x" are not units.
    const withUnit = /^([-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:\s*\/\s*\d+)?%?)(\s*)([a-zA-Zµ][a-zA-Zµ.\s/^0-9²³]*)$/.exec(text);
    if (withUnit && !/^[eE][-+]?\d/.test(withUnit[3]!) && (withUnit[2] !== '' || /^[a-zA-Zµ]{2}/.test(withUnit[3]!))) text = withUnit[1]!;
  }
  return text;
}

function replaceFractions(text: string): string {
  let result = text;
  for (let guard = 0; guard < 50; guard++) {
    const match = /\\[dt]?frac\s*/.exec(result);
    if (!match) return result;
    const at = match.index + match[0].length;
    const [numerator, afterNumerator] = latexArgument(result, at);
    const [denominator, afterDenominator] = latexArgument(result, afterNumerator);
    if (numerator === undefined || denominator === undefined) return result;
    result = `${result.slice(0, match.index)}((${numerator})/(${denominator}))${result.slice(afterDenominator)}`;
  }
  return result;
}

/** A LaTeX macro argument at `at`: a braced group or a single character (\frac12). */
function latexArgument(text: string, at: number): [string | undefined, number] {
  let i = at;
  while (text[i] === ' ') i++;
  if (text[i] === '{') {
    const close = closingBrace(text, i);
    return close === undefined ? [undefined, i] : [text.slice(i + 1, close), close + 1];
  }
  return text[i] === undefined ? [undefined, i] : [text[i], i + 1];
}

// ---- parsing and comparison ----

const allowedFunctions = new Set([
  'sqrt', 'cbrt', 'nthRoot', 'abs', 'exp', 'log', 'log10', 'log2', 'sin', 'cos', 'tan', 'sec', 'csc', 'cot',
  'asin', 'acos', 'atan', 'sinh', 'cosh', 'tanh', 'floor', 'ceil', 'round', 'factorial', 'pow',
]);
const constants = new Set(['pi', 'e', 'i', 'Infinity']);
const allowedOperators = new Set(['add', 'subtract', 'multiply', 'divide', 'pow', 'unaryMinus', 'unaryPlus', 'factorial']);
const maxNodes = 200;

interface CheckedExpression {
  evaluate: (scope: Map<string, number>) => unknown;
  variables: string[];
}

/** mathjs's parse, kept only when every node is arithmetic on numbers, allowed functions, constants and variables. */
function checkedParse(text: string): CheckedExpression | undefined {
  if (text === '' || text.length > 10_000) return undefined;
  let root: MathNode;
  try {
    root = math.parse(text);
  } catch {
    return undefined;
  }
  const variables = new Set<string>();
  let nodes = 0;
  let allowed = true;
  root.traverse((node, _path, parent) => {
    nodes++;
    if (!allowed) return;
    if (node.type === 'ConstantNode') allowed = typeof (node as { value?: unknown }).value === 'number';
    else if (node.type === 'ParenthesisNode') allowed = true;
    else if (node.type === 'OperatorNode') allowed = allowedOperators.has((node as { fn?: string }).fn ?? '');
    else if (node.type === 'FunctionNode') {
      const fn = (node as { fn?: MathNode }).fn;
      allowed = fn?.type === 'SymbolNode' && allowedFunctions.has((fn as { name?: string }).name ?? '');
    } else if (node.type === 'SymbolNode') {
      const name = (node as { name?: string }).name ?? '';
      const isFunctionName = parent?.type === 'FunctionNode' && (parent as { fn?: MathNode }).fn === node;
      if (!isFunctionName && !constants.has(name)) {
        allowed = /^[a-zA-Z](?:_?[a-zA-Z0-9]){0,2}$/.test(name) && !allowedFunctions.has(name);
        variables.add(name);
      }
    } else allowed = false;
  });
  if (!allowed || nodes > maxNodes) return undefined;
  const compiled = root.compile();
  return { evaluate: (scope) => compiled.evaluate(scope) as unknown, variables: [...variables].sort() };
}

// Fixed, irregular sample points: reproducible verdicts, and unlikely roots of a wrong difference.
const samplePoints = [0.7071, 1.3863, -0.5772, 2.2360, 0.3183, -1.6180, 3.1416];

function expressionsEqual(left: CheckedExpression, right: CheckedExpression, options: MathOptions): boolean {
  const variables = [...new Set([...left.variables, ...right.variables])];
  if (variables.length === 0) return valuesClose(toComplex(safeEvaluate(left, new Map())), toComplex(safeEvaluate(right, new Map())), options);
  let compared = 0;
  for (let point = 0; point < samplePoints.length; point++) {
    // Each variable gets a different point, so x+y and 2x differ.
    const scope = new Map(variables.map((name, index) => [name, samplePoints[(point + index * 3) % samplePoints.length]! + index * 0.1]));
    const a = toComplex(safeEvaluate(left, scope));
    const b = toComplex(safeEvaluate(right, scope));
    if (a === undefined && b === undefined) continue;
    if (!valuesClose(a, b, options)) return false;
    compared++;
  }
  return compared >= 3;
}

function safeEvaluate(expression: CheckedExpression, scope: Map<string, number>): unknown {
  try {
    return expression.evaluate(scope);
  } catch {
    return undefined;
  }
}

interface Complex {
  re: number;
  im: number;
}

function toComplex(value: unknown): Complex | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? { re: value, im: 0 } : undefined;
  if (math.isComplex(value)) {
    const { re, im } = value as Complex;
    return Number.isFinite(re) && Number.isFinite(im) ? { re, im } : undefined;
  }
  return undefined;
}

function valuesClose(a: Complex | undefined, b: Complex | undefined, options: MathOptions): boolean {
  if (!a || !b) return false;
  const close = (x: number, y: number) => Math.abs(x - y) <= Math.max(options.abs_tol, options.rel_tol * Math.max(Math.abs(x), Math.abs(y)));
  return close(a.re, b.re) && close(a.im, b.im);
}
