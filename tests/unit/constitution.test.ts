import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { diffConstitutions } from '../../core/constitution/diff.js';
import { constitutionHash } from '../../core/constitution/hash.js';
import { formatProblem, parseConstitution } from '../../core/constitution/parse.js';
import { defaultTemplates, templateKinds, templateSpecs, templateVariables } from '../../core/constitution/templates.js';

const fixture = (name: string) => `tests/fixtures/constitutions/${name}.yaml`;

function problemsOf(file: string): string[] {
  const result = parseConstitution(readFileSync(file, 'utf8'), file);
  assert.equal(result.ok, false, `${file} should be invalid`);
  return result.problems.map(formatProblem);
}

function parseText(text: string) {
  const result = parseConstitution(text, 'inline.yaml');
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
  return result.constitution;
}

describe('shipped constitutions', () => {
  for (const file of ['constitutions/default.yaml', 'constitutions/cai-harmlessness.yaml']) {
    it(`${file} is valid`, () => {
      const result = parseConstitution(readFileSync(file, 'utf8'), file);
      assert.deepEqual(result.problems.map(formatProblem), []);
    });
  }

  it('default has 8-16 principles covering helpful, harmless and honest', () => {
    const c = parseText(readFileSync('constitutions/default.yaml', 'utf8'));
    assert.ok(c.principles.length >= 8 && c.principles.length <= 16, `${c.principles.length} principles`);
    const tags = new Set(c.principles.flatMap((p) => p.tags));
    for (const tag of ['helpful', 'harmless', 'honest']) assert.ok(tags.has(tag), `no principle tagged ${tag}`);
  });

  it('cai-harmlessness has 16 critique/revision pairs and 16 comparison principles, and cites the paper', () => {
    const c = parseText(readFileSync('constitutions/cai-harmlessness.yaml', 'utf8'));
    assert.equal(c.principles.filter((p) => p.critique && p.revision).length, 16);
    assert.equal(c.principles.filter((p) => (p.comparisons ?? []).length > 0).length, 16);
    assert.ok(c.references.some((r) => r.includes('2212.08073')));
  });
});

describe('malformed constitutions: every problem with file:line:column, key path and what was expected', () => {
  const cases: [string, string[]][] = [
    ['syntax-error', [`${fixture('syntax-error')}:2:32: YAML syntax error: Missing closing "quote`]],
    ['duplicate-key', [`${fixture('duplicate-key')}:2:1: YAML syntax error: Map keys must be unique`]],
    [
      'unknown-key',
      [
        `${fixture('unknown-key')}:5:5: principles[0].critque: unknown key 'critque' (expected one of: id, critique, revision, comparisons, weight, tags); did you mean 'critique'?`,
      ],
    ],
    ['duplicate-id', [`${fixture('duplicate-id')}:8:9: principles[2].id: duplicate principle id 'kind' (first used by principles[0])`]],
    ['empty-text', [`${fixture('empty-text')}:6:15: principles[0].revision: expected a revision request, got an empty text`]],
    [
      'unknown-variable',
      [
        `${fixture('unknown-variable')}:4:15: templates.comparison: expected the template to use {{response_b}}`,
        `${fixture('unknown-variable')}:8:9: templates.comparison: unknown template variable '{{respnse_b}}' (expected one of: {{conversation}}, {{response_a}}, {{response_b}}, {{question}})`,
      ],
    ],
    ['missing-template-variable', [`${fixture('missing-template-variable')}:4:15: templates.comparison: expected the template to use {{response_b}}`]],
    ['negative-weight', [`${fixture('negative-weight')}:6:13: principles[0].weight: expected a positive number, got number -0.5`]],
    ['weight-not-number', [`${fixture('weight-not-number')}:6:13: principles[0].weight: expected a positive number, got the text "heavy"`]],
    ['missing-principles', [`${fixture('missing-principles')}:1:1: principles: missing required key: expected a list of principles`]],
    ['unpaired-critique', [`${fixture('unpaired-critique')}:4:5: principles[0]: expected 'revision' too: critique and revision requests come as a pair`]],
    [
      'bad-sampling',
      [
        `${fixture('bad-sampling')}:4:23: defaults.principle_sampling: expected 'weighted' or 'uniform', got the text "random"`,
        `${fixture('bad-sampling')}:5:20: defaults.critique_rounds: expected a whole number of at least 1, got number 0`,
      ],
    ],
    ['not-a-mapping', [`${fixture('not-a-mapping')}:1:1: expected a constitution (a YAML mapping), got a list of 1`]],
    ['empty-file', [`${fixture('empty-file')}:1:1: expected a constitution (a YAML mapping), got an empty file`]],
    [
      'many-problems',
      [
        `${fixture('many-problems')}:1:7: name: expected a name of letters, digits, '-', '_' or '.', got the text "many problems"`,
        `${fixture('many-problems')}:2:14: description: expected a description, got an empty text`,
        `${fixture('many-problems')}:3:1: colour: unknown key 'colour' (expected one of: name, description, references, defaults, templates, principles)`,
        `${fixture('many-problems')}:7:13: principles[0].weight: expected a positive number, got number 0`,
        `${fixture('many-problems')}:8:9: principles[1].id: expected an id of letters, digits, '-', '_' or '.', got the text "bad id!"`,
        `${fixture('many-problems')}:9:18: principles[1].comparisons: expected at least one comparison question, got an empty list`,
        `${fixture('many-problems')}:10:20: principles[1].tags[1]: expected a tag, got an empty text`,
      ],
    ],
  ];
  for (const [name, expected] of cases) {
    it(name, () => assert.deepEqual(problemsOf(fixture(name)), expected));
  }
});

describe('constitution parsing', () => {
  const minimal = `name: m\ndescription: d\nprinciples:\n  - id: a\n    comparisons: ["Which is better?"]\n`;

  it('fills defaults: weight 1, no tags, weighted sampling, one round', () => {
    const c = parseText(minimal);
    assert.equal(c.principles[0]!.weight, 1);
    assert.deepEqual(c.principles[0]!.tags, []);
    assert.deepEqual(c.defaults, { principle_sampling: 'weighted', principles_per_comparison: 1, critique_rounds: 1 });
    assert.deepEqual(c.templates, {});
  });

  it('rejects an infinite weight', () => {
    const result = parseConstitution(minimal.replace('comparisons', 'weight: .inf\n    comparisons'), 'inf.yaml');
    assert.equal(result.ok, false);
    assert.match(result.problems.map(formatProblem).join('\n'), /inf\.yaml:5:13: principles\[0\]\.weight: expected a positive number, got number Infinity/);
  });

  it('hash ignores layout and comments but not content', () => {
    const reformatted = `# a comment\nname: m\ndescription: "d"\nprinciples:\n- comparisons:\n  - Which is better?\n  id: a\n`;
    assert.equal(constitutionHash(parseText(minimal)), constitutionHash(parseText(reformatted)));
    assert.notEqual(constitutionHash(parseText(minimal)), constitutionHash(parseText(minimal.replace('better', 'kinder'))));
    assert.notEqual(constitutionHash(parseText(minimal)), constitutionHash(parseText(`${minimal}    weight: 2\n`)));
  });

  it('default templates use only allowed variables and every required one', () => {
    for (const kind of templateKinds) {
      const used = templateVariables(defaultTemplates[kind]).map((v) => v.name);
      for (const name of used) assert.ok(templateSpecs[kind].allowed.includes(name), `${kind} uses ${name}`);
      for (const name of templateSpecs[kind].required) assert.ok(used.includes(name), `${kind} lacks ${name}`);
    }
  });
});

describe('constitution diff', () => {
  const a = parseText(readFileSync('constitutions/default.yaml', 'utf8'));

  it('a constitution is the same as itself', () => {
    assert.equal(diffConstitutions(a, a).same, true);
  });

  it('reports added, removed, changed and reordered principles and header changes', () => {
    const b = structuredClone(a);
    const removed = b.principles.shift()!;
    b.principles[0]!.weight = 9;
    b.principles.push({ id: 'new-one', comparisons: ['Which is newer?'], weight: 1, tags: [] });
    b.defaults.critique_rounds = 3;
    const diff = diffConstitutions(a, b);
    assert.equal(diff.same, false);
    assert.deepEqual(diff.removed, [removed.id]);
    assert.deepEqual(diff.added, ['new-one']);
    assert.deepEqual(diff.changed, [{ id: b.principles[0]!.id, changes: [{ field: 'weight', before: a.principles[1]!.weight, after: 9 }] }]);
    assert.deepEqual(diff.header, [{ field: 'defaults.critique_rounds', before: a.defaults.critique_rounds, after: 3 }]);
    const swapped = structuredClone(a);
    [swapped.principles[0], swapped.principles[1]] = [swapped.principles[1]!, swapped.principles[0]!];
    assert.deepEqual(diffConstitutions(a, swapped).reordered, [a.principles[1]!.id, a.principles[0]!.id]);
  });
});
