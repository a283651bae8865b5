// `tenet export preferences|sft`: JSONL in the prompt/chosen/rejected shape that TRL and OpenRLHF read.
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { Command } from 'commander';
import { z } from 'zod';
import type { Database } from '../../db/pool.js';
import { finalRevisions, preferencePairs, type Message } from '../../db/queries/export.js';
import { withDatabase } from '../database.js';
import { UserError } from '../errors.js';
import { parseOptions } from '../options.js';

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
function exportSubcommand<Row>(spec: {
  name: string;
  description: string;
  /** What the rows are, for messages ("preferences", "revisions"). */
  what: string;
  query: (db: Database, runId: number) => Promise<Row[]>;
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
      const rows = await withDatabase((db) => spec.query(db, id));
      if (rows.length === 0) throw new UserError(`run ${id} has no ${spec.what} (yet)`);
      const count = await writeLines(
        options.output,
        rows.map((row) => JSON.stringify(spec.record(row, options.style))),
      );
      if (options.output) console.error(`wrote ${count} ${spec.what} to ${options.output}`);
    });
}

export const exportCommand = new Command('export')
  .description('export training data from a run')
  .addCommand(
    exportSubcommand({
      name: 'preferences',
      description: 'preference pairs (human overrides win; human ties are left out) as JSONL: prompt, chosen, rejected, soft_label, decision_ids',
      what: 'preferences',
      query: (db, id) => preferencePairs(db, id),
      record: (row, style) => ({
        prompt: style === 'conversational' ? row.prompt : promptText(row.prompt),
        chosen: style === 'conversational' ? [{ role: 'assistant', content: row.chosen }] : row.chosen,
        rejected: style === 'conversational' ? [{ role: 'assistant', content: row.rejected }] : row.rejected,
        soft_label: row.softLabel,
        source: row.source,
        decision_ids: row.decisionIds,
        review_id: row.reviewId,
        prompt_id: row.promptId,
        chosen_id: row.chosenId,
        rejected_id: row.rejectedId,
      }),
    }),
  )
  .addCommand(
    exportSubcommand({
      name: 'sft',
      description: 'the final revision of each critique→revision chain as JSONL (messages, or prompt/completion with --style standard)',
      what: 'revisions',
      query: (db, id) => finalRevisions(db, id),
      record: (row, style) => {
        const provenance = { source_completion_id: row.sourceCompletionId, rounds: row.rounds };
        return style === 'conversational'
          ? { messages: [...row.prompt, { role: 'assistant', content: row.revision }], ...provenance }
          : { prompt: promptText(row.prompt), completion: row.revision, ...provenance };
      },
    }),
  );
