// `tenet models list|show` (the registry, with lineage) and `tenet score` (reward-model scores in
// Node, onnxruntime-node, for a JSONL file of prompt/completion rows).
import { once } from 'node:events';
import { createWriteStream, existsSync, readFileSync, statSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { Command } from 'commander';
import { and, desc, eq, type SQL } from 'drizzle-orm';
import { z } from 'zod';
import { RewardModelError, RewardScorer, type ScoringRow } from '../../activities/reward-scorer.js';
import { models } from '../../db/schema.js';
import { closeAll, openDatabase } from '../context.js';
import { UserError } from '../errors.js';
import { parseOptions, printJson } from '../options.js';

const id = (what: string) => z.coerce.number({ error: `expected ${what} (a whole number)` }).int().positive({ error: `expected ${what} (a whole number)` });

const listOptions = z.object({ run: id('a run id').optional(), kind: z.enum(['base', 'sft', 'reward', 'policy'], { error: 'expected base, sft, reward or policy' }).optional(), json: z.boolean().default(false) });

const list = new Command('list')
  .description('models the trainer made, newest first')
  .option('--run <id>', 'only this run')
  .option('--kind <kind>', 'base | sft | reward | policy')
  .option('--json', 'print JSON')
  .action(async (raw: unknown) => {
    const options = parseOptions(listOptions, raw);
    const db = await openDatabase();
    try {
      const filters: SQL[] = [];
      if (options.run) filters.push(eq(models.runId, options.run));
      if (options.kind) filters.push(eq(models.kind, options.kind));
      const rows = await db.select().from(models).where(and(...filters)).orderBy(desc(models.id)).limit(500);
      if (options.json) return printJson(rows);
      if (rows.length === 0) return console.log('no models');
      for (const row of rows) {
        const metrics = Object.entries(row.metrics as Record<string, unknown>)
          .filter(([, v]) => typeof v === 'number')
          .slice(0, 4)
          .map(([k, v]) => `${k}=${(v as number).toFixed(4)}`)
          .join(' ');
        console.log(`${String(row.id).padStart(5)}  ${row.kind.padEnd(7)} ${row.modelKey.padEnd(28)} parent=${row.parentId ?? '-'}  ${metrics}`);
      }
    } finally {
      await closeAll();
    }
  });

const show = new Command('show')
  .description('one model: artifact, lineage (parent, constitution, preference snapshot), hyper-parameters, metrics')
  .argument('<id>', 'model id')
  .action(async (ref: string) => {
    const modelId = parseOptions(id('a model id'), ref);
    const db = await openDatabase();
    try {
      const [row] = await db.select().from(models).where(eq(models.id, modelId));
      if (!row) throw new UserError(`model ${modelId} does not exist`);
      printJson(row);
    } finally {
      await closeAll();
    }
  });

export const modelsCommand = new Command('models').description('the model registry').addCommand(list).addCommand(show);

const messageSchema = z.object({ role: z.string(), content: z.string() });
const scoreLine = z.object({
  prompt: z.union([z.string(), z.array(messageSchema).min(1)], { error: 'expected a string or a list of {role, content} messages' }),
  completion: z.union([z.string(), z.array(messageSchema).min(1)], { error: 'expected a string or a list ending in an assistant message' }),
});

/** Rows of a scoring file; a bad line names the line. */
export function parseScoringFile(text: string, file: string): ScoringRow[] {
  const rows: ScoringRow[] = [];
  text.split('\n').forEach((line, index) => {
    if (line.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new UserError(`${file}:${index + 1}: not valid JSON`);
    }
    const parsed = scoreLine.safeParse(value);
    if (!parsed.success) throw new UserError(`${file}:${index + 1}: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'line'}: ${i.message}`).join('; ')}`);
    const { prompt, completion } = parsed.data;
    rows.push({
      prompt: typeof prompt === 'string' ? [{ role: 'user', content: prompt }] : prompt,
      completion: typeof completion === 'string' ? completion : completion.at(-1)!.content,
    });
  });
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
      const db = await openDatabase();
      try {
        const [row] = await db.select({ kind: models.kind, path: models.artifactPath }).from(models).where(eq(models.id, Number(options.model)));
        if (!row) throw new UserError(`model ${options.model} does not exist`);
        if (row.kind !== 'reward') throw new UserError(`model ${options.model} is a ${row.kind} model; score needs a reward model`);
        folder = row.path;
      } finally {
        await closeAll();
      }
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
