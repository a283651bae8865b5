// Rater throughput: M comparisons through the whole pipeline workflow (sample → label, both orders)
// against the scripted endpoint with a fixed latency, beside a bare promise-pool loop that makes the
// same HTTP calls at the same concurrency in the same run. Prints comparisons/s for both, decision
// rows written per second, the largest workflow history, and `ratio=<tenet/bare>`.
//   npm run bench -- rater   (BENCH_COMPARISONS=2000 per round, BENCH_ROUNDS=3, BENCH_LATENCY_MS=50, BENCH_CONCURRENCY=64)
// How it is timed:
// - Both sides warm: whatever runs first in a process pays its one-time costs (JIT of the HTTP
//   client, keep-alive connections, the workflow sandbox, the database pool), and the bare loop,
//   timed second, would get them free. So BENCH_WARMUP prompts (default 1000, other texts, so nothing
//   of the timed runs is cached) go through the pipeline, and their calls through the bare loop,
//   before anything is timed. With 200, the first timed pipeline run was still ~20% slower than the
//   next two (its code paths not yet optimised by the JIT); with 1000 it is like them.
// - In turns: each round is one whole pipeline run and then the bare loop on that run's calls, so a
//   busy moment on a shared machine falls on both alike; the ratio is over all rounds.
// - The endpoint runs in a process of its own (bench/endpoint-process.ts), as a real one would: in
//   this process its fixed latency would grow with whatever else this process does.
//   BENCH_ENDPOINT=inprocess runs it here instead, for comparison.
import { performance } from 'node:perf_hooks';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { count, eq, max, min, sql } from 'drizzle-orm';
import OpenAI from 'openai';
import { createCpuActivities } from '../activities/index.js';
import { startPipelineRun } from '../cli/start-run.js';
import { taskQueues } from '../core/queues.js';
import { applyMigrations } from '../db/migrate.js';
import { createDatabase } from '../db/pool.js';
import { raterDecisions } from '../db/schema.js';
import { createTestDatabase, defaultConstitution, temporalCli } from '../tests/helpers.js';
import { startScriptedEndpoint, type ChatBody } from '../worker/scripted-endpoint.js';
import { benchPrompts, scriptedRunConfig, startEndpointProcess, type EndpointProcess } from './endpoint-client.js';
import { bundleWorkflows } from '../worker/worker.js';

const comparisons = Number(process.env.BENCH_COMPARISONS ?? 2_000);
const latencyMs = Number(process.env.BENCH_LATENCY_MS ?? 50);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 64);
const promptCount = Math.ceil(comparisons / 2); // n = 2 completions → one pair → two orders
const warmupPrompts = Number(process.env.BENCH_WARMUP ?? 1000);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const inProcess = process.env.BENCH_ENDPOINT === 'inprocess';

const env = await TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path: temporalCli } } });
const database = await createTestDatabase('tenet_bench_rater');
const endpoint: EndpointProcess =
  inProcess
    ? await startScriptedEndpoint({ latencyMs }).then((e) => ({ url: e.url, requests: (from = 0) => Promise.resolve(e.requests.slice(from).map((r) => r.body)), close: () => e.close() }))
    : await startEndpointProcess(latencyMs);
const db = createDatabase(database.url, { max: 40 });
try {
  await applyMigrations(database.url);
  const { constitution, source } = defaultConstitution();
  // The run config's defaults unless overridden (BENCH_BATCH, BENCH_SHARD, BENCH_BATCHES_IN_FLIGHT).
  const config = scriptedRunConfig(endpoint.url, concurrency, {
    ...(process.env.BENCH_BATCH ? { batch_size: Number(process.env.BENCH_BATCH) } : {}),
    ...(process.env.BENCH_SHARD ? { shard_size: Number(process.env.BENCH_SHARD) } : {}),
    ...(process.env.BENCH_BATCHES_IN_FLIGHT ? { max_batches_in_flight: Number(process.env.BENCH_BATCHES_IN_FLIGHT) } : {}),
  });
  const promptsOf = (count: number, text: string) => benchPrompts(count, text, 'b');
  const worker = await Worker.create({ connection: env.nativeConnection, taskQueue: taskQueues.cpu, workflowBundle: await bundleWorkflows(), activities: createCpuActivities({ db }), maxConcurrentActivityTaskExecutions: 64 });
  // The baseline: request bodies straight at the endpoint, through a promise pool of the same size.
  const client = new OpenAI({ baseURL: endpoint.url, apiKey: 'unused', maxRetries: 0 });
  const bare = async (bodies: ChatBody[]) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < bodies.length) {
          const body = bodies[next++]!;
          await client.chat.completions.create({ ...(body as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming), stream: false });
        }
      }),
    );
  };

  // Rounds take turns, a pipeline run and then the bare loop on that run's calls, so that a busy
  // moment on this shared machine falls on both sides alike.
  const tenetTimes: number[] = [];
  const bareTimes: number[] = [];
  let tenetBusy = 0;
  let bareBusy = 0;
  let warmupCalls = 0;
  let calls = 0;
  const runIds: number[] = [];
  await worker.runUntil(async () => {
    if (warmupPrompts > 0) {
      const warm = await startPipelineRun({ db, client: env.client, constitution, constitutionSource: source, config, prompts: promptsOf(warmupPrompts, 'Warm-up prompt'), workflowId: 'warm-up-rater' });
      await env.client.workflow.getHandle(warm.workflowId).result();
      const bodies = await endpoint.requests();
      await bare(bodies);
      warmupCalls = bodies.length;
    }
    // What the endpoint has received so far: the pipeline's calls and the bare loop's repeats of them.
    let received = 2 * warmupCalls;
    for (let round = 1; round <= rounds; round++) {
      const prompts = promptsOf(promptCount, `Benchmark round ${round} prompt`);
      const began = performance.now();
      const loop = performance.eventLoopUtilization();
      const run = await startPipelineRun({ db, client: env.client, constitution, constitutionSource: source, config, prompts, workflowId: `bench-rater-${round}` });
      // Nothing polls the run while it is timed: waiting on its result is all the client does.
      await env.client.workflow.getHandle(run.workflowId).result();
      tenetTimes.push((performance.now() - began) / 1000);
      tenetBusy += performance.eventLoopUtilization(loop).active / 1000;
      runIds.push(run.runId);

      // The baseline: this run's request bodies, the same calls, through the bare promise pool.
      const bodies = await endpoint.requests(received);
      received += 2 * bodies.length;
      calls += bodies.length;
      const bareBegan = performance.now();
      const bareLoop = performance.eventLoopUtilization();
      await bare(bodies);
      bareTimes.push((performance.now() - bareBegan) / 1000);
      bareBusy += performance.eventLoopUtilization(bareLoop).active / 1000;
    }
  });
  // Decision rows and the time between the first and the last decision write of each run (from the rows themselves).
  let decisionCount = 0;
  let fromCache = 0;
  let decisionSeconds = 0;
  for (const runId of runIds) {
    const [decisions] = await db
      .select({ n: count(), fromCache: count(sql`case when ${raterDecisions.fromCache} then 1 end`), first: min(raterDecisions.createdAt), last: max(raterDecisions.createdAt) })
      .from(raterDecisions)
      .where(eq(raterDecisions.runId, runId));
    decisionCount += decisions?.n ?? 0;
    fromCache += decisions?.fromCache ?? 0;
    decisionSeconds += decisions?.first && decisions.last ? (decisions.last.getTime() - decisions.first.getTime()) / 1000 : 0;
  }

  // The largest history among the parents and their children.
  let largestHistory = 0;
  let largestId = '';
  for await (const info of env.client.workflow.list({ query: `WorkflowId STARTS_WITH "bench-rater"` })) {
    const length = (await env.client.workflow.getHandle(info.workflowId, info.runId).describe()).historyLength;
    if (length > largestHistory) [largestHistory, largestId] = [length, info.workflowId];
  }

  const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
  const tenetSeconds = sum(tenetTimes);
  const bareSeconds = sum(bareTimes);
  const total = comparisons * rounds;
  const tenetRate = total / tenetSeconds;
  const bareRate = total / bareSeconds;
  console.log(
    `${rounds} rounds of ${comparisons} comparisons (+ ${promptCount * 2} sampling calls each), endpoint latency ${latencyMs} ms in ${inProcess ? 'this process' : 'its own process'}, concurrency ${concurrency}, HTTP calls ${calls}, batch ${config.scale.batch_size} prompts, shard ${config.scale.shard_size}, ${config.scale.max_batches_in_flight} batches in flight per shard`,
  );
  console.log(`warm-up, untimed: ${warmupPrompts} other prompts through the pipeline and their ${warmupCalls} calls through the bare loop`);
  console.log(`per round, tenet/bare seconds: ${tenetTimes.map((t, i) => `${t.toFixed(2)}/${bareTimes[i]!.toFixed(2)}`).join(', ')}`);
  console.log(`tenet: ${tenetSeconds.toFixed(2)} s for ${rounds} whole runs → ${tenetRate.toFixed(1)} comparisons/s`);
  console.log(`bare promise pool, same calls: ${bareSeconds.toFixed(2)} s → ${bareRate.toFixed(1)} comparisons/s`);
  console.log(`this process's main thread busy: tenet ${tenetBusy.toFixed(2)} s, bare ${bareBusy.toFixed(2)} s`);
  console.log(
    `decision rows written: ${decisionCount} (${fromCache} from the request cache) → ${(decisionCount / tenetSeconds).toFixed(0)} rows/s over the runs, ${decisionSeconds > 0 ? (decisionCount / decisionSeconds).toFixed(0) : '-'} rows/s from the first decision write to the last`,
  );
  console.log(`largest workflow history: ${largestHistory} events (${largestId})`);
  console.log(`ratio=${(tenetRate / bareRate).toFixed(2)}`);
} finally {
  await db.$client.end();
  await endpoint.close();
  await env.teardown();
  await database.drop();
}
