// `tenet audit list|show|stats|override|label`: read the rater's decisions, overrule them, label pairs.
import { userInfo } from 'node:os';
import { Command } from 'commander';
import { and, eq, inArray, sql } from 'drizzle-orm';
import { z } from 'zod';
import type { ArithmeticCheck } from '../../core/verifiers/arithmetic.js';
import { decisionDetail, listDecisions, overrideDecision, principleStats, ReviewRefused } from '../../db/queries/audit.js';
import { labelPair, LabelRefused } from '../../db/queries/labels.js';
import { preferenceDrops, raterDecisions, stepChecks } from '../../db/schema.js';
import { closeAll, openDatabase } from '../context.js';
import { UserError } from '../errors.js';
import { parseOptions, printJson } from '../options.js';

const id = (what: string) => z.coerce.number({ error: `expected a ${what} id (a whole number)` }).int({ error: `expected a ${what} id (a whole number)` }).positive({ error: `expected a ${what} id (a whole number)` });
const date = z.iso.datetime({ offset: true, local: true, error: 'expected a date such as 2026-11-27 or 2026-11-27T10:00:00Z' }).or(z.iso.date({ error: 'expected a date such as 2026-11-27' }));

const listOptions = z.object({
  run: id('run').optional(),
  principle: z.string().min(1).optional(),
  stage: z.string().min(1).optional(),
  model: z.string().min(1).optional(),
  disagree: z.boolean().default(false),
  lowConfidence: z.union([z.literal(true), z.coerce.number().gt(0.5).max(1)]).optional(),
  overridden: z.boolean().default(false),
  flagged: z.boolean().default(false),
  unparseable: z.boolean().default(false),
  since: date.optional(),
  until: date.optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(50),
  offset: z.coerce.number().int().min(0).default(0),
  json: z.boolean().default(false),
});

const listCommand = new Command('list')
  .description('rater decisions, filtered and paged')
  .option('--run <id>', 'only this run')
  .option('--principle <key>', 'only decisions under this principle id')
  .option('--stage <stage>', 'only decisions of this stage (label, score, critique, process, …)')
  .option('--model <name>', 'only this rater model')
  .option('--disagree', 'only pairs whose AB and BA answers disagree (position bias)')
  .option('--low-confidence [threshold]', 'only decisions whose confidence is below the threshold (default 0.6)')
  .option('--overridden', 'only decisions a human has overruled')
  .option('--flagged', 'only decisions whose untrusted text tried to steer the rater')
  .option('--unparseable', 'only answers that could not be read')
  .option('--since <date>', 'from this date or time')
  .option('--until <date>', 'before this date or time')
  .option('--limit <n>', 'page size', '50')
  .option('--offset <n>', 'skip this many', '0')
  .option('--json', 'print as JSON')
  .action(async (raw: unknown) => {
    const options = parseOptions(listOptions, raw);
    const db = await openDatabase();
    try {
      const lowConfidence = options.lowConfidence === true ? 0.6 : options.lowConfidence;
      const rows = await listDecisions(db, { ...options, lowConfidence });
      if (options.json) return printJson(rows);
      if (rows.length === 0) return console.log('no decisions match');
      console.log('   id   run  principle                        order choice  conf  model             flags');
      for (const r of rows) {
        const choice = r.human_prefer_a_b ? `${r.parsed_choice ?? '-'}→H` : (r.parsed_choice ?? '-');
        console.log(
          `${String(r.id).padStart(5)} ${String(r.run_id).padStart(5)}  ${r.principle_key.slice(0, 32).padEnd(32)} ${(r.order ?? '').padEnd(5)} ${choice.padEnd(7)} ${r.confidence === null ? '  -  ' : r.confidence.toFixed(2)}  ${r.rater_model.slice(0, 16).padEnd(16)}  ${r.flags.join(',')}`,
        );
      }
      if (rows.length === options.limit) console.log(`… more with --offset ${options.offset + options.limit}`);
    } finally {
      await closeAll();
    }
  });

/** A step's score in `audit show`: from a rater decision, or from a checker (step_checks). */
interface ProcessStep {
  completion: number;
  step: number;
  steps: number;
  score: number | null;
  decision?: number;
  principle?: string;
  checker?: string;
  checks?: ArithmeticCheck[];
}

const showCommand = new Command('show')
  .description('one decision side by side: prompt, both completions, principle, the prompt as sent, the raw answer, probabilities, overrides')
  .argument('<decision>', 'decision id')
  .option('--json', 'print as JSON')
  .action(async (ref: string, raw: unknown) => {
    const options = parseOptions(z.object({ json: z.boolean().default(false) }), raw);
    const decisionId = parseOptions(id('decision'), ref);
    const db = await openDatabase();
    try {
      const detail = await decisionDetail(db, decisionId);
      if (!detail) throw new UserError(`no decision ${decisionId}`);
      const { row, reviews } = detail;
      // Per-step (process) scores of the completions in this decision, from their own decisions.
      const completionIds = [row.completion_a_id, row.completion_b_id].filter((v): v is number => typeof v === 'number');
      const steps = await db
        .select({ id: raterDecisions.id, completionId: raterDecisions.completionAId, score: raterDecisions.score, probabilities: raterDecisions.probabilities, principleKey: raterDecisions.principleKey })
        .from(raterDecisions)
        .where(and(eq(raterDecisions.stage, 'process'), eq(raterDecisions.outcome, 'ok'), inArray(raterDecisions.completionAId, completionIds)))
        .orderBy(raterDecisions.completionAId, sql`(${raterDecisions.probabilities} ->> 'step')::int`);
      // Steps a checker judged instead of the rater (process.check_arithmetic).
      const checked = await db.select().from(stepChecks).where(inArray(stepChecks.completionId, completionIds));
      const processSteps: ProcessStep[] = [
        ...steps.map((s) => ({ decision: s.id, completion: s.completionId, step: (s.probabilities as { step: number }).step + 1, steps: (s.probabilities as { steps: number }).steps, score: s.score, principle: s.principleKey })),
        ...checked.map((c) => ({ completion: c.completionId, step: c.stepIndex + 1, steps: c.stepCount, score: c.score, checker: c.checker, checks: c.checks as ArithmeticCheck[] })),
      ].sort((a, b) => a.completion - b.completion || a.step - b.step);
      if (options.json) return printJson({ ...row, request: detail.request, raw_response: detail.rawResponse, probabilities: detail.probabilities, reviews, process_steps: processSteps });
      const rule = '─'.repeat(78);
      console.log(`decision ${decisionId}  run ${String(row.run_id)}  ${String(row.stage)}  order ${String(row.order)}  attempt ${String(row.attempt)}  ${String(row.outcome)}`);
      console.log(`principle ${String(row.principle_key)}: ${String(row.principle_text)}`);
      console.log(`rater ${String(row.rater_model)} at ${String(row.rater_endpoint)}  ${row.from_cache ? '(from cache)' : ''}  ${String(row.latency_ms)} ms  tokens ${String(row.prompt_tokens)}/${String(row.completion_tokens)}`);
      if ((row.flags as string[]).length > 0) console.log(`FLAGGED: ${(row.flags as string[]).join(', ')}`);
      console.log(rule);
      console.log('PROMPT');
      for (const m of row.prompt as { role: string; content: string }[]) console.log(`  ${m.role}: ${m.content}`);
      console.log(rule);
      console.log(`(A) completion ${String(row.completion_a_id)}\n${String(row.completion_a)}`);
      console.log(rule);
      console.log(`(B) completion ${String(row.completion_b_id)}\n${String(row.completion_b)}`);
      console.log(rule);
      console.log(`answer: ${String(row.parsed_choice)}   probabilities ${JSON.stringify(detail.probabilities)}`);
      console.log(`raw: ${JSON.stringify((detail.rawResponse as { choices?: unknown[] })?.choices?.[0] ?? detail.rawResponse)}`);
      console.log(rule);
      console.log('prompt as sent:');
      for (const m of (detail.request as { messages: { role: string; content: string }[] }).messages) console.log(`  [${m.role}] ${m.content.replace(/\n/g, '\n  ')}`);
      console.log(rule);
      for (const step of processSteps) {
        const judge = step.checker
          ? `${step.checker}: ${(step.checks ?? []).map((c) => `${c.left} = ${c.right} ${c.holds ? 'holds' : `fails (${c.leftValue} ≠ ${c.rightValue})`}`).join('; ')}`
          : `${step.principle}, decision ${step.decision}`;
        console.log(`process: completion ${step.completion} step ${step.step}/${step.steps}  score ${step.score?.toFixed(3) ?? '-'}  (${judge})`);
      }
      if (processSteps.length > 0) console.log(rule);
      if (reviews.length === 0) console.log('no human review');
      for (const r of reviews) {
        const preferred = r.prefer === 'tie' ? 'tie' : `completion ${r.prefer === 'A' ? r.completionAId : r.completionBId}`;
        console.log(`human review ${r.id} by ${r.reviewer} at ${r.createdAt.toISOString()}: prefers ${preferred} — ${r.reason}`);
      }
    } finally {
      await closeAll();
    }
  });

const reviewer = z.string().trim().min(1).default(process.env.USER ?? userInfo().username);
const overrideOptions = z.object({
  prefer: z.enum(['A', 'B', 'tie'], { error: 'expected A, B or tie (A and B as shown by `tenet audit show`)' }),
  reason: z.string().trim().min(1, { error: 'expected a reason' }),
  reviewer,
  key: z.string().min(1).optional(),
  json: z.boolean().default(false),
});

const overrideCommand = new Command('override')
  .description('overrule a decision; the AI row stays as it was, and the preferences training reads follow the human')
  .argument('<decision>', 'decision id')
  .requiredOption('--prefer <choice>', 'A | B | tie, as the decision showed them')
  .requiredOption('--reason <text>', 'why')
  .option('--reviewer <name>', 'who (default: $USER)')
  .option('--key <key>', 'idempotency key: the same key never writes twice (default: a new one)')
  .option('--json', 'print as JSON')
  .action(async (ref: string, raw: unknown) => {
    const options = parseOptions(overrideOptions, raw);
    const decisionId = parseOptions(id('decision'), ref);
    const db = await openDatabase();
    try {
      const reviewId = await overrideDecision(db, { decisionId, prefer: options.prefer, reason: options.reason, reviewer: options.reviewer, key: options.key }).catch((error: unknown) => {
        throw error instanceof ReviewRefused ? new UserError(error.message) : error;
      });
      if (options.json) printJson({ reviewId, decisionId, prefer: options.prefer });
      else console.log(`review ${reviewId}: decision ${decisionId} overridden (${options.prefer}) by ${options.reviewer}`);
    } finally {
      await closeAll();
    }
  });

const labelOptions = z.object({
  chosen: id('completion'),
  rejected: id('completion'),
  reason: z.string().trim().min(1).default('human label'),
  reviewer,
  key: z.string().min(1).optional(),
  json: z.boolean().default(false),
});

const labelCommand = new Command('label')
  .description('label a pair directly (a human picks the better of two completions of one prompt); it joins the same preference store')
  .requiredOption('--chosen <completion>', 'the better completion id')
  .requiredOption('--rejected <completion>', 'the worse completion id')
  .option('--reason <text>', 'why')
  .option('--reviewer <name>', 'who (default: $USER)')
  .option('--key <key>', 'idempotency key')
  .option('--json', 'print as JSON')
  .action(async (raw: unknown) => {
    const options = parseOptions(labelOptions, raw);
    if (options.chosen === options.rejected) throw new UserError('--chosen and --rejected must be two different completions');
    const db = await openDatabase();
    try {
      const reviewId = await labelPair(db, { chosen: options.chosen, rejected: options.rejected, reason: options.reason, reviewer: options.reviewer, key: options.key }).catch((error: unknown) => {
        throw error instanceof LabelRefused ? new UserError(error.message) : error;
      });
      if (options.json) printJson({ reviewId });
      else console.log(`review ${reviewId}: ${options.reviewer} prefers completion ${options.chosen} over ${options.rejected}`);
    } finally {
      await closeAll();
    }
  });

const statsCommand = new Command('stats')
  .description('per principle: label distribution, order agreement (position bias), mean confidence, tokens and cost')
  .argument('<run>', 'run id')
  .option('--json', 'print as JSON')
  .action(async (ref: string, raw: unknown) => {
    const options = parseOptions(z.object({ json: z.boolean().default(false) }), raw);
    const runId = parseOptions(id('run'), ref);
    const db = await openDatabase();
    try {
      const stats = await principleStats(db, runId);
      if (!stats) throw new UserError(`no run ${runId}`);
      if (options.json) return printJson(stats);
      if (stats.length === 0) return console.log(`run ${runId} has no label decisions yet`);
      const drops = await db
        .select({ reason: preferenceDrops.reason, pairs: sql<number>`count(*)::int` })
        .from(preferenceDrops)
        .where(eq(preferenceDrops.runId, runId))
        .groupBy(preferenceDrops.reason)
        .orderBy(preferenceDrops.reason);
      console.log('principle                         decisions    A    B  unparse  agree  conf   tokens in/out      cost  flagged');
      for (const s of stats) {
        console.log(
          `${s.principle.slice(0, 32).padEnd(32)} ${String(s.decisions).padStart(9)} ${String(s.chose_a).padStart(4)} ${String(s.chose_b).padStart(4)} ${String(s.unparseable).padStart(8)}  ${s.order_agreement === null ? '  -  ' : s.order_agreement.toFixed(2)}  ${s.mean_confidence === null ? '  -  ' : s.mean_confidence.toFixed(2)}  ${`${s.prompt_tokens}/${s.completion_tokens}`.padStart(14)}  ${s.cost === null ? '     -' : s.cost.toFixed(4).padStart(8)}  ${s.flagged}`,
        );
      }
      if (drops.length > 0) console.log(`pairs kept out of training: ${drops.map((d) => `${d.pairs} ${d.reason}`).join(', ')} (label.disagreement, label.margin)`);
    } finally {
      await closeAll();
    }
  });

export const auditCommand = new Command('audit')
  .description("audit the rater's decisions and overrule them")
  .addCommand(listCommand)
  .addCommand(showCommand)
  .addCommand(statsCommand)
  .addCommand(overrideCommand)
  .addCommand(labelCommand);
