import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toolDefinitions, toolEnvironmentSchema } from '../../core/tools/environment.js';
import { answerTurn, calculate, lookUp, runTool, toolMessages } from '../../core/tools/run.js';
import { parseTasksJsonl } from '../../core/verifiers/tasks.js';

const both = toolEnvironmentSchema.parse({ tools: ['calculator', 'lookup'] });

describe('built-in tools', () => {
  it('the calculator evaluates arithmetic and nothing else', () => {
    assert.deepEqual(calculate('(17 * 23) / 4'), { ok: true, content: '97.75' });
    assert.deepEqual(calculate('2^10 - sqrt(16) + 7 % 4'), { ok: true, content: '1023' });
    assert.deepEqual(calculate('0.1 + 0.2'), { ok: true, content: '0.3' });
    assert.deepEqual(calculate('12 × 3 − 1'), { ok: true, content: '35' });
    assert.equal(calculate('round(pi * 100) / 100').content, '3.14');
    // Names, assignments, strings, matrices and other mathjs features are refused before evaluation.
    for (const refused of ['x + 1', 'a = 2', 'import({}, {})', '"abc"', '[1, 2]', 'evaluate("1")', 'f(x) = x', '1 == 1']) {
      const result = calculate(refused);
      assert.equal(result.ok, false, refused);
      assert.match(result.content, /^error: /, refused);
    }
    assert.deepEqual(calculate('1 / 0'), { ok: false, content: 'error: the result is not a finite number' });
    assert.match(calculate('(1 + 2').content, /^error: cannot parse/);
    assert.equal(calculate('1+'.repeat(300) + '1').ok, false);
  });

  it('the lookup table answers its keys, ignoring case, spacing and a question mark', () => {
    assert.deepEqual(lookUp('Capital of  France?'), { ok: true, content: 'Paris' });
    assert.deepEqual(lookUp('price of coffee'), { ok: true, content: '3.8' });
    assert.deepEqual(lookUp('capital of atlantis'), { ok: false, content: 'error: no entry for "capital of atlantis"' });
  });

  it('calls run from JSON-text or object arguments; bad calls become error results for the model', () => {
    assert.deepEqual(runTool(both, 'calculator', '{"expression": "6*7"}'), { ok: true, content: '42' });
    assert.deepEqual(runTool(both, 'lookup', { key: 'atomic number of gold' }), { ok: true, content: '79' });
    assert.deepEqual(runTool(both, 'calculator', '{"expr": "6*7"}'), { ok: false, content: 'error: expected {"expression": "<text>"}' });
    assert.deepEqual(runTool(both, 'calculator', '{bad'), { ok: false, content: 'error: the arguments are not JSON' });
    assert.deepEqual(runTool(both, 'calculator', '[1]'), { ok: false, content: 'error: the arguments must be a JSON object' });
    const onlyCalculator = toolEnvironmentSchema.parse({ tools: ['calculator'] });
    assert.deepEqual(runTool(onlyCalculator, 'lookup', { key: 'x' }), { ok: false, content: 'error: no tool named "lookup" (available: calculator)' });
    assert.deepEqual(
      toolMessages(both, [
        { id: 'a', function: { name: 'calculator', arguments: '{"expression":"1+1"}' } },
        { id: 'b', function: { name: 'lookup', arguments: '{"key":"capital of Japan"}' } },
      ]),
      [
        { role: 'tool', tool_call_id: 'a', name: 'calculator', content: '2' },
        { role: 'tool', tool_call_id: 'b', name: 'lookup', content: 'Tokyo' },
      ],
    );
  });

  it('an environment offers its tools’ definitions, in its order, with max_turns 4 by default', () => {
    const environment = toolEnvironmentSchema.parse({ tools: ['lookup', 'calculator'] });
    assert.equal(environment.max_turns, 4);
    assert.deepEqual(toolDefinitions(environment).map((tool) => [tool.type, tool.function.name]), [['function', 'lookup'], ['function', 'calculator']]);
  });
});

describe('a tool-using rollout’s turns', () => {
  const call = { id: 'call_0_0', type: 'function' as const, function: { name: 'calculator', arguments: '{"expression":"2*21"}' } };

  it('runs the calls and asks again while turns are left; stops at an answer or at max_turns with the calls unanswered', () => {
    const environment = toolEnvironmentSchema.parse({ tools: ['calculator'], max_turns: 2 });
    assert.deepEqual(answerTurn(environment, 1, { text: '', toolCalls: [call] }), {
      messages: [
        { role: 'assistant', content: null, tool_calls: [call] },
        { role: 'tool', tool_call_id: 'call_0_0', name: 'calculator', content: '42' },
      ],
      again: true,
    });
    assert.deepEqual(answerTurn(environment, 2, { text: 'Let me check.', toolCalls: [call] }), { messages: [{ role: 'assistant', content: 'Let me check.', tool_calls: [call] }], again: false });
    assert.deepEqual(answerTurn(environment, 1, { text: '42', toolCalls: undefined }), { messages: [{ role: 'assistant', content: '42' }], again: false });
    // Tools offered as definitions only: nothing runs.
    assert.deepEqual(answerTurn(undefined, 1, { text: '', toolCalls: [call] }), { messages: [{ role: 'assistant', content: null, tool_calls: [call] }], again: false });
  });
});

describe('tool-call tasks with an environment', () => {
  const task = (extra: Record<string, unknown>) =>
    JSON.stringify({ prompt: 'What is the price of 3 coffees?', verifier: 'tool-call', expected: { calls: [{ name: 'lookup', arguments: { key: 'price of coffee' } }], answer: '11.4' }, ...extra });

  it('read the environment', () => {
    const parsed = parseTasksJsonl(task({ environment: { tools: ['lookup', 'calculator'], max_turns: 3 } }), 'tasks.jsonl');
    assert.ok(parsed.ok, JSON.stringify(parsed));
    const [read] = parsed.tasks;
    assert.ok(read?.verifier === 'tool-call');
    assert.deepEqual(read.environment, { tools: ['lookup', 'calculator'], max_turns: 3 });
  });

  it('name the line and field of a bad environment', () => {
    const parsed = parseTasksJsonl(
      [
        task({ environment: { tools: ['browser'] } }),
        task({ environment: { tools: [] } }),
        task({ environment: { tools: ['lookup'], max_turns: 0 } }),
        task({ environment: { tools: ['lookup', 'lookup'] } }),
        task({ environment: { tools: ['lookup'], turns: 2 } }),
        task({ environment: { tools: ['lookup'] }, tools: [{ type: 'function' }] }),
      ].join('\n'),
      'tasks.jsonl',
    );
    assert.ok(!parsed.ok);
    assert.equal(parsed.problems.length, 6, parsed.problems.join('\n'));
    const expected = [
      /^tasks\.jsonl:1:\d+: environment\.tools\[0\]: expected a built-in tool: 'calculator' or 'lookup'/,
      /^tasks\.jsonl:2:\d+: environment\.tools: expected at least one tool/,
      /^tasks\.jsonl:3:\d+: environment\.max_turns: /,
      /^tasks\.jsonl:4:\d+: environment\.tools: expected each tool once/,
      /^tasks\.jsonl:5:\d+: environment\.turns: unknown key 'turns' \(expected one of: tools, max_turns\)$/,
      /^tasks\.jsonl:6:\d+: expected either 'tools' \(definitions only\) or 'environment'/,
    ];
    parsed.problems.forEach((problem, i) => assert.match(problem, expected[i]!));
  });
});
