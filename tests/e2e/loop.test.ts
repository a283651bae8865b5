// The full loop end to end on the tiny model: Temporal + Postgres + `trainer serve` as the policy
// endpoint (the scripted server rates, for deterministic verdicts). Two iterations of
// sample → label → reward model → DPO → adapter into service → evaluation (paused by a monitor after
// each and resumed), then one online-RL iteration (rollouts scored in Node by the ONNX reward model), and
// one whose reward comes from verifiers.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, type WorkflowBundle } from '@temporalio/worker';
import { and, eq } from 'drizzle-orm';
import { createCpuActivities, createGpuActivities } from '../../activities/index.js';
import { taskQueues } from '../../core/queues.js';
import { runConfigSchema, type RunConfigInput } from '../../core/run-config.js';
import { applyMigrations } from '../../db/migrate.js';
import { createDatabase, type Database } from '../../db/pool.js';
import * as schema from '../../db/schema.js';
import { startPipelineRun } from '../../cli/start-run.js';
import { startScriptedEndpoint, type ScriptedEndpoint } from '../../worker/scripted-endpoint.js';
import { startServe, type ServeProcess } from '../../worker/serve-process.js';
import { bundleWorkflows } from '../../worker/worker.js';
import type { pipeline } from '../../workflows/pipeline.js';
import { resumeSignal } from '../../workflows/types.js';
import { parseTasksJsonl } from '../../core/verifiers/tasks.js';
import { taskMetadata } from '../../activities/verifiers/dispatch.js';
import { RewardScorer } from '../../activities/reward-scorer.js';
import { createTestDatabase, defaultConstitution, makeTinyModel, runCli, tempDir, temporalCli, type TestDatabase, venvPython } from '../helpers.js';

const questions = ['Name a fruit.', 'Say hello.', 'Count to three.', 'Name a colour.', 'Give a greeting.', 'Name an animal.', 'Pick a number.', 'Say goodbye.'];

describe('the training loop on the tiny model', { timeout: 1_500_000 }, () => {
  let env: TestWorkflowEnvironment;
  let database: TestDatabase;
  let db: Database;
  let bundle: WorkflowBundle;
  let rater: ScriptedEndpoint;
  let serve: ServeProcess;
  let artifacts: string;
  let tiny: string;
  const { constitution, source } = defaultConstitution();

  before(async () => {
    artifacts = tempDir('tenet-loop-');
    tiny = path.join(artifacts, 'tiny');
    makeTinyModel(tiny);
    [env, database, bundle, rater, serve] = await Promise.all([
      TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path: temporalCli } } }),
      createTestDatabase('tenet_loop'),
      bundleWorkflows(),
      startScriptedEndpoint(),
      startServe({ python: venvPython, model: tiny, env: { TENET_TORCH_THREADS: '1' } }),
    ]);
    await applyMigrations(database.url);
    db = createDatabase(database.url, { max: 20 });
  });

  after(async () => {
    await serve?.stop();
    await rater?.close();
    await db?.$client.end();
    await env?.teardown();
    await database?.drop();
  });

  function config(loop: RunConfigInput['loop']) {
    return runConfigSchema.parse({
      endpoints: { policy: { base_url: serve.url, model: serve.model, max_concurrency: 4 }, rater: { base_url: rater.url, model: 'scripted' } },
      sample: { n: 2, max_tokens: 12, temperature: 1 },
      critique: { enabled: false },
      scale: { batch_size: 4, shard_size: 8 },
      loop,
    });
  }

  async function runLoop(workflowId: string, loop: RunConfigInput['loop'], during?: (runId: number) => Promise<void>) {
    const prompts = questions.map((q, i) => ({ key: `q${i}`, messages: [{ role: 'user' as const, content: q }], split: i < 2 ? ('eval' as const) : ('train' as const), metadata: {} }));
    const [cpu, gpu] = await Promise.all([
      Worker.create({ connection: env.nativeConnection, taskQueue: taskQueues.cpu, workflowBundle: bundle, activities: createCpuActivities({ db }) }),
      Worker.create({ connection: env.nativeConnection, taskQueue: taskQueues.gpu, activities: createGpuActivities({ python: venvPython, db, artifactsRoot: artifacts, gpus: [] }) }),
    ]);
    return cpu.runUntil(
      gpu.runUntil(async () => {
        const started = await startPipelineRun({ db, client: env.client, constitution, constitutionSource: source, config: config(loop), prompts, workflowId });
        await during?.(started.runId);
        const result = await env.client.workflow.getHandle<typeof pipeline>(started.workflowId).result();
        return { started, result };
      }),
    );
  }

  const trainer = { max_steps: 6, batch_size: 4, checkpoint_every: 0 };

  // One two-iteration DPO run shows both the loop and its monitors: a KL bound no update can meet pauses
  // the run after each iteration, and resuming goes on to the next (a loop of its own cost ~200 s here).
  it('runs two DPO iterations: each trains a reward model and a policy, serves it, and evaluates it; a monitor that fires pauses the run and says why, and resuming goes on', async () => {
    const handle = env.client.workflow.getHandle<typeof pipeline>('loop-dpo');
    const { started, result } = await runLoop('loop-dpo', { mode: 'dpo', iterations: 2, base_model: tiny, reward_model: { options: trainer }, policy: { options: trainer }, evaluate: { max_tokens: 12 }, monitors: { max_kl: 1e-12 } }, async (runId) => {
      for (const iteration of [0, 1]) {
        const paused = await waitForRun(runId, (row) => row.status === 'paused');
        assert.match(paused.error ?? '', new RegExp(`paused by monitors after iteration ${iteration}: max_kl: KL to the reference is `));
        const alerts = await db.select().from(schema.metrics).where(and(eq(schema.metrics.runId, runId), eq(schema.metrics.name, 'monitor.alerts'), eq(schema.metrics.iteration, iteration)));
        assert.equal(alerts[0]?.value, 1);
        await handle.signal(resumeSignal);
        await waitForRun(runId, (row) => row.status !== 'paused');
      }
    });
    const runId = started.runId;
    assert.equal(result.iterations, 2);
    const [row] = await db.select().from(schema.runs).where(eq(schema.runs.id, runId));
    assert.equal(row!.status, 'completed');
    assert.equal(result.policy?.name, `run${runId}-it2`);

    const made = await db.select().from(schema.models).where(eq(schema.models.runId, runId)).orderBy(schema.models.id);
    assert.deepEqual(
      made.map((m) => [m.kind, m.iteration]),
      [
        ['reward', 0],
        ['policy', 0],
        ['reward', 1],
        ['policy', 1],
      ],
    );
    const [, policy0, , policy1] = made;
    assert.equal(policy1!.parentId, policy0!.id, 'the second update continues from the first policy');
    assert.ok(made.every((m) => existsSync(m.artifactPath)));
    assert.ok(existsSync(path.join(made[0]!.artifactPath, 'reward.onnx')));

    // Iteration 1 sampled from the adapter the first update made, through the serve endpoint.
    const iteration1 = await db.select().from(schema.completions).where(and(eq(schema.completions.runId, runId), eq(schema.completions.stage, 'sample'), eq(schema.completions.iteration, 1)));
    assert.equal(iteration1.length, 12);
    assert.ok(iteration1.every((c) => c.policyVersion === `run${runId}-it1`));
    const served = (await (await fetch(`${serve.url}/models`)).json()) as { data: { id: string }[] };
    assert.ok(served.data.some((m) => m.id === `run${runId}-it2`));

    // Per-iteration metrics: evaluation against the previous policy, and what the trainer reported.
    const rows = await db.select().from(schema.metrics).where(eq(schema.metrics.runId, runId));
    for (const iteration of [0, 1]) {
      const m = Object.fromEntries(rows.filter((r) => r.iteration === iteration).map((r) => [r.name, r.value]));
      assert.ok(m['eval.win_rate']! >= 0 && m['eval.win_rate']! <= 1, `win rate of iteration ${iteration}: ${m['eval.win_rate']}`);
      assert.ok(Number.isFinite(m['eval.mean_reward']));
      assert.ok(m['eval.mean_length']! > 0);
      assert.equal(m['eval.prompts'], 2);
      // Its Wilson interval over the 2 held-out prompts holds it, and is wide.
      assert.ok(m['eval.win_rate_low']! <= m['eval.win_rate']! && m['eval.win_rate']! <= m['eval.win_rate_high']!, `interval of iteration ${iteration}`);
      assert.ok(m['eval.win_rate_high']! - m['eval.win_rate_low']! > 0.5);
      // The length-controlled win rate, where the two prompts' length differences tell it (core/length-control.ts is unit-tested).
      if (m['eval.win_rate_lc'] !== undefined) assert.ok(m['eval.win_rate_lc'] >= 0 && m['eval.win_rate_lc'] <= 1, `length-controlled win rate of iteration ${iteration}: ${m['eval.win_rate_lc']}`);
      assert.ok(Number.isFinite(m['eval.kl_k1']) && m['eval.kl_k3']! >= 0, `KL of iteration ${iteration}: ${m['eval.kl_k1']}, ${m['eval.kl_k3']}`);
      // KL on completions the trainer sampled from the new policy (4 per evaluated prompt, temperature 1), not on the greedy evaluation.
      const klJob = path.join(artifacts, `run-${runId}`, `it-${iteration}`, 'kl');
      assert.deepEqual(
        readFileSync(path.join(klJob, 'data.jsonl'), 'utf8').trim().split('\n').map((line) => Object.keys(JSON.parse(line) as object)),
        [['prompt'], ['prompt']],
      );
      const klDone = readFileSync(path.join(klJob, 'trainer.log.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { event: string; metrics?: Record<string, number> }).findLast((e) => e.event === 'done');
      assert.deepEqual([klDone?.metrics?.sampled, klDone?.metrics?.rows, klDone?.metrics?.kl_k3], [1, 8, m['eval.kl_k3']]);
      assert.ok(Object.keys(m).some((k) => k.startsWith('reward.')), 'reward-model metrics recorded');
      assert.ok(Object.keys(m).some((k) => k.startsWith('policy.')), 'policy metrics recorded');
    }
    // Evaluation decisions compared the two policies' answers in both orders, and never entered training data.
    const evaluations = await db.select().from(schema.raterDecisions).where(and(eq(schema.raterDecisions.runId, runId), eq(schema.raterDecisions.stage, 'evaluate')));
    assert.ok(evaluations.length >= 8);
    assert.deepEqual(new Set(evaluations.map((d) => d.order)), new Set(['AB', 'BA']));
  });

  it('runs an online-RL iteration: rollouts scored in Node by the reward model, every component stored', async () => {
    const { started, result } = await runLoop('loop-online', {
      mode: 'online',
      iterations: 1,
      base_model: tiny,
      reward_model: { options: trainer },
      policy: { options: { ...trainer, max_steps: 4 } },
      rollouts: { group_size: 3, max_tokens: 12, length_penalty: 0.5 },
      evaluate: { max_tokens: 12 },
    });
    assert.equal(result.iterations, 1);
    const rewards = await db.select().from(schema.rolloutRewards).where(eq(schema.rolloutRewards.runId, started.runId));
    assert.equal(rewards.length, 6 * 3, 'one reward per rollout: 6 training prompts × 3');
    for (const r of rewards) {
      assert.ok(Number.isFinite(r.components.reward_model));
      assert.ok(r.components.length_penalty! <= 0);
      assert.ok(Math.abs(r.total - (r.components.reward_model! + r.components.length_penalty!)) < 1e-9);
    }
    const policy = await db.select().from(schema.models).where(and(eq(schema.models.runId, started.runId), eq(schema.models.kind, 'policy')));
    assert.equal(policy.length, 1);
    assert.equal((policy[0]!.lineage as { data: { source: string } }).data.source, 'rollouts');
  });

  it('`tenet score` scores a file with a reward model in Node, as the worker does, and names a bad line', async () => {
    const [reward] = await db.select().from(schema.models).where(eq(schema.models.kind, 'reward')).orderBy(schema.models.id).limit(1);
    const input = path.join(artifacts, 'score-input.jsonl');
    const rows = [
      { prompt: 'Name a fruit.', completion: 'An apple.' },
      { prompt: [{ role: 'user', content: 'Say hello.' }], completion: [{ role: 'assistant', content: 'Hello there, friend!' }] },
    ];
    writeFileSync(input, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const result = await runCli(['score', '--model', reward!.artifactPath, '--input', input]);
    assert.equal(result.code, 0, result.stderr);
    const scored = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as { score: number; completion: string });
    assert.equal(scored.length, 2);
    const scorer = await RewardScorer.load(reward!.artifactPath);
    const expected = await scorer.score([
      { prompt: [{ role: 'user', content: 'Name a fruit.' }], completion: 'An apple.' },
      { prompt: [{ role: 'user', content: 'Say hello.' }], completion: 'Hello there, friend!' },
    ]);
    await scorer.close();
    scored.forEach((row, i) => assert.ok(Math.abs(row.score - expected[i]!) < 1e-6, `row ${i}: ${row.score} vs ${expected[i]}`));

    writeFileSync(input, `${JSON.stringify(rows[0])}\n{"prompt": "no completion"}\n`);
    const bad = await runCli(['score', '--model', reward!.artifactPath, '--input', input]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /score-input\.jsonl:2:\d+: completion:/);
    writeFileSync(input, `${JSON.stringify(rows[0])}\n`);
    const notModel = await runCli(['score', '--model', artifacts, '--input', input]);
    assert.equal(notModel.code, 1);
    assert.match(notModel.stderr, /not a reward-model artifact \(missing reward\.onnx/);
  });

  it('an online iteration whose reward comes from a verifier: every rollout carries its verdict, raw values and components', async () => {
    const tasks = parseTasksJsonl(
      [
        { id: 't1', prompt: 'What is 2 + 2? Answer with "answer: N".', verifier: 'math', reference: '4' },
        { id: 't2', prompt: 'What is 3 * 3? Answer with "answer: N".', verifier: 'math', reference: '9' },
        { id: 't3', prompt: 'Half of 1, as a fraction?', verifier: 'math', reference: '1/2' },
        { id: 't4', prompt: 'What is 10 - 7?', verifier: 'math', reference: '3', split: 'eval' },
      ]
        .map((t) => JSON.stringify(t))
        .join('\n'),
      'tasks.jsonl',
    );
    assert.ok(tasks.ok);
    const prompts = tasks.tasks.map((task) => ({ key: task.key, messages: task.messages, split: task.split, metadata: taskMetadata(task) }));
    const [cpu, gpu] = await Promise.all([
      Worker.create({ connection: env.nativeConnection, taskQueue: taskQueues.cpu, workflowBundle: bundle, activities: createCpuActivities({ db }) }),
      Worker.create({ connection: env.nativeConnection, taskQueue: taskQueues.gpu, activities: createGpuActivities({ python: venvPython, db, artifactsRoot: artifacts, gpus: [] }) }),
    ]);
    const loop = {
      mode: 'online' as const,
      iterations: 1,
      base_model: tiny,
      reward_model: { options: trainer },
      policy: { options: { ...trainer, max_steps: 3 } },
      rollouts: { group_size: 3, max_tokens: 12 },
      rewards: {
        verifier: { weight: 2 },
        format: { weight: 0.5, checks: [{ must_match: 'answer' }] },
        reward_model: { weight: 0.1 },
        process: { weight: 0.5, split: 'paragraphs' as const, aggregate: 'mean' as const, max_steps: 2 },
      },
      evaluate: { max_tokens: 12 },
    };
    const started = await cpu.runUntil(
      gpu.runUntil(async () => {
        const run = await startPipelineRun({ db, client: env.client, constitution, constitutionSource: source, config: config(loop), prompts, workflowId: 'loop-verifier' });
        await env.client.workflow.getHandle<typeof pipeline>(run.workflowId).result();
        return run;
      }),
    );
    const rewards = await db.select().from(schema.rolloutRewards).where(eq(schema.rolloutRewards.runId, started.runId));
    assert.equal(rewards.length, 3 * 3);
    for (const r of rewards) {
      const verdict = r.verdict as { reward: number; reason: { code: string } };
      assert.ok(['match', 'mismatch', 'no-answer'].includes(verdict.reason.code), verdict.reason.code);
      assert.equal(r.raw.verifier, verdict.reward);
      assert.equal(r.components.verifier, 2 * verdict.reward);
      assert.ok(r.raw.format === 0 || r.raw.format === 1);
      assert.ok(Math.abs(r.total - Object.values(r.components).reduce((a, b) => a + b, 0)) < 1e-9);
      assert.ok(r.raw.process! >= -1 && r.raw.process! <= 1, `process value ${r.raw.process}`);
    }
    // Each step was a rater decision of its own; the audit shows a completion's steps with their scores.
    const steps = await db.select().from(schema.raterDecisions).where(and(eq(schema.raterDecisions.runId, started.runId), eq(schema.raterDecisions.stage, 'process'), eq(schema.raterDecisions.outcome, 'ok')));
    assert.ok(steps.length >= rewards.length, `${steps.length} step decisions for ${rewards.length} rollouts`);
    const shown = await runCli(['audit', 'show', String(steps[0]!.id), '--json'], { DATABASE_URL: database.url });
    assert.equal(shown.code, 0, shown.stderr);
    const audit = JSON.parse(shown.stdout) as { process_steps: { completion: number; step: number; score: number }[] };
    assert.ok(audit.process_steps.length >= 1);
    assert.ok(audit.process_steps.every((step) => step.completion === steps[0]!.completionAId && step.step >= 1));
    const policy = await db.select().from(schema.models).where(and(eq(schema.models.runId, started.runId), eq(schema.models.kind, 'policy')));
    assert.equal(policy.length, 1);
    const metricsRows = await db.select().from(schema.metrics).where(eq(schema.metrics.runId, started.runId));
    assert.ok(metricsRows.some((m) => m.name === 'rollout.flag.tamper_fraction' && m.value === 0), 'verifier flag metrics recorded for the monitors');
  });

  async function waitForRun(runId: number, done: (row: typeof schema.runs.$inferSelect) => boolean, timeoutMs = 600_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const [row] = await db.select().from(schema.runs).where(eq(schema.runs.id, runId));
      if (row && done(row)) return row;
      if (Date.now() > deadline) throw new Error(`run ${runId}: timed out (status ${row?.status})`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
});
