// Process rewards: a response split into steps, each step scored by the rater against a principle
// of the constitution (1–10, normalised to [-1, 1]; stored as `process` decisions with the same
// audit fields as any other), or, with check_arithmetic, by evaluating the arithmetic it states
// (stored in step_checks), then aggregated (min, mean, last, discounted) into one value.
import { pickDistinct } from '../core/rater/principles.js';
import { aggregateSteps, splitSteps, type AggregateMode, type SplitMode } from '../core/rewards/process.js';
import { arithmeticScore, checkArithmetic } from '../core/verifiers/arithmetic.js';
import type { Database } from '../db/pool.js';
import { stepChecks } from '../db/schema.js';
import type { ModelEndpoints } from './llm.js';
import { conversationText, type PromptRow, type RunContext } from './run-context.js';
import { scoreOne } from './score.js';

export interface ProcessSettings {
  split: SplitMode;
  aggregate: AggregateMode;
  max_steps: number;
  check_arithmetic: boolean;
}

/** What the rater sees for step i: the steps before it as context, then the step to score. */
export function stepText(steps: readonly string[], index: number): string {
  const before = steps.slice(0, index).map((text, i) => `Step ${i + 1}: ${text}`);
  return [...before, `Step ${index + 1} (score this step only): ${steps[index]}`].join('\n\n');
}

/** The process value of each completion (undefined when no step could be scored). */
export async function processRewards(
  db: Database,
  llm: ModelEndpoints,
  context: RunContext,
  items: readonly { prompt: PromptRow; completion: { id: number; text: string } }[],
  iteration: number,
  settings: ProcessSettings,
): Promise<(number | undefined)[]> {
  return Promise.all(
    items.map(async ({ prompt, completion }) => {
      const steps = splitSteps(completion.text, settings.split, settings.max_steps);
      const conversation = conversationText(prompt.messages);
      const scores = await Promise.all(
        steps.map(async (step, index) => {
          if (settings.check_arithmetic) {
            const checks = checkArithmetic(step);
            const score = arithmeticScore(checks);
            if (score !== undefined) {
              // The same values on every attempt: a retry's row is the one already stored.
              await db
                .insert(stepChecks)
                .values({ runId: context.runId, iteration, completionId: completion.id, stepIndex: index, stepCount: steps.length, checker: 'arithmetic', stepText: step, checks, score })
                .onConflictDoNothing();
              return score;
            }
          }
          const [principle] = pickDistinct(context.principles, `process:${completion.id}:${index}`, 1, context.constitution.defaults.principle_sampling);
          return scoreOne(db, llm, context, { prompt, conversation, completion, principle: principle!, iteration, step: { index, count: steps.length, text: stepText(steps, index) } });
        }),
      );
      return aggregateSteps(scores.filter((s): s is number => s !== undefined), settings.aggregate);
    }),
  );
}
