// `tenet run --progress lines|json` on a pipe, against a real Temporal dev server, a worker, the
// machine's Postgres and the scripted endpoint: a short readable log, or NDJSON events a script can
// follow (a failing activity among them).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cliEntry, cliEnv, freePort, runCli } from '../helpers.js';
import { startRunStack, type RunStack } from '../run-stack.js';

interface ProgressEvent {
  event: string;
  time: string;
  stage?: string;
  state?: string;
  done?: number;
  stages?: { stage: string; done: number; total: number; failed: number }[];
  progress?: { stage: string; done: number; failed: number }[];
  activity?: string;
  attempt?: number;
  reason?: string;
  message?: string;
  runId?: number;
}

describe('tenet run --progress', () => {
  let stack: RunStack;
  let cli: Record<string, string>;
  let dir: string;
  let args: string[];

  before(async () => {
    stack = await startRunStack('tenet_progress');
    ({ cli, dir } = stack);
    const { endpoint } = stack;
    writeFileSync(path.join(dir, 'run.yaml'), `endpoints:\n  policy: { base_url: "${endpoint.url}", model: scripted }\n  rater: { base_url: "${endpoint.url}", model: scripted }\nsample: { n: 2, seed: 1 }\nscale: { batch_size: 2, shard_size: 4 }\n`);
    writeFileSync(path.join(dir, 'prompts.jsonl'), ['{"id": "a", "prompt": "Name a prime number."}', '{"id": "b", "prompt": "How far is the moon?"}', '{"id": "c", "prompt": "Define entropy."}'].join('\n'));
    args = ['run', '--constitution', 'constitutions/default.yaml', '--prompts', path.join(dir, 'prompts.jsonl'), '--config', path.join(dir, 'run.yaml')];
  });

  after(async () => {
    await stack?.stop();
  });

  it('lines: a line when a stage starts or finishes, no bars, a short log', async () => {
    const result = await runCli([...args, '--progress', 'lines', '--workflow-id', 'progress-lines'], cli);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const lines = result.stdout.trim().split('\n');
    // A stage seen part-way says it started; one that went from waiting to done between two reads only that it finished.
    for (const stage of ['sample', 'critique', 'label']) {
      assert.ok(lines.filter((l) => l.startsWith(`progress: ${stage} started (`)).length <= 1, result.stdout);
      assert.equal(lines.filter((l) => l.startsWith(`progress: ${stage} finished`)).length, 1, result.stdout);
    }
    assert.ok(lines.includes('progress: label finished: 6 done, 0 failed'), result.stdout);
    // Three stages: started + finished each, the run's own lines, and a summary at most every 10 s.
    assert.ok(lines.length <= 20, `${lines.length} lines:\n${result.stdout}`);
    assert.doesNotMatch(result.stdout + result.stderr, /[░█]|\[=+|\{bar\}/);
  });

  it('json: every stdout line an event, from started through each stage to finished', async () => {
    const result = await runCli([...args, '--progress', 'json', '--workflow-id', 'progress-json'], cli);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const events = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as ProgressEvent);
    assert.equal(events[0]!.event, 'started');
    assert.equal(events.at(-1)!.event, 'finished');
    assert.deepEqual(events.at(-1)!.progress!.map((p) => [p.stage, p.done, p.failed]), [['sample', 6, 0], ['critique', 6, 0], ['label', 6, 0]]);
    assert.ok(events.every((e) => !Number.isNaN(Date.parse(e.time))));
    const finished = events.filter((e) => e.event === 'stage' && e.state === 'finished').map((e) => e.stage);
    assert.deepEqual(finished, ['sample', 'critique', 'label']);
    const progress = events.filter((e) => e.event === 'progress');
    assert.ok(progress.length >= 1);
    assert.deepEqual(progress.at(-1)!.stages!.map((s) => s.done), [6, 6, 6]);
  });

  it('--json without --detach: the started run, then progress, as NDJSON events; --progress lines overrides it', async () => {
    const result = await runCli([...args, '--json', '--workflow-id', 'progress-json-flag'], cli);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const events = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as ProgressEvent);
    assert.deepEqual([events[0]!.event, events.at(-1)!.event], ['started', 'finished']);
    const lines = await runCli([...args, '--json', '--progress', 'lines', '--workflow-id', 'progress-json-lines'], cli);
    assert.equal(lines.code, 0, lines.stdout + lines.stderr);
    assert.match(lines.stdout, /^progress: label finished: 6 done, 0 failed$/m);
  });

  it('json: an activity that keeps failing is an event naming it, its attempt and why', async () => {
    const deadUrl = `http://127.0.0.1:${await freePort()}/v1`;
    const config = path.join(dir, 'dead.yaml');
    writeFileSync(config, `endpoints:\n  policy: { base_url: "${deadUrl}", model: gone, max_retries: 0, timeout_s: 2 }\n  rater: { base_url: "${deadUrl}", model: gone }\n`);
    const child = spawn(process.execPath, [cliEntry, ...args.slice(0, -1), config, '--progress', 'json', '--workflow-id', 'progress-dead'], { env: cliEnv(cli) });
    let stdout = '';
    const failure = new Promise<ProgressEvent>((resolve) => {
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        const found = stdout.split('\n').slice(0, -1).map((line) => JSON.parse(line) as ProgressEvent).find((e) => e.event === 'failure');
        if (found) resolve(found);
      });
    });
    const timeout = setTimeout(() => child.kill('SIGKILL'), 90_000);
    const event = await failure;
    clearTimeout(timeout);
    child.kill('SIGINT');
    assert.equal(event.activity, 'runStageBatch');
    assert.ok(event.attempt! >= 2);
    assert.match(event.reason!, /is unreachable/);
    assert.match(event.message!, /runStageBatch retrying \(attempt \d+\): .* is unreachable/);
    await runCli(['runs', 'cancel', 'progress-dead'], cli);
  });

  it('tenet run and tenet demo refuse an unknown --progress value in one line, before anything starts', async () => {
    const result = await runCli([...args, '--progress', 'fancy'], cli);
    assert.equal(result.code, 2);
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    assert.match(result.stderr, /--progress.*'fancy' is invalid\. Allowed choices are bars, lines, json/);
    const runs = JSON.parse((await runCli(['runs', 'list', '--json'], cli)).stdout) as { workflowId: string }[];
    assert.ok(!runs.some((r) => r.workflowId.startsWith('run-')), JSON.stringify(runs));
    const demo = await runCli(['demo', '--tiny', '--progress', 'xml'], cli);
    assert.equal(demo.code, 2);
    assert.equal(demo.stderr.trim().split('\n').length, 1, demo.stderr);
    assert.match(demo.stderr, /--progress.*'xml' is invalid\. Allowed choices are bars, lines, json/);
    assert.equal(demo.stdout, '');
    for (const command of ['run', 'demo']) assert.match((await runCli([command, '--help'])).stdout, /--progress <mode>[\s\S]*\(choices:\s+"bars",\s+"lines",\s+"json"\)/);
    const labels = await runCli(['demo', '--tiny', '--label-mode', 'sideways'], cli);
    assert.equal(labels.code, 2);
    assert.match(labels.stderr, /--label-mode.*'sideways' is invalid\. Allowed choices are auto, pairwise, pointwise/);
    assert.equal(labels.stdout, '');
  });
});
