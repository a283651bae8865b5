// When an activity keeps failing, `tenet run`'s progress and `tenet runs show` say why and how many
// attempts so far (the pending activity's last failure, read from Temporal), rather than bars that
// sit at 0 with no word. The policy endpoint here is a port nothing listens on.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cliEntry, cliEnv, freePort, runCli } from '../helpers.js';
import { startRunStack, type RunStack } from '../run-stack.js';

describe('failure reasons of a run that cannot progress', () => {
  let stack: RunStack;
  let cli: Record<string, string>;
  let args: string[];
  let deadUrl: string;

  before(async () => {
    stack = await startRunStack('tenet_failures');
    cli = stack.cli;
    deadUrl = `http://127.0.0.1:${await freePort()}/v1`;
    writeFileSync(path.join(stack.dir, 'run.yaml'), `endpoints:\n  policy: { base_url: "${deadUrl}", model: gone, max_retries: 0, timeout_s: 2 }\n  rater: { base_url: "${deadUrl}", model: gone }\nsample: { n: 2 }\n`);
    writeFileSync(path.join(stack.dir, 'prompts.jsonl'), '{"id": "a", "prompt": "Name a prime number."}\n');
    args = ['run', '--constitution', 'constitutions/default.yaml', '--prompts', path.join(stack.dir, 'prompts.jsonl'), '--config', path.join(stack.dir, 'run.yaml')];
  });

  after(async () => stack?.stop());

  const unreachable = (attempt: string) => new RegExp(`runStageBatch retrying \\(attempt ${attempt}\\): ${deadUrl.replace(/[.]/g, '\\.')} \\(model gone\\) is unreachable`);

  it('runs show names the failing activity, its attempt and the reason', async () => {
    const started = await runCli([...args, '--detach', '--workflow-id', 'dead-endpoint-1'], cli);
    assert.equal(started.code, 0, started.stderr);
    const runId = /run (\d+) started/.exec(started.stdout)![1]!;
    let shown = { pending: [] as { activity: string; attempt: number; reason: string }[] };
    for (let i = 0; i < 60 && !shown.pending.some((p) => p.attempt >= 2); i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      shown = JSON.parse((await runCli(['runs', 'show', runId, '--json'], cli)).stdout) as typeof shown;
    }
    const failing = shown.pending.find((p) => p.attempt >= 2);
    assert.ok(failing, JSON.stringify(shown.pending));
    assert.match(failing.reason, /is unreachable/);
    const text = await runCli(['runs', 'show', runId], cli);
    assert.match(text.stdout, new RegExp(`waiting: ${unreachable('\\d+').source}`));
    await runCli(['runs', 'cancel', runId], cli);
  });

  it('tenet run prints the reason while it waits, once per attempt', async () => {
    const child = spawn(process.execPath, [cliEntry, ...args, '--workflow-id', 'dead-endpoint-2'], { env: cliEnv(cli) });
    let stdout = '';
    const seen = new Promise<void>((resolve) => {
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        if (unreachable('3').test(stdout)) resolve();
      });
    });
    const timeout = setTimeout(() => child.kill('SIGKILL'), 60_000);
    await seen;
    clearTimeout(timeout);
    child.kill('SIGINT');
    // The attempt shown is the one Temporal has scheduled next, with the last attempt's failure.
    assert.equal(stdout.split('\n').filter((line) => unreachable('2').test(line)).length, 1);
    const runId = /run (\d+) started/.exec(stdout)![1]!;
    await runCli(['runs', 'cancel', runId], cli);
  });
});
