// `tenet audit show`: one decision side by side, with its process steps and human reviews.
import { Command } from 'commander';
import { decisionDetail, processSteps } from '../../../db/queries/audit.js';
import { withDatabase } from '../../database.js';
import { UserError } from '../../errors.js';
import { parseOptions, printJson } from '../../options.js';
import { id, jsonOnly } from './options.js';

export const showCommand = new Command('show')
  .description('one decision side by side: prompt, both completions, principle, the prompt as sent, the raw answer, probabilities, overrides')
  .argument('<decision>', 'decision id')
  .option('--json', 'print as JSON')
  .action(async (ref: string, raw: unknown) => {
    const options = parseOptions(jsonOnly, raw);
    const decisionId = parseOptions(id('decision'), ref);
    const { detail, steps } = await withDatabase(async (db) => {
      const detail = await decisionDetail(db, decisionId);
      if (!detail) throw new UserError(`no decision ${decisionId}`);
      const completionIds = [detail.row.completion_a_id, detail.row.completion_b_id].filter((v): v is number => typeof v === 'number');
      return { detail, steps: await processSteps(db, completionIds) };
    });
    const { row, reviews } = detail;
    if (options.json) return printJson({ ...row, request: detail.request, raw_response: detail.rawResponse, probabilities: detail.probabilities, reviews, process_steps: steps });
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
    for (const step of steps) {
      const judge = step.checker
        ? `${step.checker}: ${(step.checks ?? []).map((c) => `${c.left} = ${c.right} ${c.holds ? 'holds' : `fails (${c.leftValue} ≠ ${c.rightValue})`}`).join('; ')}`
        : `${step.principle}, decision ${step.decision}`;
      console.log(`process: completion ${step.completion} step ${step.step}/${step.steps}  score ${step.score?.toFixed(3) ?? '-'}  (${judge})`);
    }
    if (steps.length > 0) console.log(rule);
    if (reviews.length === 0) console.log('no human review');
    for (const r of reviews) {
      const preferred = r.prefer === 'tie' ? 'tie' : `completion ${r.prefer === 'A' ? r.completionAId : r.completionBId}`;
      console.log(`human review ${r.id} by ${r.reviewer} at ${r.createdAt.toISOString()}: prefers ${preferred} — ${r.reason}`);
    }
  });
