// `tenet export preferences|sft`: JSONL in the prompt/chosen/rejected shape that TRL and OpenRLHF read.
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { Command } from 'commander';
import { sql, type SQL } from 'drizzle-orm';
import { z } from 'zod';
import { closeAll, openDatabase } from '../context.js';
import { UserError } from '../errors.js';
import { parseOptions } from '../options.js';

type Message = { role: string; content: string };

const exportOptions = z.object({
  format: z.literal('jsonl', { error: 'expected jsonl' }).default('jsonl'),
  style: z.enum(['conversational', 'standard'], { error: 'expected conversational or standard' }).default('conversational'),
  output: z.string().min(1).optional(),
});

function promptText(messages: Message[]): string {
  return messages.length === 1 ? messages[0]!.content : messages.map((m) => `${m.role}: ${m.content}`).join('\n\n');
}

async function writeLines(output: string | undefined, lines: AsyncIterable<string> | Iterable<string>): Promise<number> {
  const out: Writable = output ? createWriteStream(output) : process.stdout;
  let count = 0;
  for await (const line of lines) {
    if (!out.write(`${line}\n`)) await once(out, 'drain');
    count++;
  }
  if (output) {
    out.end();
    await finished(out);
  }
  return count;
}

const runId = z.coerce.number({ error: 'expected a run id (a whole number)' }).int().positive({ error: 'expected a run id (a whole number)' });

type Style = z.infer<typeof exportOptions>['style'];

/** One export subcommand: query a run's rows, turn each into a JSON line, write them out. */
function exportSubcommand<Row extends Record<string, unknown>>(spec: {
  name: string;
  description: string;
  /** What the rows are, for messages ("preferences", "revisions"). */
  what: string;
  query: (runId: number) => SQL;
  record: (row: Row, style: Style) => unknown;
}): Command {
  return new Command(spec.name)
    .description(spec.description)
    .argument('<run>', 'run id')
    .option('--format <format>', 'jsonl', 'jsonl')
    .option('--style <style>', 'conversational (message lists, as TRL reads) or standard (plain texts)', 'conversational')
    .option('--output <file>', 'write to a file instead of standard output')
    .action(async (ref: string, raw: unknown) => {
      const options = parseOptions(exportOptions, raw);
      const id = parseOptions(runId, ref);
      const db = await openDatabase();
      try {
        const rows = (await db.execute(spec.query(id))).rows as Row[];
        if (rows.length === 0) throw new UserError(`run ${id} has no ${spec.what} (yet)`);
        const count = await writeLines(
          options.output,
          rows.map((row) => JSON.stringify(spec.record(row, options.style))),
        );
        if (options.output) console.error(`wrote ${count} ${spec.what} to ${options.output}`);
      } finally {
        await closeAll();
      }
    });
}

interface PreferenceRow extends Record<string, unknown> {
  prompt: Message[];
  chosen: string;
  rejected: string;
  soft_label: number;
  decision_ids: number[];
  source: string;
  prompt_id: string;
  chosen_id: string;
  rejected_id: string;
  review_id: string | null;
}

interface RevisionRow extends Record<string, unknown> {
  prompt: Message[];
  revision: string;
  source_completion_id: string;
  rounds: number;
}

export const exportCommand = new Command('export')
  .description('export training data from a run')
  .addCommand(
    exportSubcommand<PreferenceRow>({
      name: 'preferences',
      description: 'preference pairs (human overrides win; human ties are left out) as JSONL: prompt, chosen, rejected, soft_label, decision_ids',
      what: 'preferences',
      query: (id) => sql`
        select p.messages as prompt, c.text as chosen, r.text as rejected, e.soft_label, e.decision_ids, e.source, e.prompt_id, e.chosen_id, e.rejected_id, e.review_id
        from effective_preferences e
        join prompts p on p.id = e.prompt_id
        join completions c on c.id = e.chosen_id
        join completions r on r.id = e.rejected_id
        where e.run_id = ${id}
        order by e.prompt_id, e.chosen_id, e.rejected_id`,
      record: (row, style) => ({
        prompt: style === 'conversational' ? row.prompt : promptText(row.prompt),
        chosen: style === 'conversational' ? [{ role: 'assistant', content: row.chosen }] : row.chosen,
        rejected: style === 'conversational' ? [{ role: 'assistant', content: row.rejected }] : row.rejected,
        soft_label: row.soft_label,
        source: row.source,
        decision_ids: row.decision_ids,
        review_id: row.review_id === null ? null : Number(row.review_id),
        prompt_id: Number(row.prompt_id),
        chosen_id: Number(row.chosen_id),
        rejected_id: Number(row.rejected_id),
      }),
    }),
  )
  .addCommand(
    exportSubcommand<RevisionRow>({
      name: 'sft',
      description: 'the final revision of each critique→revision chain as JSONL (messages, or prompt/completion with --style standard)',
      what: 'revisions',
      query: (id) => sql`
        select distinct on (k.source_completion_id) p.messages as prompt, c.text as revision, k.source_completion_id, k.round + 1 as rounds
        from critiques k
        join completions c on c.id = k.revision_completion_id
        join prompts p on p.id = c.prompt_id
        where k.run_id = ${id}
        order by k.source_completion_id, k.round desc`,
      record: (row, style) => {
        const provenance = { source_completion_id: Number(row.source_completion_id), rounds: Number(row.rounds) };
        return style === 'conversational'
          ? { messages: [...row.prompt, { role: 'assistant', content: row.revision }], ...provenance }
          : { prompt: promptText(row.prompt), completion: row.revision, ...provenance };
      },
    }),
  );
