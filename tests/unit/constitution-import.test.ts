// `tenet constitution import`'s conversions (core/constitution/import.ts), on inputs written for
// this project (tests/fixtures/import/): each shape becomes a constitution that parses; each problem
// is named at its place.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { stringify } from 'yaml';
import { comparisonFor, importConstitution, nameFromFile } from '../../core/constitution/import.js';
import { parseConstitution } from '../../core/constitution/parse.js';
import { formatProblem } from '../../core/source-problems.js';

const fixture = (name: string) => `tests/fixtures/import/${name}`;

function imported(name: string) {
  const file = fixture(name);
  const result = importConstitution(readFileSync(file, 'utf8'), file, nameFromFile(file));
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
  // Round trip: the YAML printed parses back into the same constitution.
  const back = parseConstitution(stringify(result.constitution), 'out.yaml');
  assert.ok(back.ok, back.ok ? '' : back.problems.map(formatProblem).join('\n'));
  assert.deepEqual(back.constitution, result.constitution);
  return result;
}

function problems(source: string, file: string): string[] {
  const result = importConstitution(source, file, 'x');
  assert.ok(!result.ok, 'expected problems');
  return result.problems.map(formatProblem);
}

describe('constitution import', () => {
  it('critique/revision pairs: critic or critique, given ids kept, a comparison question generated where none is given', () => {
    const { shape, constitution } = imported('pairs.json');
    assert.equal(shape, 'pairs');
    assert.equal(constitution.name, 'pairs');
    const [first, second] = constitution.principles;
    assert.equal(first!.id, 'principle-1');
    assert.match(first!.critique!, /^Point out every claim/);
    assert.match(first!.revision!, /^Rewrite the response so that it states only/);
    assert.deepEqual(first!.comparisons, [comparisonFor(first!.critique!)]);
    assert.match(first!.comparisons[0]!, /^Which response gives less cause for this critique: "Point out every claim/);
    assert.deepEqual(first!.tags, ['generated-comparison']);
    assert.deepEqual([second!.id, second!.comparisons, second!.tags], ['kind-tone', ['Which response treats the user with more respect?'], []]);
  });

  it('a YAML or JSON list of comparison principles: one principle each, numbered in file order', () => {
    const yaml = imported('comparisons.yaml');
    assert.equal(yaml.shape, 'comparisons');
    assert.deepEqual(yaml.constitution.principles.map((p) => p.id), ['principle-1', 'principle-2', 'principle-3']);
    assert.deepEqual(yaml.constitution.principles[2]!.comparisons, ['Which response keeps to the ingredients the user said they have?']);
    assert.ok(yaml.constitution.principles.every((p) => p.critique === undefined && p.weight === 1));
    const json = imported('comparisons.json');
    assert.equal(json.shape, 'comparisons');
    assert.deepEqual(json.constitution.principles.map((p) => p.comparisons![0]), ['Which response answers the arithmetic question correctly?', 'Which response shows its working in fewer, clearer steps?']);
  });

  it('a text file: one principle per line, comments and blank lines skipped, list markers dropped, colons kept', () => {
    const { shape, constitution } = imported('principles.txt');
    assert.equal(shape, 'lines');
    assert.deepEqual(constitution.principles.map((p) => p.comparisons![0]), [
      "Choose the response that solves the customer's problem in the fewest steps.",
      'Choose the response that never asks for a password or card number.',
      'Choose the response that says when a human agent should take over: for refunds, for example.',
    ]);
  });

  it('zero-pads generated ids so they sort in file order', () => {
    const lines = Array.from({ length: 12 }, (_, i) => `Principle number ${i + 1}?`).join('\n');
    const result = importConstitution(lines, 'many.txt', 'many');
    assert.ok(result.ok);
    assert.deepEqual([result.constitution.principles[0]!.id, result.constitution.principles[11]!.id], ['principle-01', 'principle-12']);
  });

  it('names each bad pair by its position: a mistyped key with did-you-mean, two critiques, an empty revision', () => {
    assert.deepEqual(problems(readFileSync(fixture('bad-pairs.json'), 'utf8'), 'bad-pairs.json'), [
      "bad-pairs.json:2:39: [0].revison: unknown key 'revison' (expected one of: id, critique, critic, revision, comparison); did you mean 'revision'?",
      "bad-pairs.json:3:3: [1]: expected one critique request: 'critique' or 'critic'",
      'bad-pairs.json:5:47: [3].revision: expected a revision request, got an empty text',
    ]);
    assert.deepEqual(problems('[{"id": "a", "critic": "x", "revision": "y"},\n {"id": "a", "critic": "z", "revision": "w"}]', 'dup.json'), ["dup.json:2:9: [1].id: duplicate id 'a' (first used by [0])"]);
    assert.deepEqual(problems('- Which is kinder?\n- 42\n- ""\n', 'q.yaml'), ['q.yaml:2:3: [1]: expected a comparison principle (a text), got number 42', 'q.yaml:3:3: [2]: expected a comparison principle, got an empty text']);
  });

  it('refuses a file in none of the shapes in one problem', () => {
    const [mapping, ...rest] = problems(readFileSync(fixture('mapping.json'), 'utf8'), 'mapping.json');
    assert.deepEqual(rest, []);
    assert.match(mapping!, /^mapping\.json:1:1: expected a JSON list of critique\/revision pairs .* or a text file with one principle per line, got a mapping$/);
    assert.match(problems('[]', 'empty.json')[0]!, /^empty\.json:1:1: expected a JSON list of critique\/revision pairs .*, got an empty list$/);
    assert.match(problems('\n# only a comment\n', 'empty.txt')[0]!, /^empty\.txt:1:1: expected .*, got no principles$/);
    assert.match(problems('[1, 2', 'broken.json')[0]!, /^broken\.json:\d+:\d+: YAML syntax error: /);
  });

  it('derives a valid name from the file name', () => {
    assert.equal(nameFromFile('/data/My Principles (v2).json'), 'My-Principles-v2');
    assert.equal(nameFromFile('__.txt'), 'imported');
  });
});
