// Process rewards, the pure half: a response is split into steps, each step gets a score (the rater
// against the constitution, or a verifier where a step is checkable; that happens in an activity),
// and the step scores are aggregated into one response-level value, the `process` reward term.
//
// Splitting never drops text: whatever precedes the first numbered line joins step 1, whatever
// follows the last one stays with it, and steps beyond max_steps are merged into the last step, so
// no part of a response escapes judgement. Lines inside ``` fences never start or split a step.
import { z } from 'zod';

export type SplitMode = 'numbered' | 'paragraphs' | { delimiter: string };
export type AggregateMode = 'min' | 'mean' | 'last' | { discounted: number };

export const splitModeSchema = z.union(
  [z.enum(['numbered', 'paragraphs']), z.strictObject({ delimiter: z.string().min(1, { error: 'expected a non-empty delimiter' }) })],
  { error: "expected split 'numbered', 'paragraphs' or {delimiter: TEXT}" },
);

export const aggregateModeSchema = z.union(
  [
    z.enum(['min', 'mean', 'last']),
    z.strictObject({ discounted: z.number({ error: 'expected gamma (a number)' }).gt(0, { error: 'expected gamma above 0' }).max(1, { error: 'expected gamma at most 1' }) }),
  ],
  { error: "expected aggregate 'min', 'mean', 'last' or {discounted: GAMMA}" },
);

/** The `process` term's own options (beside weight, normalise and optional). */
export const processOptions = {
  split: splitModeSchema.default('numbered'),
  /** A response is as good as its weakest step: min by default. */
  aggregate: aggregateModeSchema.default('min'),
  /** At most this many steps are scored per response (one rater call each); the rest joins the last step. */
  max_steps: z.number().int({ error: 'expected max_steps (a whole number)' }).min(1).max(64).default(16),
  /**
   * Steps that state arithmetic ("17 × 23 = 391") are checked by evaluating it instead of asking the
   * rater: 1 when every claim holds, -1 when any fails (core/verifiers/arithmetic.ts; stored in
   * step_checks). Steps without such a claim still go to the rater.
   */
  check_arithmetic: z.boolean({ error: 'expected check_arithmetic: true or false' }).default(false),
};

// "1." "2)" "12." — or "Step 3", "Step 3:", "**Step 3.**", "### Step 3" — at the start of a line, then a
// space or the line's end. "3.14 is pi" is no step: the marker must stand on its own.
const numberedLine = /^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*)?(?:step[ \t]+\d{1,3}[ \t]*[:.)]?|\d{1,3}[.)])(?:\*\*)?(?=[ \t]|$)/i;
const fence = /^[ \t]*(```|~~~)/;

/**
 * The steps of a response, trimmed, none empty; an empty response has none.
 * - numbered: a step starts at each numbered line; text before the first joins step 1; a response
 *   without numbered lines is one step.
 * - paragraphs: blank lines separate steps.
 * - {delimiter}: the literal text separates steps (not a pattern).
 * With maxSteps, steps from the maxSteps-th on are merged into one, joined as they were separated.
 */
export function splitSteps(text: string, mode: SplitMode, maxSteps?: number): string[] {
  if (maxSteps !== undefined && (!Number.isInteger(maxSteps) || maxSteps < 1)) throw new RangeError(`maxSteps must be a whole number above 0, got ${maxSteps}`);
  const normalised = text.replace(/\r\n?/g, '\n');
  let pieces: string[];
  let joiner: string;
  if (mode === 'numbered') {
    // The first numbered line opens no new step: what precedes it is step 1's preamble.
    let seenNumbered = false;
    pieces = splitLines(normalised, (line) => {
      if (!numberedLine.test(line)) return false;
      const opens = seenNumbered;
      seenNumbered = true;
      return opens;
    });
    joiner = '\n';
  } else if (mode === 'paragraphs') {
    pieces = splitLines(normalised, (line, previousBlank) => previousBlank && line.trim() !== '');
    joiner = '\n\n';
  } else {
    pieces = normalised.split(mode.delimiter);
    joiner = mode.delimiter;
  }
  const steps = pieces.map((piece) => piece.trim()).filter((piece) => piece !== '');
  if (maxSteps === undefined || steps.length <= maxSteps) return steps;
  return [...steps.slice(0, maxSteps - 1), steps.slice(maxSteps - 1).join(joiner)];
}

/** Splits before each line for which `startsStep(line, previousBlank)` holds, outside code fences. */
function splitLines(text: string, startsStep: (line: string, previousBlank: boolean) => boolean): string[] {
  const pieces: string[][] = [[]];
  let inFence = false;
  let previousBlank = false;
  for (const line of text.split('\n')) {
    if (!inFence && startsStep(line, previousBlank)) pieces.push([]);
    pieces.at(-1)!.push(line);
    if (fence.test(line)) inFence = !inFence;
    previousBlank = line.trim() === '';
  }
  return pieces.map((lines) => lines.join('\n'));
}

/**
 * One response-level value from its step scores, in step order; undefined when there are none.
 * - min: the weakest step; mean; last: the final step's score.
 * - {discounted: γ}: Σ γ^(n-1-i)·s_i / Σ γ^(n-1-i), a weighted mean in which the last step weighs 1 and
 *   each earlier one γ times the next: γ = 1 is the mean, γ → 0 approaches last.
 */
export function aggregateSteps(scores: readonly number[], mode: AggregateMode): number | undefined {
  if (scores.length === 0) return undefined;
  const bad = scores.findIndex((score) => !Number.isFinite(score));
  if (bad >= 0) throw new RangeError(`step ${bad + 1} has no finite score (${scores[bad]})`);
  if (mode === 'min') return Math.min(...scores);
  if (mode === 'last') return scores.at(-1);
  if (mode === 'mean') return scores.reduce((a, b) => a + b, 0) / scores.length;
  const gamma = mode.discounted;
  if (!(gamma > 0 && gamma <= 1)) throw new RangeError(`discounted: gamma must be in (0, 1], got ${gamma}`);
  let weighted = 0;
  let weights = 0;
  let weight = 1;
  for (let i = scores.length - 1; i >= 0; i--) {
    weighted += weight * scores[i]!;
    weights += weight;
    weight *= gamma;
  }
  return weighted / weights;
}
