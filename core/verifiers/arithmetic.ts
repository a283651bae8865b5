// Step-level checks for process rewards: the arithmetic a step states ("17 × 23 = 391",
// "460 − 69 = 391", "2 * (3 + 4) = 2 * 7 = 14") is evaluated (mathjs), so such a step is judged by
// what is true, not by the rater.
//
// A claim is a chain of two or more plain-arithmetic sides joined by "=": numbers, + − × ÷ * / ^ and
// parentheses, nothing else. Each adjacent pair in which at least one side has an operator is one
// check ("5 = 5" states nothing). A chain that touches letters, other symbols or more arithmetic on
// either end ("2x + 3 = 7", "f(2) = 4", "a + 2 = 5", "50% = 0.5", "1,000 + 1 = 1,001") is algebra or
// prose, not a claim, and is left to the rater. A side written as a decimal with d places counts as
// rounded to d places: "10 / 3 = 3.33" holds, "10 / 3 = 3.4" does not.
//
// Only strings made of those characters reach mathjs, and a side whose value is not a finite number
// (division by zero, overflow, unbalanced parentheses) makes no check.
import math from 'mathjs/lib/browser/math.js';

export interface ArithmeticCheck {
  left: string;
  right: string;
  leftValue: number;
  rightValue: number;
  holds: boolean;
}

const number = String.raw`\d+(?:\.\d+)?`;
const operand = String.raw`[(\-\s]*${number}[\s)]*`;
const side = String.raw`${operand}(?:[-+*/^]${operand})*`;
const chain = new RegExp(String.raw`${side}(?:=${side})+`, 'g');
/** A binary operator: after a digit or a closing parenthesis. */
const hasOperator = /[\d)]\s*[-+*/^]/;
const plainDecimal = /^-?\d+\.(\d+)$/;
const maxSide = 200;

/** The text with the operator look-alikes of prose and typesetting replaced by ASCII ones. */
function normalise(text: string): string {
  return text.replace(/[×·∙⋅]/g, '*').replace(/÷/g, '/').replace(/[−–]/g, '-');
}

/** Every arithmetic claim a step states, each checked. None when the step states none. */
export function checkArithmetic(step: string): ArithmeticCheck[] {
  const checks: ArithmeticCheck[] = [];
  // Line by line: a claim never spans lines, and a long step costs no more than its lines.
  for (const line of normalise(step).split('\n')) checks.push(...checkLine(line));
  return checks;
}

function checkLine(text: string): ArithmeticCheck[] {
  const checks: ArithmeticCheck[] = [];
  for (const match of text.matchAll(chain)) {
    const raw = match[0];
    const start = match.index + (raw.length - raw.trimStart().length);
    const end = match.index + raw.trimEnd().length;
    if (!standsAlone(text, start, end)) continue;
    const sides = text.slice(start, end).split('=').map((s) => s.trim());
    for (let i = 0; i + 1 < sides.length; i++) {
      const [left, right] = [sides[i]!, sides[i + 1]!];
      if (!hasOperator.test(left) && !hasOperator.test(right)) continue;
      const [leftValue, rightValue] = [valueOf(left), valueOf(right)];
      if (leftValue === undefined || rightValue === undefined) continue;
      const tolerance = Math.max(roundingOf(left), roundingOf(right), 1e-9 * Math.max(1, Math.abs(leftValue), Math.abs(rightValue)));
      checks.push({ left, right, leftValue, rightValue, holds: Math.abs(leftValue - rightValue) <= tolerance });
    }
  }
  return checks;
}

/** Whether the chain at [start, end) is a whole statement rather than part of a longer expression. */
function standsAlone(text: string, start: number, end: number): boolean {
  const before = text[start - 1] ?? ' ';
  const after = text[end] ?? ' ';
  // A letter, a digit group ("1,000") or a decimal point joined on either side: part of something longer.
  if (/[\w.]/.test(before) || (before === ',' && /\d/.test(text[start - 2] ?? '')) || /[\w%(]/.test(after)) return false;
  if ((after === '.' || after === ',') && /\d/.test(text[end + 1] ?? '')) return false;
  const previous = text.slice(0, start).trimEnd().at(-1) ?? ' ';
  const next = text.slice(end).trimStart()[0] ?? ' ';
  return !/[-+*/^(]/.test(previous) && !/[-+*/^]/.test(next);
}

function valueOf(expression: string): number | undefined {
  if (expression.length > maxSide) return undefined;
  try {
    const value: unknown = math.evaluate(expression);
    return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Half a unit in the last place of a side written as a plain decimal, else 0. */
function roundingOf(expression: string): number {
  const decimals = plainDecimal.exec(expression.replace(/\s+/g, ''))?.[1]?.length;
  return decimals === undefined ? 0 : 0.5 * 10 ** -decimals * (1 + 1e-9);
}

/** The step's score from its checks: 1 when every claim holds, -1 when any fails; undefined without claims. */
export function arithmeticScore(checks: readonly ArithmeticCheck[]): number | undefined {
  if (checks.length === 0) return undefined;
  return checks.every((check) => check.holds) ? 1 : -1;
}
