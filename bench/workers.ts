// Worker processes: the rater pipeline (sample → label, both orders) against a latency-bound endpoint
// with one `tenet worker --queue cpu` process and with three, in the same run. Prints each side's
// calls/s and comparisons/s, how busy each worker process's CPU was, and `ratio=<throughput with 3 /
// with 1>`.
//   npm run bench -- workers   (BENCH_PROMPTS=240 per run, BENCH_ROUNDS=2, BENCH_LATENCY_MS=200, BENCH_CONCURRENCY=8)
// What limits throughput, and why three processes can help:
// - The endpoint (bench/endpoint-process.ts, a process of its own) answers every call after a fixed
//   BENCH_LATENCY_MS and never queues: it stands for a model server with far more capacity than the
//   workers use, so the endpoint "allows" a ratio of 3 here; against a server that is already
//   saturated, more workers cannot help and the ratio would be ~1.
// - Each worker process holds its own queue of calls per endpoint (activities/llm.ts), of the run
//   config's max_concurrency (BENCH_CONCURRENCY): one worker has at most 8 calls in flight, so at
//   200 ms it tops out at 8 / 0.2 s = 40 calls/s; three have 24 in flight, 120 calls/s. The figures
//   are chosen so that one worker is bound by that limit and not by its CPU (the benchmark prints the
//   share of the run each worker's process was on a CPU: well under 1 means latency-bound). With a
//   high BENCH_CONCURRENCY or a short latency one worker becomes CPU-bound, and on this 2-core machine
//   three would then share the same two cores.
// - The run keeps far more calls waiting than 3 × BENCH_CONCURRENCY: batches of 8 prompts, shards of
//   64, four batches in flight per shard; and the batches reach every worker: stage batches are not
//   dispatched eagerly to the worker whose workflow task scheduled them (workflows/presets.ts). With
//   eager dispatch they followed the shard workflows, four shards on three workers, and one run here
//   split its 60 batch activities 30/27/3 (ratio 1.44); without, 41/40/39 over two runs. The
//   benchmark prints that split.
// How it is timed:
// - One Temporal dev server with two namespaces; one worker process polls `bench-one`, three others
//   poll `bench-three`, all four started before anything is timed and kept running (none restarted,
//   so none is timed cold). The same Postgres database and endpoint serve both.
// - Warm: BENCH_WARMUP prompts (120, other texts) go through each side first, untimed.
// - In turns: each round times one run on each side, the order swapped every round, so a busy moment
//   on a shared machine falls on both; the ratio is over all rounds. Each run has prompts of its own
//   (same count, other texts): the sides share the database and with it the request cache, and a
//   run of prompts the other side already ran would be answered from it.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Client } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { startPipelineRun } from '../cli/start-run.js';
import { applyMigrations } from '../db/migrate.js';
import { createDatabase } from '../db/pool.js';
import { cliEntry, cliEnv, createTestDatabase, defaultConstitution, temporalCli, tempDir } from '../tests/helpers.js';
import { dataConverterFor } from '../worker/data-converter.js';
import { stopProcess, waitFor } from '../worker/processes.js';
import { fencedBlock } from '../worker/scripted-endpoint.js';
import { benchPrompts, scriptedRunConfig, startEndpointProcess } from './endpoint-client.js';

const promptCount = Number(process.env.BENCH_PROMPTS ?? 240);
const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
const latencyMs = Number(process.env.BENCH_LATENCY_MS ?? 200);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 8);
const warmupPrompts = Number(process.env.BENCH_WARMUP ?? 120);
const sides = [
  { name: 'one', namespace: 'bench-one', workers: 1 },
  { name: 'three', namespace: 'bench-three', workers: 3 },
] as const;

/** CPU seconds (user + system) a process has used so far, from /proc. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

async function startWorker(env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, [cliEntry, 'worker', '--queue', 'cpu'], { env: cliEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4_000)));
  child.stderr.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4_000)));
  let exited: string | undefined;
  child.once('exit', (code, signal) => (exited = signal ?? `code ${code}`));
  await waitFor('a worker to poll its task queue', 180_000, () => {
    if (exited) throw new Error(`a worker exited (${exited}) during start-up:\n${output}`);
    return Promise.resolve(output.includes('worker ready') ? true : undefined);
  });
  return child;
}

const env = await TestWorkflowEnvironment.createLocal({
  server: { executable: { type: 'existing-path', path: temporalCli }, extraArgs: sides.flatMap((s) => ['--namespace', s.namespace]) },
});
const database = await createTestDatabase('tenet_bench_workers');
const endpoint = await startEndpointProcess(latencyMs);
const db = createDatabase(database.url);
const home = tempDir('tenet-bench-workers-');
const workers: { side: (typeof sides)[number]['name']; child: ChildProcess }[] = [];
try {
  await applyMigrations(database.url);
  for (const side of sides) {
    const started = await Promise.all(
      Array.from({ length: side.workers }, () => startWorker({ TEMPORAL_ADDRESS: env.address, TEMPORAL_NAMESPACE: side.namespace, DATABASE_URL: database.url, TENET_HOME: home })),
    );
    workers.push(...started.map((child) => ({ side: side.name, child })));
  }
  const clients = Object.fromEntries(sides.map((s) => [s.name, new Client({ connection: env.connection, namespace: s.namespace, dataConverter: dataConverterFor(undefined) })]));
  const { constitution, source } = defaultConstitution();
  const config = scriptedRunConfig(endpoint.url, concurrency, { batch_size: 8, shard_size: 64, max_batches_in_flight: 4 });
  const promptsOf = (count: number, text: string) => benchPrompts(count, text, 'w');

  let received = 0;
  /** One whole run on a side: seconds, model calls, and the CPU seconds of that side's worker processes. */
  const runOn = async (side: (typeof sides)[number], id: string, prompts: ReturnType<typeof promptsOf>) => {
    const pids = workers.filter((w) => w.side === side.name).map((w) => w.child.pid!);
    const cpuBefore = pids.map(cpuSeconds);
    const began = performance.now();
    const run = await startPipelineRun({ db, client: clients[side.name]!, constitution, constitutionSource: source, config, prompts, workflowId: id });
    await clients[side.name]!.workflow.getHandle(run.workflowId).result();
    const seconds = (performance.now() - began) / 1000;
    const cpu = pids.map((pid, i) => cpuSeconds(pid) - cpuBefore[i]!);
    const bodies = await endpoint.requests(received);
    received += bodies.length;
    const comparisons = bodies.filter((b) => fencedBlock(b.messages.find((m) => m.role === 'user')?.content ?? '', 'response_a') !== undefined).length;
    return { seconds, calls: bodies.length, comparisons, cpu };
  };

  for (const side of sides) await runOn(side, `warm-up-${side.name}`, promptsOf(warmupPrompts, `Warm-up prompt for ${side.name}`));

  const times = { one: [] as number[], three: [] as number[] };
  const calls = { one: 0, three: 0 };
  const compared = { one: 0, three: 0 };
  const busy = { one: [] as number[], three: [] as number[] };
  for (let round = 1; round <= rounds; round++) {
    for (const side of round % 2 === 1 ? sides : [...sides].reverse()) {
      const result = await runOn(side, `bench-workers-${side.name}-${round}`, promptsOf(promptCount, `Benchmark round ${round}, ${side.name} side, prompt`));
      times[side.name].push(result.seconds);
      calls[side.name] += result.calls;
      compared[side.name] += result.comparisons;
      busy[side.name].push(...result.cpu.map((c) => c / result.seconds));
    }
  }

  // Which process ran each stage activity of the three-worker runs, from Temporal's histories.
  const perWorker = new Map<string, number>();
  for await (const info of clients.three!.workflow.list({ query: `WorkflowId STARTS_WITH "bench-workers-three"` })) {
    const history = await clients.three!.workflow.getHandle(info.workflowId, info.runId).fetchHistory();
    for (const event of history.events ?? []) {
      const identity = event.activityTaskStartedEventAttributes?.identity;
      if (identity) perWorker.set(identity, (perWorker.get(identity) ?? 0) + 1);
    }
  }

  const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
  const rate = (side: 'one' | 'three') => calls[side] / sum(times[side]);
  const comparisons = (side: 'one' | 'three') => compared[side] / sum(times[side]);
  console.log(
    `${rounds} rounds of ${promptCount} prompts per side (n = 2: one pair per prompt, rated in both orders), endpoint latency ${latencyMs} ms in its own process (no queueing), max_concurrency ${concurrency} per worker process, batch ${config.scale.batch_size}, shard ${config.scale.shard_size}, ${config.scale.max_batches_in_flight} batches in flight per shard`,
  );
  console.log(`warm-up, untimed: ${warmupPrompts} other prompts through each side`);
  console.log(`per round, 1 worker / 3 workers seconds: ${times.one.map((t, i) => `${t.toFixed(2)}/${times.three[i]!.toFixed(2)}`).join(', ')}`);
  for (const side of sides) {
    const ceiling = (side.workers * concurrency * 1000) / latencyMs;
    console.log(
      `${side.workers} worker${side.workers > 1 ? 's' : ''}: ${calls[side.name]} calls in ${sum(times[side.name]).toFixed(2)} s → ${rate(side.name).toFixed(1)} calls/s (the concurrency limit allows ${ceiling.toFixed(0)}), ${comparisons(side.name).toFixed(1)} comparisons/s; each worker process on a CPU ${Math.min(...busy[side.name]).toFixed(2)}–${Math.max(...busy[side.name]).toFixed(2)} of the time`,
    );
  }
  console.log(`activities of the three-worker runs per worker process: ${[...perWorker.values()].sort((a, b) => b - a).join(', ')}`);
  console.log(`ratio=${(rate('three') / rate('one')).toFixed(2)}`);
} finally {
  await Promise.all(workers.map((w) => stopProcess(w.child.pid!, { graceMs: 10_000 })));
  await db.$client.end();
  await endpoint.close();
  await env.teardown();
  await database.drop();
  rmSync(home, { recursive: true, force: true });
}
