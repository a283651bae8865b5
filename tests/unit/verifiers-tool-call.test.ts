import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tokenF1, verifyToolCalls, type ExpectedTrace } from '../../core/verifiers/tool-call.js';

let nextId = 0;
/** An assistant turn with these tool calls, in OpenAI's format (arguments as a JSON string, as models send them). */
function calls(...list: [string, string | Record<string, unknown>][]) {
  return {
    role: 'assistant',
    content: null,
    tool_calls: list.map(([name, args]) => ({ id: `call_${nextId++}`, type: 'function', function: { name, arguments: typeof args === 'string' ? args : JSON.stringify(args) } })),
  };
}
const result = (content: string) => ({ role: 'tool', tool_call_id: 'x', content });
const say = (content: string) => ({ role: 'assistant', content });
const user = { role: 'user', content: 'Weather in Paris and Rome, then book the cheaper flight.' };

const expected: ExpectedTrace = {
  calls: [
    { name: 'get_weather', arguments: { city: 'Paris', units: 'celsius' } },
    { name: 'get_weather', arguments: { city: 'Rome', units: 'celsius' } },
    { name: 'book_flight', arguments: { to: 'Rome', passengers: 1, note: 'window seat please' } },
  ],
};
const honest = [
  user,
  calls(['get_weather', { city: 'Paris', units: 'celsius' }], ['get_weather', { city: 'Rome', units: 'celsius' }]),
  result('{"Paris": 18, "Rome": 24}'),
  calls(['book_flight', '{"passengers": 1.0, "note": "window seat please", "to": "Rome"}']),
  result('booked'),
  say('Booked your flight to Rome.'),
];

describe('tool-call verifier', () => {
  it('matches a trace regardless of key order and 1 vs 1.0', () => {
    const verdict = verifyToolCalls(honest, expected);
    assert.deepEqual([verdict.reward, verdict.reason.code, verdict.reason.matched, verdict.flags], [1, 'match', 3, []]);
  });

  it('in strict order, fails swapped calls; in any order, accepts them', () => {
    const swapped = [user, calls(['get_weather', { city: 'Rome', units: 'celsius' }], ['get_weather', { city: 'Paris', units: 'celsius' }], ['book_flight', { to: 'Rome', passengers: 1, note: 'window seat please' }])];
    const strict = verifyToolCalls(swapped, expected);
    assert.deepEqual([strict.reward, strict.reason.code, strict.reason.matched], [0, 'mismatch', 2]);
    assert.match(JSON.stringify(strict.reason.unmatched), /out of order/);
    assert.equal(verifyToolCalls(swapped, expected, { order: 'any' }).reward, 1);
    assert.equal(verifyToolCalls(swapped, expected, { credit: 'fraction' }).reward, 2 / 4, 'two of three matched, one extra penalised');
  });

  it('names the argument that differs and gives partial credit when asked', () => {
    const wrongCity = [user, calls(['get_weather', { city: 'Paris', units: 'celsius' }], ['get_weather', { city: 'Milan', units: 'celsius' }], ['book_flight', { to: 'Rome', passengers: 1, note: 'window seat please' }])];
    const verdict = verifyToolCalls(wrongCity, expected);
    assert.equal(verdict.reward, 0);
    assert.deepEqual(verdict.reason.unmatched, [{ index: 1, name: 'get_weather', why: 'call 1 differs at city' }]);
    assert.ok(Math.abs(verifyToolCalls(wrongCity, expected, { credit: 'fraction' }).reward - 2 / 4) < 1e-12);
    assert.ok(Math.abs(verifyToolCalls(wrongCity, expected, { credit: 'fraction', extra_calls: 'ignore' }).reward - 2 / 3) < 1e-12);
  });

  it('reports no calls, extra calls, missing and unexpected keys', () => {
    assert.deepEqual(verifyToolCalls([user, say('It is sunny.')], expected).reason.code, 'no-calls');
    const extra = verifyToolCalls([...honest.slice(0, 5), calls(['get_weather', { city: 'Paris', units: 'celsius' }])], expected);
    assert.deepEqual([extra.reward, extra.flags], [0, ['extra-calls', 'repeated-calls']]);
    assert.equal(verifyToolCalls([...honest.slice(0, 5), calls(['log', {}])], expected, { extra_calls: 'ignore' }).reward, 1);
    const missingKey = [user, calls(['get_weather', { city: 'Paris' }])];
    assert.match(JSON.stringify(verifyToolCalls(missingKey, { calls: [expected.calls[0]!] }).reason.unmatched), /differs at units/);
    const extraKey = [user, calls(['get_weather', { city: 'Paris', units: 'celsius', debug: true }])];
    assert.equal(verifyToolCalls(extraKey, { calls: [expected.calls[0]!] }).reward, 0);
    assert.equal(verifyToolCalls(extraKey, { calls: [expected.calls[0]!] }, { extra_keys: 'ignore' }).reward, 1);
  });

  it('compares free-text fields by the rule set for their path', () => {
    const loose = [user, calls(['get_weather', { city: ' paris ', units: 'celsius' }], ['get_weather', { city: 'ROME', units: 'celsius' }], ['book_flight', { to: 'Rome', passengers: '1', note: 'please, a window seat' }])];
    assert.equal(verifyToolCalls(loose, expected).reward, 0, 'exact by default');
    const fields = { 'get_weather:city': { match: 'text' }, 'book_flight:note': { match: 'tokens', threshold: 0.7 }, passengers: { match: 'number' } } as const;
    const withRules = { fields: Object.fromEntries(Object.entries(fields).map(([path, rule]) => [path, { threshold: 0.8, tolerance: 0, ...rule }])) };
    assert.equal(verifyToolCalls(loose, expected, withRules).reward, 1);
    // The rule is for get_weather's city only: book_flight's 'to' stays exact.
    const wrongTo = [user, ...loose.slice(1, 2), calls(['book_flight', { to: 'rome', passengers: 1, note: 'window seat please' }])];
    assert.equal(verifyToolCalls(wrongTo, expected, withRules).reward, 0);
    const unrelatedNote = [user, ...loose.slice(1, 2), calls(['book_flight', { to: 'Rome', passengers: 1, note: 'aisle' }])];
    assert.equal(verifyToolCalls(unrelatedNote, expected, withRules).reward, 0);
    assert.ok(tokenF1('window seat please', 'please, a window seat') >= 0.85);
  });

  it('applies wildcard paths inside lists', () => {
    const want: ExpectedTrace = { calls: [{ name: 'add_items', arguments: { items: [{ name: 'Green Tea', qty: 2 }, { name: 'Milk', qty: 1 }] } }] };
    const got = [user, calls(['add_items', { items: [{ name: 'green tea', qty: 2 }, { name: 'MILK', qty: 1 }] }])];
    assert.equal(verifyToolCalls(got, want).reward, 0);
    assert.equal(verifyToolCalls(got, want, { fields: { 'items.*.name': { match: 'text', threshold: 0.8, tolerance: 0 } } }).reward, 1);
  });

  it('pairs calls optimally in any order, so a loose rule cannot steal a partner', () => {
    const want: ExpectedTrace = { calls: [{ name: 'search', arguments: { q: 'red apples' } }, { name: 'search', arguments: { q: 'red apples and pears' } }] };
    const got = [user, calls(['search', { q: 'red apples and pears' }], ['search', { q: 'red apples' }])];
    const options = { order: 'any', fields: { q: { match: 'tokens', threshold: 0.6, tolerance: 0 } } } as const;
    assert.equal(verifyToolCalls(got, want, options).reward, 1);
  });

  it('turns malformed arguments into bad-arguments and a malformed trace into bad-trace', () => {
    const bad = verifyToolCalls([user, calls(['get_weather', '{"city": "Paris",'])], expected);
    assert.deepEqual([bad.reward, bad.reason.code, bad.reason.call, bad.reason.name], [0, 'bad-arguments', 0, 'get_weather']);
    assert.equal(verifyToolCalls({ messages: [] }, expected).reason.code, 'bad-trace');
    assert.equal(verifyToolCalls([{ role: 'assistant', tool_calls: [{ function: { name: 'x' } }] }], expected).reason.code, 'bad-trace');
  });

  it('checks the final answer text alone or with the calls', () => {
    const withAnswer: ExpectedTrace = { ...expected, answer: 'Booked your flight to Rome' };
    assert.equal(verifyToolCalls(honest, withAnswer).reward, 1);
    const wrongAnswer = [...honest.slice(0, -1), say('Booked your flight to Paris.')];
    const verdict = verifyToolCalls(wrongAnswer, withAnswer);
    assert.deepEqual([verdict.reward, verdict.reason.code], [0, 'mismatch']);
    assert.equal(verifyToolCalls(wrongAnswer, withAnswer, { credit: 'fraction' }).reward, 0.5);
    assert.equal(verifyToolCalls(honest.slice(0, -1), withAnswer).reason.code, 'no-answer');
    const arithmetic = [user, say('The total is 1,000 dollars.')];
    assert.equal(verifyToolCalls(arithmetic, { calls: [], answer: '1000' }, { answer_match: 'math' }).reward, 1);
    assert.equal(verifyToolCalls(arithmetic, { calls: [], answer: '1000' }).reward, 0);
    assert.equal(verifyToolCalls([user, { role: 'assistant', content: [{ type: 'text', text: 'Booked your flight to Rome.' }] }], { calls: [], answer: 'booked your flight to rome' }).reward, 1);
  });
});
