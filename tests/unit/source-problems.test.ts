// Run-config and prompts-file problems at their line and column, as constitution problems are.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parsePromptsJsonl } from '../../core/prompts-file.js';
import { runConfigSchema } from '../../core/run-config.js';
import { formatProblem, keysAt, parseYamlSource } from '../../core/source-problems.js';

const endpoints = 'endpoints:\n  policy: { base_url: "http://127.0.0.1:8000/v1", model: m }\n  rater: { base_url: "http://127.0.0.1:8000/v1", model: m }\n';

function runConfigProblems(yaml: string): string[] {
  const result = parseYamlSource(yaml, 'run.yaml', runConfigSchema, { value: {} });
  return result.ok ? [] : result.problems.map(formatProblem);
}

describe('run config problems', () => {
  it('name line, column and key path, with what was expected and what was found', () => {
    assert.deepEqual(runConfigProblems(`${endpoints}sample:\n  n: 0\n`), ['run.yaml:5:6: sample.n: expected number to be >=1, got number 0']);
    assert.deepEqual(runConfigProblems(`${endpoints}scale: { batch_size: "8" }\n`), ['run.yaml:4:22: scale.batch_size: expected number, got the text "8"']);
  });

  it('suggest the key an unknown one was meant to be, and list the keys its mapping takes', () => {
    assert.deepEqual(runConfigProblems(`${endpoints}label:\n  position_prio: batch\n`), [
      "run.yaml:5:3: label.position_prio: unknown key 'position_prio' (expected one of: " + keysAt(runConfigSchema, ['label']).join(', ') + "); did you mean 'position_prior'?",
    ]);
    assert.match(runConfigProblems(`${endpoints}loop:\n  evaluat: {}\n`)[0]!, /^run\.yaml:5:3: loop\.evaluat: unknown key 'evaluat' .*did you mean 'evaluate'\?$/);
  });

  it('point a missing key at its mapping, and an empty file at its start', () => {
    assert.deepEqual(runConfigProblems('endpoints:\n  policy: { base_url: "http://127.0.0.1:8000/v1", model: m }\n'), ['run.yaml:2:3: endpoints.rater: missing required key: expected object']);
    assert.deepEqual(runConfigProblems(''), ['run.yaml:1:1: endpoints: missing required key: expected object']);
  });

  it('never echo the value given for a key name that may hold a secret', () => {
    const problems = runConfigProblems('endpoints:\n  policy: { base_url: "http://127.0.0.1:8000/v1", model: m, api_key_env: "sk-live-123" }\n  rater: { base_url: "http://127.0.0.1:8000/v1", model: m }\n');
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^run\.yaml:2:74: endpoints\.policy\.api_key_env: expected the NAME of an environment variable, not the key itself$/);
  });

  it('report YAML syntax errors at their place', () => {
    assert.match(runConfigProblems('endpoints: [\n')[0]!, /^run\.yaml:2:1: YAML syntax error: /);
  });
});

describe('prompts file problems', () => {
  it('name the column of the bad value on its line, and suggest a mistyped key', () => {
    const parsed = parsePromptsJsonl('{"prompt": "fine"}\n{"prompt": 42}\n{"id": 3, "promt": "x"}\n{"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}\n', 'p.jsonl');
    assert.ok(!parsed.ok);
    assert.deepEqual(parsed.problems, [
      'p.jsonl:2:12: prompt: expected prompt (a text), got number 42',
      "p.jsonl:3:11: promt: unknown key 'promt' (expected one of: id, prompt, messages, split, metadata); did you mean 'prompt'?",
      `p.jsonl:4:58: messages[1].role: expected role 'system', 'user' or 'assistant', got the text "bot"`,
    ]);
  });

  it('point at where the JSON breaks', () => {
    const parsed = parsePromptsJsonl('{"prompt": "a"}\n{"prompt": "b",, }\n', 'p.jsonl');
    assert.ok(!parsed.ok);
    assert.match(parsed.problems[0]!, /^p\.jsonl:2:16: not valid JSON \(/);
  });
});
