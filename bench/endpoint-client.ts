// Starts bench/endpoint-process.ts and talks to it: its URL, and the request bodies it received; and
// the run config and prompts the pipeline benchmarks (rater, workers) run against it.
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { PromptRecord } from '../core/prompts-file.js';
import { runConfigSchema, type RunConfig } from '../core/run-config.js';
import type { ChatBody } from '../worker/scripted-endpoint.js';

export interface EndpointProcess {
  url: string;
  /** The bodies received so far, from index `from` on. */
  requests(from?: number): Promise<ChatBody[]>;
  close(): Promise<void>;
}

export async function startEndpointProcess(latencyMs: number): Promise<EndpointProcess> {
  const child = fork(fileURLToPath(new URL('./endpoint-process.ts', import.meta.url)), [], { env: { ...process.env, BENCH_LATENCY_MS: String(latencyMs) }, stdio: 'inherit' });
  const exited = once(child, 'exit');
  const ready = await Promise.race([
    once(child, 'message') as Promise<[{ type: 'ready'; url: string }]>,
    exited.then(([code]) => Promise.reject(new Error(`the benchmark endpoint exited with ${String(code)} before it listened`))),
  ]);
  return {
    url: ready[0].url,
    async requests(from = 0) {
      const reply = once(child, 'message') as Promise<[{ type: 'requests'; bodies: ChatBody[] }]>;
      child.send({ type: 'requests', from });
      return (await reply)[0].bodies;
    },
    async close() {
      if (child.exitCode !== null) return;
      child.disconnect();
      await exited;
    },
  };
}

/** The run config both pipeline benchmarks use: the scripted model as policy and rater, two samples, no critique. */
export function scriptedRunConfig(url: string, maxConcurrency: number, scale: Record<string, number>): RunConfig {
  const model = { base_url: url, model: 'scripted', max_concurrency: maxConcurrency };
  return runConfigSchema.parse({ endpoints: { policy: model, rater: model }, sample: { n: 2, seed: 5 }, critique: { enabled: false }, scale });
}

/** `count` train prompts `${text} i`, keyed `${prefix}i`. */
export function benchPrompts(count: number, text: string, prefix: string): PromptRecord[] {
  return Array.from({ length: count }, (_, i) => ({ key: `${prefix}${i}`, messages: [{ role: 'user' as const, content: `${text} ${i}` }], split: 'train' as const, metadata: {} }));
}
