// What the `tenet export` subcommands share: options, writing JSON lines, one subcommand from a query and a record shape.
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { Command } from 'commander';
import { z } from 'zod';
import type { Database } from '../../../db/pool.js';
import type { Message } from '../../../db/queries/export.js';
import { withDatabase } from '../../database.js';
import { UserError } from '../../errors.js';
import { parseOptions } from '../../options.js';

const exportOptions = z.object({
  format: z.literal('jsonl', { error: 'expected jsonl' }).default('jsonl'),
  style: z.enum(['conversational', 'standard'], { error: 'expected conversational or standard' }).default('conversational'),
  output: z.string().min(1).optional(),
});

export function promptText(messages: Message[]): string {
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

export type Style = z.infer<typeof exportOptions>['style'];

/** One export subcommand: query a run's rows, turn each into a JSON line, write them out. */
export function exportSubcommand<Row>(spec: {
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
