import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseTasksJsonl } from '../../core/verifiers/tasks.js';

const lines = [
  { id: 'm1', prompt: 'What is 1/2 + 1/4?', verifier: 'math', reference: '3/4' },
  { id: 'm2', prompt: 'What is 6 * 7?', verifier: 'math', reference: 42, options: { strategies: ['boxed'] } },
  {
    id: 'c1',
    prompt: 'Write add(a, b).',
    verifier: 'code',
    language: 'python',
    entry: 'add',
    tests: { visible: [{ args: [1, 2], expected: 3 }], hidden: [{ args: [5, 5], expected: 10 }] },
    options: { scoring: 'fraction', limits: { wall_ms: 2000 } },
  },
  { id: 't1', messages: [{ role: 'user', content: 'Weather in Paris?' }], verifier: 'tool-call', expected: { calls: [{ name: 'get_weather', arguments: { city: 'Paris' } }] }, options: { order: 'any' } },
];
const jsonl = (rows: unknown[]) => rows.map((row) => JSON.stringify(row)).join('\n');

describe('verifiable task files', () => {
  it('read every verifier with its defaults', () => {
    const parsed = parseTasksJsonl(jsonl(lines), 'tasks.jsonl');
    assert.ok(parsed.ok, JSON.stringify(parsed));
    const [m1, m2, c1, t1] = parsed.tasks;
    assert.deepEqual([m1?.key, m1?.verifier, m1?.messages], ['m1', 'math', [{ role: 'user', content: 'What is 1/2 + 1/4?' }]]);
    assert.equal(m2?.verifier === 'math' && m2.reference, '42');
    assert.ok(c1?.verifier === 'code');
    assert.deepEqual([c1.options?.scoring, c1.options?.limits.wall_ms, c1.options?.limits.cpu_s, c1.tests.hidden.length], ['fraction', 2000, 3, 1]);
    assert.ok(t1?.verifier === 'tool-call');
    assert.deepEqual([t1.options?.order, t1.options?.credit, t1.expected.calls[0]?.name], ['any', 'all', 'get_weather']);
  });

  it('name the line and key of every problem', () => {
    const bad = [
      lines[0],
      { prompt: 'x', verifier: 'regex', reference: '1' },
      { prompt: 'x', verifier: 'code', language: 'ruby', entry: 'f', tests: { visible: [{ args: [1], expected: 1 }] } },
      { prompt: 'x', verifier: 'code', language: 'python', entry: 'f()', tests: { visible: [] } },
      { prompt: 'x', verifier: 'tool-call', expected: { calls: [] } },
      { prompt: 'x', verifier: 'math', reference: '1', options: { strategies: ['guess'] } },
      { id: 'm1', prompt: 'again', verifier: 'math', reference: '1' },
    ];
    const parsed = parseTasksJsonl(`${jsonl(bad)}\n{not json`, 'tasks.jsonl');
    assert.ok(!parsed.ok);
    assert.deepEqual(parsed.problems, [
      "tasks.jsonl:2:26: verifier: expected verifier 'math', 'code' or 'tool-call'",
      `tasks.jsonl:3:44: language: expected language 'python' or 'javascript', got the text "ruby"`,
      'tasks.jsonl:4:61: entry: expected entry to be a function name, got the text "f()"',
      'tasks.jsonl:4:75: tests: expected at least one test case',
      'tasks.jsonl:5:49: expected: expected calls or an answer to check',
      `tasks.jsonl:6:74: options.strategies[0]: expected a strategy 'boxed', 'answer' or 'last-number', got the text "guess"`,
      "tasks.jsonl:7:7: id: duplicate id 'm1' (first on line 1)",
      `tasks.jsonl:8:2: not valid JSON (${(() => { try { JSON.parse('{not json'); } catch (error) { return (error as Error).message; } return ''; })()})`,
    ]);
  });

  it('refuse an empty file', () => {
    assert.deepEqual(parseTasksJsonl('\n\n', 'empty.jsonl'), { ok: false, problems: ['empty.jsonl: no tasks (the file is empty)'] });
  });
});
