// Reward scoring in Node: the reward model the trainer exported to ONNX, run by onnxruntime-node,
// its input made by Hugging Face's own tokenizer library (the `tokenizers` binding), from the
// tokenizer.json the trainer saved with its truncation and padding settings inside. The text of a
// (prompt, completion) follows reward-config.json, the trainer's contract for this artifact.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { Tokenizer, type PaddingOptions } from 'tokenizers';
import { z } from 'zod';

export const rewardConfigSchema = z.object({
  format: z.literal('tenet-reward/1', { error: 'expected format tenet-reward/1 (an artifact of `trainer reward-model`)' }),
  inputs: z.array(z.enum(['input_ids', 'attention_mask', 'token_type_ids'])).min(1),
  output: z.string().min(1),
  max_length: z.number().int().positive(),
  /** Encoders take (prompt, completion) as a text pair; causal LMs one text: prompt + separator + completion + suffix. */
  pair: z.boolean(),
  separator: z.string().default(''),
  suffix: z.string().default(''),
  prompt_format: z.literal('plain'),
  base_model: z.string().optional(),
});
export type RewardConfig = z.infer<typeof rewardConfigSchema>;

export interface ScoringRow {
  prompt: { role: string; content: string }[];
  completion: string;
}

export class RewardModelError extends Error {
  override name = 'RewardModelError';
}

/** The prompt as the reward model saw it in training: `role: content` lines. */
export function plainPrompt(messages: ScoringRow['prompt']): string {
  return messages.map((m) => `${m.role}: ${m.content}`).join('\n');
}

const paddingSchema = z.object({ pad_id: z.number().int(), pad_type_id: z.number().int().default(0), pad_token: z.string(), direction: z.enum(['Right', 'Left']).default('Right') });

/** The padding the trainer saved in tokenizer.json; a tokenizer without it cannot make batches. */
function paddingOf(file: string): PaddingOptions {
  const parsed = paddingSchema.safeParse((JSON.parse(readFileSync(file, 'utf8')) as { padding?: unknown }).padding);
  if (!parsed.success) throw new RewardModelError(`${file}: no padding settings; re-export the reward model with \`trainer reward-model\``);
  const { pad_id, pad_type_id, pad_token, direction } = parsed.data;
  return { padId: pad_id, padTypeId: pad_type_id, padToken: pad_token, direction: direction === 'Left' ? 'left' : 'right' };
}

export class RewardScorer {
  private constructor(
    readonly dir: string,
    readonly config: RewardConfig,
    private readonly tokenizer: Tokenizer,
    private readonly session: ort.InferenceSession,
    private readonly padding: PaddingOptions,
  ) {}

  /** Loads an artifact folder: reward.onnx, tokenizer.json and reward-config.json. */
  static async load(dir: string, options: { threads?: number } = {}): Promise<RewardScorer> {
    const files = ['reward.onnx', 'tokenizer.json', 'reward-config.json'].map((name) => path.join(dir, name));
    const missing = files.filter((file) => !existsSync(file));
    if (missing.length > 0) throw new RewardModelError(`${dir}: not a reward-model artifact (missing ${missing.map((f) => path.basename(f)).join(', ')})`);
    const parsed = rewardConfigSchema.safeParse(JSON.parse(readFileSync(files[2]!, 'utf8')));
    if (!parsed.success) throw new RewardModelError(`${files[2]}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    const tokenizer = Tokenizer.fromFile(files[1]!);
    const padding = paddingOf(files[1]!);
    const session = await ort.InferenceSession.create(files[0]!, {
      graphOptimizationLevel: 'all',
      ...(options.threads ? { intraOpNumThreads: options.threads, interOpNumThreads: 1 } : {}),
    });
    for (const name of parsed.data.inputs) {
      if (!session.inputNames.includes(name)) throw new RewardModelError(`${files[0]}: the graph has no input ${name} (it has ${session.inputNames.join(', ')})`);
    }
    return new RewardScorer(dir, parsed.data, tokenizer, session, padding);
  }

  /** Scores rows in batches; one number per row, in order. */
  async score(rows: ScoringRow[], batchSize = 32): Promise<number[]> {
    const scores: number[] = [];
    for (let start = 0; start < rows.length; start += batchSize) {
      scores.push(...(await this.scoreBatch(rows.slice(start, start + batchSize))));
    }
    return scores;
  }

  private async scoreBatch(rows: ScoringRow[]): Promise<number[]> {
    if (rows.length === 0) return [];
    const { pair, separator, suffix } = this.config;
    // The tokenizer.json carries truncation (max_length) and padding, exactly as in training.
    // Pairs are encoded one by one (the binding's batch call takes single texts) and padded here.
    const encodings = pair
      ? await Promise.all(rows.map((row) => this.tokenizer.encode(plainPrompt(row.prompt), row.completion)))
      : await this.tokenizer.encodeBatch(rows.map((row) => plainPrompt(row.prompt) + separator + row.completion + suffix));
    const width = Math.max(...encodings.map((e) => e.getLength()));
    if (pair) for (const encoding of encodings) if (encoding.getLength() < width) encoding.pad(width, this.padding);
    const feeds: Record<string, ort.Tensor> = {};
    const build = (pick: (e: (typeof encodings)[number]) => number[]) => {
      const data = new BigInt64Array(rows.length * width);
      encodings.forEach((encoding, i) => {
        const values = pick(encoding);
        if (values.length !== width) throw new RewardModelError(`${this.dir}: tokenizer.json has no batch padding; re-export the reward model`);
        for (let j = 0; j < width; j++) data[i * width + j] = BigInt(values[j]!);
      });
      return new ort.Tensor('int64', data, [rows.length, width]);
    };
    for (const name of this.config.inputs) {
      feeds[name] = build(name === 'input_ids' ? (e) => e.getIds() : name === 'attention_mask' ? (e) => e.getAttentionMask() : (e) => e.getTypeIds());
    }
    const result = await this.session.run(feeds);
    const output = result[this.config.output];
    if (!output) throw new RewardModelError(`${this.dir}: the graph has no output ${this.config.output}`);
    return Array.from(output.data as Float32Array, Number);
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}
