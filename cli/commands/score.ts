// `tenet score`: reward-model scores in Node (onnxruntime-node) for a JSONL file of prompt/completion rows.
import { once } from 'node:events';
import { createWriteStream, existsSync, readFileSync, statSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { Command } from 'commander';
import { z } from 'zod';
import { RewardModelError, RewardScorer, type ScoringRow } from '../../activities/reward-scorer.js';
import { readJsonlLines } from '../../core/prompts-file.js';
import { findModel } from '../../db/queries/models.js';
import { withDatabase } from '../database.js';
import { UserError } from '../errors.js';
import { parseOptions } from '../options.js';

const messageSchema = z.object({ role: z.string(), content: z.string() });
const scoreLine = z.object({
  prompt: z.union([z.string(), z.array(messageSchema).min(1)], { error: 'expected a string or a list of {role, content} messages' }),
  completion: z.union([z.string(), z.array(messageSchema).min(1)], { error: 'expected a string or a list ending in an assistant message' }),
});

/** Rows of a scoring file; every bad line is named (file:line:column: what was expected). */
export function parseScoringFile(text: string, file: string): ScoringRow[] {
  const problems: string[] = [];
  const rows = readJsonlLines(text, file, scoreLine, problems).map(({ data: { prompt, completion } }) => ({
    prompt: typeof prompt === 'string' ? [{ role: 'user', content: prompt }] : prompt,
    completion: typeof completion === 'string' ? completion : completion.at(-1)!.content,
  }));
  if (problems.length > 0) throw new UserError(problems.join('\n'));
  if (rows.length === 0) throw new UserError(`${file}: no rows`);
  return rows;
}

const scoreOptions = z.object({
  model: z.string().min(1, { error: 'expected a model id or an artifact folder' }),
  input: z.string().min(1),
  output: z.string().min(1).optional(),
  batchSize: z.coerce.number().int().min(1).max(4096).default(32),
});

export const scoreCommand = new Command('score')
  .description('score prompt/completion rows with a reward model in Node (onnxruntime-node); prints the rows with a score field')
  .requiredOption('--model <id|folder>', 'a reward model id from `tenet models list`, or its artifact folder')
  .requiredOption('--input <file.jsonl>', 'rows of {prompt, completion} (strings or message lists)')
  .option('--output <file>', 'write JSONL to a file instead of standard output')
  .option('--batch-size <n>', 'rows per forward pass', '32')
  .action(async (raw: unknown) => {
    const options = parseOptions(scoreOptions, raw);
    if (!existsSync(options.input)) throw new UserError(`${options.input}: no such file`);
    const rows = parseScoringFile(readFileSync(options.input, 'utf8'), options.input);
    let folder = options.model;
    if (/^\d+$/.test(options.model)) {
      const row = await withDatabase((db) => findModel(db, Number(options.model)));
      if (!row) throw new UserError(`model ${options.model} does not exist`);
      if (row.kind !== 'reward') throw new UserError(`model ${options.model} is a ${row.kind} model; score needs a reward model`);
      folder = row.artifactPath;
    } else if (!existsSync(folder) || !statSync(folder).isDirectory()) {
      throw new UserError(`--model ${folder}: neither a model id nor a folder`);
    }
    let scorer: RewardScorer;
    try {
      scorer = await RewardScorer.load(folder);
    } catch (error) {
      if (error instanceof RewardModelError) throw new UserError(error.message);
      throw error;
    }
    try {
      const scores = await scorer.score(rows, options.batchSize);
      const out: Writable = options.output ? createWriteStream(options.output) : process.stdout;
      for (const [i, row] of rows.entries()) {
        if (!out.write(`${JSON.stringify({ prompt: row.prompt, completion: row.completion, score: scores[i] })}\n`)) await once(out, 'drain');
      }
      if (options.output) {
        out.end();
        await finished(out);
      }
    } finally {
      await scorer.close();
    }
  });
