// The `tenet` command as a user runs it: exit codes, messages, --help and --json.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, runCli, tempDir, type TestDatabase } from '../helpers.js';

describe('tenet constitution', () => {
  it('validate: shipped files pass with exit 0', async () => {
    const result = await runCli(['constitution', 'validate', 'constitutions/default.yaml', 'constitutions/cai-harmlessness.yaml']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /constitutions\/default\.yaml: ok \(tenet-default, \d+ principles, hash [0-9a-f]{12}\)/);
    assert.match(result.stdout, /constitutions\/cai-harmlessness\.yaml: ok \(cai-harmlessness, 16 principles/);
  });

  it('validate: a malformed file exits 1 with file:line:column and no stack trace', async () => {
    const file = 'tests/fixtures/constitutions/negative-weight.yaml';
    const result = await runCli(['constitution', 'validate', 'constitutions/default.yaml', file]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^tests\/fixtures\/constitutions\/negative-weight\.yaml:6:13: principles\[0\]\.weight: expected a positive number, got number -0\.5$/m);
    assert.match(result.stderr, /1 of 2 file\(s\) invalid/);
    assert.doesNotMatch(result.stderr, /\n\s+at /);
  });

  it('validate --json lists problems per file', async () => {
    const result = await runCli(['constitution', 'validate', '--json', 'tests/fixtures/constitutions/many-problems.yaml', 'no-such-file.yaml']);
    assert.equal(result.code, 1);
    const report = JSON.parse(result.stdout) as { file: string; ok: boolean; problems: { line: number; column: number; path: string }[] }[];
    assert.equal(report[0]!.ok, false);
    assert.equal(report[0]!.problems.length, 7);
    assert.deepEqual(report[0]!.problems[3], { file: 'tests/fixtures/constitutions/many-problems.yaml', line: 7, column: 13, path: 'principles[0].weight', message: 'expected a positive number, got number 0' });
    assert.match(JSON.stringify(report[1]), /cannot read the file: no such file/);
  });

  it('show --json prints the parsed constitution with its hash', async () => {
    const result = await runCli(['constitution', 'show', '--json', 'constitutions/cai-harmlessness.yaml']);
    assert.equal(result.code, 0);
    const shown = JSON.parse(result.stdout) as { hash: string; name: string; principles: { id: string }[]; defaults: { critique_rounds: number } };
    assert.equal(shown.name, 'cai-harmlessness');
    assert.match(shown.hash, /^[0-9a-f]{64}$/);
    assert.equal(shown.principles.length, 16);
  });

  it('show of an invalid file exits 1 listing its problems', async () => {
    const result = await runCli(['constitution', 'show', 'tests/fixtures/constitutions/duplicate-id.yaml']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /error: .*duplicate-id\.yaml is not a valid constitution:\n.*duplicate-id\.yaml:8:9: principles\[2\]\.id: duplicate principle id 'kind'/);
  });

  it('diff shows what changed, in text and JSON', async () => {
    const dir = tempDir();
    const edited = path.join(dir, 'edited.yaml');
    writeFileSync(edited, readFileSync('constitutions/default.yaml', 'utf8').replace(/weight: 1\.5/, 'weight: 3'));
    const text = await runCli(['constitution', 'diff', 'constitutions/default.yaml', edited]);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /~ principle [\w-]+\n {2}weight\n {4}- 1\.5\n {4}\+ 3/);
    const json = await runCli(['constitution', 'diff', '--json', 'constitutions/default.yaml', edited]);
    const diff = JSON.parse(json.stdout) as { same: boolean; changed: { changes: { field: string; after: unknown }[] }[] };
    assert.equal(diff.same, false);
    assert.deepEqual(diff.changed[0]!.changes, [{ field: 'weight', before: 1.5, after: 3 }]);
    const same = await runCli(['constitution', 'diff', 'constitutions/default.yaml', 'constitutions/default.yaml']);
    assert.match(same.stdout, /are the same constitution/);
  });
});

describe('tenet constitution load: versions in Postgres', () => {
  let database: TestDatabase;
  before(async () => (database = await createTestDatabase('tenet_cli')));
  after(async () => database.drop());

  it('stores a version once, and an edit as the next version', async () => {
    const env = { DATABASE_URL: database.url, TENET_HOME: tempDir() };
    const first = await runCli(['constitution', 'load', '--json', 'constitutions/default.yaml'], env);
    assert.equal(first.code, 0, first.stderr);
    assert.deepEqual(JSON.parse(first.stdout), { ...JSON.parse(first.stdout), name: 'tenet-default', version: 1, created: true });
    const again = await runCli(['constitution', 'load', 'constitutions/default.yaml'], env);
    assert.match(again.stdout, /tenet-default v1 .*already stored/);

    const edited = path.join(tempDir(), 'default.yaml');
    writeFileSync(edited, readFileSync('constitutions/default.yaml', 'utf8').replace(/weight: 1\.5/, 'weight: 2.5'));
    const second = await runCli(['constitution', 'load', edited], env);
    assert.match(second.stdout, /tenet-default v2 .*stored as a new version/);

    const list = await runCli(['constitution', 'list', '--json'], env);
    const rows = JSON.parse(list.stdout) as { name: string; version: number }[];
    assert.deepEqual(rows.map((r) => `${r.name} v${r.version}`), ['tenet-default v2', 'tenet-default v1']);
  });

  it('without a reachable database exits 3 with a hint', async () => {
    const result = await runCli(['constitution', 'load', 'constitutions/default.yaml'], { DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none', TENET_HOME: tempDir() });
    assert.equal(result.code, 3);
    assert.match(result.stderr, /error: cannot reach Postgres at postgres:\/\/nobody@127\.0\.0\.1:1\/none/);
  });
});

describe('tenet: usage, help and exit codes', () => {
  const commands = [[], ['dev'], ['status'], ['demo'], ['worker'], ['migrate'], ['constitution'], ['constitution', 'validate'], ['constitution', 'show'], ['constitution', 'diff'], ['constitution', 'load'], ['constitution', 'list'], ['constitution', 'import']];
  for (const command of commands) {
    it(`tenet ${command.join(' ')} --help`, async () => {
      const result = await runCli([...command, '--help']);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^Usage: tenet/m);
    });
  }

  it('an unknown command exits 2', async () => {
    const result = await runCli(['frobnicate']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /unknown command 'frobnicate'/);
  });

  it('a bad option value exits 1 naming the option', async () => {
    const result = await runCli(['worker', '--queue', 'tpu'], { TENET_HOME: tempDir() });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /--queue: expected cpu, gpu or all/);
  });

  it('a bad environment variable exits 1 naming it', async () => {
    const result = await runCli(['status'], { DATABASE_URL: 'mysql://x' });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /DATABASE_URL: expected a postgres:\/\/ or postgresql:\/\/ URL/);
  });

  it('status with nothing running exits 3 and names each part down', async () => {
    const result = await runCli(['status', '--json'], { TENET_HOME: tempDir(), TENET_TEMPORAL_PORT: '1', TENET_PG_PORT: '1' });
    assert.equal(result.code, 3);
    const report = JSON.parse(result.stdout) as { healthy: boolean; parts: { ok: boolean }[] };
    assert.equal(report.healthy, false);
    assert.ok(report.parts.every((p) => !p.ok));
  });
});
