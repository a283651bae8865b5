// `tenet constitution import FILE > out.yaml` as a user runs it: each supported shape becomes a file
// that `tenet constitution validate` accepts; a bad file is refused with its problems, nothing printed.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { runCli, tempDir } from '../helpers.js';

describe('tenet constitution import', () => {
  const dir = tempDir();

  for (const [input, principles, name] of [
    ['pairs.json', 2, 'pairs'],
    ['comparisons.yaml', 3, 'comparisons'],
    ['comparisons.json', 2, 'comparisons'],
    ['principles.txt', 3, 'principles'],
  ] as const) {
    it(`${input}: prints a constitution that validates`, async () => {
      const result = await runCli(['constitution', 'import', `tests/fixtures/import/${input}`]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stderr, '');
      const out = path.join(dir, `${input}.yaml`);
      writeFileSync(out, result.stdout);
      const validated = await runCli(['constitution', 'validate', out]);
      assert.equal(validated.code, 0, validated.stderr);
      assert.match(validated.stdout, new RegExp(`: ok \\(${name}, ${principles} principles, hash [0-9a-f]{12}\\)`));
    });
  }

  it('--name names the constitution; a pair keeps its critique and revision', async () => {
    const result = await runCli(['constitution', 'import', 'tests/fixtures/import/pairs.json', '--name', 'support-rules']);
    assert.equal(result.code, 0, result.stderr);
    const doc = parse(result.stdout) as { name: string; principles: { id: string; critique: string; revision: string; comparisons: string[] }[] };
    assert.equal(doc.name, 'support-rules');
    assert.equal(doc.principles[1]!.id, 'kind-tone');
    assert.match(doc.principles[0]!.critique, /^Point out every claim/);
    assert.equal(doc.principles[0]!.comparisons.length, 1);
    const bad = await runCli(['constitution', 'import', 'tests/fixtures/import/pairs.json', '--name', 'no spaces']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--name: expected a name of letters, digits/);
  });

  it('a file in none of the shapes is refused in one line, nothing printed', async () => {
    const result = await runCli(['constitution', 'import', 'tests/fixtures/import/mapping.json']);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    assert.match(result.stderr, /^error: tests\/fixtures\/import\/mapping\.json:1:1: expected a JSON list of critique\/revision pairs .*, got a mapping$/m);
  });

  it('bad pairs are named by position, with did-you-mean', async () => {
    const result = await runCli(['constitution', 'import', 'tests/fixtures/import/bad-pairs.json']);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /bad-pairs\.json:2:39: \[0\]\.revison: unknown key 'revison' .*did you mean 'revision'\?/);
    assert.match(result.stderr, /bad-pairs\.json:3:3: \[1\]: expected one critique request: 'critique' or 'critic'/);
    assert.match(result.stderr, /bad-pairs\.json:5:47: \[3\]\.revision: expected a revision request, got an empty text/);
    assert.doesNotMatch(result.stderr, /\n\s+at /);
  });

  it('a missing file is one clear error', async () => {
    const result = await runCli(['constitution', 'import', 'tests/fixtures/import/no-such.json']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^error: cannot read the file to import tests\/fixtures\/import\/no-such\.json: no such file$/m);
  });
});
