// `trainer serve` as a child process: the local OpenAI-compatible endpoint of the demo and the
// end-to-end tests. Started with port 0; its `ready` progress line says where it listens.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { z } from 'zod';

const readySchema = z.object({ event: z.literal('ready'), url: z.string(), port: z.number(), models: z.array(z.string()) });
/** The trainer's one-line user error (a model that does not exist or does not load, a bad flag). */
const errorSchema = z.object({ event: z.literal('error'), message: z.string() });

export interface ServeProcess {
  /** OpenAI base URL, e.g. http://127.0.0.1:41234/v1 */
  url: string;
  /** The base model's served name. */
  model: string;
  pid: number;
  stop(): Promise<void>;
}

export class ServeStartError extends Error {
  override name = 'ServeStartError';
  /** True when the message is the trainer's own one-line error about its input (e.g. the model). */
  readonly userError: boolean;
  constructor(message: string, options: { userError?: boolean } = {}) {
    super(message);
    this.userError = options.userError ?? false;
  }
}

export async function startServe(options: { python: string; model: string; servedName?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv }): Promise<ServeProcess> {
  const servedName = options.servedName ?? 'policy';
  const child: ChildProcess = spawn(options.python, ['-m', 'tenet_trainer', 'serve', '--model', options.model, '--port', '0', '--served-model-name', servedName], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PYTHONUNBUFFERED: '1', ...options.env },
  });
  // Never outlive this process: a command that exits on a signal (process.exit) takes its server along.
  const onExit = () => child.kill('SIGTERM');
  process.once('exit', onExit);
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => {
    stderr.push(line);
    if (stderr.length > 20) stderr.shift();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const ready = await new Promise<z.infer<typeof readySchema>>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new ServeStartError(`trainer serve did not get ready in ${(options.timeoutMs ?? 300_000) / 1000} s:\n${stderr.join('\n')}`));
    }, options.timeoutMs ?? 300_000);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new ServeStartError(`trainer serve could not start (${options.python}): ${error.message}`));
    });
    // 'close' (not 'exit'): its stdout is read to the end first, so a last error line is not missed.
    child.once('close', (code) => {
      clearTimeout(timer);
      reject(new ServeStartError(`trainer serve exited with code ${code} before it was ready:\n${stderr.join('\n')}`));
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.startsWith('{')) return;
      const event: unknown = JSON.parse(line);
      const parsed = readySchema.safeParse(event);
      const failed = errorSchema.safeParse(event);
      if (parsed.success || failed.success) clearTimeout(timer);
      if (parsed.success) resolve(parsed.data);
      if (failed.success) reject(new ServeStartError(failed.data.message, { userError: true }));
    });
  });
  return {
    url: ready.url,
    model: servedName,
    pid: child.pid!,
    async stop() {
      process.off('exit', onExit);
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
