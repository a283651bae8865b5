// `tenet run`, `runs`, `audit` and `export` as a user runs them, against a real Temporal dev server,
// a worker, the machine's Postgres and the scripted endpoint.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Database } from '../../db/pool.js';
import type { ScriptedEndpoint } from '../../worker/scripted-endpoint.js';
import { progressQuery } from '../../workflows/types.js';
import { runCli } from '../helpers.js';
import { startRunStack, type RunStack } from '../run-stack.js';

describe('tenet run, runs, audit, export', () => {
  let stack: RunStack;
  let env: TestWorkflowEnvironment;
  let db: Database;
  let endpoint: ScriptedEndpoint;
  let cli: Record<string, string>;
  let dir: string;

  before(async () => {
    stack = await startRunStack('tenet_cli_run');
    ({ env, db, endpoint, cli, dir } = stack);
    writeFileSync(
      path.join(dir, 'run.yaml'),
      `endpoints:\n  policy: { base_url: "${endpoint.url}", model: scripted }\n  rater: { base_url: "${endpoint.url}", model: scripted, price_per_mtok: { input: 1, output: 2 } }\nsample: { n: 3, seed: 1 }\ncritique: { rounds: 1 }\nscale: { batch_size: 2, shard_size: 4 }\n`,
    );
    writeFileSync(path.join(dir, 'prompts.jsonl'), ['{"id": "a", "prompt": "Name a prime number."}', '{"id": "b", "prompt": "How far is the moon?"}', '{"id": "c", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Define entropy."}]}'].join('\n'));
  });

  after(async () => {
    await stack?.stop();
  });

  it('a prompts file with a bad line names the line and starts nothing', async () => {
    const bad = path.join(dir, 'bad.jsonl');
    writeFileSync(bad, '{"prompt": "fine"}\n{"prompt": 42}\n');
    const result = await runCli(['run', '--constitution', 'constitutions/default.yaml', '--prompts', bad, '--config', path.join(dir, 'run.yaml')], cli);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /bad\.jsonl:2:12: prompt: expected prompt \(a text\), got number 42/);
    assert.match(result.stderr, /nothing was started/);
    const runs = await runCli(['runs', 'list', '--json'], cli);
    assert.deepEqual(JSON.parse(runs.stdout), []);
  });

  it('a verifiable-tasks file with a bad line names the line and starts nothing; a bad loop config names the key', async () => {
    const tasks = path.join(dir, 'tasks.jsonl');
    writeFileSync(tasks, '{"prompt": "2+2?", "verifier": "math", "reference": "4"}\n{"prompt": "x", "verifier": "math"}\n');
    const result = await runCli(['run', '--constitution', 'constitutions/default.yaml', '--prompts', tasks, '--config', path.join(dir, 'run.yaml')], cli);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /tasks\.jsonl:2:1: reference: missing required key: expected reference/);
    const config = path.join(dir, 'loop.yaml');
    writeFileSync(config, `endpoints:\n  policy: { base_url: "${endpoint.url}", model: m }\n  rater: { base_url: "${endpoint.url}", model: m }\nloop: { mode: online, base_model: /m, rewards: { reward_modle: {} } }\n`);
    const loop = await runCli(['run', '--constitution', 'constitutions/default.yaml', '--prompts', path.join(dir, 'prompts.jsonl'), '--config', config], cli);
    assert.equal(loop.code, 1);
    assert.match(loop.stderr, /loop\.yaml:4:\d+: loop\.rewards\.reward_modle: unknown key 'reward_modle' \(expected one of: reward_model, .*\); did you mean 'reward_model'\?/);
    const runs = await runCli(['runs', 'list', '--json'], cli);
    assert.deepEqual(JSON.parse(runs.stdout), []);
  });

  it('a bad run config names the line, column and key of each problem, and never echoes a key', async () => {
    const config = path.join(dir, 'bad.yaml');
    writeFileSync(config, `endpoints:\n  policy: { base_url: "not a url", model: m }\n  rater: { base_url: "${endpoint.url}", model: m, api_key_env: "sk-123" }\nsample: { n: 0, temprature: 1 }\n`);
    const result = await runCli(['run', '--constitution', 'constitutions/default.yaml', '--prompts', path.join(dir, 'prompts.jsonl'), '--config', config], cli);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /bad\.yaml:2:23: endpoints\.policy\.base_url: expected an http\(s\) URL.*, got the text "not a url"/);
    assert.match(result.stderr, /bad\.yaml:3:\d+: endpoints\.rater\.api_key_env: expected the NAME of an environment variable, not the key itself$/m);
    assert.match(result.stderr, /bad\.yaml:4:14: sample\.n: expected number to be >=1, got number 0/);
    assert.match(result.stderr, /bad\.yaml:4:17: sample\.temprature: unknown key 'temprature' \(expected one of: n, temperature, .*\); did you mean 'temperature'\?/);
    assert.doesNotMatch(result.stderr, /sk-123/);
  });

  it('runs to completion with progress, then audits, overrides and exports', async () => {
    const result = await runCli(['run', '--constitution', 'constitutions/default.yaml', '--prompts', path.join(dir, 'prompts.jsonl'), '--config', path.join(dir, 'run.yaml'), '--workflow-id', 'cli-run-1'], cli);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /run (\d+) started: workflow cli-run-1, 3 prompts, stages sample → critique → label/);
    assert.match(result.stdout, /label\s+18 done, 0 failed/);
    const runId = /run (\d+) started/.exec(result.stdout)![1]!;

    const shown = JSON.parse((await runCli(['runs', 'show', runId, '--json'], cli)).stdout) as { status: string; progress: { stage: string; done: number }[] };
    assert.equal(shown.status, 'completed');
    assert.deepEqual(shown.progress.map((p) => [p.stage, p.done]), [['sample', 9], ['critique', 9], ['label', 18]]);

    const list = JSON.parse((await runCli(['audit', 'list', '--run', runId, '--json', '--limit', '100'], cli)).stdout) as { id: number; principle_key: string }[];
    assert.equal(list.length, 18);
    const page = JSON.parse((await runCli(['audit', 'list', '--run', runId, '--json', '--limit', '5', '--offset', '5'], cli)).stdout) as { id: number }[];
    assert.deepEqual(page.map((r) => r.id), list.slice(5, 10).map((r) => r.id));
    const principle = list[0]!.principle_key;
    const byPrinciple = JSON.parse((await runCli(['audit', 'list', '--run', runId, '--principle', principle, '--json'], cli)).stdout) as { principle_key: string }[];
    assert.ok(byPrinciple.length > 0 && byPrinciple.every((r) => r.principle_key === principle));

    const stats = JSON.parse((await runCli(['audit', 'stats', runId, '--json'], cli)).stdout) as { decisions: number; order_agreement: number; cost: number }[];
    assert.equal(stats.reduce((sum, s) => sum + s.decisions, 0), 18);
    assert.ok(stats.every((s) => s.order_agreement === 1 && s.cost > 0));

    const decisionId = String(list[0]!.id);
    const show = await runCli(['audit', 'show', decisionId], cli);
    assert.equal(show.code, 0);
    assert.match(show.stdout, /PROMPT[\s\S]*\(A\) completion \d+[\s\S]*\(B\) completion \d+[\s\S]*prompt as sent:[\s\S]*no human review/);

    // The exported preference of that pair, before and after a human overrides it.
    const exportPrefs = async () => (await runCli(['export', 'preferences', runId], cli)).stdout.trim().split('\n').map((line) => JSON.parse(line) as { chosen_id: number; rejected_id: number; source: string; decision_ids: number[]; prompt: unknown; chosen: unknown });
    const before = await exportPrefs();
    assert.equal(before.length, 9);
    assert.ok(Array.isArray(before[0]!.prompt) && Array.isArray(before[0]!.chosen));
    const pair = before.find((p) => p.decision_ids.includes(Number(decisionId)))!;
    const detail = JSON.parse((await runCli(['audit', 'show', decisionId, '--json'], cli)).stdout) as { completion_a_id: number; completion_b_id: number };
    const loserSlot = detail.completion_a_id === pair.rejected_id ? 'A' : 'B';
    const override = await runCli(['audit', 'override', decisionId, '--prefer', loserSlot, '--reason', 'the rater missed an error', '--reviewer', 'tester', '--key', 'review-1'], cli);
    assert.equal(override.code, 0, override.stderr);
    const again = await runCli(['audit', 'override', decisionId, '--prefer', loserSlot, '--reason', 'the rater missed an error', '--reviewer', 'tester', '--key', 'review-1'], cli);
    assert.match(again.stdout, /review 1:/, 'the same key does not write twice');
    const after = await exportPrefs();
    assert.equal(after.length, 9);
    const flipped = after.find((p) => p.chosen_id === pair.rejected_id && p.rejected_id === pair.chosen_id)!;
    assert.equal(flipped.source, 'human');
    const overridden = JSON.parse((await runCli(['audit', 'list', '--run', runId, '--overridden', '--json'], cli)).stdout) as unknown[];
    assert.ok(overridden.length >= 1);
    // A human tie removes the pair from training data; the AI rows stay as they were.
    await runCli(['audit', 'override', decisionId, '--prefer', 'tie', '--reason', 'both fine', '--reviewer', 'tester'], cli);
    assert.equal((await exportPrefs()).length, 8);
    const stillThere = JSON.parse((await runCli(['audit', 'show', decisionId, '--json'], cli)).stdout) as { parsed_choice: string; reviews: unknown[] };
    assert.equal(stillThere.reviews.length, 2);
    assert.ok(['A', 'B'].includes(stillThere.parsed_choice));

    const sft = (await runCli(['export', 'sft', runId, '--style', 'standard'], cli)).stdout.trim().split('\n').map((l) => JSON.parse(l) as { prompt: string; completion: string; rounds: number });
    assert.equal(sft.length, 9);
    assert.ok(sft.every((row) => row.rounds === 1 && row.completion.length > 0 && typeof row.prompt === 'string'));
  });

  it('pause, resume and cancel a detached run', async () => {
    // Slow enough that the pause lands while the sample stage is still in flight.
    endpoint.setLatency(8_000);
    // Another seed, so no request of the first run is reused from the cache.
    writeFileSync(path.join(dir, 'run2.yaml'), readFileSync(path.join(dir, 'run.yaml'), 'utf8').replace('seed: 1', 'seed: 2'));
    try {
      const started = await runCli(['run', '--constitution', 'constitutions/default.yaml', '--prompts', path.join(dir, 'prompts.jsonl'), '--config', path.join(dir, 'run2.yaml'), '--workflow-id', 'cli-run-2', '--detach', '--json'], cli);
      assert.equal(started.code, 0, started.stderr);
      const runId = String((JSON.parse(started.stdout) as { runId: number }).runId);
      assert.equal((await runCli(['runs', 'pause', runId], cli)).code, 0);
      // Batches in flight finish; no new one starts while paused.
      const handle = env.client.workflow.getHandle('cli-run-2');
      for (let i = 0; i < 300; i++) {
        const sample = (await handle.query(progressQuery)).find((p) => p.stage === 'sample')!;
        if (sample.total > 0 && sample.done >= sample.total) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      assert.equal((JSON.parse((await runCli(['runs', 'show', runId, '--json'], cli)).stdout) as { status: string }).status, 'paused');
      const critiques = await db.$client.query<{ n: string }>('select count(*) as n from critiques where run_id = $1', [Number(runId)]);
      assert.equal(Number(critiques.rows[0]!.n), 0, 'the critique stage did not start while paused');
      // Slow enough that the run is still going when the cancel lands, two CLI calls later.
      endpoint.setLatency(4_000);
      assert.equal((await runCli(['runs', 'resume', 'cli-run-2'], cli)).code, 0);
      assert.equal((JSON.parse((await runCli(['runs', 'show', runId, '--json'], cli)).stdout) as { status: string }).status, 'running');
      assert.equal((await runCli(['runs', 'cancel', runId], cli)).code, 0);
      await assert.rejects(env.client.workflow.getHandle('cli-run-2').result());
      const shown = JSON.parse((await runCli(['runs', 'show', runId, '--json'], cli)).stdout) as { status: string };
      assert.equal(shown.status, 'cancelled');
      // Nothing half-written: every revision has its critique row and every critique its revision.
      const orphans = await db.$client.query<{ n: string }>(
        "select count(*) as n from completions c where c.run_id = $1 and c.stage = 'revision' and not exists (select 1 from critiques k where k.revision_completion_id = c.id)",
        [Number(runId)],
      );
      assert.equal(Number(orphans.rows[0]!.n), 0);
    } finally {
      endpoint.setLatency(5);
    }
  });

  it('runs list shows both runs; an unknown run is a clear error', async () => {
    const list = JSON.parse((await runCli(['runs', 'list', '--json'], cli)).stdout) as { workflowId: string; status: string }[];
    assert.deepEqual(list.map((r) => [r.workflowId, r.status]), [['cli-run-2', 'cancelled'], ['cli-run-1', 'completed']]);
    const missing = await runCli(['runs', 'show', '999'], cli);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no run 999/);
    const readme = readFileSync('README.md', 'utf8');
    assert.ok(readme.includes('effective_preferences'), 'the README documents the audit views');
  });
});
