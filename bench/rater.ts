// Rater throughput: M comparisons through the whole pipeline workflow (sample → label, both orders)
// against the scripted endpoint with a fixed latency, beside a bare promise-pool loop that makes the
// same HTTP calls at the same concurrency in the same run. Prints comparisons/s for both, decision
// rows written per second, the largest workflow history, and `ratio=<tenet/bare>`.
//   npm run bench -- rater            (BENCH_COMPARISONS=2000, BENCH_LATENCY_MS=50, BENCH_CONCURRENCY=64)
// Both sides are timed warm: whatever runs first in a process pays its one-time costs (JIT of the
// HTTP client and of the scripted server, keep-alive connections, the workflow sandbox, the database
// pool), and the bare loop, timed second, would get them free. So BENCH_WARMUP prompts (default 200,
// other texts, so nothing of the timed run is cached) go through the pipeline, and their calls
// through the bare loop, before anything is timed.
import { performance } from 'node:perf_hooks';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { count, eq, max, min, sql } from 'drizzle-orm';
import OpenAI from 'openai';
import { createCpuActivities } from '../activities/index.js';
import { startPipelineRun } from '../cli/start-run.js';
import { taskQueues } from '../core/queues.js';
import { runConfigSchema } from '../core/run-config.js';
import { applyMigrations } from '../db/migrate.js';
import { createDatabase } from '../db/pool.js';
import { raterDecisions } from '../db/schema.js';
import { createTestDatabase, defaultConstitution, temporalCli } from '../tests/helpers.js';
import { startScriptedEndpoint, type ChatBody } from '../worker/scripted-endpoint.js';
import { bundleWorkflows } from '../worker/worker.js';

const comparisons = Number(process.env.BENCH_COMPARISONS ?? 2_000);
const latencyMs = Number(process.env.BENCH_LATENCY_MS ?? 50);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 64);
const promptCount = Math.ceil(comparisons / 2); // n = 2 completions → one pair → two orders
const warmupPrompts = Number(process.env.BENCH_WARMUP ?? 200);

const env = await TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path: temporalCli } } });
const database = await createTestDatabase('tenet_bench_rater');
const endpoint = await startScriptedEndpoint({ latencyMs });
const db = createDatabase(database.url, { max: 40 });
try {
  await applyMigrations(database.url);
  const { constitution, source } = defaultConstitution();
  const model = { base_url: endpoint.url, model: 'scripted', max_concurrency: concurrency };
  const config = runConfigSchema.parse({
    endpoints: { policy: model, rater: model },
    sample: { n: 2, seed: 5 },
    critique: { enabled: false },
    // The run config's defaults unless overridden (BENCH_BATCH, BENCH_SHARD, BENCH_BATCHES_IN_FLIGHT).
    scale: {
      ...(process.env.BENCH_BATCH ? { batch_size: Number(process.env.BENCH_BATCH) } : {}),
      ...(process.env.BENCH_SHARD ? { shard_size: Number(process.env.BENCH_SHARD) } : {}),
      ...(process.env.BENCH_BATCHES_IN_FLIGHT ? { max_batches_in_flight: Number(process.env.BENCH_BATCHES_IN_FLIGHT) } : {}),
    },
  });
  const promptsOf = (count: number, text: string) =>
    Array.from({ length: count }, (_, i) => ({ key: `b${i}`, messages: [{ role: 'user' as const, content: `${text} ${i}` }], split: 'train' as const, metadata: {} }));
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

  let tenetSeconds = 0;
  let warmupCalls = 0;
  let timedFrom = 0;
  const started = await worker.runUntil(async () => {
    if (warmupPrompts > 0) {
      const warm = await startPipelineRun({ db, client: env.client, constitution, constitutionSource: source, config, prompts: promptsOf(warmupPrompts, 'Warm-up prompt'), workflowId: 'warm-up-rater' });
      await env.client.workflow.getHandle(warm.workflowId).result();
      const calls = endpoint.requests.map((r) => r.body);
      await bare(calls);
      warmupCalls = calls.length;
    }
    const prompts = promptsOf(promptCount, 'Benchmark prompt');
    timedFrom = endpoint.requests.length;
    const began = performance.now();
    const run = await startPipelineRun({ db, client: env.client, constitution: constitution, constitutionSource: source, config, prompts, workflowId: 'bench-rater' });
    // Nothing polls the run while it is timed: waiting on its result is all the client does.
    await env.client.workflow.getHandle(run.workflowId).result();
    tenetSeconds = (performance.now() - began) / 1000;
    return run;
  });
  // Decision rows and the time between the first and the last decision write (from the rows themselves).
  const [decisions] = await db
    .select({ n: count(), fromCache: count(sql`case when ${raterDecisions.fromCache} then 1 end`), first: min(raterDecisions.createdAt), last: max(raterDecisions.createdAt) })
    .from(raterDecisions)
    .where(eq(raterDecisions.runId, started.runId));
  const decisionCount = decisions?.n ?? 0;
  const decisionSeconds = decisions?.first && decisions.last ? (decisions.last.getTime() - decisions.first.getTime()) / 1000 : 0;

  // The largest history among the parent and its children.
  let largestHistory = 0;
  let largestId = '';
  for await (const info of env.client.workflow.list({ query: `WorkflowId STARTS_WITH "bench-rater"` })) {
    const length = (await env.client.workflow.getHandle(info.workflowId, info.runId).describe()).historyLength;
    if (length > largestHistory) [largestHistory, largestId] = [length, info.workflowId];
  }

  // The baseline: the timed run's request bodies, the same calls, through the bare promise pool.
  const bodies = endpoint.requests.slice(timedFrom).map((r) => r.body);
  const bareBegan = performance.now();
  await bare(bodies);
  const bareSeconds = (performance.now() - bareBegan) / 1000;

  const tenetRate = comparisons / tenetSeconds;
  const bareRate = comparisons / bareSeconds;
  console.log(`comparisons ${comparisons} (+ ${promptCount * 2} sampling calls), endpoint latency ${latencyMs} ms, concurrency ${concurrency}, HTTP calls ${bodies.length}, batch ${config.scale.batch_size} prompts, shard ${config.scale.shard_size}, ${config.scale.max_batches_in_flight} batches in flight per shard`);
  console.log(`warm-up, untimed: ${warmupPrompts} other prompts through the pipeline and their ${warmupCalls} calls through the bare loop`);
  console.log(`tenet: ${tenetSeconds.toFixed(2)} s for the whole run → ${tenetRate.toFixed(1)} comparisons/s`);
  console.log(`bare promise pool, same calls: ${bareSeconds.toFixed(2)} s → ${bareRate.toFixed(1)} comparisons/s`);
  console.log(
    `decision rows written: ${decisionCount} (${decisions?.fromCache ?? 0} from the request cache) → ${(decisionCount / tenetSeconds).toFixed(0)} rows/s over the run, ${decisionSeconds > 0 ? (decisionCount / decisionSeconds).toFixed(0) : '-'} rows/s from the first decision write to the last (${decisionSeconds.toFixed(2)} s)`,
  );
  console.log(`largest workflow history: ${largestHistory} events (${largestId})`);
  console.log(`ratio=${(tenetRate / bareRate).toFixed(2)}`);
} finally {
  await db.$client.end();
  await endpoint.close();
  await env.teardown();
  await database.drop();
}
